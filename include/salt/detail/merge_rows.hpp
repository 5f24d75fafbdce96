#pragma once
/// \file detail/merge_rows.hpp
/// The kernel of merge_by_lse (merge.hpp): partial results of the same rows, reached through a view, merged
/// row by row in the order of the parts. Here, below the families, because LSH's round merge and the Sparse
/// Transformer passes run it too; merge.hpp adds the checked public overloads.

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <limits>
#include <span>

#include "../config.hpp"
#include "../tensor.hpp"
#include "simd.hpp"

namespace salt {

/// N partial results of the same `rows` rows, read in place. Part r's result for row i lives in row
/// at(r, i) of part r: its output is the `features` contiguous values at out[r] + at(r, i) * out_stride, its
/// LSE is lse[r][at(r, i) * lse_stride], where at(r, i) = row_map[r * rows + i] when a row map is given (the
/// parts' rows in any order, e.g. LSH's hash-sorted rounds, all in one buffer), else i. The view owns nothing:
/// the pointer lists, the row map and the data they reach must outlive it.
template <class T>
struct lse_parts_view {
  std::span<const T* const> out;  ///< (parts): where each part's row 0 output starts
  std::span<const T* const> lse;  ///< (parts): where each part's row 0 LSE is
  index rows = 0;                 ///< L: rows merged
  index features = 0;             ///< dv: values per output row
  index out_stride = 0;           ///< elements from one output row of a part to the next
  index lse_stride = 1;           ///< elements from one LSE of a part to the next
  const index* row_map = nullptr;  ///< (parts, rows) or null: the row of each part that holds merged row i

  /// N: the number of parts (the length of `out`).
  index parts() const noexcept { return static_cast<index>(out.size()); }
  /// The row of part r that holds merged row i.
  index row_of(index r, index i) const noexcept { return row_map ? row_map[r * rows + i] : i; }
  /// Part r's output for merged row i (features values).
  const T* out_of(index r, index i) const noexcept {
    return out[static_cast<std::size_t>(r)] + row_of(r, i) * out_stride;
  }
  /// Part r's LSE for merged row i.
  T lse_of(index r, index i) const noexcept { return lse[static_cast<std::size_t>(r)][row_of(r, i) * lse_stride]; }
};

namespace detail {


/// Merges row i of the parts into dst (features values) and *dst_lse (when not null). The weights are
/// exp(lse_r - m) / s rather than exp(lse_r - lse): lse rounds at the magnitude of the LSEs, which LSH puts
/// near -1e5 for a query that sees only itself, and there float would put the weights 0.4% off.
template <class T>
void merge_row_by_lse(const lse_parts_view<T>& parts, index i, T* dst, T* dst_lse) noexcept {
  constexpr T no_key = -std::numeric_limits<T>::infinity();
  const index n = parts.parts(), dv = parts.features;
  if (n == 1) {  // weight exp(lse - lse) = 1: a copy, also of a NaN or -inf LSE
    copy_row(parts.out_of(0, i), dv, dst);
    if (dst_lse) *dst_lse = parts.lse_of(0, i);
    return;
  }
  T m = no_key;
  for (index r = 0; r < n; ++r) m = std::max(m, parts.lse_of(r, i));  // std::max(m, NaN) keeps m
  bool none_saw_keys = m == no_key;
  for (index r = 0; r < n && none_saw_keys; ++r) none_saw_keys = parts.lse_of(r, i) == no_key;  // else a NaN
  std::fill_n(dst, dv, T(0));
  if (none_saw_keys) {
    if (dst_lse) *dst_lse = no_key;
    return;
  }
  T sum = 0;
  for (index r = 0; r < n; ++r) sum += std::exp(parts.lse_of(r, i) - m);  // a -inf part adds exactly 0
  const T inv = T(1) / sum;
  for (index r = 0; r < n; ++r) {
    const T l = parts.lse_of(r, i);
    if (l == no_key) continue;
    const T weight = std::exp(l - m) * inv;
    const T* o = parts.out_of(r, i);
    for (index j = 0; j < dv; ++j) dst[j] += weight * o[j];
  }
  if (dst_lse) *dst_lse = m + std::log(sum);
}

/// Merges rows [row_begin, row_end) into out's rows of the same index and lse[i] (when not null). Unchecked:
/// the kernel behind merge_by_lse, for callers that checked the sizes once (LSH merges its rounds with it).
template <class T>
void merge_rows_by_lse(const lse_parts_view<T>& parts, index row_begin, index row_end, const head_view<T>& out,
                       T* lse) noexcept {
  for (index i = row_begin; i < row_end; ++i) merge_row_by_lse(parts, i, out.row(i), lse ? lse + i : nullptr);
}

}  // namespace detail

}  // namespace salt
