#pragma once
/// \file linear/attention.hpp
/// Kernelized linear attention (Katharopoulos et al. 2020; Performer, Choromanski et al. 2021): softmax(Q
/// K^T) is replaced by phi(Q) phi(K)^T for a feature map phi, so a head costs O(L m (d + dv)), not O(L^2 d).
///
///     salt::favor_plus<float> phi(salt::random_features<float>::orthogonal(256, 64, /*seed=*/7));
///     auto out = salt::linear_attention(q, k, v, phi);                       // one head, non-causal
///     auto dec = salt::linear_attention(q, k, v, phi, salt::causal{});       // causal (chunked)
///     salt::linear_attention(qv, kv, vv, outv, salt::elu_plus_one{}, salt::causal{} & salt::key_padding{lens});
///
/// Forms. Non-causal: out = phi(Q) (phi(K)^T V) / (phi(Q) . sum_j phi(k_j)). Causal: the same with the sums
/// over the keys each query may see, computed in chunks of C queries: the state S = sum phi(k) v^T, z = sum
/// phi(k) of all earlier chunks is read with one GEMM, the chunk's own keys through the masked C x C matrix
/// phi(Q_c) phi(K_c)^T (quadratic only inside the chunk), and the state is then advanced with phi(K_c)^T V_c.
/// Every step is a GEMM; there are no per-token rank-1 updates.
///
/// Masks. A state can follow a prefix of the keys or drop keys, not an arbitrary set of pairs, so the kernel
/// takes the masks that say they are prefix-shaped (salt::prefix_mask: `causal` with its alignment and
/// offset, as for exact attention, or a user's mask with last_key), key-only (salt::key_length_mask:
/// `key_padding`, `no_mask`, a user's mask with valid_keys), or both (`causal & key_padding`). A prefix mask
/// selects the chunked form. Key padding is applied after phi (elu(0) + 1 is not 0).
///
/// Stabilisation. Maps with a log scale (FAVOR+, trig) give phi(x) = exp(s(x)) f(x). A query's scale cancels
/// between numerator and denominator and is dropped. A key is weighted exp(s(k) - r) against a running
/// reference r, the log-offset of the state: r is raised, and S, z rescaled by exp(r_old - r_new), only when
/// a key's s exceeds r by more than a margin (2^40 in float, 2^320 in double), so weights stay below that
/// margin and nothing overflows. In the causal form a new reference starts a new pass over the chunk (same
/// GEMM shapes, the other keys zeroed), so a query's output depends only on the keys it may see: changing a
/// later token (by finite values) leaves earlier outputs unchanged, bit for bit. The non-causal form raises
/// the reference per block of keys.
///
/// Denominator guard: a row whose denominator is below the smallest normal number in magnitude (zero when
/// the row may see no key, or all its features underflow) outputs zeros; otherwise out = numerator /
/// denominator. With positive maps (FAVOR+, ReLU with epsilon, elu + 1) the output is then a convex
/// combination of the visible values. NaN passes through.
///
/// GQA: query head h reads K/V head h / (Hq / Hkv). Non-causal calls build each K/V head's state once and
/// share it across its query heads; causal calls run each query head independently. Threads run over
/// (batch, head) items, and a causal head of more than 1024 queries over blocks of its queries too (a scan
/// of the blocks' states: causal_scan); results are identical for every thread count.

#include <Eigen/Core>

#include <algorithm>
#include <cmath>
#include <limits>
#include <type_traits>

#include "../config.hpp"
#include "../detail/checks.hpp"
#include "../detail/through_float.hpp"
#include "../precision.hpp"
#include "../detail/gemm.hpp"
#include "../detail/one_head.hpp"
#include "../detail/parallel.hpp"
#include "../detail/simd.hpp"
#include "../detail/workspace.hpp"
#include "../error.hpp"
#include "../mask.hpp"
#include "../run_options.hpp"
#include "../tensor.hpp"
#include "causal.hpp"
#include "feature_map.hpp"
#include "workspace.hpp"

