#pragma once
/// \file low_precision_checks.hpp
/// What the tests of 16-bit and int8 storage share: a grouped-query call's shape, a bit-for-bit comparison, and
/// the low-precision criterion of shared/DESIGN.md §6 per batch item and query head: the kernel's error against the
/// fp64 oracle at most twice the naive float computation's on the same values, its output rounded to the storage
/// type as the kernel's is, plus float's floor.

#include <salt/attention.hpp>

#include <cstddef>
#include <cstring>
#include <type_traits>
#include <vector>

#include "catch.hpp"
#include "reference.hpp"

namespace salt::test {

/// q (B, Hq, Lq, d), k and v (B, Hkv, Lk, d), stored as (B H L, d) rows, the rows of head (b, h) consecutive.
struct gqa_shape {
  index batch, q_heads, kv_heads, lq, lk, d;
};

/// Whether two matrices hold the same bits.
template <class S>
bool same_bits(const row_matrix<S>& a, const row_matrix<S>& b) {
  return a.rows() == b.rows() && a.cols() == b.cols() &&
         std::memcmp(a.data(), b.data(), sizeof(S) * static_cast<std::size_t>(a.size())) == 0;
}

/// Each (batch item, query head) of a call whose output `out` is stored in S and whose LSE is float, judged under
/// the low-precision criterion against the values the kernel computed from: q, k, v as float rows (the stored
/// values widened, or dequantized). Returns the heads checked.
template <class S, class Mask, class Score = dot_product>
index check_each_head(const gqa_shape& s, const row_matrix<float>& q, const row_matrix<float>& k,
                      const row_matrix<float>& v, const row_matrix<S>& out, const std::vector<float>& lse,
                      const Mask& mask, const Score& score = {}) {
  const auto rows = [](const auto& m, index first, index count) {
    return row_matrix<typename std::decay_t<decltype(m)>::Scalar>(m.middleRows(first * count, count));
  };
  index heads = 0;
  for (index b = 0; b < s.batch; ++b) {
    for (index h = 0; h < s.q_heads; ++h) {
      CAPTURE(b, h);
      const index g = h / (s.q_heads / s.kv_heads);
      const row_matrix<float> qh = rows(q, b * s.q_heads + h, s.lq), kh = rows(k, b * s.kv_heads + g, s.lk),
                              vh = rows(v, b * s.kv_heads + g, s.lk);
      const problem_shape where{s.lq, s.lk, b, h};
      const auto naive = naive_attention<float>(qh, kh, vh, mask, score, where);
      const auto ref = naive_attention<double>(qh, kh, vh, mask, score, where);
      const row_matrix<float> naive_stored = naive.out.template cast<S>().template cast<float>();
      const row_matrix<float> kernel = rows(out, b * s.q_heads + h, s.lq).template cast<float>();
      const auto acc = judge<float>(kernel, naive_stored, ref.out, finite_scale(vh));
      CAPTURE(acc.kernel_error, acc.naive_error, acc.floor);
      CHECK(acc.ok());
      const Eigen::Map<const column<float>> lse_h(lse.data() + (b * s.q_heads + h) * s.lq, s.lq);
      const auto lse_acc = judge<float>(lse_h, naive.lse, ref.lse, finite_scale(ref.lse));
      CAPTURE(lse_acc.kernel_error, lse_acc.naive_error, lse_acc.floor);
      CHECK(lse_acc.ok());
      ++heads;
    }
  }
  return heads;
}

}  // namespace salt::test
