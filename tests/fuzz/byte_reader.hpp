#pragma once
/// \file fuzz/byte_reader.hpp
/// Decodes a fuzzer's byte string into the choices of one test case: bounded integers, flags, choices
/// among alternatives, seeds and scalars. Every read is total: once the bytes run out each read returns
/// its default (the lower bound, false, the first choice, 0), so every input decodes, and a short input is
/// a small, plain case. Reads take as few bytes as their range needs, so that a mutation of one byte
/// changes one decision. The failure helper prints what went wrong and aborts, which libFuzzer reports as
/// a crash with the input that caused it.

#include <salt/error.hpp>
#include <salt/random.hpp>
#include <salt/tensor.hpp>

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <sstream>
#include <string>
#include <vector>

namespace salt::fuzz {

class byte_reader {
 public:
  byte_reader(const std::uint8_t* data, std::size_t size) noexcept : data_(data), size_(size) {}

  bool exhausted() const noexcept { return pos_ >= size_; }

  /// One byte, 0 once the bytes run out.
  std::uint8_t byte() noexcept { return pos_ < size_ ? data_[pos_++] : 0; }

  /// Integer in [lo, hi] (inclusive, lo <= hi): one byte for ranges up to 256 values, two up to 65536,
  /// eight beyond. lo once the bytes run out.
  index integer(index lo, index hi) noexcept {
    if (hi <= lo) return lo;
    const std::uint64_t span = static_cast<std::uint64_t>(hi) - static_cast<std::uint64_t>(lo);
    const int bytes = span < 256 ? 1 : span < 65536 ? 2 : 8;
    std::uint64_t x = 0;
    for (int i = 0; i < bytes; ++i) x = (x << 8) | byte();
    const std::uint64_t v = span == std::numeric_limits<std::uint64_t>::max() ? x : x % (span + 1);
    return static_cast<index>(static_cast<std::uint64_t>(lo) + v);
  }

  /// A flag: the low bit of one byte (false once the bytes run out).
  bool flag() noexcept { return (byte() & 1) != 0; }

  /// true with probability about 1 / n (never once the bytes run out).
  bool one_in(int n) noexcept { return exhausted() ? false : byte() % n == n - 1; }

  /// One of n alternatives, 0 once the bytes run out.
  int choice(int n) noexcept { return static_cast<int>(integer(0, n - 1)); }

  /// A seed for salt's generator from up to four bytes (0 once they run out): enough distinct draws, few bytes.
  std::uint64_t seed() noexcept {
    std::uint64_t x = 0;
    for (int i = 0; i < 4 && !exhausted(); ++i) x = (x << 8) | byte();
    return x;
  }

  /// A value of one of the interesting kinds: a moderate number, zero, a huge or tiny magnitude, NaN, +Inf
  /// or -Inf. `kind` picks one (it comes from the bytes).
  template <class T>
  static T special(int kind, double magnitude) noexcept {
    switch (kind % 8) {
      case 0: return std::numeric_limits<T>::quiet_NaN();
      case 1: return std::numeric_limits<T>::infinity();
      case 2: return -std::numeric_limits<T>::infinity();
      case 3: return static_cast<T>(magnitude);   // huge, may overflow float to inf: then it is non-finite
      case 4: return static_cast<T>(-magnitude);
      case 5: return T(0);
      case 6: return std::numeric_limits<T>::denorm_min();
      default: return static_cast<T>(std::sqrt(magnitude));  // 1e2 .. 1e15: large but often representable
    }
  }

 private:
  const std::uint8_t* data_;
  std::size_t size_;
  std::size_t pos_ = 0;
};

/// Uniform values in [-scale, scale) from salt's generator (the bulk of each input: drawn from a seed the
/// bytes give, so that inputs stay short), then a few entries the bytes overwrite with special values
/// (NaN, +-Inf, huge magnitudes 1e4 .. 1e30 and their square roots, zero, subnormal).
template <class T>
void fill(std::vector<T>& x, random_generator& rng, double scale, byte_reader& in, int max_specials) {
  for (T& e : x) e = static_cast<T>(scale * (2 * rng.uniform() - 1));
  if (x.empty()) return;
  const index n = static_cast<index>(x.size());
  const int specials = max_specials > 0 ? static_cast<int>(in.integer(0, max_specials)) : 0;
  for (int s = 0; s < specials; ++s) {
    const index at = in.integer(0, n - 1);
    const int kind = in.choice(8);
    const double magnitude = std::pow(10.0, static_cast<double>(in.integer(4, 30)));
    x[static_cast<std::size_t>(at)] = byte_reader::special<T>(kind, magnitude);
  }
}

/// Whether two buffers hold the same bits (NaN included, which == would call different).
template <class T>
bool same_bits(const std::vector<T>& a, const std::vector<T>& b) {
  return a.size() == b.size() && (a.empty() || std::memcmp(a.data(), b.data(), a.size() * sizeof(T)) == 0);
}

/// Whether SALT_FUZZ_VERBOSE is set: then the harnesses describe each case on stderr (for replaying a corpus
/// to see what it covers).
inline bool verbose() {
  static const bool on = std::getenv("SALT_FUZZ_VERBOSE") != nullptr;
  return on;
}

/// An attention case's sizes for a finding's message, e.g. "composition 3, float, batch 2, heads 4/2, lq 7, ...";
/// `kind` names what `which` counts (a harness's mask composition or its (mask, score) pair).
inline std::string describe_case(const char* kind, int which, salt::index batch, salt::index hq, salt::index hkv,
                                 salt::index lq, salt::index lk, salt::index d, salt::index dv, bool is_double) {
  std::ostringstream s;
  s << kind << " " << which << ", " << (is_double ? "double" : "float") << ", batch " << batch << ", heads " << hq
    << "/" << hkv << ", lq " << lq << ", lk " << lk << ", d " << d << ", dv " << dv;
  return s.str();
}

/// Reports a finding and aborts (libFuzzer then saves the input and reports a crash).
[[noreturn]] inline void fail(const std::string& what) {
  std::fprintf(stderr, "\n*** salt fuzz finding: %s\n", what.c_str());
  std::fflush(stderr);
  std::abort();
}

/// A salt::error's message must name the API: it begins with "salt::".
inline void check_error_message(const char* message) {
  if (std::strncmp(message, "salt::", 6) != 0) fail(std::string("salt::error message does not begin with salt::: ") + message);
}

/// Whether the first n entries are all finite.
template <class U>
bool finite_row(const U* x, index n) {
  for (index c = 0; c < n; ++c)
    if (!std::isfinite(x[c])) return false;
  return true;
}

/// Whether two entries are of the same kind: both NaN, both the same infinity, or both finite.
template <class A, class B>
bool same_kind(A a, B b) {
  const long double x = static_cast<long double>(a), y = static_cast<long double>(b);
  if (std::isnan(x) || std::isnan(y)) return std::isnan(x) && std::isnan(y);
  if (std::isinf(x) || std::isinf(y)) return x == y;
  return true;
}

/// The body of the engine, LSH and linear harnesses' entry points: the first flag picks double or float,
/// then `run(in, T{})` runs one case; a rejected case's salt::error must name its function.
template <class Run>
int run_in_either_precision(const std::uint8_t* data, std::size_t size, Run run) {
  byte_reader in(data, size);
  try {
    if (in.flag()) run(in, double{});
    else run(in, float{});
  } catch (const salt::error& e) {
    check_error_message(e.what());
  }
  return 0;
}

}  // namespace salt::fuzz
