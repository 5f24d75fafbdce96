#pragma once
/// \file detail/sparse_transformer_passes.hpp
/// The Sparse Transformer's causal patterns as two engine passes merged by their log-sum-exp, so that they
/// cost their allowed pairs, not whole key blocks per strided key.
///
/// Why passes and not gathered keys: in `strided{s} & causal{}` the lattice keys of a tile of 64 consecutive
/// queries are 64 consecutive keys per period, and each of them is seen by exactly one query of the tile, so
/// a tile pays 64 pairs for every allowed one, however its keys are gathered. The queries that share lattice
/// keys are those of one residue modulo s: rows r, r + s, r + 2s, ... of Q, K and V, which are a strided view
/// of the inputs, no copy. So:
///  - strided & causal = band (0 <= p - j < s: a causal sliding window) + lattice (p - j = m s, m >= 1:
///    causal attention strictly before each row, within each residue class, one "head" per residue);
///  - fixed & causal = own block (fixed with no summary, & causal) + the summary keys of earlier blocks
///    (c of every l keys: gathered once per head into a compact copy, seen by every query of later blocks).
/// The two parts of a pattern are disjoint and together are its pairs; merge_by_lse adds them up, so the
/// result is the softmax over the pattern, to rounding (the bits differ from one pass over the pattern's
/// blocks, which salt used before). Memory per call O(L (d + dv)) for the partial results and the gathered
/// summaries; results do not depend on the number of threads.

#include <algorithm>
#include <array>
#include <concepts>
#include <cstdint>
#include <type_traits>
#include <vector>

#include "../config.hpp"
#include "../mask/causal.hpp"
#include "../mask/compose.hpp"
#include "../mask/sliding_window.hpp"
#include "../mask/sparse_transformer.hpp"
#include "../score/dot_product.hpp"
#include "../tensor.hpp"
#include "engine.hpp"
#include "merge_rows.hpp"
#include "parallel.hpp"
#include "workspace.hpp"

namespace salt::detail {

/// Which Sparse Transformer pattern a mask type is, when it is one of the causal forms run as passes.
template <class Mask>
struct sparse_transformer_form {
  using pattern = void;
};
/// strided or fixed: the patterns whose causal forms run as passes.
template <class P>
concept sparse_transformer_pattern = std::same_as<P, strided> || std::same_as<P, fixed>;
template <sparse_transformer_pattern P>
struct sparse_transformer_form<intersect_mask<P, causal<causal_alignment::bottom_right>>> {
  using pattern = P;
  static const P& of(const intersect_mask<P, causal<>>& m) noexcept { return m.a; }
  static const causal<>& diagonal(const intersect_mask<P, causal<>>& m) noexcept { return m.b; }
};
template <sparse_transformer_pattern P>
struct sparse_transformer_form<intersect_mask<causal<causal_alignment::bottom_right>, P>> {
  using pattern = P;
  static const P& of(const intersect_mask<causal<>, P>& m) noexcept { return m.b; }
  static const causal<>& diagonal(const intersect_mask<causal<>, P>& m) noexcept { return m.a; }
};

/// Whether a (mask, score) pair may run as passes: a causal Sparse Transformer pattern under the plain
/// scaled dot product (other scores see tile positions, which the passes renumber).
template <class Mask, class Score>
inline constexpr bool runs_as_passes =
    !std::is_void_v<typename sparse_transformer_form<Mask>::pattern> && std::is_same_v<Score, dot_product>;

/// Whether a causal Sparse Transformer pattern runs as passes at these sizes: Lq = Lk, the diagonal not
/// shifted, more than one period or block in the sequence, and summaries that are neither none nor every key.
/// Otherwise the engine's single pass over its blocks is the way.
template <class Mask>
bool takes_passes(const Mask& mask, index lq, index lk) noexcept {
  using form = sparse_transformer_form<Mask>;
  using pattern = typename form::pattern;
  if (lq != lk || lq == 0 || form::diagonal(mask).offset != 0) return false;
  const pattern& p = form::of(mask);
  if constexpr (std::is_same_v<pattern, strided>) return p.stride < lq;  // else no lattice key but the diagonal
  else return p.block < lq && p.summary > 0 && p.summary < p.block;
}

/// Rows per residue of strided{s} over L rows: residues [0, L mod s) have L / s + 1, the others L / s; the
/// lattice part stores residue r's rows from first_row(r) on.
struct residue_classes {
  index s = 1, L = 0;
  index short_rows() const noexcept { return L / s; }
  index longer() const noexcept { return L % s; }  ///< residues with one row more
  index first_row(index r) const noexcept {
    return r <= longer() ? r * (short_rows() + 1) : longer() * (short_rows() + 1) + (r - longer()) * short_rows();
  }
  /// The two groups of residues of equal length: {first residue, end, rows each}.
  std::array<std::array<index, 3>, 2> groups() const noexcept {
    return {{{0, longer(), short_rows() + 1}, {longer(), s, short_rows()}}};
  }
};

/// Rows of gathered summaries fixed{l, c} & causal reads for L rows: c of every block before the last row's.
inline index summary_rows(const fixed& f, index L) noexcept { return (L - 1) / f.block * f.summary; }

/// Compact summary keys of `fixed & causal`: query p sees compact key j when j < (p / block) * summary,
/// i.e. the summaries of the blocks before its own (Lq = the sequence, Lk = the gathered summaries).
struct earlier_summaries {
  index block = 1, summary = 0;

