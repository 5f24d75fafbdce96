#pragma once
/// \file lsh.hpp
/// LSH attention (Kitaev et al., "Reformer: The Efficient Transformer", 2020), with the semantics of
/// HuggingFace's LSHSelfAttention (and trax), so that Reformer weights give the same numbers:
///
///     salt::lsh_options opt{.n_hashes = 4, .n_buckets = {64}, .chunk_length = 64, .chunks_before = 1,
///                           .causal = true};
///     auto rot = salt::lsh_rotations<float>::gaussian(/*heads=*/1, qk.cols(), opt, /*seed=*/7);
///     salt::row_matrix<float> out = salt::lsh_attention(qk, v, rot, opt);                 // one head
///     salt::lsh_attention(qkv, vv, outv, lsev, rot, opt, salt::key_padding{lengths});     // many heads, LSE
///
/// Queries and keys are shared ("qk"). Per head and hash round r, each position x gets the bucket
/// argmax([x R_r, -x R_r]) (first maximum on ties), R_r a (d, n_buckets/2) random rotation; each round's
/// positions are sorted stably by (bucket, position), the sorted rounds concatenated and cut into chunks of
/// chunk_length, and each chunk attends to itself and to chunks_before / chunks_after neighbouring chunks of
/// that concatenated sequence, cyclically (the first chunk of a round looks back into the previous round's
/// last chunk; a key that appears twice in one softmax counts twice). Keys are the qk vectors divided by
/// their RMS length (epsilon 1e-6) and by sqrt(d); queries are not scaled. Masks replace scores:
///  - a padding key (key_padding / key_mask) or, when causal, a key after the query's position is excluded
///    (salt uses -inf where HuggingFace uses -1e9: every row holds its own position at -1e5, so
///    exp(-1e9 - max) is exactly 0 in float and double alike, and the results are the same);
///  - every copy of the query's own position scores -1e5 (HuggingFace's value, a documented exception to
///    "no finite penalties"), so a query with no other valid key attends to itself, and that round's LSE
///    says so. This rule wins over the padding, causal and bucket_pure masks, as in HuggingFace.
/// Rounds are merged by their log-sum-exp: out = sum_r exp(lse_r - logsumexp_r lse_r) out_r, and the LSE
/// returned is logsumexp_r lse_r (the log of the sum of the rounds' softmax normalisers).
///
/// Padding keys are hashed into an extra bucket after the others (sorted to the end of each round), as
/// HuggingFace does. Like HuggingFace in evaluation mode (ReformerModel pads the input):
///  - a sequence no longer than chunk_length is not hashed: it gets plain attention over all its keys with
///    the causal, padding and self rules, in one round (n_hashes, the rotations and bucket_pure are unused);
///  - a longer sequence that is not a multiple of chunk_length is padded to the next multiple with padding
///    positions (which then fill the end of every round); only the real rows are returned.
/// `n_buckets` may list several factors, HuggingFace's factorised hashing: the rotation of a round is then
/// (d, sum(factors)/2), factor i hashes with its slice of sum-of-previous/2 columns onward, and the bucket
/// is sum_i argmax_i * prod_{j<i} factor_j.
///
/// Cost per head: hashing O(n_hashes L d sum(factors)/2), counting sorts O(n_hashes (L + buckets)), and the
/// engine over n_hashes L sorted rows, each visiting (1 + chunks_before + chunks_after) chunk_length keys:
/// O(n_hashes L (1 + before + after) c d). Extra memory O(batch heads n_hashes L (d + dv)): the sorted copies
/// of qk, normalised keys, values and outputs; nothing of size L x L.

#include <Eigen/Core>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <memory>
#include <type_traits>
#include <vector>

#include "attention.hpp"
#include "config.hpp"
#include "detail/engine.hpp"
#include "detail/gemm.hpp"
#include "detail/workspace.hpp"
#include "error.hpp"
#include "lsh/chunk_mask.hpp"
#include "mask.hpp"
#include "random.hpp"
#include "tensor.hpp"

#if SALT_HAS_OPENMP
#include <omp.h>
#endif

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
/// token at O(sqrt(L)) rotation columns.
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
template <class T>
class lsh_rotations {
 public:
  static_assert(std::is_same_v<T, float> || std::is_same_v<T, double>, "salt::lsh_rotations holds float or double.");
  using matrix_map = Eigen::Map<const row_matrix<T>>;

