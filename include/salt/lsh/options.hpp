#pragma once
/// \file lsh/options.hpp
/// What an LSH attention call computes, apart from its inputs: the options (rounds, buckets, chunks, causal,
/// bucket purity), HuggingFace's rule for the bucket count, the random rotations, the checks the entry points
/// make on them, and the pairs a call scores (for cost estimates and benchmarks).

#include <Eigen/Core>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <type_traits>
#include <vector>

#include "../config.hpp"
#include "../error.hpp"
#include "../random.hpp"
#include "../tensor.hpp"

namespace salt {

/// What LSH attention computes (HuggingFace's ReformerConfig names in brackets).
struct lsh_options {
  index n_hashes = 1;                ///< hash rounds [num_hashes]
  std::vector<index> n_buckets = {64};  ///< buckets per round, even [num_buckets]; several entries: factorised
  index chunk_length = 64;           ///< sorted rows per chunk [lsh_attn_chunk_length]
  index chunks_before = 1;           ///< chunks each chunk also sees before it [lsh_num_chunks_before]
  index chunks_after = 0;            ///< and after it [lsh_num_chunks_after]
  bool causal = false;               ///< no key after the query's position [is_decoder]
  bool bucket_pure = false;          ///< also mask keys hashed to another bucket (or round); off in Reformer

  /// Buckets per round: the product of the factors.
  index buckets() const noexcept {
    index n = 1;
    for (const index f : n_buckets) n *= f;
    return n;
  }
  /// Rotation columns per round: sum(factors) / 2.
  index rotation_width() const noexcept {
    index n = 0;
    for (const index f : n_buckets) n += f;
    return n / 2;
  }
};

/// HuggingFace's choice when num_buckets is unset (LSHSelfAttention._set_num_buckets): 2 L / chunk_length
/// rounded down to a power of two, factorised into two powers of two when above
/// 2 max(sqrt(max_positions / chunk_length), chunk_length). The factorised form keeps the hashing cost per
/// token at O(sqrt(L)) rotation columns. Throws salt::error when an argument is < 1.
inline std::vector<index> reformer_buckets(index length, index chunk_length, index max_positions) {
  detail::require(length >= 1 && chunk_length >= 1 && max_positions >= 1, "salt::reformer_buckets: length ", length,
                  ", chunk_length ", chunk_length, " and max_positions ", max_positions, " must be >= 1");
  index twice = 2 * (length / chunk_length), p = -1;
  for (; twice > 0; twice >>= 1) ++p;  // bit_length - 1
  p = std::max<index>(p, 1);
  const index limit =
      2 * std::max(static_cast<index>(std::sqrt(static_cast<double>(max_positions / chunk_length))), chunk_length);
  if ((index{1} << p) <= limit) return {index{1} << p};
  return {index{1} << (p / 2), index{1} << (p - p / 2)};
}

/// Random rotations of LSH attention: per head, a (d, n_hashes * w) matrix, w = rotation_width(); columns
/// [r w, (r + 1) w) are round r's. This is HuggingFace's (heads, d, n_hashes, w) tensor with its last two dims
/// merged, so HF's rotations can be passed in as they are. One head's rotations may serve every head.
/// Owned: heads * d * n_hashes * w values, row-major per head.
template <class T>
class lsh_rotations {
 public:
  static_assert(std::is_same_v<T, float> || std::is_same_v<T, double>, "salt::lsh_rotations holds float or double.");
  /// A read-only (d, n_hashes * w) row-major view of one head's rotations, into this object's storage.
  using matrix_map = Eigen::Map<const row_matrix<T>>;

  /// Standard normal entries, as torch.randn draws HF's: drawn in the order of HF's tensor (head, feature,
  /// round, column), each random_generator(seed).normal() rounded to T. Throws salt::error when heads, d,
  /// n_hashes or the rotation width is < 1.
  static lsh_rotations gaussian(index heads, index d, const lsh_options& opt, std::uint64_t seed) {
    constexpr const char* api = "salt::lsh_rotations::gaussian";
    check_sizes(heads, d, opt.n_hashes, opt.rotation_width(), api);
    lsh_rotations r(heads, d, opt.n_hashes, opt.rotation_width());
    random_generator rng(seed);
    for (T& x : r.data_) x = static_cast<T>(rng.normal());
    return r;
  }

