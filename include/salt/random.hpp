#pragma once
/// \file random.hpp
/// The library's own seeded generator. Every random structure (BigBird's random blocks, LSH rotations,
/// random features, projection initialisers) is drawn from it, so the same seed gives the same bits with
/// every compiler, standard library and platform: only integer arithmetic is used to make bits and
/// integers (std::*_distribution differs between standard libraries).

#include <cmath>
#include <cstdint>

#include "config.hpp"

namespace salt {

/// xoshiro256** (Blackman and Vigna), seeded through splitmix64 as its authors recommend.
class random_generator {
 public:
  /// The generator for `seed`: every seed, 0 included, gives a valid state; the same seed, the same stream.
  explicit random_generator(std::uint64_t seed) noexcept {
    for (std::uint64_t& s : state_) s = splitmix64(seed);
  }

  /// 64 uniformly random bits.
  std::uint64_t next() noexcept {
    const std::uint64_t result = rotl(state_[1] * 5, 7) * 9;
    const std::uint64_t t = state_[1] << 17;
    state_[2] ^= state_[0];
    state_[3] ^= state_[1];
    state_[1] ^= state_[2];
    state_[0] ^= state_[3];
    state_[2] ^= t;
    state_[3] = rotl(state_[3], 45);
    return result;
  }

  /// Uniform integer in [0, n), n > 0, without bias: draws below 2^64 mod n are rejected, so the rest
  /// split evenly among the n residues.
  std::uint64_t below(std::uint64_t n) noexcept {
    const std::uint64_t threshold = (0 - n) % n;  // 2^64 mod n
    for (;;) {
      const std::uint64_t x = next();
      if (x >= threshold) return x % n;
    }
  }

  /// Uniform double in [0, 1) with 53 random bits.
  double uniform() noexcept { return static_cast<double>(next() >> 11) * 0x1.0p-53; }

  /// Standard normal draw, N(0, 1): Box-Muller (cosine branch) from two uniform() draws per call, so
  /// every call consumes exactly two next() values. The uniforms are exact; sqrt is correctly rounded
  /// (IEEE 754), but std::log and std::cos come from the platform's libm, and nothing in the expression
  /// can be contracted into an FMA. So the bits are identical across compilers (g++, clang) on the same
  /// C library; another libm (musl, macOS, MSVC), or glibc's FMA and non-FMA builds of log/cos (chosen
  /// by CPU), may differ in the last bit on rare draws.
  double normal() noexcept {
    const double u1 = 1.0 - uniform();  // in (0, 1]: log never sees 0
    const double u2 = uniform();
    return std::sqrt(-2.0 * std::log(u1)) * std::cos(6.283185307179586 * u2);
  }

 private:
  static std::uint64_t rotl(std::uint64_t x, int k) noexcept { return (x << k) | (x >> (64 - k)); }
  static std::uint64_t splitmix64(std::uint64_t& x) noexcept {
    std::uint64_t z = (x += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
  }

  std::uint64_t state_[4];
};

}  // namespace salt