  index seen(index q) const noexcept { return q / block * summary; }  // keys [0, seen(q))
  bool allows(index q, index k, const problem_shape&) const noexcept { return k < seen(q); }
  static constexpr bool is_always_full() { return false; }
  /// Key k is seen from the block after the one whose summaries hold it.
  query_bits allowed_queries(index k, index q_begin, index count, const problem_shape&) const noexcept {
    return allow_interval(q_begin, count, (k / summary + 1) * block, q_begin + count);
  }
  void plan(const block_query& bq, block_plan& out) const noexcept {
    out.add_keys(bq, 0, seen(bq.q_end - 1), 0, seen(bq.q_begin));
  }
};

/// A (1, 1, rows, cols) view of rows [0, rows) of a head.
template <class T>
tensor_view<T> whole_head(const head_view<T>& x) noexcept {
  return {x.data, 1, 1, x.rows, x.cols, 0, 0, x.row_stride};
}

/// The two partial results of one head, and where merged row i lies in each.
template <class T>
struct two_parts {
  aligned_buffer<T> out, lse;  // (2, L, dv) and (2, L): part 0, then part 1
  std::vector<index> rows;     // (2, L): row of part r holding merged row i
  index length = 0, dv = 0;

  two_parts(index L, index dv_) : out(2 * L * dv_), lse(2 * L), rows(static_cast<std::size_t>(2 * L)), length(L), dv(dv_) {}
  T* out_of(int part) const noexcept { return out.data() + part * length * dv; }
  T* lse_of(int part) const noexcept { return lse.data() + part * length; }
  tensor_view<T> out_view(int part, index heads, index tokens, index first_row) const noexcept {
    return {out_of(part) + first_row * dv, 1, heads, tokens, dv, 0, tokens * dv, dv};
  }
  lse_view<T> lse_at(int part, index first_row, index tokens) const noexcept { return {lse_of(part) + first_row, 0, tokens}; }
};

/// Runs the engine over (q, k, v) views of one head's pass, into a part's rows.
template <class T, class Mask>
void run_pass(const tensor_view<const T>& q, const tensor_view<const T>& k, const tensor_view<const T>& v,
              const tensor_view<T>& out, const lse_view<T>& lse, const Mask& mask, const dot_product& score, int threads) {
  run_engine(engine_problem<T, Mask, dot_product>{q, k, v, out, lse, mask, score, threads});
}

/// Rows r, r + s, r + 2s, ... for residues [r0, r1), all of `tokens` rows: one head per residue.
template <class T>
tensor_view<const T> residue_heads(const head_view<const T>& x, index s, index r0, index r1, index tokens) noexcept {
  return {x.data + r0 * x.row_stride, 1, r1 - r0, tokens, x.cols, 0, x.row_stride, s * x.row_stride};
}

/// strided{s} & causal of one head into `parts`: part 0 the band, part 1 the lattice (residue-major rows).
template <class T>
void strided_passes(const head_view<const T>& Q, const head_view<const T>& K, const head_view<const T>& V, index s,
                    const dot_product& score, int threads, two_parts<T>& parts) {
  const index L = Q.rows;
  run_pass<T>(whole_head(Q), whole_head(K), whole_head(V), parts.out_view(0, 1, L, 0), parts.lse_at(0, 0, L),
              sliding_window{.left = s - 1, .right = 0}, score, threads);
  const residue_classes classes{s, L};
  const causal<> strictly_before{.offset = -1};
  for (const auto& [r0, r1, tokens] : classes.groups()) {
    if (r0 >= r1 || tokens == 0) continue;
    run_pass<T>(residue_heads(Q, s, r0, r1, tokens), residue_heads(K, s, r0, r1, tokens),
                residue_heads(V, s, r0, r1, tokens), parts.out_view(1, r1 - r0, tokens, classes.first_row(r0)),
                parts.lse_at(1, classes.first_row(r0), tokens), strictly_before, score, threads);
  }
  for (index p = 0; p < L; ++p) {
    parts.rows[static_cast<std::size_t>(p)] = p;
    parts.rows[static_cast<std::size_t>(L + p)] = classes.first_row(p % s) + p / s;
  }
}

/// fixed{l, c} & causal of one head into `parts`: part 0 the own blocks, part 1 the earlier blocks' summaries,
/// whose keys and values are gathered into `summaries` first ((S, d) then (S, dv), S = c * (blocks before
/// the last row's)).
template <class T>
void fixed_passes(const head_view<const T>& Q, const head_view<const T>& K, const head_view<const T>& V,
                  const fixed& f, const dot_product& score, int threads, two_parts<T>& parts,
                  aligned_buffer<T>& summaries) {
  const index L = Q.rows, d = K.cols, dv = V.cols, l = f.block, c = f.summary;
  run_pass<T>(whole_head(Q), whole_head(K), whole_head(V), parts.out_view(0, 1, L, 0), parts.lse_at(0, 0, L),
              fixed{.block = l, .summary = 0} & causal<>{}, score, threads);
  const index S = summary_rows(f, L);
  T* ks = summaries.data();
  T* vs = summaries.data() + S * d;
  for (index j = 0; j < S; ++j) {
    const index key = j / c * l + (l - c) + j % c;
    copy_row(K.row(key), d, ks + j * d);
    copy_row(V.row(key), dv, vs + j * dv);
  }
  const tensor_view<const T> kv{ks, 1, 1, S, d, 0, 0, d}, vv{vs, 1, 1, S, dv, 0, 0, dv};
  run_pass<T>(whole_head(Q), kv, vv, parts.out_view(1, 1, L, 0), parts.lse_at(1, 0, L), earlier_summaries{l, c}, score,
              threads);
  for (index p = 0; p < L; ++p) parts.rows[static_cast<std::size_t>(p)] = parts.rows[static_cast<std::size_t>(L + p)] = p;
}

/// Runs a causal Sparse Transformer pattern as passes when takes_passes says so; returns false, having done
/// nothing, otherwise.
template <class T, class Mask>
bool run_sparse_transformer_passes(const engine_problem<T, Mask, dot_product>& problem) {
  using form = sparse_transformer_form<Mask>;
  using pattern = typename form::pattern;
  const index L = problem.q.tokens, d = problem.q.features, dv = problem.v.features;
  if (!takes_passes(problem.mask, L, problem.k.tokens)) return false;
  const pattern& p = form::of(problem.mask);
  two_parts<T> parts(L, dv);
  aligned_buffer<T> summaries;
  if constexpr (std::is_same_v<pattern, fixed>) summaries = aligned_buffer<T>(summary_rows(p, L) * (d + dv));
  const index group = problem.q.heads / problem.k.heads;
  const int threads = thread_count(problem.threads, L);
  for (index b = 0; b < problem.q.batch; ++b)
    for (index h = 0; h < problem.q.heads; ++h) {
      const auto Q = problem.q.head(b, h), K = problem.k.head(b, h / group), V = problem.v.head(b, h / group);
      if constexpr (std::is_same_v<pattern, strided>) strided_passes(Q, K, V, p.stride, problem.score, threads, parts);
      else fixed_passes(Q, K, V, p, problem.score, threads, parts, summaries);
      const T* outs[2] = {parts.out_of(0), parts.out_of(1)};
      const T* lses[2] = {parts.lse_of(0), parts.lse_of(1)};
      const lse_parts_view<T> both{outs, lses, L, dv, dv, 1, parts.rows.data()};
      T* lse = problem.lse.data ? problem.lse.head(b, h) : nullptr;
      constexpr index rows_per_item = 256;
      parallel_for((L + rows_per_item - 1) / rows_per_item, threads, [] { return no_workspace{}; },
                   [&](index item, no_workspace&) {
                     const index r0 = item * rows_per_item, r1 = std::min(L, r0 + rows_per_item);
                     merge_rows_by_lse(both, r0, r1, problem.out.head(b, h), lse);
                   });
    }
  return true;
}

}  // namespace salt::detail
