#pragma once
/// \file mask/sparse_transformer.hpp
/// The factorized patterns of the Sparse Transformer (Child et al. 2019, "Generating Long Sequences with
/// Sparse Transformers"): `strided` (a local band plus every stride-th key) and `fixed` (the query's own
/// block plus the last `summary` keys of every block). Each is the union of the paper's two heads A(1) and
/// A(2), in one mask.
///
/// The paper defines both for autoregressive models only. Here they are defined without a direction
/// (symmetric where the paper's definitions are one-sided), and `& salt::causal{}` gives the paper's form:
///
///     salt::attention(q, k, v, salt::strided{.stride = 128} & salt::causal{});
///     salt::attention(q, k, v, salt::fixed{.block = 128, .summary = 8} & salt::causal{});
///
/// When Lq != Lk, query i sits at key position p = i + Lk - Lq (bottom-right, like `causal`), so the
/// patterns line up with `causal{}` when decoding with a cache.

#include <algorithm>
#include <cstdint>

#include "../error.hpp"
#include "compose.hpp"
#include "concept.hpp"

namespace salt {
namespace detail {

/// floor(a / b) for b > 0 and any a, without overflow for any b (-(a + 1) is representable for a < 0).
constexpr index floor_div(index a, index b) noexcept { return a >= 0 ? a / b : -(-(a + 1) / b) - 1; }
/// ceil(a / b) for b > 0 and any a.
constexpr index ceil_div(index a, index b) noexcept { return -floor_div(-a, b); }

/// The longest stride or block the patterns take: far beyond any sequence, and small enough that positions
/// plus periods never overflow.
inline constexpr index longest_period = index{1} << 40;

/// The first key block not planned yet (0 for an empty plan).
inline index planned_end(const block_plan& plan) noexcept {
  const auto runs = plan.runs();
  return runs.empty() ? 0 : runs.back().last;
}

}  // namespace detail

/// Strided pattern: the query at position p sees key j when |p - j| < stride (the local band, the paper's
/// A(1)) or p - j is a multiple of stride (A(2)). With `& causal{}` this is the paper's strided pattern:
/// 0 <= p - j < stride, or p - j = 0 mod stride. (The paper's local head is t = max(0, i - l) .. i, one key
/// longer than OpenAI's code, bandwidth - 1; that key is a multiple of the stride, so the union is the same.)
///
/// Cost O(Lq (2 stride + K Lk / stride) d) for the engine's key blocks of K (64) keys: a tile visits the
/// band and, for each lattice stretch, the one or two key blocks it crosses, which it pays for whole though
/// each query has one key there (stride = sqrt(L) gives O(L sqrt(L) K d)). Lattice blocks are partial, and
/// a stride below the key block plus the query tile puts a lattice key in every block: then it costs dense.
struct strided {
  index stride = 128;  ///< l: width of the band and period of the lattice

  /// mask_policy: |p - k| < stride or p - k = 0 mod stride, for q at position p.
  bool allows(index q, index k, const problem_shape& s) const noexcept {
    const index delta = q + s.lk - s.lq - k;
    return (delta < stride && -delta < stride) || delta % stride == 0;
  }
  /// mask_policy: false.
  static constexpr bool is_always_full() { return false; }
  static constexpr index plan_lists() { return 3; }  ///< the plan and two spares
  /// column_mask. Key k is seen by positions within stride - 1 of it and by every position k + m * stride.
  query_bits allowed_queries(index k, index q_begin, index count, const problem_shape& s) const noexcept {
    const index p_begin = q_begin + s.lk - s.lq, p_end = p_begin + count;
    const index band_first = stride > k - p_begin ? p_begin : k - stride + 1;
    const index band_last = stride > p_end - k ? p_end : k + stride - 1;
    query_bits bits = detail::allow_interval(p_begin, count, band_first, band_last);
    // As in plan(): a stride above lq + lk leaves the lattice only p = k; clamping keeps the steps from overflowing.
    const index st = std::min(stride, s.lq + s.lk + 1);
    for (index p = k + detail::ceil_div(p_begin - k, st) * st; p < p_end; p += st) bits |= query_bits{1} << (p - p_begin);
    return bits;
  }