  /// Standard normal entries, as torch.randn draws HF's: drawn in the order of HF's tensor (head, feature,
  /// round, column), each random_generator(seed).normal() rounded to T.
  static lsh_rotations gaussian(index heads, index d, const lsh_options& opt, std::uint64_t seed) {
    constexpr const char* api = "salt::lsh_rotations::gaussian";
    check_sizes(heads, d, opt.n_hashes, opt.rotation_width(), api);
    lsh_rotations r(heads, d, opt.n_hashes, opt.rotation_width());
    random_generator rng(seed);
    for (T& x : r.data_) x = static_cast<T>(rng.normal());
    return r;
  }

  /// Given matrices, copied: one per head (or one for all heads), each (d, n_hashes * w).
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
  /// Rotations of head h, (d, rounds * width).
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

namespace detail {

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

/// What one thread of a call needs while it hashes, sorts and merges a head.
template <class T>
struct lsh_head_scratch {
  std::vector<T> rotated;                    // (lsh_hash_block, rounds * w)
  std::vector<index> buckets, counts, where;  // (rounds, Lp), (buckets + 2), (rounds, L)
  std::vector<T> inv_rms;                    // (L)
};

/// LSH attention's per-thread scratch: the sorted copies of one call and the scratch of its worker threads,
/// reused by the next call on the same thread. Buffers are uninitialised; every entry a call reads it writes
/// first.
template <class T>
struct lsh_workspace {
  std::unique_ptr<T[]> q, key_scale, v, o, lse;
  std::unique_ptr<std::int32_t[]> pos, bucket;
  std::vector<lsh_head_scratch<T>> heads;  // one per worker thread
  index rows = 0, d = 0, dv = 0;

