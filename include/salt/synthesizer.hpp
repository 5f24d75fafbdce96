#pragma once
/// \file synthesizer.hpp
/// Synthesizer (Tay et al., "Synthesizer: Rethinking Self-Attention in Transformer Models", 2021): logits
/// that do not come from query-key dot products. Each is a score policy, so the engine's tiled online
/// softmax runs it with any mask (causal, key padding, ...) and never holds an Lq x Lk matrix:
///
///     salt::attention(q, k, v, salt::causal{}, salt::synthesizer_random<float>::shared(table));   // Random
///     salt::attention(q, k, v, mask, salt::synthesizer_factorized<float>::shared(r1, r2));        // R1 R2^T
///     salt::attention(q, k, v, mask, salt::synthesizer_dense<float>::shared(x, w1, b1, w2, b2));  // Dense
///     salt::attention(q, k, v, mask, salt::dot_product{} + salt::synthesizer_random<float>::shared(table));
///
/// The last line is a mixture: the sources' logits are summed before the one softmax (the paper's mixtures
/// weight each source; fold the weights into the tables or into dot_product's scale).
///
/// Positions: query i of a call is row query_offset + i of a table, key j is column j. The parameters
/// hold max_len positions; a call with more keys (or, for the tables, more query rows) than that is an
/// error. The policies are views: the weights are not copied and must outlive the call (shared() refuses a
/// temporary matrix at compile time).

#include <Eigen/Core>

#include <algorithm>
#include <string>
#include <type_traits>

#include "detail/gemm.hpp"
#include "error.hpp"
#include "score/concept.hpp"
#include "score/logit_gradient.hpp"
#include "tensor.hpp"

namespace salt {
namespace detail {

/// Queries and inner-dimension entries handled per step of a Synthesizer tile, so its scratch is a fixed
/// array on the stack whatever the tile size (the engine's tiles are at most 64 queries; the references
/// hand whole matrices over as one tile).
inline constexpr index synthesizer_query_chunk = 64;
inline constexpr index synthesizer_inner_chunk = 32;

/// c (m x n, row stride ldc) += a (m x kk, row stride lda) * b (kk x n, row stride ldb): the product summed
/// from zero, then added to the logits already in c. In the kernel's own precision this is detail::gemm
/// (gemm_update::add; no temporaries, never threaded); in another precision (the references, which run the
/// policy in fp64 on float weights) plain loops, which convert each operand and never allocate.
template <class U, class TA, class TB>
void synthesizer_gemm_acc(U* c, index ldc, const TA* a, index lda, const TB* b, index ldb, index m, index n,
                          index kk) noexcept {
  if constexpr (std::is_same_v<U, TA> && std::is_same_v<U, TB>) {
    gemm<U, false, false>(m, n, kk, a, lda, b, ldb, c, ldc, gemm_update::add);
  } else {
    for (index i = 0; i < m; ++i)
      for (index j = 0; j < n; ++j) {
        U s = 0;
        for (index r = 0; r < kk; ++r) s += static_cast<U>(a[i * lda + r]) * static_cast<U>(b[r * ldb + j]);
        c[i * ldc + j] += s;
      }
  }
}

/// Whether an argument of shared() is a temporary that owns its storage (an Eigen matrix or array
/// rvalue): the policy would view it after it is gone. Temporary views (a Map, a row block) are fine.
template <class D>
inline constexpr bool dangling_table =
    !std::is_lvalue_reference_v<D> &&
    std::is_base_of_v<Eigen::PlainObjectBase<std::remove_cvref_t<D>>, std::remove_cvref_t<D>>;

/// The checks every Synthesizer source shares: its head count, and that it holds a position for every key
/// (and, for the tables, every query row). `what` describes its size for the message, e.g.
/// "synthesizer_random table is 128 x 128".
inline void check_synthesizer_positions(const char* api, const char* name, const std::string& what, index heads,
                                        index max_len, index query_offset, const problem_dims& dims,
                                        bool checks_queries) {
  require(max_len >= 0, api, ": ", name, " max_len must be >= 0, got ", max_len);
  require(heads == 1 || heads == dims.q_heads, api, ": ", name, " has ", heads, " heads for ", dims.q_heads,
          " query heads (it needs 1, shared by all, or one per query head)");
  require(dims.lk <= max_len, api, ": ", what, " but the sequence has ", dims.lk, " keys");
  if (!checks_queries) return;
  require(query_offset >= 0, api, ": ", name, " query_offset must be >= 0, got ", query_offset);
  if (query_offset == 0) {
    require(dims.lq <= max_len, api, ": ", what, " but the sequence has ", dims.lq, " queries");
  } else {
    require(query_offset + dims.lq <= max_len, api, ": ", what, " but ", dims.lq, " queries from query_offset ",
            query_offset, " need ", query_offset + dims.lq, " rows");
  }
}

}  // namespace detail

/// Synthesizer Random: a learned (max_len, max_len) logit table per head, sliced to (Lq, Lk). Adds
/// table[h][query_offset + i][j] to the logit of query i and key j. Tables lie at
/// data + h * head_stride + row * row_stride + column; they are viewed, not copied, and must outlive the call.
template <class T>
struct synthesizer_random {
  const T* data = nullptr;  ///< head 0's table, row 0; viewed, not owned
  index heads = 1;         ///< 1: one table for every query head; else one per query head
  index max_len = 0;       ///< the table is max_len x max_len
  index row_stride = 0;    ///< elements between rows (max_len when contiguous)
  index head_stride = 0;   ///< elements between heads' tables
  index query_offset = 0;  ///< table row of query 0; Lk - Lq lines the rows up with causal's default when decoding

