// Must not compile: a Synthesizer table from a temporary matrix. The policy views its table, which would be
// freed at the end of the statement while the policy still points at it.
// expect: salt::synthesizer_random::shared views its table, which must outlive the call
#include <salt/synthesizer.hpp>

int main() {
  const auto score = salt::synthesizer_random<float>::shared(salt::row_matrix<float>::Zero(8, 8).eval());
  return static_cast<int>(score.max_len);
}