  void reserve(index rows_, index d_, index dv_) {
    if (rows_ <= rows && d_ <= d && dv_ <= dv) return;
    rows = std::max(rows, rows_);
    d = std::max(d, d_);
    dv = std::max(dv, dv_);
    const auto n = [](index x) { return static_cast<std::size_t>(std::max<index>(x, 1)); };
    q.reset();  // release before allocating the larger buffers
    v.reset();
    o.reset();
    q.reset(new T[n(rows * d)]);
    key_scale.reset(new T[n(rows)]);
    v.reset(new T[n(rows * dv)]);
    o.reset(new T[n(rows * dv)]);
    lse.reset(new T[n(rows)]);
    pos.reset(new std::int32_t[n(rows)]);
    bucket.reset(new std::int32_t[n(rows)]);
  }
  static lsh_workspace& for_this_thread() {
    thread_local lsh_workspace ws;
    return ws;
  }
};

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

/// dst[0, n) = src[0, n) a packet at a time: the gathers copy one short row per call, where a library
/// memmove spends more on its call and size dispatch than on the copy.
template <class T>
void copy_row(const T* src, index n, T* dst) noexcept {
  using P = packet<T>;
  constexpr int N = lanes<T>;
  index j = 0;
  for (; j + N <= n; j += N) ei::pstoreu(dst + j, ei::ploadu<P>(src + j));
  for (; j < n; ++j) dst[j] = src[j];
}

/// Positions hashed per matrix product.
inline constexpr index lsh_hash_block = 64;

/// rotated (n, cols) = x (n rows of d, row stride ldx) R (d, cols), cols = n_hashes * w, for n <= lsh_hash_block:
/// one packed matrix product per block of positions. lsh_buckets and lsh_attention both hash through it, so
/// they agree bit for bit; each entry is a fixed-order sum over d whatever the block.
template <class T>
void lsh_rotate(const T* x, index n, index d, index ldx, const T* R, index cols, T* rotated) noexcept {
  gemm<T, false, false>(n, cols, d, x, ldx, R, cols, rotated, cols, false);
}

}  // namespace detail

/// The buckets of one head, (n_hashes, L): round r, position p -> bucket in [0, buckets()). Padding is not
/// applied here (lsh_attention puts padding positions in the extra bucket buckets()).
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

/// (Query, key) pairs LSH attention scores for a sequence of `length` tokens, counting a key as often as it
/// enters a softmax (padding and causal masks not subtracted): n_hashes * Lp * (1 + before + after) * c with
/// Lp = length rounded up to a multiple of c, or length^2 when length <= c. 4 d FLOPs each (d = dv).
inline double lsh_visited_pairs(index length, const lsh_options& opt) {
  const double L = static_cast<double>(length), c = static_cast<double>(opt.chunk_length);
  if (length <= opt.chunk_length) return L * L;
  const double lp = std::ceil(L / c) * c;
  return static_cast<double>(opt.n_hashes) * lp * static_cast<double>(1 + opt.chunks_before + opt.chunks_after) * c;
}

/// Multi-head LSH attention over strided (batch, heads, tokens, features) views: qk (B, H, L, d) shared
/// queries/keys, v (B, H, L, dv), written into out (B, H, L, dv), and the merged log-sum-exp of every row
/// into `lse` when given. `padding` is no_mask, key_padding (lengths per batch item) or key_mask (per-key
/// flags, HuggingFace's attention_mask). Rotations: one head's for all, or one per head.
template <class T, class Padding = no_mask>
void lsh_attention(const input_view<T>& qk, const input_view<T>& v, const tensor_view<T>& out,
                   const lse_view<T>& lse, const lsh_rotations<T>& rot, const lsh_options& opt,
                   const Padding& padding = {}, const run_options& run = {}) {
  static_assert(std::is_same_v<Padding, no_mask> || std::is_same_v<Padding, key_padding> ||
                    std::is_same_v<Padding, key_mask>,
                "salt::lsh_attention takes no_mask, key_padding or key_mask as its padding: its other masks are "
                "lsh_options' (causal, bucket_pure).");
  constexpr const char* api = "salt::lsh_attention";
  detail::check_view(qk, api, "qk");
  detail::check_view(v, api, "v");
  detail::check_view(out, api, "out");
  detail::check_lsh_options(opt, api);
  const index B = qk.batch, H = qk.heads, L = qk.tokens, d = qk.features, dv = v.features;
  detail::require(v.batch == B && v.heads == H && v.tokens == L, api, ": v is (", v.batch, ", ", v.heads, ", ",
                  v.tokens, ", ", dv, ") but qk is (", B, ", ", H, ", ", L, ", ", d, ")");
  detail::require(out.batch == B && out.heads == H && out.tokens == L && out.features == dv, api, ": out is (",
                  out.batch, ", ", out.heads, ", ", out.tokens, ", ", out.features, ") but must be (", B, ", ", H,
                  ", ", L, ", ", dv, ")");
  detail::require(!detail::overlaps(out, qk) && !detail::overlaps(out, v), api,
                  ": out overlaps an input; LSH attention cannot run in place");
  detail::require(run.threads >= 0, api, ": threads must be >= 0, got ", run.threads);
  detail::check_lsh_rotations(rot, opt, H, d, api);
  if constexpr (!std::is_same_v<Padding, no_mask>) padding.check(problem_dims{B, H, H, L, L, d, dv}, api);
  if (B == 0 || H == 0 || L == 0) return;

  // The sorted sequence: one round of L rows when L <= c (not hashed), else n rounds of Lp rows.
  const index c = opt.chunk_length;
  const bool hashed = L > c;
  const index rounds = hashed ? opt.n_hashes : 1, Lp = hashed ? (L + c - 1) / c * c : L;
  const index chunk = hashed ? c : L, rows = rounds * Lp;
  detail::require(rows < (index{1} << 31), api, ": n_hashes * padded length = ", rows, " rows exceed 2^31");
  const index nb = opt.buckets(), w = opt.rotation_width(), heads_all = B * H;
  constexpr index lsh_ahead = 8;  // rows prefetched ahead where sorted rows are gathered

  // Workspaces, (B, H, rows, .) each: sorted qk (queries), normalised keys, values, outputs, LSEs, positions,
  // buckets. Kept per calling thread between calls (grown, never shrunk; released at thread exit): touching
  // fresh pages for these copies cost more than the attention itself at long lengths.
  detail::lsh_workspace<T>& ws = detail::lsh_workspace<T>::for_this_thread();
  ws.reserve(heads_all * rows, d, dv);
  T* const qs = ws.q.get();
  T* const kscale = ws.key_scale.get();
  T* const vs = ws.v.get();
  T* const os = ws.o.get();
  T* const ls = ws.lse.get();
  std::int32_t* const pos = ws.pos.get();
  std::int32_t* const bkt = ws.bucket.get();

  auto key_valid = [&](index b, index p) -> bool {
    if (p >= L) return false;
    if constexpr (std::is_same_v<Padding, key_padding>) return p < padding.lengths[static_cast<std::size_t>(b)];
    if constexpr (std::is_same_v<Padding, key_mask>) return padding.valid[static_cast<std::size_t>(b * L + p)] != 0;
    return true;
  };
  bool any_invalid = Lp != L;
  for (index b = 0; b < B && !any_invalid; ++b)
    for (index p = 0; p < L && !any_invalid; ++p) any_invalid = !key_valid(b, p);

  // Hash, sort and gather one head: independent per (batch, head), so any thread count gives the same bits.
  auto prepare = [&](index bh, std::vector<T>& rotated, std::vector<index>& buckets, std::vector<index>& counts,
                     std::vector<T>& inv_rms) {
    const index b = bh / H, h = bh % H;
    const head_view<const T> X = qk.head(b, h), V = v.head(b, h);
    std::int32_t* P = pos + bh * rows;
    std::int32_t* K = bkt + bh * rows;
    // Keys: x / sqrt(mean(x^2) + 1e-6) for rows [p0, p0 + n), the sum of squares accumulated in double, in 8
    // interleaved partial sums (one chain of d dependent adds cost more than the gather below); / sqrt(d) is
    // the scale. Hashing calls it on each block of rows while they are in cache.
    auto key_rms = [&](index p0, index n) {
      for (index p = p0; p < p0 + n; ++p) {
        const T* x = X.row(p);
        double part[8] = {};
        index j = 0;
        for (; j + 8 <= d; j += 8)
          for (index u = 0; u < 8; ++u) part[u] += static_cast<double>(x[j + u]) * static_cast<double>(x[j + u]);
        for (; j < d; ++j) part[0] += static_cast<double>(x[j]) * static_cast<double>(x[j]);
        const double ss = ((part[0] + part[4]) + (part[1] + part[5])) + ((part[2] + part[6]) + (part[3] + part[7]));
        inv_rms[static_cast<std::size_t>(p)] = static_cast<T>(1.0 / std::sqrt(ss / static_cast<double>(d) + 1e-6));
      }
    };
    // buckets: (rounds, Lp) bucket of every position (nb: padding, sorted last).
    if (hashed) {
      const auto R = rot.head(h);  // (d, rounds * w)
      for (index p0 = 0; p0 < L; p0 += detail::lsh_hash_block) {
        const index n = std::min(detail::lsh_hash_block, L - p0);
        detail::lsh_rotate(X.row(p0), n, d, X.row_stride, R.data(), rounds * w, rotated.data());
        key_rms(p0, n);
        for (index i = 0; i < n; ++i) {
          const bool ok = key_valid(b, p0 + i);
          for (index r = 0; r < rounds; ++r)
            buckets[static_cast<std::size_t>(r * Lp + p0 + i)] =
                ok ? detail::lsh_bucket_of(rotated.data() + i * rounds * w + r * w, opt.n_buckets) : nb;
        }
      }
      for (index r = 0; r < rounds; ++r)
        for (index p = L; p < Lp; ++p) buckets[static_cast<std::size_t>(r * Lp + p)] = nb;
      // Counting sort of each round by (bucket, position): stable, O(Lp + nb).
      for (index r = 0; r < rounds; ++r) {
        std::fill(counts.begin(), counts.end(), 0);
        const index* br = buckets.data() + r * Lp;
        for (index p = 0; p < Lp; ++p) ++counts[static_cast<std::size_t>(br[p] + 1)];
        for (index k = 1; k <= nb + 1; ++k) counts[static_cast<std::size_t>(k)] += counts[static_cast<std::size_t>(k - 1)];
        for (index p = 0; p < Lp; ++p) {
          const index s = r * Lp + counts[static_cast<std::size_t>(br[p])]++;
          P[s] = static_cast<std::int32_t>(p);
          K[s] = br[p] == nb ? -1 : static_cast<std::int32_t>(br[p]);
        }
      }
    } else {
      for (index p = 0; p < L; ++p) {
        P[p] = static_cast<std::int32_t>(p);
        K[p] = key_valid(b, p) ? 0 : -1;
      }
      key_rms(0, L);
    }
    T* qd = qs + bh * rows * d;
    T* kf = kscale + bh * rows;
    T* vd = vs + bh * rows * dv;
    for (index s = 0; s < rows; ++s) {
      if (s + lsh_ahead < rows && P[s + lsh_ahead] < L) {  // rows are read in sorted, hence random, order
        const index pa = P[s + lsh_ahead];
        detail::prefetch_rows<false, const T, 3>(X, pa, pa + 1);  // wanted a few rows later: first level
        detail::prefetch_rows<false, const T, 3>(V, pa, pa + 1);
      }
      const index p = P[s];
      if (p >= L) {  // model padding rows: zeros, never seen as keys, their outputs dropped
        std::fill_n(qd + s * d, d, T(0));
        kf[s] = T(0);
        std::fill_n(vd + s * dv, dv, T(0));
        continue;
      }
      kf[s] = inv_rms[static_cast<std::size_t>(p)];
      detail::copy_row(X.row(p), d, qd + s * d);
      detail::copy_row(V.row(p), dv, vd + s * dv);
    }
  };

  const int threads_wanted =
#if SALT_HAS_OPENMP
      static_cast<int>(std::clamp<index>(run.threads > 0 ? run.threads : omp_get_max_threads(), 1, heads_all));
#else
      1;
#endif
  // The worker threads' scratch, sized before any parallel region so that allocation failure throws, and
  // kept with the workspace (a fresh megabyte per call cost its page faults again every call).
  if (ws.heads.size() < static_cast<std::size_t>(threads_wanted)) ws.heads.resize(static_cast<std::size_t>(threads_wanted));
  for (index t = 0; t < threads_wanted; ++t) {
    detail::lsh_head_scratch<T>& sp = ws.heads[static_cast<std::size_t>(t)];
    sp.rotated.resize(static_cast<std::size_t>(detail::lsh_hash_block * rounds * w));
    sp.buckets.resize(static_cast<std::size_t>(rounds * Lp));
    sp.counts.resize(static_cast<std::size_t>(nb + 2));
    sp.where.resize(static_cast<std::size_t>(rounds * L));
    sp.inv_rms.resize(static_cast<std::size_t>(L));
  }
  auto scratch_of_this_thread = [&]() -> detail::lsh_head_scratch<T>& {
#if SALT_HAS_OPENMP
    return ws.heads[static_cast<std::size_t>(omp_get_thread_num())];
#else
    return ws.heads[0];
#endif
  };
#if SALT_HAS_OPENMP
#pragma omp parallel for num_threads(threads_wanted) schedule(dynamic, 1) if (threads_wanted > 1)
#endif
  for (index bh = 0; bh < heads_all; ++bh) {
    detail::lsh_head_scratch<T>& sp = scratch_of_this_thread();
    prepare(bh, sp.rotated, sp.buckets, sp.counts, sp.inv_rms);
  }

  // Attend: the engine once over every head's sorted rows, with the chunk band mask and the self score.
  detail::lsh_band band{chunk, rows / chunk, hashed ? opt.chunks_before : 0, hashed ? opt.chunks_after : 0, Lp};
  const detail::lsh_chunk_mask mask{pos, bkt, H, rows, band, opt.causal, hashed && opt.bucket_pure,
                                    !opt.causal && !(hashed && opt.bucket_pure) && !any_invalid};
  const detail::lsh_self_score<T> score{pos, kscale, H, rows, band, 1.0 / std::sqrt(static_cast<double>(d))};
  const tensor_view<const T> qv{qs, B, H, rows, d, H * rows * d, rows * d, d};
  const tensor_view<const T> kv = qv;  // keys are the queries, scaled per key by the score (key_scale)
  const tensor_view<const T> vv{vs, B, H, rows, dv, H * rows * dv, rows * dv, dv};
  const tensor_view<T> ov{os, B, H, rows, dv, H * rows * dv, rows * dv, dv};
  detail::run_engine(detail::engine_problem<T, detail::lsh_chunk_mask, detail::lsh_self_score<T>>{
      qv, kv, vv, ov, lse_view<T>{ls, H * rows, rows}, mask, score, run.threads});

  // Unsort and merge the rounds by their LSE, per head (independent, so thread-count invariant).
  auto merge = [&](index bh, std::vector<index>& where) {
    const index b = bh / H, h = bh % H;
    const std::int32_t* P = pos + bh * rows;
    for (index s = 0; s < rows; ++s)
      if (P[s] < L) where[static_cast<std::size_t>((s / Lp) * L + P[s])] = s;
    const T* o = os + bh * rows * dv;
    const T* l = ls + bh * rows;
    const head_view<T> O = out.head(b, h);
    T* lse_out = lse.data ? lse.head(b, h) : nullptr;
    for (index p = 0; p < L; ++p) {
      T m = -std::numeric_limits<T>::infinity();
      for (index r = 0; r < rounds; ++r) m = std::max(m, l[where[static_cast<std::size_t>(r * L + p)]]);
      T* dst = O.row(p);
      if (rounds == 1) {  // weight exp(lse - lse) = 1: copy (also for a NaN LSE, which the output then carries)
        detail::copy_row(o + where[static_cast<std::size_t>(p)] * dv, dv, dst);
        if (lse_out) lse_out[p] = l[where[static_cast<std::size_t>(p)]];
        continue;
      }
      // Weights exp(lse_r - m) / sum_r exp(lse_r - m): HuggingFace's exp(lse_r - logsumexp_r lse_r), but
      // without rounding logsumexp at the magnitude of the LSEs, which are near -1e5 for a query that sees only
      // itself (there float would put the weights 0.4% off).
      T sum = 0;
      for (index r = 0; r < rounds; ++r) sum += std::exp(l[where[static_cast<std::size_t>(r * L + p)]] - m);
      const T total = m + std::log(sum), inv = T(1) / sum;
      std::fill_n(dst, dv, T(0));
      for (index r = 0; r < rounds; ++r) {
        const index s = where[static_cast<std::size_t>(r * L + p)];
        const T wgt = std::exp(l[s] - m) * inv;
        for (index j = 0; j < dv; ++j) dst[j] += wgt * o[s * dv + j];
      }
      if (lse_out) lse_out[p] = total;
    }
  };
#if SALT_HAS_OPENMP
#pragma omp parallel for num_threads(threads_wanted) schedule(dynamic, 1) if (threads_wanted > 1)
#endif
  for (index bh = 0; bh < heads_all; ++bh) merge(bh, scratch_of_this_thread().where);
}

/// Multi-head LSH attention without the log-sum-exp.
template <class T, class Padding = no_mask>
void lsh_attention(const input_view<T>& qk, const input_view<T>& v, const tensor_view<T>& out,
                   const lsh_rotations<T>& rot, const lsh_options& opt, const Padding& padding = {},
                   const run_options& run = {}) {
  lsh_attention<T, Padding>(qk, v, out, lse_view<T>{}, rot, opt, padding, run);
}

/// One head: qk (L, d) shared queries/keys, v (L, dv) -> (L, dv), with head 0 of the rotations. `padding` as
/// in the multi-head form (one length, or L flags). Row-major inputs are read in place; a column-major one is
/// copied once.
template <class DQK, class DV, class Padding = no_mask>
row_matrix<typename DQK::Scalar> lsh_attention(const Eigen::MatrixBase<DQK>& qk, const Eigen::MatrixBase<DV>& v,
                                               const lsh_rotations<typename DQK::Scalar>& rot,
                                               const lsh_options& opt, const Padding& padding = {},
                                               const run_options& run = {}) {
  using T = typename DQK::Scalar;
  static_assert(std::is_same_v<T, typename DV::Scalar>, "salt::lsh_attention: qk and v must have the same scalar type.");
  const matrix_cref<T> qr(qk), vr(v);
  row_matrix<T> out(qr.rows(), vr.cols());
  auto view = [](const matrix_cref<T>& m) {
    return tensor_view<const T>{m.data(), 1, 1, m.rows(), m.cols(), 0, 0, m.outerStride()};
  };
  lsh_attention<T, Padding>(view(qr), view(vr), tensor_view<T>::of(out), lse_view<T>{}, rot, opt, padding, run);
  return out;
}

}  // namespace salt
