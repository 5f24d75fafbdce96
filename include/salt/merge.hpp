#pragma once
/// \file merge.hpp
/// Partial results merged by their log-sum-exp. A partial result of some rows is the softmax attention of
/// each row over a subset of the keys: its output o_r (L, dv) and the natural log of its softmax normaliser,
/// lse_r (L). N of them over disjoint subsets give the attention over the union of the subsets:
///
///     m = max_r lse_r,   s = sum_r exp(lse_r - m),   out = sum_r (exp(lse_r - m) / s) o_r,   lse = m + log s
///
/// which is how split-key decoding, LSH hash rounds and sequence shards are put together:
///
///     auto left = salt::attention_with_lse(q, k.topRows(n), v.topRows(n));
///     auto right = salt::attention_with_lse(q, k.bottomRows(L - n), v.bottomRows(L - n));
///     salt::attention_result<float> all = salt::merge_by_lse(std::vector{left, right});  // = over all keys
///
/// Each row is summed in the order of the parts, one part after the other, so the bits depend only on the
/// parts' values and order: not on what produced them, in how many threads, or which rows are merged together.
/// Edge cases, per row:
///  - a part whose LSE is -inf saw no key: it weighs 0 and its output is not read;
///  - when every part's LSE is -inf the row sees no key: output zeros, LSE -inf (DESIGN.md's rule);
///  - a NaN LSE makes the row's output and LSE NaN; a NaN in a weighed part's output reaches the outputs it
///    enters; an LSE of +inf (an overflowed normaliser) gives NaN, as the formula does;
///  - a single part is copied as it is (its output and LSE, whatever their values).
/// Cost O(N L dv) time; no memory beyond the result.

#include <Eigen/Core>

#include <algorithm>
#include <cmath>
#include <limits>
#include <span>
#include <vector>

#include "config.hpp"
#include "detail/simd.hpp"
#include "error.hpp"
#include "tensor.hpp"

namespace salt {

/// Output and natural-log log-sum-exp of each query row (-inf for a row that sees no key): what
/// attention_with_lse returns, and the partial result merge_by_lse merges.
template <class T>
struct attention_result {
  row_matrix<T> out;  // (Lq, dv)
  column<T> lse;      // (Lq)
};

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

/// Merges N >= 1 partial results of the same rows (see lse_parts_view) into out (rows, features), and the
/// merged LSE into lse[0, rows) when lse is not null. The parts are only read; out and lse may not overlap
/// them. Throws salt::error naming salt::merge_by_lse when there is no part, the view's pointer lists differ
/// in length, or out's shape is not (rows, features).
template <class T>
void merge_by_lse(const lse_parts_view<T>& parts, const head_view<T>& out, T* lse = nullptr) {
  constexpr const char* api = "salt::merge_by_lse";
  detail::require(parts.parts() >= 1, api, ": no part given");
  detail::require(parts.out.size() == parts.lse.size(), api, ": ", parts.out.size(), " output pointers but ",
                  parts.lse.size(), " LSE pointers");
  detail::require(parts.rows >= 0 && parts.features >= 0, api, ": the parts have a negative size (", parts.rows,
                  ", ", parts.features, ")");
  detail::require(out.rows == parts.rows && out.cols == parts.features, api, ": out is (", out.rows, ", ",
                  out.cols, ") but the parts are (", parts.rows, ", ", parts.features, ")");
  detail::merge_rows_by_lse(parts, 0, parts.rows, out, lse);
}

/// Merges N >= 1 results of the same query rows over disjoint key subsets (each output (L, dv), LSE (L), as
/// attention_with_lse returns them) into the result over the union of the subsets. Throws salt::error naming
/// salt::merge_by_lse when there is no part or the parts' shapes differ.
template <class T>
attention_result<T> merge_by_lse(const std::vector<attention_result<T>>& parts) {
  constexpr const char* api = "salt::merge_by_lse";
  detail::require(!parts.empty(), api, ": no part given");
  const index rows = parts[0].out.rows(), features = parts[0].out.cols();
  detail::require(parts[0].lse.size() == rows, api, ": part 0 has ", rows, " output rows but ", parts[0].lse.size(),
                  " LSEs");
  std::vector<const T*> outs, lses;
  for (std::size_t r = 0; r < parts.size(); ++r) {
    const attention_result<T>& p = parts[r];
    detail::require(p.out.rows() == rows && p.out.cols() == features && p.lse.size() == rows, api, ": part ", r,
                    " is ", p.out.rows(), " x ", p.out.cols(), " with ", p.lse.size(), " LSEs but part 0 is ", rows,
                    " x ", features, " with ", rows, " LSEs");
    outs.push_back(p.out.data());
    lses.push_back(p.lse.data());
  }
  attention_result<T> merged{row_matrix<T>(rows, features), column<T>(rows)};
  const lse_parts_view<T> view{outs, lses, rows, features, features, 1, nullptr};
  const head_view<T> out{merged.out.data(), rows, features, features};
  detail::merge_rows_by_lse(view, 0, rows, out, merged.lse.data());
  return merged;
}

}  // namespace salt
