#pragma once
/// \file linformer_backward.hpp
/// Gradients of Linformer attention (linformer.hpp) by Q, K, V and by the projections E and F, so that the
/// projections can be learned (examples/train_linformer.cpp). With K' = E K and V' = F V (the first n
/// positions of a sequence of n valid keys), the exact engine's backward (attention_backward.hpp) gives dQ, dK'
/// and dV'; then
///
///     dK = E^T dK',   dV = F^T dV',   dE = dK' K^T,   dF = dV' V^T
///
/// summed over the batch items and heads that share a pair of projections, in a fixed order: gradients are
/// bit-identical for any thread count.
///
///     auto fwd = salt::linformer_attention_with_lse(q, k, v, proj);
///     auto g = salt::linformer_backward(q, k, v, proj, fwd, dout);  // g.dq, g.dk, g.dv, g.projections.de / .df

#include <Eigen/Core>

#include <algorithm>
#include <type_traits>
#include <utility>
#include <vector>

#include "attention_backward.hpp"
#include "config.hpp"
#include "detail/engine_backward.hpp"
#include "detail/gemm.hpp"
#include "detail/parallel.hpp"
#include "detail/workspace.hpp"
#include "linformer.hpp"
#include "merge.hpp"
#include "run_options.hpp"
#include "tensor.hpp"

