#!/usr/bin/env bash
# Fingerprints of the kernel outputs every test case compares (tests/reference.hpp: output_fingerprint),
# one line per (test executable, test case): run it on two builds and diff the files to show that a change
# leaves every output bit-identical. Test cases that exist in only one build show up as lines of their own.
#   scripts/fingerprint.sh BUILD_DIR > fingerprints.txt
set -u  # not -e: Catch2 2 exits with the number of test cases it lists, and a failing case still prints
build=${1:?usage: fingerprint.sh BUILD_DIR}
for exe in "$build"/tests/test_*; do
  [ -x "$exe" ] || continue
  name=$(basename "$exe")
  "$exe" --list-test-names-only 2>/dev/null | sed '/^$/d' | while IFS= read -r case; do
    spec=$(printf '%s' "$case" | sed 's/[][\\,*]/\\&/g')  # Catch2's test-spec characters, escaped
    print=$(SALT_TEST_OUTPUT_HASH=1 "$exe" "$spec" 2>&1 >/dev/null | sed -n 's/^salt output fingerprint: //p')
    echo "$name | $case | ${print:-none}"
  done
done
