#pragma once
/// \file backward_checks.hpp
/// The assertions of the backward tests: gradients of one head and of a grouped-query call against the textbook
/// backward (reference.hpp: naive_attention_backward) under the accuracy criterion, the naive computation in the
/// kernel's precision setting the bar.

#include <salt/attention.hpp>
#include <salt/attention_backward.hpp>

#include <algorithm>
#include <vector>

#include "catch.hpp"
#include "reference.hpp"

namespace salt::test {

/// Each gradient against the oracle: kernel, naive in T, oracle (oracle_t<T>). The floor is a few units in the last
/// place of the gradient's terms (reference_gradients::dq_terms ...), not of the gradient alone, which may cancel.
template <class T, class G, class N, class R>
void judge_gradients(const G& kernel, const N& naive, const R& ref) {
  const auto dq = judge<T>(kernel.dq, naive.dq, ref.dq, std::max(finite_scale(ref.dq), ref.dq_terms));
  const auto dk = judge<T>(kernel.dk, naive.dk, ref.dk, std::max(finite_scale(ref.dk), ref.dk_terms));
  const auto dv = judge<T>(kernel.dv, naive.dv, ref.dv, std::max(finite_scale(ref.dv), ref.dv_terms));
  CAPTURE(dq.kernel_error, dq.naive_error, dq.floor, dk.kernel_error, dk.naive_error, dk.floor, dv.kernel_error,
          dv.naive_error, dv.floor);
  CHECK(dq.ok());
  CHECK(dk.ok());
  CHECK(dv.ok());
}

/// Where the backward's out and LSE come from: salt's forward, or the oracle's rounded to T (which keeps the
/// forward engine out of a sweep's instantiations: test_backward_masks).
enum class forward_from { salt, oracle };

/// The oracle's output and LSE of one head, rounded to T: what a forward exact to T's rounding returns.
template <class T, class Mask, class Score>
attention_result<T> oracle_forward(const row_matrix<T>& q, const row_matrix<T>& k, const row_matrix<T>& v,
                                   const Mask& mask, const Score& score, const problem_shape& where = {}) {
  const auto ref = naive_attention<oracle_t<T>>(q, k, v, mask, score, where);
  return {ref.out.template cast<T>(), ref.lse.template cast<T>()};
}

/// One head: the forward (salt's or the oracle's) and salt's backward against the textbook backward.
template <class T, class Mask, class Score = dot_product, forward_from From = forward_from::salt>
void check_head_backward(const row_matrix<T>& q, const row_matrix<T>& k, const row_matrix<T>& v,
                         const row_matrix<T>& dout, const Mask& mask, const Score& score = {},
                         const run_options& opts = {}) {
  attention_result<T> fwd;
  if constexpr (From == forward_from::salt) fwd = attention_with_lse(q, k, v, mask, score, opts);
  else fwd = oracle_forward(q, k, v, mask, score);
  const auto g = attention_backward(q, k, v, fwd, dout, mask, score, opts);
  judge_gradients<T>(g, naive_attention_backward<T>(q, k, v, dout, mask, score),
                     naive_attention_backward<oracle_t<T>>(q, k, v, dout, mask, score));
}

/// A grouped-query call's gradients, (B Hq Lq, d) / (B Hkv Lk, d) / (B Hkv Lk, dv), and the inputs that made them.
template <class T>
struct multi_head_gradients {
  index batch, q_heads, kv_heads, lq, lk;
  row_matrix<T> q, k, v, dout, dq, dk, dv;
};

/// Runs the forward (salt's, or the oracle's per head) and salt's backward of a (batch, q_heads over kv_heads) call
/// on random inputs.
template <class T, class Mask, class Score = dot_product, forward_from From = forward_from::salt>
multi_head_gradients<T> run_multi_head_backward(index batch, index q_heads, index kv_heads, index lq, index lk,
                                                index d, index dv, const Mask& mask, const Score& score,
                                                random_source& rng, const run_options& opts = {}) {
  multi_head_gradients<T> m{batch, q_heads, kv_heads, lq, lk,
                            rng.matrix<T>(batch * q_heads * lq, d), rng.matrix<T>(batch * kv_heads * lk, d),
                            rng.matrix<T>(batch * kv_heads * lk, dv), rng.matrix<T>(batch * q_heads * lq, dv),
                            row_matrix<T>(batch * q_heads * lq, d), row_matrix<T>(batch * kv_heads * lk, d),
                            row_matrix<T>(batch * kv_heads * lk, dv)};
  row_matrix<T> out(batch * q_heads * lq, dv);
  std::vector<T> lse(static_cast<std::size_t>(batch * q_heads * lq));
  using cv = tensor_view<const T>;
  const cv q = cv::bhld(m.q.data(), batch, q_heads, lq, d), k = cv::bhld(m.k.data(), batch, kv_heads, lk, d),
           v = cv::bhld(m.v.data(), batch, kv_heads, lk, dv);
  if constexpr (From == forward_from::salt) {
    attention(q, k, v, tensor_view<T>::bhld(out.data(), batch, q_heads, lq, dv), lse_view<T>::bht(lse.data(), q_heads, lq),
              mask, score, opts);
  } else {
    for (index b = 0; b < batch; ++b)
      for (index h = 0; h < q_heads; ++h) {
        const index qi = b * q_heads + h, ki = b * kv_heads + h / (q_heads / kv_heads);
        const auto f = oracle_forward<T>(row_matrix<T>(m.q.middleRows(qi * lq, lq)), row_matrix<T>(m.k.middleRows(ki * lk, lk)),
                                         row_matrix<T>(m.v.middleRows(ki * lk, lk)), mask, score, problem_shape{lq, lk, b, h});
        out.middleRows(qi * lq, lq) = f.out;
        std::copy_n(f.lse.data(), lq, lse.data() + qi * lq);
      }
  }
  attention_backward(q, k, v, cv::bhld(out.data(), batch, q_heads, lq, dv),
                     lse_view<const T>::bht(lse.data(), q_heads, lq), cv::bhld(m.dout.data(), batch, q_heads, lq, dv),
                     tensor_view<T>::bhld(m.dq.data(), batch, q_heads, lq, d),
                     tensor_view<T>::bhld(m.dk.data(), batch, kv_heads, lk, d),
                     tensor_view<T>::bhld(m.dv.data(), batch, kv_heads, lk, dv), mask, score, opts);
  return m;
}

/// A grouped-query call's gradients against the textbook backward of each head, dK and dV summed over the query
/// heads of each group (in the oracle's precision, and in T for the naive bar).
template <class T, class Mask, class Score = dot_product>
void check_multi_head_backward(const multi_head_gradients<T>& m, const Mask& mask, const Score& score = {}) {
  const index group = m.q_heads / m.kv_heads;
  const auto rows = [](const row_matrix<T>& x, index first, index count) {
    return row_matrix<T>(x.middleRows(first * count, count));
  };
  for (index b = 0; b < m.batch; ++b) {
    for (index g = 0; g < m.kv_heads; ++g) {
      CAPTURE(b, g);
      const row_matrix<T> kh = rows(m.k, b * m.kv_heads + g, m.lk), vh = rows(m.v, b * m.kv_heads + g, m.lk);
      reference_gradients<T> naive{row_matrix<T>(), row_matrix<T>::Zero(kh.rows(), kh.cols()),
                                   row_matrix<T>::Zero(vh.rows(), vh.cols())};
      reference_gradients<oracle_t<T>> ref{row_matrix<oracle_t<T>>(),
                                           row_matrix<oracle_t<T>>::Zero(kh.rows(), kh.cols()),
                                           row_matrix<oracle_t<T>>::Zero(vh.rows(), vh.cols())};
      for (index h = g * group; h < (g + 1) * group; ++h) {
        CAPTURE(h);
        const index qi = b * m.q_heads + h;
        const row_matrix<T> qh = rows(m.q, qi, m.lq), doh = rows(m.dout, qi, m.lq);
        const problem_shape where{m.lq, m.lk, b, h};
        const auto n = naive_attention_backward<T>(qh, kh, vh, doh, mask, score, where);
        const auto r = naive_attention_backward<oracle_t<T>>(qh, kh, vh, doh, mask, score, where);
        const auto dq = judge<T>(rows(m.dq, qi, m.lq), n.dq, r.dq, std::max(finite_scale(r.dq), r.dq_terms));
        CAPTURE(dq.kernel_error, dq.naive_error, dq.floor);
        CHECK(dq.ok());
        naive.dk += n.dk, naive.dv += n.dv, ref.dk += r.dk, ref.dv += r.dv;
        ref.dk_terms += r.dk_terms, ref.dv_terms += r.dv_terms;
      }
      const auto dk = judge<T>(rows(m.dk, b * m.kv_heads + g, m.lk), naive.dk, ref.dk,
                               std::max(finite_scale(ref.dk), ref.dk_terms));
      const auto dv = judge<T>(rows(m.dv, b * m.kv_heads + g, m.lk), naive.dv, ref.dv,
                               std::max(finite_scale(ref.dv), ref.dv_terms));
      CAPTURE(dk.kernel_error, dk.naive_error, dk.floor, dv.kernel_error, dv.naive_error, dv.floor);
      CHECK(dk.ok());
      CHECK(dv.ok());
    }
  }
}

}  // namespace salt::test