  /// Given matrices, copied: one per head (or one for all heads), each (d, n_hashes * w). Throws salt::error
  /// naming salt::lsh_rotations::from_matrices when none is given, their shapes differ, or the columns do
  /// not split into n_hashes rounds.
  static lsh_rotations from_matrices(const std::vector<row_matrix<T>>& per_head, index n_hashes) {
    constexpr const char* api = "salt::lsh_rotations::from_matrices";
    detail::require(!per_head.empty(), api, ": no matrix given");
    detail::require(n_hashes >= 1, api, ": n_hashes must be >= 1, got ", n_hashes);
    const index d = per_head[0].rows(), cols = per_head[0].cols();
    detail::require(cols % n_hashes == 0, api, ": ", cols, " columns do not split into ", n_hashes, " rounds");
    check_sizes(static_cast<index>(per_head.size()), d, n_hashes, cols / n_hashes, api);
    lsh_rotations r(static_cast<index>(per_head.size()), d, n_hashes, cols / n_hashes);
    for (std::size_t h = 0; h < per_head.size(); ++h) {
      detail::require(per_head[h].rows() == d && per_head[h].cols() == cols, api, ": matrix ", h, " is ",
                      per_head[h].rows(), " x ", per_head[h].cols(), " but matrix 0 is ", d, " x ", cols);
      std::copy_n(per_head[h].data(), d * cols, r.data_.data() + static_cast<index>(h) * d * cols);
    }
    return r;
  }

  index heads() const noexcept { return heads_; }   ///< 1: shared by every head
  index dim() const noexcept { return d_; }         ///< d
  index rounds() const noexcept { return rounds_; } ///< n_hashes
  index width() const noexcept { return width_; }   ///< columns per round
  /// Rotations of head h, (d, rounds * width): a view, valid while this object lives; head 0's when heads() is 1.
  matrix_map head(index h) const noexcept {
    return {data_.data() + (heads_ == 1 ? 0 : h) * d_ * rounds_ * width_, d_, rounds_ * width_};
  }

 private:
  lsh_rotations(index heads, index d, index rounds, index width)
      : data_(static_cast<std::size_t>(heads * d * rounds * width)), heads_(heads), d_(d), rounds_(rounds),
        width_(width) {}
  static void check_sizes(index heads, index d, index rounds, index width, const char* api) {
    detail::require(heads >= 1 && d >= 1 && rounds >= 1 && width >= 1, api, ": heads ", heads, ", d ", d,
                    ", n_hashes ", rounds, " and rotation width ", width, " must be >= 1");
  }

  std::vector<T> data_;  // (heads, d, rounds * width)
  index heads_, d_, rounds_, width_;
};

/// (Query, key) pairs LSH attention scores for a sequence of `length` tokens, counting a key as often as it
/// enters a softmax (padding and causal masks not subtracted): n_hashes * Lp * (1 + before + after) * c with
/// Lp = length rounded up to a multiple of c, or length^2 when length <= c. 4 d FLOPs each (d = dv).
inline double lsh_visited_pairs(index length, const lsh_options& opt) {
  const double L = static_cast<double>(length), c = static_cast<double>(opt.chunk_length);
  if (length <= opt.chunk_length) return L * L;
  const double lp = std::ceil(L / c) * c;
  return static_cast<double>(opt.n_hashes) * lp * static_cast<double>(1 + opt.chunks_before + opt.chunks_after) * c;
}

namespace detail {

/// The options every LSH entry point checks, each message naming `api`.
inline void check_lsh_options(const lsh_options& opt, const char* api) {
  require(opt.n_hashes >= 1, api, ": n_hashes must be >= 1, got ", opt.n_hashes);
  require(!opt.n_buckets.empty(), api, ": n_buckets is empty");
  for (const index f : opt.n_buckets)
    require(f >= 2 && f % 2 == 0, api, ": every bucket count must be even and >= 2, got ", f);
  require(opt.buckets() < (index{1} << 30), api, ": ", opt.buckets(), " buckets are too many");
  require(opt.chunk_length >= 1, api, ": chunk_length must be >= 1, got ", opt.chunk_length);
  require(opt.chunks_before >= 0 && opt.chunks_after >= 0, api, ": chunks_before (", opt.chunks_before,
          ") and chunks_after (", opt.chunks_after, ") must be >= 0");
}

/// Rotations that fit the options and a qk of `heads` heads of d features.
template <class T>
void check_lsh_rotations(const lsh_rotations<T>& rot, const lsh_options& opt, index heads, index d, const char* api) {
  require(rot.dim() == d, api, ": the rotations are for d = ", rot.dim(), " but qk has ", d, " features");
  require(rot.heads() == 1 || rot.heads() == heads, api, ": the rotations hold ", rot.heads(),
          " heads but qk has ", heads);
  require(rot.rounds() == opt.n_hashes, api, ": the rotations hold ", rot.rounds(), " rounds but n_hashes = ",
          opt.n_hashes);
  require(rot.width() == opt.rotation_width(), api, ": the rotations have ", rot.width(),
          " columns per round but n_buckets needs sum/2 = ", opt.rotation_width());
}

}  // namespace detail
}  // namespace salt