  /// One (max_len, max_len) table shared by every head, from a row-major matrix (not copied: it must
  /// outlive the policy, so a temporary matrix does not compile). Throws salt::error when it is not square.
  template <class Derived>
  static synthesizer_random shared(Derived&& table) {
    static_assert(!detail::dangling_table<Derived>,
                  "salt::synthesizer_random::shared views its table, which must outlive the call: keep it in a "
                  "variable, not a temporary.");
    static_assert(static_cast<int>(std::remove_cvref_t<Derived>::IsRowMajor),
                  "salt::synthesizer_random::shared needs a row-major table.");
    detail::require(table.rows() == table.cols(), "salt::synthesizer_random::shared: the table is ", table.rows(),
                    " x ", table.cols(), " but must be square (max_len x max_len)");
    return {table.data(), 1, table.rows(), table.outerStride(), 0, 0};
  }
  /// `heads` contiguous (max_len, max_len) row-major tables, one per query head, at data (viewed: it must
  /// outlive the policy).
  static synthesizer_random per_head(const T* data, index heads, index max_len) {
    return {data, heads, max_len, max_len, max_len * max_len, 0};
  }

  /// score_policy_for: no dot product of its own (mix one in with `dot_product{} + synthesizer`).
  static constexpr bool uses_dot_product() { return false; }
  /// score_policy_for: `apply` adds the synthesized logits.
  static constexpr bool is_identity() { return false; }
  /// differentiable_score_for: the logits' derivative by the scaled dot product is 1.
  static constexpr bool is_additive() { return true; }
  /// Unused: the policy has no dot product.
  double dot_scale(index) const noexcept { return 0; }

  /// Where attention_backward adds the tables' gradient (score/logit_gradient.hpp): a buffer laid out as the
  /// tables (heads of max_len x max_len with this policy's strides; not copied: it must outlive the call). The
  /// rows of a call are query_offset ... query_offset + Lq - 1, as `apply` reads them. Throws salt::error when it
  /// is the table.
  logit_gradient<T> gradient_into(T* buffer) const {
    detail::require(buffer != data, "salt::synthesizer_random::gradient_into: the gradient's buffer is the table itself");
    return {buffer, max_len, max_len, row_stride, heads == 1 ? 0 : head_stride, 0, query_offset};
  }

