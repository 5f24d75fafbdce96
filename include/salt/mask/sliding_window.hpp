#pragma once
/// \file mask/sliding_window.hpp
/// `sliding_window`: each query sees the keys within a fixed distance of its own position, optionally only
/// every `dilation`-th of them (Longformer's local and dilated attention, causal local attention).

#include <algorithm>
#include <cstdint>

#include "../error.hpp"
#include "concept.hpp"

namespace salt {

/// Query i sits at key position p = i + Lk - Lq (aligned bottom-right, like `causal`) and sees key j when
/// p - left <= j <= p + right and p - j is a multiple of `dilation`.
///
///     salt::sliding_window{.left = 256, .right = 256}                 // Longformer's local window
///     salt::sliding_window{.left = 255}                               // causal local attention
///     salt::sliding_window{.left = 256, .right = 256, .dilation = 4}  // dilated window
///
/// Cost O(Lq * (left + right + B) * d): a query tile visits only the key blocks its windows touch. A
/// dilated window makes every block it visits partial (tested per pair); it visits fewer blocks only once
/// the dilation exceeds the key block plus the query tile.
struct sliding_window {
  index left = 0;      ///< keys before the query's position that it may see
  index right = 0;     ///< keys after the query's position that it may see
  index dilation = 1;  ///< sees every dilation-th key, counting from its own position

  /// Key-axis position of query q.
  static index position(index q, const problem_shape& s) noexcept { return q + s.lk - s.lq; }

  /// mask_policy: position(q) - left <= k <= position(q) + right, at a multiple of the dilation.
  bool allows(index q, index k, const problem_shape& s) const noexcept {
    const index delta = position(q, s) - k;  // > 0: the key lies before the query
    return delta <= left && -delta <= right && delta % dilation == 0;
  }
  /// mask_policy: false.
  static constexpr bool is_always_full() { return false; }
  /// column_mask (a few shifts without dilation, one `allows` per query with it). Key k is seen by the queries at positions [k - right, k + left]; query q sits at position q + shift.
  query_bits allowed_queries(index k, index q_begin, index count, const problem_shape& s) const noexcept {
    if (dilation == 1) {
      // Saturated at the ends of the query run, so that huge windows cannot overflow.
      const index shift = s.lk - s.lq, p_begin = q_begin + shift, p_end = p_begin + count;
      const index first = right >= k - p_begin ? p_begin : k - right;
      const index last = left >= p_end - k ? p_end : k + left;
      return detail::allow_interval(p_begin, count, first, last);
    }
    query_bits bits = 0;
    for (index i = 0; i < count; ++i) bits |= query_bits{allows(q_begin + i, k, s)} << i;
    return bits;
  }

  /// planned_mask: the key blocks the tile's windows touch (all partial with a dilation); O(1) for a band,
  /// O(visited blocks) for a sparse dilated window.
  void plan(const block_query& bq, block_plan& out) const noexcept {
    if (bq.q_begin >= bq.q_end) return;
    const problem_shape& s = bq.shape;
    const index B = bq.block;
    // The tile's positions p0..p1 see offsets delta = p - j in [lo, hi], the extreme multiples of the
    // dilation in [-right, left]. Every offset that can occur lies in [1 - lq, lk - 1], so clamping the
    // window there first changes nothing and keeps huge windows from overflowing below.
    const index p0 = position(bq.q_begin, s), p1 = position(bq.q_end - 1, s);
    const index hi = std::min(left, s.lk) / dilation * dilation;
    const index lo = -(std::min(right, s.lq) / dilation * dilation);
    if (dilation == 1) {
      // A band: keys [p0 - left, p1 + right]; those in [p1 - left, p0 + right] are seen by every query.
      out.add_keys(bq, p0 - hi, p1 - lo + 1, p1 - hi, p0 - lo + 1);
      return;
    }
    if (p1 - p0 + B >= dilation) {
      // A block of B keys meets p1 - p0 + B consecutive offsets, so each block of the band holds an allowed
      // pair; only a block clipped at lk may be too narrow. No block is full: each key is seen by one query
      // in `dilation` at most.
      const index k_begin = std::max<index>(p0 - hi, 0), k_end = std::min(p1 - lo + 1, s.lk);
      if (k_begin >= k_end) return;
      index last = (k_end + B - 1) / B;
      if (last * B > s.lk && !meets_multiple(p0, p1, (last - 1) * B, s.lk, lo, hi)) --last;
      out.add(k_begin / B, last, false);
      return;
    }
    // Sparse case: offset m (a multiple of the dilation) pairs the tile with keys [p0 - m, p1 - m]; these
    // stretches lie at least a block apart, so they visit distinct blocks, in increasing order for
    // decreasing m. Only stretches that reach keys in [0, lk) are walked: O(visited blocks).
    const index m_hi = std::min(hi, floor_multiple(p1)), m_lo = std::max(lo, -floor_multiple(s.lk - 1 - p0));
    const bool one_query = p0 == p1;  // then the stretch is one key, seen by the whole tile
    for (index m = m_hi; m >= m_lo; m -= dilation)
      out.add_keys(bq, p0 - m, p1 - m + 1, one_query ? p0 - m : 0, one_query ? p0 - m + 1 : 0);
  }

  /// Throws salt::error naming `api` unless left >= 0, right >= 0 and dilation >= 1.
  void check(const problem_dims&, const char* api) const {
    detail::require(left >= 0, api, ": sliding_window left must be >= 0, got ", left);
    detail::require(right >= 0, api, ": sliding_window right must be >= 0, got ", right);
    detail::require(dilation >= 1, api, ": sliding_window dilation must be >= 1, got ", dilation);
  }

 private:
  /// Largest multiple of the dilation not above x (x may be negative).
  index floor_multiple(index x) const noexcept {
    const index f = x / dilation * dilation;
    return f > x ? f - dilation : f;
  }
  /// Whether positions [p0, p1] and keys [k0, k1) share an offset in [lo, hi] that is a multiple of the
  /// dilation (the offsets they span form the whole interval [p0 - k1 + 1, p1 - k0]).
  bool meets_multiple(index p0, index p1, index k0, index k1, index lo, index hi) const noexcept {
    const index a = std::max(p0 - k1 + 1, lo), b = std::min(p1 - k0, hi);
    return a <= b && floor_multiple(b) >= a;
  }
};

}  // namespace salt
