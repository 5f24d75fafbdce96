#pragma once
/// \file detail/gemm.hpp
/// Matrix products on row-major blocks for the kernels built from them (linear attention's chunks, LSH's
/// hashing), through Eigen's own packed GEMM kernel called directly. Going around Eigen's product expressions does two things they
/// cannot promise: the product never starts OpenMP threads of its own (Eigen parallelises a large product
/// whenever it is not already inside a parallel region, which would ignore run_options::threads and break
/// one-thread timings), and it never touches the heap: every call is split into panels whose packed
/// operands stay under Eigen's stack-allocation limit, so the packing buffers live on the stack.
/// Each output entry is a fixed-order sum that depends only on the call's shape, not on the thread.

#include <Eigen/Core>

#include <algorithm>
#include <cstddef>

#include "../config.hpp"

namespace salt::detail {

/// Bytes of one packed operand panel: below EIGEN_STACK_ALLOCATION_LIMIT (128 KiB), so Eigen packs on
/// the stack.
inline constexpr index gemm_pack_bytes = 96 * 1024;

/// c (rows, cols) = [c +] op(a) (rows, depth) * op(b) (depth, cols). a is row-major with leading
/// dimension lda, or with TransA its transpose is: a(r, k) = a[k * lda + r]. b likewise: b(k, c) =
/// b[k * ldb + c], or with TransB b[c * ldb + k]. c is row-major with leading dimension ldc.
template <class T, bool TransA, bool TransB>
void gemm(index rows, index cols, index depth, const T* a, index lda, const T* b, index ldb, T* c, index ldc,
          bool accumulate) noexcept {
  if (!accumulate) {  // one fill when c is contiguous: a memset call per short row costs more than the row
    if (ldc == cols) std::fill_n(c, rows * cols, T(0));
    else for (index r = 0; r < rows; ++r) std::fill_n(c + r * ldc, cols, T(0));
  }
  if (rows == 0 || cols == 0 || depth == 0) return;
  namespace ei = Eigen::internal;
  using Eigen::ColMajor, Eigen::Dynamic, Eigen::RowMajor;
  if (rows == 1) {  // a vector times a matrix: Eigen's GEMV, which neither packs b nor runs threads
    using row_t = Eigen::Matrix<T, 1, Dynamic>;
    using mat_t = Eigen::Matrix<T, Dynamic, Dynamic, RowMajor>;
    const Eigen::Map<const row_t, 0, Eigen::InnerStride<>> av(a, depth, Eigen::InnerStride<>(TransA ? lda : 1));
    Eigen::Map<row_t> cv(c, cols);
    if constexpr (TransB) {
      cv.noalias() += av * Eigen::Map<const mat_t, 0, Eigen::OuterStride<>>(b, cols, depth, Eigen::OuterStride<>(ldb))
                               .transpose();
    } else {
      cv.noalias() += av * Eigen::Map<const mat_t, 0, Eigen::OuterStride<>>(b, depth, cols, Eigen::OuterStride<>(ldb));
    }
    return;
  }
  using packed_product = ei::general_matrix_matrix_product<index, T, TransA ? ColMajor : RowMajor, false, T,
                                                 TransB ? ColMajor : RowMajor, false, RowMajor, 1>;
  const index per = std::max<index>(1, gemm_pack_bytes / (depth * static_cast<index>(sizeof(T))));
  for (index r0 = 0; r0 < rows; r0 += per) {
    const index nr = std::min(per, rows - r0);
    const T* ap = TransA ? a + r0 : a + r0 * lda;
    for (index c0 = 0; c0 < cols; c0 += per) {
      const index nc = std::min(per, cols - c0);
      const T* bp = TransB ? b + c0 * ldb : b + c0;
      ei::gemm_blocking_space<RowMajor, T, T, Dynamic, Dynamic, Dynamic> blocking(nr, nc, depth, 1, true);
      packed_product::run(nr, nc, depth, ap, lda, bp, ldb, c + r0 * ldc + c0, 1, ldc, T(1), blocking);
    }
  }
}

}  // namespace salt::detail