  /// Adds the table's entries of the tile's (query, key) pairs to its logits; O(queries * keys).
  template <class U>
  void apply(const logit_tile<U>& t, const problem_shape& p) const noexcept {
    const T* base =
        data + (heads == 1 ? 0 : p.head) * head_stride + (query_offset + t.q_begin) * row_stride + t.k_begin;
    // Query-major: each query reads its table row contiguously; the writes stride through the tile, which
    // sits in L1. (Key-major reads would stride by a whole table row per element: 2x slower at max_len 4096.)
    for (index i = 0; i < t.queries; ++i) {
      const T* src = base + i * row_stride;
      U* dst = t.data + i;
      for (index j = 0; j < t.keys; ++j) dst[j * t.stride] += static_cast<U>(src[j]);
    }
  }

  /// Throws salt::error naming `api` when there is no table, a row is shorter than max_len, `heads` is not 1
  /// or Hq, or the call has more keys than max_len, or more query rows than the table has from query_offset.
  void check(const problem_dims& dims, const char* api) const {
    detail::require(data != nullptr || max_len == 0, api, ": synthesizer_random has no table");
    detail::require(row_stride >= max_len && head_stride >= 0, api, ": synthesizer_random row_stride ", row_stride,
                    " is shorter than its ", max_len, " columns");
    const std::string n = std::to_string(max_len);
    detail::check_synthesizer_positions(api, "synthesizer_random", "synthesizer_random table is " + n + " x " + n,
                                        heads, max_len, query_offset, dims, true);
  }
};

/// Factorized Synthesizer Random: logits R1 R2^T of rank `rank`, computed tile by tile (the max_len x
/// max_len product is never formed). Adds sum_r R1[h][query_offset + i][r] * R2[h][j][r] to logit (i, j).
/// R1 and R2 are (heads, max_len, rank), row-major and contiguous; viewed, not copied: they must outlive the call.
template <class T>
struct synthesizer_factorized {
  const T* r1 = nullptr;  ///< (heads, max_len, rank): the query side
  const T* r2 = nullptr;  ///< (heads, max_len, rank): the key side
  index heads = 1;        ///< 1: shared by every query head; else one pair per query head
  index max_len = 0;       ///< positions: rows of R1 and of R2
  index rank = 0;          ///< columns of R1 and R2
  index query_offset = 0;  ///< row of R1 for query 0 (see synthesizer_random)

  /// One (R1, R2) pair shared by every head, from row-major (max_len, rank) matrices (not copied: they must
  /// outlive the policy, so temporary matrices do not compile). Throws salt::error when their shapes differ
  /// or either is not contiguous.
  template <class D1, class D2>
  static synthesizer_factorized shared(D1&& r1, D2&& r2) {
    static_assert(!detail::dangling_table<D1> && !detail::dangling_table<D2>,
                  "salt::synthesizer_factorized::shared views R1 and R2, which must outlive the call: keep them in "
                  "variables, not temporaries.");
    static_assert(static_cast<int>(std::remove_cvref_t<D1>::IsRowMajor) &&
                      static_cast<int>(std::remove_cvref_t<D2>::IsRowMajor),
                  "salt::synthesizer_factorized::shared needs row-major R1 and R2.");
    constexpr const char* api = "salt::synthesizer_factorized::shared";
    detail::require(r1.rows() == r2.rows() && r1.cols() == r2.cols(), api, ": R1 is ", r1.rows(), " x ", r1.cols(),
                    " but R2 is ", r2.rows(), " x ", r2.cols());
    detail::require(r1.outerStride() == r1.cols() && r2.outerStride() == r2.cols(), api,
                    ": R1 and R2 must be contiguous (outer strides ", r1.outerStride(), " and ", r2.outerStride(),
                    " for ", r1.cols(), " columns)");
    return {r1.data(), r2.data(), 1, r1.rows(), r1.cols(), 0};
  }
  /// `heads` contiguous (max_len, rank) pairs, one per query head, at r1 and r2 (viewed: they must outlive
  /// the policy).
  static synthesizer_factorized per_head(const T* r1, const T* r2, index heads, index max_len, index rank) {
    return {r1, r2, heads, max_len, rank, 0};
  }

