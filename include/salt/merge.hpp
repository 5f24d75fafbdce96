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
#include "detail/merge_rows.hpp"
#include "error.hpp"
#include "precision.hpp"
#include "tensor.hpp"

namespace salt {

/// Output and natural-log log-sum-exp of each query row (-inf for a row that sees no key): what
/// attention_with_lse returns, and the partial result merge_by_lse merges.
template <class T>
struct attention_result {
  row_matrix<T> out;  ///< (Lq, dv), row-major: one query per row
  column<accumulator_t<T>> lse;  ///< (Lq): natural-log log-sum-exp of each row's logits (float for bf16 and fp16
                                 ///< outputs), -inf for a row that sees no key
};


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
