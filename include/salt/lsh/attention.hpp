#pragma once
/// \file lsh/attention.hpp
/// The LSH attention driver: options and inputs checked, then each head hashed, sorted and gathered into
/// sorted copies (lsh/prepare.hpp, lsh/workspace.hpp), the engine run once over all of them with the chunk
/// band mask and the self score (lsh/chunk_mask.hpp), and the rounds unsorted and merged by their LSE
/// (merge.hpp). Each step is a parallel loop of independent work items, each computed the same way whatever
/// thread takes it, so results do not depend on the number of threads. The semantics are in lsh.hpp.

#include <Eigen/Core>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <span>
#include <type_traits>
#include <vector>

#include "../config.hpp"
#include "../detail/checks.hpp"
#include "../detail/through_float.hpp"
#include "../precision.hpp"
#include "../detail/engine.hpp"
#include "../detail/one_head.hpp"
#include "../detail/parallel.hpp"
#include "../error.hpp"
#include "../mask/key_padding.hpp"
#include "../mask/none.hpp"
#include "../merge.hpp"
#include "../run_options.hpp"
#include "../tensor.hpp"
#include "chunk_mask.hpp"
#include "options.hpp"
#include "prepare.hpp"
#include "workspace.hpp"

namespace salt {
namespace detail {

/// Every check of lsh_attention, in the order a user would fix them.
template <class T, class Padding>
void check_lsh_call(const tensor_view<const T>& qk, const tensor_view<const T>& v, const tensor_view<T>& out,
                    const lsh_rotations<T>& rot, const lsh_options& opt, const Padding& padding,
                    const run_options& run, const char* api) {
  check_view(qk, api, "qk");
  check_view(v, api, "v");
  check_view(out, api, "out");
  check_lsh_options(opt, api);
  const index B = qk.batch, H = qk.heads, L = qk.tokens, d = qk.features, dv = v.features;
  require(v.batch == B && v.heads == H && v.tokens == L, api, ": v is (", v.batch, ", ", v.heads, ", ", v.tokens,
          ", ", dv, ") but qk is (", B, ", ", H, ", ", L, ", ", d, ")");
  require(out.batch == B && out.heads == H && out.tokens == L && out.features == dv, api, ": out is (", out.batch,
          ", ", out.heads, ", ", out.tokens, ", ", out.features, ") but must be (", B, ", ", H, ", ", L, ", ", dv, ")");
  check_not_in_place(out, api, "LSH attention", qk, v);
  check_run_options(run, api);
  check_lsh_rotations(rot, opt, H, d, api);
  check_policies(problem_dims{B, H, H, L, L, d, dv}, api, padding);
}

/// Step 4: the engine once over every head's sorted rows, the keys being the queries (scaled per key by the
/// score), with the chunk band mask and the self score.
template <class T>
void lsh_attend(const lsh_shape& s, const lsh_options& opt, bool keys_missing, lsh_workspace<T>& ws, int threads) {
  const index H = s.heads, rows = s.rows;
  const bool pure = s.hashed && opt.bucket_pure;
  const lsh_band band{s.chunk, rows / s.chunk, s.hashed ? opt.chunks_before : 0, s.hashed ? opt.chunks_after : 0,
                      s.Lp};
  const lsh_chunk_mask mask{ws.pos.data(), ws.bucket.data(), H,    rows,
                            band,          opt.causal,        pure, !opt.causal && !pure && !keys_missing};
  const lsh_self_score<T> score{ws.pos.data(), ws.key_scale.data(), H, rows, band,
                                1.0 / std::sqrt(static_cast<double>(s.d))};
  const tensor_view<const T> q{ws.q.data(), s.batch, H, rows, s.d, H * rows * s.d, rows * s.d, s.d};
  const tensor_view<const T> v{ws.v.data(), s.batch, H, rows, s.dv, H * rows * s.dv, rows * s.dv, s.dv};
  const tensor_view<T> o{ws.o.data(), s.batch, H, rows, s.dv, H * rows * s.dv, rows * s.dv, s.dv};
  const lse_view<T> lse{ws.lse.data(), H * rows, rows};
  run_engine(engine_problem<T, lsh_chunk_mask, lsh_self_score<T>>{q, q, v, o, lse, mask, score, threads});
}

/// Output rows per merging work item.
inline constexpr index lsh_merge_item = 512;

/// Positions [p0, p1) of head bh merged over its rounds. `parts` is scratch of 2 * rounds pointers: every round
/// of a head lies in one buffer, so each part starts at the head's first sorted row, reached through ws.where.
template <class T>
void lsh_merge_rows(const tensor_view<T>& out, const lse_view<T>& lse, const lsh_shape& s, index bh, index p0,
                    index p1, lsh_workspace<T>& ws, std::vector<const T*>& parts) noexcept {
  const index b = bh / s.heads, h = bh % s.heads;
  std::fill_n(parts.begin(), s.rounds, ws.o.data() + bh * s.rows * s.dv);
  std::fill_n(parts.begin() + s.rounds, s.rounds, ws.lse.data() + bh * s.rows);
  const std::span<const T* const> pointers(parts);
  const lse_parts_view<T> rounds{pointers.first(static_cast<std::size_t>(s.rounds)),
                                 pointers.last(static_cast<std::size_t>(s.rounds)),
                                 s.L,
                                 s.dv,
                                 s.dv,
                                 1,
                                 ws.where.data() + bh * s.rounds * s.L};
  merge_rows_by_lse(rounds, p0, p1, out.head(b, h), lse.data ? lse.head(b, h) : nullptr);
}

/// Step 5: each position's rounds merged by their LSE (merge.hpp) into out and lse, in blocks of
/// lsh_merge_item positions.
template <class T>
void lsh_merge(const tensor_view<T>& out, const lse_view<T>& lse, const lsh_shape& s, lsh_workspace<T>& ws,
               int threads) {
  const index blocks = (s.L + lsh_merge_item - 1) / lsh_merge_item, items = s.all_heads() * blocks;
  const auto make = [&] { return std::vector<const T*>(static_cast<std::size_t>(2 * s.rounds)); };
  parallel_for(items, thread_count(threads, items), make, [&](index it, std::vector<const T*>& parts) {
    const index p0 = (it % blocks) * lsh_merge_item;
    lsh_merge_rows(out, lse, s, it / blocks, p0, std::min(p0 + lsh_merge_item, s.L), ws, parts);
  });
}

}  // namespace detail

/// Multi-head LSH attention over strided (batch, heads, tokens, features) views: qk (B, H, L, d) shared
/// queries/keys, v (B, H, L, dv), written into out (B, H, L, dv), and the merged log-sum-exp of every row
/// into `lse` when given. `padding` is no_mask, key_padding (lengths per batch item) or key_mask (per-key
/// flags, HuggingFace's attention_mask). Rotations: one head's for all, or one per head. The sorted copies
/// live in a workspace of the calling thread, kept for its next call (lsh/workspace.hpp says why).
/// The views, `rot` and the padding's data are read during the call, nothing of them is kept; cost and
/// extra memory are in lsh.hpp (O(n_hashes L (1 + before + after) chunk_length d) per head). Throws
/// salt::error naming salt::lsh_attention for bad options, mismatched shapes or rotations, an out that
/// overlaps an input, or a padding's failed check.
template <storage_type T, class Padding = no_mask>
void lsh_attention(const input_view<T>& qk, const input_view<T>& v, const tensor_view<T>& out,
                   const lse_view<accumulator_t<T>>& lse, const lsh_rotations<accumulator_t<T>>& rot,
                   const lsh_options& opt, const Padding& padding = {}, const run_options& run = {}) {
  static_assert(std::is_same_v<Padding, no_mask> || std::is_same_v<Padding, key_padding> ||
                    std::is_same_v<Padding, key_mask>,
                "salt::lsh_attention takes no_mask, key_padding or key_mask as its padding: its other masks are "
                "lsh_options' (causal, bucket_pure).");
  constexpr const char* api = "salt::lsh_attention";
  if constexpr (is_half_width<T>) {  // bf16, fp16: float copies (detail/through_float.hpp)
    detail::through_float(
        api, "LSH attention",
        [&](const auto& qkf, const auto& vf, const auto& of) { lsh_attention<float, Padding>(qkf, vf, of, lse, rot, opt, padding, run); },
        out, qk, v);
  } else {
    detail::check_lsh_call(qk, v, out, rot, opt, padding, run, api);
    if (qk.batch == 0 || qk.heads == 0 || qk.tokens == 0) return;
    const detail::lsh_shape s = detail::lsh_shape::of(qk, v.features, opt);
    detail::require(s.rows < (index{1} << 31), api, ": n_hashes * padded length = ", s.rows, " rows exceed 2^31");
    detail::lsh_workspace<T>& ws = detail::lsh_workspace<T>::for_this_thread();
    ws.reserve(s.all_heads() * s.rows, s.d, s.dv);
    const detail::lsh_keys<Padding> keys{padding, s.L};
    detail::lsh_hash(qk, rot, opt, s, keys, ws, run.threads);
    detail::lsh_sort(s, keys, opt, ws, run.threads);
    detail::lsh_gather(qk, v, s, ws, run.threads);
    detail::lsh_attend(s, opt, keys.any_missing(s), ws, run.threads);
    detail::lsh_merge(out, lse, s, ws, run.threads);
  }
}

/// Multi-head LSH attention without the log-sum-exp: as the overload above, with no lse.
template <storage_type T, class Padding = no_mask>
void lsh_attention(const input_view<T>& qk, const input_view<T>& v, const tensor_view<T>& out,
                   const lsh_rotations<accumulator_t<T>>& rot, const lsh_options& opt, const Padding& padding = {},
                   const run_options& run = {}) {
  lsh_attention<T, Padding>(qk, v, out, lse_view<accumulator_t<T>>{}, rot, opt, padding, run);
}

/// One head: qk (L, d) shared queries/keys, v (L, dv) -> a new (L, dv) matrix, with head 0 of the rotations.
/// `padding` as in the multi-head form (one length, or L flags). Row-major inputs are read in place; a
/// column-major one is copied once.
template <class DQK, class DV, class Padding = no_mask>
row_matrix<typename DQK::Scalar> lsh_attention(const Eigen::MatrixBase<DQK>& qk, const Eigen::MatrixBase<DV>& v,
                                               const lsh_rotations<accumulator_t<typename DQK::Scalar>>& rot,
                                               const lsh_options& opt, const Padding& padding = {},
                                               const run_options& run = {}) {
  using T = typename DQK::Scalar;
  static_assert(std::is_same_v<T, typename DV::Scalar>,
                "salt::lsh_attention: qk and v must have the same scalar type.");
  return detail::one_head<T>(
      [&](const auto& qk_view, const auto& v_view, const auto& out_view) {
        lsh_attention<T, Padding>(qk_view, v_view, out_view, lse_view<accumulator_t<T>>{}, rot, opt, padding, run);
      },
      qk, v);
}

}  // namespace salt
