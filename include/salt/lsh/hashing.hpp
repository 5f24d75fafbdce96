#pragma once
/// \file lsh/hashing.hpp
/// The hashing half of LSH attention, one named step each: rotate a block of positions (one matrix
/// product), take each round's bucket (first argmax of [x R, -x R] per factor), the keys' inverse RMS
/// lengths, and the stable counting sort of one round by (bucket, position). Also the public lsh_buckets,
/// which hashes through the same functions, so that it and lsh_attention agree bit for bit.

#include <Eigen/Core>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

#include "../config.hpp"
#include "../detail/gemm.hpp"
#include "../detail/simd.hpp"
#include "../error.hpp"
#include "../tensor.hpp"
#include "options.hpp"

namespace salt {
namespace detail {

/// Index of the first maximum of [x, -x] (2h entries) for x[0] not NaN; NaN entries never win. Each lane
/// keeps its largest and smallest x and where it first met them (strict comparisons, so the first of equal
/// values stays); the lanes then agree on the first position of the overall winner. The same answer as a
/// scan keeping the first strict maximum, without its unpredictable branch per entry.
template <class T>
index lsh_first_argmax(const T* x, index h) noexcept {
  using P = packet<T>;
  constexpr int N = lanes<T>;
  T hi = x[0], lo = x[0];
  index at_hi = 0, at_lo = 0, j = 1;
  if (h >= N && h <= (index{1} << std::numeric_limits<T>::digits)) {  // positions exact in T
    P vh = ei::pset1<P>(x[0]), vl = vh, ih = ei::pset1<P>(T(0)), il = ih;
    for (j = 0; j + N <= h; j += N) {
      const P b = ei::ploadu<P>(x + j), at = ei::plset<P>(static_cast<T>(j));
      const P up = ei::pcmp_lt(vh, b), down = ei::pcmp_lt(b, vl);  // false for NaN
      vh = ei::pselect(up, b, vh);
      ih = ei::pselect(up, at, ih);
      vl = ei::pselect(down, b, vl);
      il = ei::pselect(down, at, il);
    }
    const P never = ei::pset1<P>(std::numeric_limits<T>::infinity());
    hi = ei::predux_max(vh);
    lo = ei::predux_min(vl);
    at_hi = static_cast<index>(ei::predux_min(ei::pselect(ei::pcmp_eq(vh, ei::pset1<P>(hi)), ih, never)));
    at_lo = static_cast<index>(ei::predux_min(ei::pselect(ei::pcmp_eq(vl, ei::pset1<P>(lo)), il, never)));
  }
  for (; j < h; ++j) {
    if (x[j] > hi) hi = x[j], at_hi = j;
    if (x[j] < lo) lo = x[j], at_lo = j;
  }
  return hi >= -lo ? at_hi : h + at_lo;  // ties go to the x half, which comes first
}

/// Bucket of one rotated vector (w = rotation width values of one round): per factor f, the first maximum
/// of [x, -x] over its f/2 columns (0 when its first column is NaN, which no entry then exceeds).
template <class T>
index lsh_bucket_of(const T* rotated, const std::vector<index>& factors) noexcept {
  index bucket = 0, product = 1;
  const T* x = rotated;
  for (const index f : factors) {
    const index h = f / 2;
    if (x[0] == x[0]) bucket += product * lsh_first_argmax(x, h);
    product *= f;
    x += h;
  }
  return bucket;
}

/// Positions hashed per matrix product.
inline constexpr index lsh_hash_block = 64;

/// rotated (n, cols) = x (n rows of d, row stride ldx) R (d, cols), cols = n_hashes * w, for n <= lsh_hash_block:
/// one packed matrix product per block of positions. lsh_buckets and lsh_attention both hash through it, so
/// they agree bit for bit; each entry is a fixed-order sum over d whatever the block.
template <class T>
void lsh_rotate(const T* x, index n, index d, index ldx, const T* R, index cols, T* rotated) noexcept {
  gemm<T, false, false>(n, cols, d, x, ldx, R, cols, rotated, cols, gemm_update::overwrite);
}

/// inv_rms[i] = 1 / sqrt(mean(x_i^2) + 1e-6) for the n rows x_i of d values, `stride` apart (the keys are
/// x / RMS(x), HuggingFace's _len_norm). The sum of squares is accumulated in double in 8 interleaved partial
/// sums: one chain of d dependent adds cost more than gathering the row. The order of the adds is fixed, so a
/// row's value does not depend on the block it is computed in.
template <class T>
void lsh_inverse_rms(const T* x, index n, index d, index stride, T* inv_rms) noexcept {
  for (index i = 0; i < n; ++i, x += stride) {
    double part[8] = {};
    index j = 0;
    for (; j + 8 <= d; j += 8)
      for (index u = 0; u < 8; ++u) part[u] += static_cast<double>(x[j + u]) * static_cast<double>(x[j + u]);
    for (; j < d; ++j) part[0] += static_cast<double>(x[j]) * static_cast<double>(x[j]);
    const double ss = ((part[0] + part[4]) + (part[1] + part[5])) + ((part[2] + part[6]) + (part[3] + part[7]));
    inv_rms[i] = static_cast<T>(1.0 / std::sqrt(ss / static_cast<double>(d) + 1e-6));
  }
}

/// Hashes positions [p0, p0 + n) of one head, n <= lsh_hash_block: rotated (n, rounds * w) = x R, then
/// buckets[r * L + p] = the bucket of position p in round r, or `padding` (= buckets(), sorted last) where
/// key_valid(p) is false. R is (d, rounds * w); `rotated` is scratch of lsh_hash_block * rounds * w.
template <class T, class KeyValid>
void lsh_hash_positions(const head_view<const T>& x, index p0, index n, const T* R, const lsh_options& opt,
                        const KeyValid& key_valid, T* rotated, std::int32_t* buckets) noexcept {
  const index rounds = opt.n_hashes, w = opt.rotation_width(), L = x.rows;
  const auto padding = static_cast<std::int32_t>(opt.buckets());
  lsh_rotate(x.row(p0), n, x.cols, x.row_stride, R, rounds * w, rotated);
  for (index i = 0; i < n; ++i) {
    const bool valid = key_valid(p0 + i);
    for (index r = 0; r < rounds; ++r)
      buckets[r * L + p0 + i] =
          valid ? static_cast<std::int32_t>(lsh_bucket_of(rotated + (i * rounds + r) * w, opt.n_buckets)) : padding;
  }
}

/// The sorted order of one round: positions [0, Lp) sorted stably by bucket (counting sort, O(Lp + padding)),
/// where positions from L on are model padding and, like buckets[p] == padding, sort into the last bucket.
/// Writes, for sorted row s, pos[s] (its position) and sorted_bucket[s] (its bucket, -1 for padding), and for
/// each real position p, where[p] = first_row + s (its row in the head's concatenated rounds). `counts` is
/// scratch of padding + 2 entries.
inline void lsh_sort_round(const std::int32_t* buckets, index L, index Lp, std::int32_t padding, index first_row,
                           index* counts, std::int32_t* pos, std::int32_t* sorted_bucket, index* where) noexcept {
  auto bucket = [&](index p) { return p < L ? buckets[p] : padding; };
  std::fill_n(counts, padding + 2, index{0});
  for (index p = 0; p < Lp; ++p) ++counts[bucket(p) + 1];
  for (index k = 1; k <= padding + 1; ++k) counts[k] += counts[k - 1];  // counts[k]: rows before bucket k
  for (index p = 0; p < Lp; ++p) {
    const std::int32_t b = bucket(p);
    const index s = counts[b]++;
    pos[s] = static_cast<std::int32_t>(p);
    sorted_bucket[s] = b == padding ? -1 : b;
    if (p < L) where[p] = first_row + s;
  }
}

}  // namespace detail

/// The buckets of one head, (n_hashes, L): round r, position p -> bucket in [0, buckets()). Padding is not
/// applied here (lsh_attention puts padding positions in the extra bucket buckets()). qk is (L, d), read in
/// place when row-major (a column-major one is copied once), hashed with rotations of head `head`; the result
/// is a new row-major matrix. Cost O(n_hashes L d w). Throws salt::error naming salt::lsh_buckets for bad
/// options, a head outside the rotations, or rotations that do not fit the options or d.
template <class Derived>
Eigen::Matrix<index, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor> lsh_buckets(
    const Eigen::MatrixBase<Derived>& qk, const lsh_rotations<typename Derived::Scalar>& rot, const lsh_options& opt,
    index head = 0) {
  using T = typename Derived::Scalar;
  constexpr const char* api = "salt::lsh_buckets";
  detail::check_lsh_options(opt, api);
  detail::require(head >= 0 && (rot.heads() == 1 || head < rot.heads()), api, ": head ", head, " outside the ",
                  rot.heads(), " heads of the rotations");
  detail::check_lsh_rotations(rot, opt, rot.heads(), qk.cols(), api);
  const matrix_cref<T> x(qk);
  const auto R = rot.head(head);  // (d, n_hashes * w)
  std::vector<T> rotated(static_cast<std::size_t>(detail::lsh_hash_block * R.cols()));
  Eigen::Matrix<index, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor> b(opt.n_hashes, x.rows());
  for (index p0 = 0; p0 < x.rows(); p0 += detail::lsh_hash_block) {
    const index n = std::min(detail::lsh_hash_block, x.rows() - p0);
    detail::lsh_rotate(x.row(p0).data(), n, x.cols(), x.outerStride(), R.data(), R.cols(), rotated.data());
    for (index i = 0; i < n; ++i)
      for (index r = 0; r < opt.n_hashes; ++r)
        b(r, p0 + i) = detail::lsh_bucket_of(rotated.data() + i * R.cols() + r * rot.width(), opt.n_buckets);
  }
  return b;
}

}  // namespace salt
