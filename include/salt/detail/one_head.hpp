#pragma once
/// \file detail/one_head.hpp
/// The single-matrix front door every family's one-head overload uses: Eigen inputs bound as row-major
/// views (read in place; a column-major input is copied once), the output allocated, and the family's
/// multi-head form run on (1, 1, tokens, features) views.

#include <Eigen/Core>

#include <array>
#include <cstddef>
#include <utility>

#include "../config.hpp"
#include "../tensor.hpp"

namespace salt::detail {

/// One head as a (1, 1, rows, cols) view, without a copy.
template <class T>
tensor_view<const T> head_as_view(const matrix_cref<T>& m) noexcept {
  return {m.data(), 1, 1, m.rows(), m.cols(), 0, 0, m.outerStride()};
}

/// Runs `multi(views of inputs..., view of out)` and returns out, (rows of the first input, columns of the
/// last): (Lq, dv) for (q, k, v), (L, dv) for (qk, v). Each input binds as a matrix_cref<T>.
template <class T, class Multi, class... Inputs>
row_matrix<T> one_head(Multi&& multi, const Inputs&... inputs) {
  constexpr std::size_t n = sizeof...(Inputs);
  const std::array<matrix_cref<T>, n> refs{matrix_cref<T>(inputs)...};
  row_matrix<T> out(refs.front().rows(), refs.back().cols());
  [&]<std::size_t... I>(std::index_sequence<I...>) {
    multi(head_as_view<T>(refs[I])..., tensor_view<T>::of(out));
  }(std::make_index_sequence<n>{});
  return out;
}

}  // namespace salt::detail
