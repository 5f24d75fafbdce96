#pragma once
/// \file tensor.hpp
/// The Q/K/V tensor concept: one head is a (tokens, features) row-major matrix; many heads are a strided
/// view over a (batch, heads, tokens, features) buffer. Kernels read both through `head_view`.

#include <Eigen/Core>

#include <algorithm>
#include <type_traits>

#include "config.hpp"
#include "error.hpp"

namespace salt {

/// Row-major dense matrix: one token per row, which is the layout every kernel reads without copying.
template <class T>
using row_matrix = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

/// Column vector (one value per query row, e.g. the log-sum-exp).
template <class T>
using column = Eigen::Matrix<T, Eigen::Dynamic, 1>;

/// A read-only view of one head that binds row-major matrices and row blocks without a copy.
/// A column-major argument is copied once into a temporary owned by the Ref.
template <class T>
using matrix_cref = Eigen::Ref<const row_matrix<T>, 0, Eigen::OuterStride<>>;

/// One head as the kernels see it: `rows` tokens of `cols` features, token r at `data + r * row_stride`,
/// features contiguous; or, when `pages` is set (a paged KV cache, kv_cache.hpp), token r in page
/// pages[r / page_tokens], at data + pages[r / page_tokens] * page_stride + (r % page_tokens) * row_stride.
/// Non-owning: the data (and the page list) must outlive the view.
template <class T>
struct head_view {
  T* data = nullptr;    ///< token 0's first feature (paged: the head's first feature in page 0)
  index rows = 0;       ///< tokens
  index cols = 0;       ///< features per token, contiguous
  index row_stride = 0; ///< elements from one token to the next (paged: within a page)
  const index* pages = nullptr;  ///< paged: the page of each run of page_tokens tokens; null: one strided run
  index page_tokens = 0;         ///< paged: tokens per page
  index page_stride = 0;         ///< paged: elements from one page to the next

  /// Token r's `cols` features; no bounds check.
  T* row(index r) const noexcept {
    if (pages) return data + pages[r / page_tokens] * page_stride + (r % page_tokens) * row_stride;
    return data + r * row_stride;
  }
  /// How many tokens from r on are one strided run from row(r): to the end of r's page, or of the view.
  index run_from(index r) const noexcept {
    if (pages) return std::min(rows, (r / page_tokens + 1) * page_tokens) - r;
    return rows - r;
  }
};

/// A strided view over a (batch, heads, tokens, features) buffer. Features are contiguous; the other
/// three strides are free, so (B, H, L, D), (B, L, H, D) and single matrices are all views of this kind.
/// The view does not own its data: the buffer must outlive the view and every call given it. Strides are
/// in elements.
template <class T>
struct tensor_view {
  T* data = nullptr;  ///< element (0, 0, 0, 0)
  index batch = 0;         ///< B: batch items
  index heads = 0;         ///< H: heads
  index tokens = 0;        ///< L: tokens
  index features = 0;      ///< D: features per token, contiguous
  index batch_stride = 0;  ///< elements from one batch item to the next
  index head_stride = 0;   ///< elements from one head to the next
  index token_stride = 0;  ///< elements from one token to the next

  /// (batch, heads, tokens, features) stored contiguously in that order, as PyTorch's SDPA takes it.
  static tensor_view bhld(T* data, index batch, index heads, index tokens, index features) {
    return {data, batch, heads, tokens, features, heads * tokens * features, tokens * features, features};
  }
  /// (batch, tokens, heads, features) stored contiguously, the layout a fused QKV projection produces.
  static tensor_view blhd(T* data, index batch, index tokens, index heads, index features) {
    return {data, batch, heads, tokens, features, tokens * heads * features, features, heads * features};
  }
  /// A single head (batch = heads = 1) over a row-major matrix m (tokens, features), or a row block of one;
  /// no copy, so m must outlive the view. A column-major m does not compile; throws salt::error when m's
  /// features are not contiguous (inner stride != 1).
  template <class Derived>
  static tensor_view of(Derived& m) {
    static_assert(static_cast<int>(std::remove_cvref_t<Derived>::IsRowMajor) || std::remove_cvref_t<Derived>::ColsAtCompileTime == 1,
                  "salt::tensor_view::of needs a row-major matrix: one token per row, features contiguous.");
    require_inner_stride(m.innerStride());
    return {m.data(), 1, 1, m.rows(), m.cols(), 0, 0, m.outerStride()};
  }

  /// Read-only view of the same data.
  operator tensor_view<const T>() const noexcept {  // NOLINT(google-explicit-constructor): views convert like pointers
    return {data, batch, heads, tokens, features, batch_stride, head_stride, token_stride};
  }

  /// Head h of batch item b: a (tokens, features) view of the same data with row stride token_stride; no
  /// bounds check.
  head_view<T> head(index b, index h) const noexcept {
    return {data + b * batch_stride + h * head_stride, tokens, features, token_stride};
  }

 private:
  static void require_inner_stride(index s) {
    detail::require(s == 1, "salt::tensor_view::of: features must be contiguous (inner stride ", s, ")");
  }
};

/// Read-only input view of a multi-head call. Its scalar type is not deduced from it but taken from `out`, so
/// mutable and const views both bind.
template <class T>
using input_view = std::type_identity_t<tensor_view<const T>>;

/// Where the per-row log-sum-exp of a multi-head call goes: (batch, heads, query tokens), tokens contiguous.
/// A default-constructed view (data == nullptr) means "not wanted". Non-owning: the buffer must outlive the
/// calls given it.
template <class T>
struct lse_view {
  T* data = nullptr;  ///< the LSE of (batch 0, head 0, token 0); null: no LSE wanted
  /// Elements from one batch item, and from one head, to the next.
  /// @{
  index batch_stride = 0, head_stride = 0;
  /// @}

  /// Contiguous (batch, heads, tokens) storage.
  static lse_view bht(T* data, index heads, index tokens) { return {data, heads * tokens, tokens}; }
  /// The LSEs of head h of batch item b: one per query token, contiguous; no bounds check.
  T* head(index b, index h) const noexcept { return data + b * batch_stride + h * head_stride; }
};

}  // namespace salt