namespace salt {

/// The gradients of a loss by a Linformer layer's projections, one (k, max_len) matrix per stored pair
/// (linformer_projections::heads(), the same index as stored_e and stored_f): de by E, df by F. Under shared_kv
/// one matrix serves keys and values; de holds its whole gradient and df is empty.
template <class T>
struct linformer_projection_gradients {
  std::vector<row_matrix<T>> de;  ///< (k, max_len) per stored pair
  std::vector<row_matrix<T>> df;  ///< (k, max_len) per stored pair; empty under shared_kv
};

/// The gradients of one Linformer head: by its inputs (as attention_gradients) and by the projections.
template <class T>
struct linformer_gradients {
  row_matrix<T> dq;  ///< (Lq, d)
  row_matrix<T> dk;  ///< (L, d)
  row_matrix<T> dv;  ///< (L, dv)
  linformer_projection_gradients<T> projections;  ///< by E and F
};

/// Gradients of multi-head Linformer attention over strided views: dq, dk and dv of a loss whose gradient by the
/// forward's output is dout, and the projections' gradients, returned. out and lse are what linformer_attention
/// wrote for the same inputs, projections, mask and score. Shapes as linformer_attention, with dq as q, dk as k,
/// dv as v; positions past a batch item's valid keys get zero gradients (and add nothing to dE, dF).
///
/// Time: the exact backward over the k projected keys, O(B Hq Lq k (d + dv)), plus O(B Hkv k L (d + dv)) for the
/// projections and their gradients. Memory: the projected keys and values and their gradients, 2 B Hkv k (d + dv)
/// values, the projections' gradients, and the exact backward's workspaces. Throws salt::error naming
/// salt::linformer_backward for the errors of linformer_attention and of attention_backward; nothing is written
/// then.
template <class T, class Mask = no_mask>
  requires(std::is_same_v<T, float> || std::is_same_v<T, double>)
linformer_projection_gradients<T> linformer_backward(const input_view<T>& q, const input_view<T>& k,
                                                     const input_view<T>& v, const input_view<T>& out,
                                                     const std::type_identity_t<lse_view<const T>>& lse,
                                                     const input_view<T>& dout, const tensor_view<T>& dq,
                                                     const tensor_view<T>& dk, const tensor_view<T>& dv,
                                                     const linformer_projections<T>& proj, const Mask& mask = {},
                                                     const dot_product& score = {}, const run_options& opts = {}) {
  detail::check_linformer_mask<Mask>();
  constexpr const char* api = "salt::linformer_backward";
  detail::check_backward(q, k, v, out, lse, dout, dq, dk, dv, opts, api);
  detail::check_linformer(q, k, v, proj, mask, score, api);

  const index B = k.batch, H = k.heads, L = k.tokens, kp = proj.k(), d = k.features, dvf = v.features;
  const index max_len = proj.max_len(), pairs = proj.heads();
  const bool one_matrix = proj.sharing() == linformer_sharing::shared_kv;
  detail::aligned_buffer<T> kbuf(B * H * kp * d), vbuf(B * H * kp * dvf), dkbuf(B * H * kp * d), dvbuf(B * H * kp * dvf);
  detail::project_keys_values(k, v, proj, mask, q.tokens, kbuf.data(), vbuf.data(), opts.threads);
  const auto heads_of = [&](T* data, index w) { return tensor_view<T>::bhld(data, B, H, kp, w); };
  const no_mask every_key{};
  detail::run_engine_backward(detail::backward_problem<T, no_mask, dot_product>{
      q, heads_of(kbuf.data(), d), heads_of(vbuf.data(), dvf), out, dout, lse, dq, heads_of(dkbuf.data(), d),
      heads_of(dvbuf.data(), dvf), every_key, score, opts.threads});

  const auto valid = [&](index b) { return detail::valid_keys_of(mask, problem_shape{q.tokens, L, b, 0}); };
  // dK = E^T dK' and dV = F^T dV' per (batch item, head, keys or values, chunk of positions); padded positions 0.
  constexpr index chunk = detail::linformer_row_chunk;
  const index position_chunks = (L + chunk - 1) / chunk;
  const index input_items = B * H * 2 * position_chunks;
  detail::parallel_for(input_items, detail::thread_count(opts.threads, input_items), [] { return detail::no_workspace{}; },
                       [&](index it, detail::no_workspace&) {
                         const index c = it % position_chunks, rest = it / position_chunks;
                         const bool values = rest % 2 != 0;
                         const index bh = rest / 2, b = bh / H, h = bh % H;
                         const index w = values ? dvf : d, n = valid(b);
                         const index l0 = c * chunk, l1 = std::min(L, l0 + chunk), live = std::clamp<index>(n - l0, 0, l1 - l0);
                         const auto m = values ? proj.f(h) : proj.e(h);
                         const head_view<T> dst = values ? dv.head(b, h) : dk.head(b, h);
                         const T* grad = (values ? dvbuf.data() : dkbuf.data()) + bh * kp * w;
                         detail::gemm<T, true, false>(live, w, kp, m.data() + l0, max_len, grad, w, dst.row(l0),
                                                      dst.row_stride, detail::gemm_update::overwrite);
                         for (index l = l0 + live; l < l1; ++l) std::fill_n(dst.row(l), w, T(0));
                       });

  // dE = sum dK' K^T and dF = sum dV' V^T over the (batch item, head)s of each stored pair, in that order, per
  // (pair, E or F, chunk of rows); under shared_kv both terms go to the one matrix, keys before values.
  linformer_projection_gradients<T> g;
  for (index p = 0; p < pairs; ++p) {
    g.de.push_back(row_matrix<T>::Zero(kp, max_len));
    if (!one_matrix) g.df.push_back(row_matrix<T>::Zero(kp, max_len));
  }
  const index row_chunks = (kp + chunk - 1) / chunk, matrices = one_matrix ? 1 : 2;
  const index projection_items = pairs * matrices * row_chunks;
  detail::parallel_for(
      projection_items, detail::thread_count(opts.threads, projection_items), [] { return detail::no_workspace{}; },
      [&](index it, detail::no_workspace&) {
        const index c = it % row_chunks, rest = it / row_chunks;
        const bool f_matrix = rest % matrices != 0;
        const index p = rest / matrices, r0 = c * chunk, rows = std::min(chunk, kp - r0);
        T* target = (f_matrix ? g.df : g.de)[static_cast<std::size_t>(p)].data() + r0 * max_len;
        for (index bh = 0; bh < B * H; ++bh) {
          const index b = bh / H, h = bh % H;
          if (proj.pair_of(h) != p) continue;
          for (const bool values : {false, true}) {
            if (values != f_matrix && !one_matrix) continue;
            const index w = values ? dvf : d;
            const head_view<const T> x = values ? v.head(b, h) : k.head(b, h);
            const T* grad = (values ? dvbuf.data() : dkbuf.data()) + (bh * kp + r0) * w;
            detail::gemm<T, false, true>(rows, valid(b), w, grad, w, x.data, x.row_stride, target, max_len,
                                         detail::gemm_update::chain);
          }
        }
      });
  return g;
}

/// Gradients of one Linformer head: q (Lq, d), k (L, d), v (L, dv), the projections, the forward's result
/// (linformer_attention_with_lse with the same projections, mask and score) and dout (Lq, dv). Cost and errors as
/// the multi-head overload.
template <class DQ, class DK, class DV, class DO, class Mask = no_mask>
linformer_gradients<typename DQ::Scalar> linformer_backward(const Eigen::MatrixBase<DQ>& q, const Eigen::MatrixBase<DK>& k,
                                                            const Eigen::MatrixBase<DV>& v,
                                                            const linformer_projections<typename DQ::Scalar>& proj,
                                                            const attention_result<typename DQ::Scalar>& forward,
                                                            const Eigen::MatrixBase<DO>& dout, const Mask& mask = {},
                                                            const dot_product& score = {}, const run_options& opts = {}) {
  using T = typename DQ::Scalar;
  detail::one_head_backward<T> io(q.derived(), k.derived(), v.derived(), forward, dout.derived(), "salt::linformer_backward");
  linformer_gradients<T> g{row_matrix<T>(), row_matrix<T>(), row_matrix<T>(), {}};
  g.projections = linformer_backward<T, Mask>(io.view(io.q), io.view(io.k), io.view(io.v), io.view(io.out), io.lse_in(),
                                              io.view(io.dout), tensor_view<T>::of(io.g.dq), tensor_view<T>::of(io.g.dk),
                                              tensor_view<T>::of(io.g.dv), proj, mask, score, opts);
  g.dq = std::move(io.g.dq), g.dk = std::move(io.g.dk), g.dv = std::move(io.g.dv);
  return g;
}

}  // namespace salt