  /// score_policy_for: no dot product of its own (mix one in with `dot_product{} + synthesizer`).
  static constexpr bool uses_dot_product() { return false; }
  /// score_policy_for: `apply` adds the synthesized logits.
  static constexpr bool is_identity() { return false; }
  /// differentiable_score_for: the logits' derivative by the scaled dot product is 1.
  static constexpr bool is_additive() { return true; }
  /// Unused: the policy has no dot product.
  double dot_scale(index) const noexcept { return 0; }

  /// Adds the tile's block of R1 R2^T to its logits: queries * keys * rank multiply-adds, no allocation.
  template <class U>
  void apply(const logit_tile<U>& t, const problem_shape& p) const noexcept {
    if (rank == 0 || t.keys == 0) return;  // nothing to add; R1, R2 or the tile may then be absent (null)
    constexpr index QC = detail::synthesizer_query_chunk, RC = detail::synthesizer_inner_chunk;
    const index head_size = max_len * rank;
    const T* a = r1 + (heads == 1 ? 0 : p.head) * head_size + (query_offset + t.q_begin) * rank;  // (queries, rank)
    const T* b = r2 + (heads == 1 ? 0 : p.head) * head_size + t.k_begin * rank;                   // (keys, rank)
    // The tile is key-major, (keys, queries): tile += R2 rows * (R1 rows)^T. R1's rows are transposed a chunk
    // at a time into `at` so the product runs along the contiguous query axis.
    alignas(64) U at[RC * QC];  // (rank chunk, query chunk)
    for (index i0 = 0; i0 < t.queries; i0 += QC) {
      const index nq = std::min(QC, t.queries - i0);
      for (index c0 = 0; c0 < rank; c0 += RC) {
        const index nc = std::min(RC, rank - c0);
        for (index i = 0; i < nq; ++i)
          for (index c = 0; c < nc; ++c) at[c * QC + i] = static_cast<U>(a[(i0 + i) * rank + c0 + c]);
        detail::synthesizer_gemm_acc(t.data + i0, t.stride, b + c0, rank, static_cast<const U*>(at), QC, t.keys, nq,
                                     nc);
      }
    }
  }

  /// Throws salt::error naming `api` when R1 or R2 is missing, rank < 0, `heads` is not 1 or Hq, or the call
  /// has more keys than max_len, or more query rows than R1 has from query_offset.
  void check(const problem_dims& dims, const char* api) const {
    detail::require((r1 != nullptr && r2 != nullptr) || max_len * rank == 0, api,
                    ": synthesizer_factorized is missing R1 or R2");
    detail::require(rank >= 0, api, ": synthesizer_factorized rank must be >= 0, got ", rank);
    detail::check_synthesizer_positions(api, "synthesizer_factorized",
                                        "synthesizer_factorized R1 and R2 have " + std::to_string(max_len) + " rows",
                                        heads, max_len, query_offset, dims, true);
  }
};

/// Dense Synthesizer: a two-layer MLP per head maps each query token's input vector x_i to a row of
/// max_len logits, W2 relu(W1 x_i + b1) + b2, of which the first Lk are used: logit (i, j) is the dot
/// product of row j of W2 with relu(W1 x_i + b1), plus b2[j].
///
/// What x is: the paper feeds the layer input X (one row per token) to every head's MLP; salt takes it as
/// an explicit (batch, 1 or Hq, Lq, d_model) view, token i of the view belonging to query i. One shared head
/// is the paper's X; a view with one head per query head (the queries themselves, say) gives every head
/// its own input.
///
/// Weights, row-major and contiguous per head: W1 (heads, hidden, d_model), b1 (heads, hidden),
/// W2 (heads, max_len, hidden), b2 (heads, max_len). Cost: the hidden layer of a tile's queries is
/// recomputed for each key block the tile visits (Lq * Lk/64 * hidden * d_model multiply-adds), beside
/// Lq * Lk * hidden for the logits; nothing is allocated (a fixed scratch array on the stack). Non-owning:
/// x and the weights must outlive the call.
template <class T>
struct synthesizer_dense {
  tensor_view<const T> x;  ///< (batch, 1 or Hq, Lq, d_model): the input token of each query
  const T* w1 = nullptr;   ///< (heads, hidden, d_model)
  const T* b1 = nullptr;   ///< (heads, hidden)
  const T* w2 = nullptr;   ///< (heads, max_len, hidden)
  const T* b2 = nullptr;   ///< (heads, max_len)
  index heads = 1;         ///< 1: one MLP for every query head; else one per query head
  /// The MLP's sizes: input width d_model, hidden width, and max_len logits per query (key positions).
  /// @{
  index d_model = 0, hidden = 0, max_len = 0;
  /// @}