namespace salt {

/// The masks linear attention takes: prefix-shaped, key-only, or both (mask/capabilities.hpp).
template <class M>
concept linear_attention_mask = prefix_mask<M> || key_length_mask<M>;

namespace detail {

template <class Mask>
constexpr void check_linear_mask() {
  static_assert(linear_attention_mask<Mask>,
                "salt::linear_attention takes masks that are prefix-shaped or key-only, or both (salt::prefix_mask, "
                "salt::key_length_mask: causal, key_padding, causal & key_padding, no_mask): kernelized attention "
                "sums over keys through a state, which can follow a prefix (causal) or drop keys (padding) but not "
                "an arbitrary set of (query, key) pairs.");
}

/// Non-causal queries of one head against the finished state in ws.
template <class T, class Map>
void noncausal_queries(const Map& map, linear_workspace<T>& ws, const head_view<const T>& q, const head_view<T>& out) {
  for (index i0 = 0; i0 < q.rows; i0 += ws.chunk) {
    const index n = std::min(ws.chunk, q.rows - i0);
    map_rows(map, q, i0, n, ws.m, ws.phi_q.data(), ws.cq.data());
    read_state(ws, n, 0);
    for (index i = 0; i < n; ++i) write_row(ws.num(i), ws.dens[i], ws.dv, out.row(i0 + i));
  }
}

/// Every (batch item, head) of a call: causal heads (chunked, scanned when long) or non-causal states then queries.
template <class T, class Mask, class Map>
void linear_attention_impl(const tensor_view<const T>& q, const tensor_view<const T>& k,
                           const tensor_view<const T>& v, const tensor_view<T>& out, const Map& map, const Mask& mask,
                           const run_options& opts, index chunk) {
  const index B = q.batch, Hq = q.heads, Hkv = k.heads, dv = v.features;
  if (B == 0 || Hq == 0 || q.tokens == 0 || dv == 0) return;
  const index m = map.features(q.features), group = Hq / Hkv;
  auto length = [&](index b) { return valid_keys_of(mask, problem_shape{q.tokens, k.tokens, b, 0}); };
  auto make_workspace = [&] { return linear_workspace<T>(chunk, m, dv); };

  if constexpr (prefix_mask<Mask>) {
    const index shift = mask.last_key(0, problem_shape{q.tokens, k.tokens, 0, 0});
    const index heads = B * Hq, block = linear_scan_block(q.tokens, chunk);
    auto head_of = [&](index it) {
      const index b = it / Hq, h = it % Hq;
      return causal_head_views<T>{q.head(b, h), k.head(b, h / group), v.head(b, h / group), out.head(b, h), length(b)};
    };
    if (q.tokens > block) {
      causal_scan<T>(map, heads, q.tokens, block, shift, m, dv, head_of, make_workspace, opts);
      return;
    }
    parallel_for(heads, thread_count(opts.threads, heads), make_workspace, [&](index it, linear_workspace<T>& ws) {
      const causal_head_views<T> h = head_of(it);
      causal_head(map, ws, h.q, h.k, h.v, h.out, shift, h.len);
    });
  } else {
    // The state of every (batch item, K/V head): S (m, dv) then z (m).
    const index per = (dv + 1) * m, states_count = B * Hkv, items = B * Hq;
    aligned_buffer<T> states(states_count * per);
    parallel_for(states_count, thread_count(opts.threads, states_count), make_workspace,
                 [&](index it, linear_workspace<T>& ws) {
                   const index b = it / Hkv, h = it % Hkv;
                   ws.reset_state();
                   for (index j0 = 0, len = length(b); j0 < len; j0 += chunk)
                     absorb_keys(map, ws, k.head(b, h), v.head(b, h), j0, std::min(chunk, len - j0));
                   ws.save_state(states.data() + it * per);
                 });
    parallel_for(items, thread_count(opts.threads, items), make_workspace, [&](index it, linear_workspace<T>& ws) {
      const index b = it / Hq, h = it % Hq;
      ws.load_state(states.data() + (b * Hkv + h / group) * per);
      noncausal_queries(map, ws, q.head(b, h), out.head(b, h));
    });
  }
}

}  // namespace detail

/// Multi-head linear attention over strided (batch, heads, tokens, features) views, written into `out`.
/// `mask` is prefix-shaped, key-only or both (linear_attention_mask): no_mask, key_padding, causal (any
/// alignment and offset), causal & key_padding, or a user's mask offering last_key and/or valid_keys; a
/// prefix mask selects the chunked form. The map's features are computed in the inputs' type T.
///
/// Shapes: q (B, Hq, Lq, d), k (B, Hkv, Lk, d), v (B, Hkv, Lk, dv), out (B, Hq, Lq, dv); Hkv divides Hq. The
/// views and the map are read during the call, nothing is kept. Time per head O((Lq + Lk) m (d + dv)) with
/// m = map.features(d), plus O(Lq C (m + dv)) in the causal form for each chunk's own keys (C = 64 queries).
/// Memory beyond out: a workspace per thread of O(m (dv + C)) values, the B * Hkv states (m (dv + 1) values
/// each) of a non-causal call, and the block states of causal heads longer than one scan block. Throws
/// salt::error naming salt::linear_attention for mismatched shapes, an out that overlaps an input, a map or
/// mask that fails its check.
template <storage_type T, class Map, class Mask = no_mask>
  requires feature_map<Map, accumulator_t<T>>
void linear_attention(const input_view<T>& q, const input_view<T>& k, const input_view<T>& v,
                      const tensor_view<T>& out, const Map& map,
                      const Mask& mask = {}, const run_options& opts = {}) {
  detail::check_linear_mask<Mask>();
  constexpr const char* api = "salt::linear_attention";
  if constexpr (is_half_width<T>) {  // bf16, fp16: float copies (detail/through_float.hpp)
    detail::through_float(
        api, "linear attention",
        [&](const auto& qf, const auto& kf, const auto& vf, const auto& of) { linear_attention<float>(qf, kf, vf, of, map, mask, opts); },
        out, q, k, v);
  } else {
    detail::check_qkv(q, k, v, out, opts, api, "linear attention");
    detail::check_policies(detail::dims_of(q, k, v), api, mask);
    detail::check_valid_keys(mask, k.batch, q.tokens, k.tokens, api);
    detail::check_feature_map(map, q.features, api);
    detail::linear_attention_impl<T>(q, k, v, out, map, mask, opts, detail::linear_default_chunk);
  }
}

/// One head: q (Lq, d), k (Lk, d), v (Lk, dv) -> a new (Lq, dv) matrix. Row-major inputs are read in place; a
/// column-major one is copied once. `mask` as for the multi-head form (key_padding with one length). Cost and
/// errors as the multi-head overload.
template <class DQ, class DK, class DV, class Map, class Mask = no_mask>
  requires feature_map<Map, accumulator_t<typename DQ::Scalar>>
row_matrix<typename DQ::Scalar> linear_attention(const Eigen::MatrixBase<DQ>& q, const Eigen::MatrixBase<DK>& k,
                                                 const Eigen::MatrixBase<DV>& v, const Map& map, const Mask& mask = {},
                                                 const run_options& opts = {}) {
  using T = typename DQ::Scalar;
  static_assert(std::is_same_v<T, typename DK::Scalar> && std::is_same_v<T, typename DV::Scalar>,
                "salt::linear_attention: q, k and v must have the same scalar type.");
  detail::check_linear_mask<Mask>();
  return detail::one_head<T>(
      [&](const auto& qv, const auto& kv, const auto& vv, const auto& outv) {
        linear_attention<T>(qv, kv, vv, outv, map, mask, opts);
      },
      q, k, v);
}

}  // namespace salt
