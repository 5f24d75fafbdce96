#pragma once
/// \file detail/gemm.hpp
/// Matrix products on row-major blocks: the exact engine's logits (st = K Qt, micro_kernels.hpp), linear
/// attention's chunks and feature projections, LSH's hashing. A register-blocked kernel on the packets of
/// simd.hpp: each tile of MR rows x NP packets of columns holds its sums in registers; every step over the
/// depth loads NP packets of one row of b and broadcasts MR entries of a, so b's rows are read where they
/// lie (no packing) unless b is transposed or the panel ends in a partial packet. On linear attention's
/// shapes (BM_gemm in salt_linear_bench) it runs at 0.75-0.95 of the FMA peak where Eigen's packed GEMM,
/// which it replaced, ran at 0.50-0.57.
///
/// It never starts threads of its own and never touches the heap (a transposed or partial panel of b is
/// packed on the stack, 64 KiB). Each output entry is one chain of multiply-adds over the depth in order,
/// started from zero or from c (gemm_update): its bits depend on its own row of a and column of b only, not
/// on the shape of the call, the tile it falls in, or the thread.

#include <Eigen/Core>

#include <algorithm>
#include <cstddef>

#include "../config.hpp"
#include "simd.hpp"

namespace salt::detail {

/// Tile geometry of the products for scalar type T on the compiled instruction set: MR * NP accumulators,
/// NP loads of b and one broadcast fit the register file (29 of 32 with AVX-512, 13 of 16 otherwise).
template <class T>
struct gemm_shape {
  static constexpr int N = lanes<T>;
  static constexpr int MR = vector_registers >= 32 ? 6 : 3;
  static constexpr int NP = vector_registers >= 32 ? 4 : 3;
  static constexpr index NC = NP * N;                                            ///< columns of a tile
  static constexpr index KC = 64 * 1024 / (NC * static_cast<index>(sizeof(T)));  ///< depth of a packed panel
};

/// acc[r][p] += sum over k < depth of a(r, k) * b(k, p * N ...), a(r, k) = a[r * ars + k * aks], b(k, c) =
/// b[k * ldb + c]; for each entry one multiply-add per k, in order of k.
template <class T, int MR, int NP>
EIGEN_STRONG_INLINE void mac_tile(index depth, const T* a, index ars, index aks, const T* b, index ldb,
                                  packet<T> (&acc)[MR][NP]) noexcept {
  using P = packet<T>;
  constexpr int N = lanes<T>;
  for (index k = 0; k < depth; ++k) {
    P bv[NP];
    SALT_UNROLL
    for (int p = 0; p < NP; ++p) bv[p] = ei::ploadu<P>(b + k * ldb + p * N);
    SALT_UNROLL
    for (int r = 0; r < MR; ++r) {
      const P ab = ei::pset1<P>(a[r * ars + k * aks]);
      SALT_UNROLL
      for (int p = 0; p < NP; ++p) acc[r][p] = ei::pmadd(bv[p], ab, acc[r][p]);
    }
  }
}

/// What a product does with c. Each output entry is one in-order chain of multiply-adds over the depth; the
/// modes differ in where the chain starts and what is stored.
enum class gemm_update {
  overwrite,  ///< c = a b: the chain starts from zero
  chain,      ///< c = c + a b: the chain continues from c (one rounding per multiply-add)
  add,        ///< c = c + (a b): the chain starts from zero and its sum is then added to c, one rounding more;
              ///< a blocked sum over the depth (Linformer's projections) stays accurate at long depths this way
};

/// c (MR, NP packets) = a (MR, depth) b (depth, NP packets) under `update`, strides as in mac_tile, c row-major.
template <class T, int MR, int NP>
EIGEN_STRONG_INLINE void gemm_tile(index depth, const T* a, index ars, index aks, const T* b, index ldb, T* c, index ldc,
                                   gemm_update update) noexcept {
  using P = packet<T>;
  constexpr int N = lanes<T>;
  const bool from_c = update == gemm_update::chain, add_to_c = update == gemm_update::add;
  P acc[MR][NP];
  SALT_UNROLL
  for (int r = 0; r < MR; ++r)
    SALT_UNROLL
    for (int p = 0; p < NP; ++p) acc[r][p] = from_c ? ei::ploadu<P>(c + r * ldc + p * N) : ei::pset1<P>(T(0));
  mac_tile<T, MR, NP>(depth, a, ars, aks, b, ldb, acc);
  SALT_UNROLL
  for (int r = 0; r < MR; ++r)
    SALT_UNROLL
    for (int p = 0; p < NP; ++p) {
      T* out = c + r * ldc + p * N;
      ei::pstoreu(out, add_to_c ? ei::padd(ei::ploadu<P>(out), acc[r][p]) : acc[r][p]);
    }
}

/// One panel of NP packets of columns: c (rows, NP N) = a (rows, depth) b (depth, NP N) under `update`, in
/// tiles of MR rows, the last rows two and one at a time (one row alone leaves the FMA units waiting on NP
/// chains).
template <class T, int NP>
void gemm_panel(index rows, index depth, const T* a, index ars, index aks, const T* b, index ldb, T* c, index ldc,
                gemm_update update) noexcept {
  constexpr int MR = gemm_shape<T>::MR;
  index r = 0;
  for (; r + MR <= rows; r += MR) gemm_tile<T, MR, NP>(depth, a + r * ars, ars, aks, b, ldb, c + r * ldc, ldc, update);
  for (; r + 2 <= rows; r += 2) gemm_tile<T, 2, NP>(depth, a + r * ars, ars, aks, b, ldb, c + r * ldc, ldc, update);
  if (r < rows) gemm_tile<T, 1, NP>(depth, a + r * ars, ars, aks, b, ldb, c + r * ldc, ldc, update);
}

/// gemm_panel for a panel of np (1 ... NP) packets.
template <class T>
void gemm_panel(int np, index rows, index depth, const T* a, index ars, index aks, const T* b, index ldb, T* c,
                index ldc, gemm_update update) noexcept {
  static_assert(gemm_shape<T>::NP <= 4, "salt: gemm_panel dispatches up to 4 packets");
  switch (np) {
    case 1: return gemm_panel<T, 1>(rows, depth, a, ars, aks, b, ldb, c, ldc, update);
    case 2: return gemm_panel<T, 2>(rows, depth, a, ars, aks, b, ldb, c, ldc, update);
    case 3: return gemm_panel<T, 3>(rows, depth, a, ars, aks, b, ldb, c, ldc, update);
    default:
      if constexpr (gemm_shape<T>::NP == 4) return gemm_panel<T, 4>(rows, depth, a, ars, aks, b, ldb, c, ldc, update);
  }
}

/// packed (kc, width) = columns [j0, j0 + nc) of op(b)'s depth rows [k0, k0 + kc), zero-padded to width.
template <class T, bool TransB>
void pack_panel(const T* b, index ldb, index j0, index nc, index width, index k0, index kc, T* packed) noexcept {
  for (index k = 0; k < kc; ++k) {
    T* row = packed + k * width;
    for (index j = 0; j < nc; ++j) row[j] = TransB ? b[(j0 + j) * ldb + k0 + k] : b[(k0 + k) * ldb + j0 + j];
    std::fill(row + nc, row + width, T(0));
  }
}

/// One packed panel of nc columns (np packets, width = np N) under overwrite or chain: KC steps of depth at a
/// time, the sums carried over in c (which changes no bits); a partial panel's rows of c pass through a
/// full-width tile, whose padding columns are computed and dropped.
template <class T, bool TransB>
void packed_panel_chain(index rows, index depth, const T* a, index ars, index aks, const T* b, index ldb, index j0,
                        index nc, int np, T* c, index ldc, gemm_update update) noexcept {
  using shape = gemm_shape<T>;
  constexpr index N = shape::N, NC = shape::NC, KC = shape::KC, MR = shape::MR;
  const index width = np * N;
  alignas(workspace_alignment) T packed[KC * NC];
  alignas(workspace_alignment) T tile[MR * NC];
  for (index k0 = 0; k0 < depth; k0 += KC) {
    const index kc = std::min(KC, depth - k0);
    pack_panel<T, TransB>(b, ldb, j0, nc, width, k0, kc, packed);
    const bool from_c = update == gemm_update::chain || k0 > 0;
    const T* ak = a + k0 * aks;
    if (nc == width) {
      gemm_panel<T>(np, rows, kc, ak, ars, aks, packed, width, c + j0, ldc,
                    from_c ? gemm_update::chain : gemm_update::overwrite);
      continue;
    }
    for (index r0 = 0; r0 < rows; r0 += MR) {
      const index nr = std::min(MR, rows - r0);
      for (index r = 0; r < nr; ++r) {
        T* dst = tile + r * width;
        if (from_c) std::copy_n(c + (r0 + r) * ldc + j0, nc, dst);
        else std::fill_n(dst, nc, T(0));
        std::fill(dst + nc, dst + width, T(0));  // computed and dropped: zeros, never a denormal or NaN
      }
      gemm_panel<T>(np, nr, kc, ak + r0 * ars, ars, aks, packed, width, tile, width, gemm_update::chain);
      for (index r = 0; r < nr; ++r) std::copy_n(tile + r * width, nc, c + (r0 + r) * ldc + j0);
    }
  }
}

/// One packed panel under gemm_update::add: MR rows at a time, their sums from zero held in a tile over the
/// whole depth (b repacked per tile when the depth passes one packed panel), then added to c.
template <class T, bool TransB>
void packed_panel_add(index rows, index depth, const T* a, index ars, index aks, const T* b, index ldb, index j0,
                      index nc, int np, T* c, index ldc) noexcept {
  using shape = gemm_shape<T>;
  constexpr index N = shape::N, NC = shape::NC, KC = shape::KC, MR = shape::MR;
  const index width = np * N;
  alignas(workspace_alignment) T packed[KC * NC];
  alignas(workspace_alignment) T tile[MR * NC];
  for (index r0 = 0; r0 < rows; r0 += MR) {
    const index nr = std::min(MR, rows - r0);
    std::fill_n(tile, nr * width, T(0));
    for (index k0 = 0; k0 < depth; k0 += KC) {
      const index kc = std::min(KC, depth - k0);
      if (r0 == 0 || depth > KC) pack_panel<T, TransB>(b, ldb, j0, nc, width, k0, kc, packed);
      gemm_panel<T>(np, nr, kc, a + r0 * ars + k0 * aks, ars, aks, packed, width, tile, width, gemm_update::chain);
    }
    for (index r = 0; r < nr; ++r) {
      T* dst = c + (r0 + r) * ldc + j0;
      for (index j = 0; j < nc; ++j) dst[j] += tile[r * width + j];
    }
  }
}

/// c (rows, cols) = a b, c + a b or c + (a b) (gemm_update) with op(a) (rows, depth), op(b) (depth, cols).
/// a is row-major with leading dimension lda, or with TransA its transpose is: a(r, k) = a[k * lda + r]. b
/// likewise: b(k, c) = b[k * ldb + c], or with TransB b[c * ldb + k]. c is row-major with leading dimension
/// ldc. Cost O(rows cols depth); no allocation.
template <class T, bool TransA, bool TransB>
void gemm(index rows, index cols, index depth, const T* a, index lda, const T* b, index ldb, T* c, index ldc,
          gemm_update update) noexcept {
  using shape = gemm_shape<T>;
  constexpr index N = shape::N, NC = shape::NC;
  if (rows == 0 || cols == 0) return;
  if (depth == 0) {
    if (update == gemm_update::overwrite)
      for (index r = 0; r < rows; ++r) std::fill_n(c + r * ldc, cols, T(0));
    return;
  }
  const index ars = TransA ? 1 : lda, aks = TransA ? lda : 1;
  for (index j0 = 0; j0 < cols; j0 += NC) {
    const index nc = std::min(NC, cols - j0);
    const int np = static_cast<int>((nc + N - 1) / N);
    if (!TransB && nc == np * N) {  // whole packets: b's rows are read in place
      gemm_panel<T>(np, rows, depth, a, ars, aks, b + j0, ldb, c + j0, ldc, update);
    } else if (update == gemm_update::add) {  // a transposed panel, or one ending in a partial packet: packed
      packed_panel_add<T, TransB>(rows, depth, a, ars, aks, b, ldb, j0, nc, np, c, ldc);
    } else {
      packed_panel_chain<T, TransB>(rows, depth, a, ars, aks, b, ldb, j0, nc, np, c, ldc, update);
    }
  }
}

}  // namespace salt::detail