  /// One head (or one MLP shared by every head and a (Lq, d_model) input shared by every head and a batch
  /// of 1), from row-major matrices and vectors (not copied: they must outlive the policy, so temporary
  /// matrices do not compile): x (Lq, d_model), W1 (hidden, d_model), b1 (hidden), W2 (max_len, hidden),
  /// b2 (max_len). Throws salt::error when the sizes disagree or a weight is not contiguous.
  template <class DX, class DW1, class DB1, class DW2, class DB2>
  static synthesizer_dense shared(DX&& x, DW1&& w1, DB1&& b1, DW2&& w2, DB2&& b2) {
    static_assert(!detail::dangling_table<DX> && !detail::dangling_table<DW1> && !detail::dangling_table<DB1> &&
                      !detail::dangling_table<DW2> && !detail::dangling_table<DB2>,
                  "salt::synthesizer_dense::shared views x and its weights, which must outlive the call: keep them "
                  "in variables, not temporaries.");
    static_assert(static_cast<int>(std::remove_cvref_t<DX>::IsRowMajor) &&
                      static_cast<int>(std::remove_cvref_t<DW1>::IsRowMajor) &&
                      static_cast<int>(std::remove_cvref_t<DW2>::IsRowMajor),
                  "salt::synthesizer_dense::shared needs row-major x, W1 and W2.");
    constexpr const char* api = "salt::synthesizer_dense::shared";
    detail::require(w1.outerStride() == w1.cols() && w2.outerStride() == w2.cols(), api,
                    ": W1 and W2 must be contiguous");
    detail::require(b1.innerStride() == 1 && b2.innerStride() == 1, api, ": b1 and b2 must be contiguous");
    detail::require(b1.size() == w1.rows(), api, ": W1 has ", w1.rows(), " rows but b1 has ", b1.size(), " entries");
    detail::require(w2.cols() == w1.rows(), api, ": W2 has ", w2.cols(), " columns but W1 has ", w1.rows(), " rows");
    detail::require(b2.size() == w2.rows(), api, ": W2 has ", w2.rows(), " rows but b2 has ", b2.size(), " entries");
    detail::require(x.cols() == w1.cols(), api, ": x has ", x.cols(), " columns but W1 has ", w1.cols());
    const tensor_view<const T> xv{x.data(), 1, 1, x.rows(), x.cols(), 0, 0, x.outerStride()};
    return {xv, w1.data(), b1.data(), w2.data(), b2.data(), 1, w1.cols(), w1.rows(), w2.rows()};
  }

  /// score_policy_for: no dot product of its own (mix one in with `dot_product{} + synthesizer`).
  static constexpr bool uses_dot_product() { return false; }
  /// score_policy_for: `apply` adds the synthesized logits.
  static constexpr bool is_identity() { return false; }
  /// differentiable_score_for: the logits' derivative by the scaled dot product is 1.
  static constexpr bool is_additive() { return true; }
  /// Unused: the policy has no dot product.
  double dot_scale(index) const noexcept { return 0; }