  /// planned_mask: the band's blocks merged with the lattice's (partial); O(visited blocks).
  void plan(const block_query& bq, block_plan& out) const noexcept {
    if (bq.q_begin >= bq.q_end) return;
    const problem_shape& s = bq.shape;
    const index B = bq.block;
    const index p0 = bq.q_begin + s.lk - s.lq, p1 = bq.q_end - 1 + s.lk - s.lq;  // positions, inclusive
    // |p - j| <= lq + lk always, so a larger stride means the band alone (the lattice's only point is j = p);
    // clamping keeps the arithmetic below from overflowing.
    const index st = std::min(stride, s.lq + s.lk + 1);
    block_plan band = out.spare(0), lattice = out.spare(1);
    // Band: keys (p0 - st, p1 + st); those in (p1 - st, p0 + st) are seen by every query of the tile.
    band.add_keys(bq, p0 - st + 1, p1 + st, p1 - st + 1, p0 + st);
    const index n = p1 - p0 + 1;
    if (n >= st) {
      // The tile holds every residue modulo the stride: every key is some query's lattice point.
      lattice.add(0, bq.key_blocks(), false);
    } else {
      // Lattice keys form stretches [p0 + m st, p1 + m st]. Walk them in order, jumping straight to the
      // first stretch that reaches a block not yet planned: O(visited blocks), whatever the stride.
      for (index m = detail::ceil_div(-p1, st); p0 + m * st < s.lk;) {
        lattice.add_keys(bq, p0 + m * st, p1 + m * st + 1, 0, 0);
        m = std::max(m + 1, detail::ceil_div(detail::planned_end(lattice) * B - p1, st));
      }
    }
    detail::merge_plans(band, lattice, detail::either::block, out);
  }

  /// Throws salt::error naming `api` unless 1 <= stride <= 2^40.
  void check(const problem_dims&, const char* api) const {
    detail::require(stride > 0 && stride <= detail::longest_period, api, ": strided stride must be in [1, 2^40], got ",
                    stride);
  }
};

/// Fixed pattern: the query at position p sees key j when both lie in the same block of `block` tokens
/// (floor(p / block) == floor(j / block), the paper's A(1)) or j is one of the last `summary` keys of its
/// block (j mod block >= block - summary, A(2): the "summary" cells every query reads). With `& causal{}`
/// this is the paper's fixed pattern (l = block, c = summary).
///
/// Cost O(Lq (block + max(summary, K) Lk / block) d) for the engine's key blocks of K (64) keys: a tile
/// visits its own blocks and every key block holding summary keys (found in O(visited blocks)), paying for
/// whole blocks where summary stretches are shorter than K. A key block of summary keys only is full.
struct fixed {
  index block = 128;  ///< l: tokens per block
  index summary = 8;  ///< c: trailing keys of each block that every query sees, 0 <= c <= l

  /// mask_policy: p and k share a block, or k is a summary key, for q at position p.
  bool allows(index q, index k, const problem_shape& s) const noexcept {
    return detail::floor_div(q + s.lk - s.lq, block) == k / block || k % block >= block - summary;
  }
  /// mask_policy: false.
  static constexpr bool is_always_full() { return false; }
  static constexpr index plan_lists() { return 3; }  ///< the plan and two spares
  /// column_mask. A summary key is seen by every query; any other key by the positions of its own block.
  query_bits allowed_queries(index k, index q_begin, index count, const problem_shape& s) const noexcept {
    if (k % block >= block - summary) return detail::bit_range(0, count);
    const index own = k / block * block;
    return detail::allow_interval(q_begin + s.lk - s.lq, count, own, own + block - 1);
  }

  /// planned_mask: the tile's own blocks merged with the summary stretches; O(visited blocks).
  void plan(const block_query& bq, block_plan& out) const noexcept {
    if (bq.q_begin >= bq.q_end) return;
    const problem_shape& s = bq.shape;
    const index B = bq.block, l = block, c = summary;
    if (c >= l) {  // every key is a summary key
      out.add(0, bq.key_blocks(), true);
      return;
    }
    const index b0 = detail::floor_div(bq.q_begin + s.lk - s.lq, l), b1 = detail::floor_div(bq.q_end - 1 + s.lk - s.lq, l);
    block_plan own = out.spare(0), summaries = out.spare(1);
    // The tile's own blocks; seen whole by every query only when the tile lies in one block.
    const bool one = b0 == b1;
    own.add_keys(bq, b0 * l, (b1 + 1) * l, one ? b0 * l : 0, one ? (b1 + 1) * l : 0);
    if (c > 0) {
      // Summary keys of block m: [(m + 1) l - c, (m + 1) l), seen by every query. Consecutive stretches are
      // l - c >= 1 keys apart. Jump to the first stretch that reaches a key block not yet planned.
      const index m_end = detail::ceil_div(s.lk - (l - c), l);  // stretches m < m_end start before lk
      for (index m = 0; m < m_end;) {
        summaries.add_keys(bq, (m + 1) * l - c, (m + 1) * l, (m + 1) * l - c, (m + 1) * l);
        m = std::max(m + 1, detail::planned_end(summaries) * B / l);
      }
    }
    detail::merge_plans(own, summaries, detail::either::block, out);
  }

  /// Throws salt::error naming `api` unless 1 <= block <= 2^40 and 0 <= summary <= block.
  void check(const problem_dims&, const char* api) const {
    detail::require(block > 0 && block <= detail::longest_period, api, ": fixed block must be in [1, 2^40], got ", block);
    detail::require(summary >= 0 && summary <= block, api, ": fixed summary must be in [0, block], got ", summary,
                    " for block ", block);
  }
};

}  // namespace salt