  /// Adds W2 relu(W1 x_i + b1) + b2 to the tile's logits (the cost is in the struct's description).
  template <class U>
  void apply(const logit_tile<U>& t, const problem_shape& p) const noexcept {
    constexpr index QC = detail::synthesizer_query_chunk, HC = detail::synthesizer_inner_chunk;
    const index h = heads == 1 ? 0 : p.head;
    const T* W1 = w1 + h * hidden * d_model;                       // (hidden, d_model)
    const T* B1 = b1 + h * hidden;                                 // (hidden)
    const T* W2 = w2 + h * max_len * hidden + t.k_begin * hidden;  // (keys, hidden), from the tile's first key
    const T* B2 = b2 + h * max_len + t.k_begin;                    // (keys)
    const head_view<const T> X = x.head(p.batch, x.heads == 1 ? 0 : p.head);  // (Lq, d_model)
    alignas(64) U ht[HC * QC];  // (hidden chunk, query chunk): relu(W1 x + b1), hidden-major
    for (index i0 = 0; i0 < t.queries; i0 += QC) {
      const index nq = std::min(QC, t.queries - i0);
      const T* xq = X.row(t.q_begin + i0);
      for (index c0 = 0; c0 < hidden; c0 += HC) {
        const index nc = std::min(HC, hidden - c0);
        // ht = W1[c0 : c0 + nc] x^T: each entry a dot product of two contiguous rows.
        if constexpr (std::is_same_v<T, U>) {
          detail::gemm<U, false, true>(nc, nq, d_model, W1 + c0 * d_model, d_model, xq, X.row_stride, ht, QC,
                                       detail::gemm_update::overwrite);
        } else {
          for (index c = 0; c < nc; ++c)
            for (index i = 0; i < nq; ++i) {
              U s = 0;
              for (index e = 0; e < d_model; ++e)
                s += static_cast<U>(W1[(c0 + c) * d_model + e]) * static_cast<U>(xq[i * X.row_stride + e]);
              ht[c * QC + i] = s;
            }
        }
        for (index c = 0; c < nc; ++c) {
          const U bias = static_cast<U>(B1[c0 + c]);
          U* row = ht + c * QC;
          for (index i = 0; i < nq; ++i) {
            const U z = row[i] + bias;
            row[i] = z < U(0) ? U(0) : z;  // relu; NaN stays NaN
          }
        }
        // tile (keys, queries) += W2[keys, c0 : c0 + nc] * ht
        detail::synthesizer_gemm_acc(t.data + i0, t.stride, W2 + c0, hidden, static_cast<const U*>(ht), QC, t.keys, nq,
                                     nc);
      }
    }
    for (index j = 0; j < t.keys; ++j) {
      const U bias = static_cast<U>(B2[j]);
      U* row = t.key_row(j);
      for (index i = 0; i < t.queries; ++i) row[i] += bias;
    }
  }

  /// Throws salt::error naming `api` when a size is negative, a weight is missing, x is not
  /// (B, 1 or Hq, Lq, d_model), `heads` is not 1 or Hq, or the call has more keys than max_len.
  void check(const problem_dims& dims, const char* api) const {
    detail::require(d_model >= 0 && hidden >= 0, api, ": synthesizer_dense has a negative size (d_model ", d_model,
                    ", hidden ", hidden, ")");
    detail::require((w1 && b1 && w2 && b2) || max_len * hidden == 0, api, ": synthesizer_dense is missing a weight");
    detail::require(x.batch == dims.batch && (x.heads == 1 || x.heads == dims.q_heads) && x.tokens == dims.lq &&
                        x.features == d_model,
                    api, ": synthesizer_dense x is (", x.batch, ", ", x.heads, ", ", x.tokens, ", ", x.features,
                    ") but must be (", dims.batch, ", ",
                    dims.q_heads == 1 ? std::string("1") : "1 or " + std::to_string(dims.q_heads), ", ", dims.lq, ", ",
                    d_model, ")");
    detail::require(x.data != nullptr || x.tokens * x.features == 0, api, ": synthesizer_dense x is null");
    detail::check_synthesizer_positions(api, "synthesizer_dense",
                                        "synthesizer_dense W2 makes " + std::to_string(max_len) + " logits per query",
                                        heads, max_len, 0, dims, false);
  }
};

}  // namespace salt
