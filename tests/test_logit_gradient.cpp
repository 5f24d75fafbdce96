// The gradient by per-pair score tables (score/logit_gradient.hpp): attention_backward adding dS into a buffer laid
// out as a synthesizer_random or bias_table. Against the textbook dS of every pair (reference.hpp:
// naive_attention_backward, in the oracle's precision, the naive one in the kernel's setting the bar) under the
// accuracy criterion, summed over the batch items and heads that share a table; against central finite differences
// of the loss in double; the same bits on 1, 2 and 7 threads, for tables of their own (one work item per head) and
// shared ones (the key partitions walk every head in order); untouched entries outside the call and behind the mask;
// the refusals, with nothing written.
#include <salt/attention.hpp>
#include <salt/attention_backward.hpp>
#include <salt/synthesizer.hpp>

#include <algorithm>
#include <cstring>
#include <vector>

#include "backward_checks.hpp"
#include "catch.hpp"
#include "reference.hpp"

namespace {

using idx = salt::index;
using namespace salt;
using namespace salt::test;

/// The criterion for a table's gradient against the oracle's dS (summed as the table is shared): the floor counts
/// the terms' magnitudes, as judge_gradients does for dq, dk and dv.
template <class T, class A, class B, class C>
void judge_table(const A& kernel, const B& naive, const C& ref, double terms) {
  const auto r = judge<T>(kernel, naive, ref, std::max(finite_scale(ref), terms));
  CAPTURE(r.kernel_error, r.naive_error, r.floor);
  CHECK(r.ok());
}

/// A multi-head call's inputs, the forward's output and LSE (salt's), and the backward's gradients.
template <class T>
struct call {
  idx batch, q_heads, kv_heads, lq, lk, d;
  row_matrix<T> q, k, v, dout, out, dq, dk, dv;
  std::vector<T> lse;
  using cv = tensor_view<const T>;
  using mv = tensor_view<T>;

  call(idx b, idx hq, idx hkv, idx lq_, idx lk_, idx d_, random_source& rng)
      : batch(b), q_heads(hq), kv_heads(hkv), lq(lq_), lk(lk_), d(d_), q(rng.matrix<T>(b * hq * lq_, d_)),
        k(rng.matrix<T>(b * hkv * lk_, d_)), v(rng.matrix<T>(b * hkv * lk_, d_)), dout(rng.matrix<T>(b * hq * lq_, d_)),
        out(b * hq * lq_, d_), dq(b * hq * lq_, d_), dk(b * hkv * lk_, d_), dv(b * hkv * lk_, d_),
        lse(static_cast<std::size_t>(b * hq * lq_)) {}
  cv qv() const { return cv::bhld(q.data(), batch, q_heads, lq, d); }
  cv kv() const { return cv::bhld(k.data(), batch, kv_heads, lk, d); }
  cv vv() const { return cv::bhld(v.data(), batch, kv_heads, lk, d); }
  row_matrix<T> head(const row_matrix<T>& x, idx i, idx rows) const { return x.middleRows(i * rows, rows); }

  template <class Mask, class Score>
  void forward(const Mask& mask, const Score& score) {
    attention(qv(), kv(), vv(), mv::bhld(out.data(), batch, q_heads, lq, d), lse_view<T>::bht(lse.data(), q_heads, lq),
              mask, score);
  }
  template <class Mask, class Score>
  void backward(const Mask& mask, const Score& score, const logit_gradient<T>& g, int threads) {
    attention_backward(qv(), kv(), vv(), cv::bhld(out.data(), batch, q_heads, lq, d),
                       lse_view<const T>::bht(lse.data(), q_heads, lq), cv::bhld(dout.data(), batch, q_heads, lq, d),
                       mv::bhld(dq.data(), batch, q_heads, lq, d), mv::bhld(dk.data(), batch, kv_heads, lk, d),
                       mv::bhld(dv.data(), batch, kv_heads, lk, d), mask, score, {.threads = threads}, g);
  }
  /// The textbook gradients of head (b, h), in U.
  template <class U, class Mask, class Score>
  reference_gradients<U> reference(idx b, idx h, const Mask& mask, const Score& score) const {
    const idx kvh = b * kv_heads + h / (q_heads / kv_heads);
    return naive_attention_backward<U>(head(q, b * q_heads + h, lq), head(k, kvh, lk), head(v, kvh, lk),
                                       head(dout, b * q_heads + h, lq), mask, score, problem_shape{lq, lk, b, h});
  }
};

}  // namespace

TEMPLATE_TEST_CASE("logit gradient: a Synthesizer Random table's gradient is dS of its rows", "[backward][logits]", float,
                   double) {
  using T = TestType;
  random_source rng(11);
  const idx max_len = 300;
  const row_matrix<T> table = rng.matrix<T>(max_len, max_len, 2.0);
  // Lq < Lk with the table's rows lined up as causal's bottom-right alignment; lengths past one tile and block.
  for (const auto& [lq, lk] : {std::pair<idx, idx>{1, 1}, {7, 65}, {130, 257}, {257, 257}}) {
    CAPTURE(lq, lk);
    auto synth = synthesizer_random<T>::shared(table);
    synth.query_offset = lk - lq;
    const row_matrix<T> q = rng.matrix<T>(lq, 16), k = rng.matrix<T>(lk, 16), v = rng.matrix<T>(lk, 16),
                        dout = rng.matrix<T>(lq, 16);
    row_matrix<T> dtable = row_matrix<T>::Zero(max_len, max_len);
    const auto fwd = attention_with_lse(q, k, v, causal{}, synth);
    const auto g = attention_backward(q, k, v, fwd, dout, causal{}, synth, {}, synth.gradient_into(dtable.data()));
    const auto naive = naive_attention_backward<T>(q, k, v, dout, causal{}, synth);
    const auto ref = naive_attention_backward<oracle_t<T>>(q, k, v, dout, causal{}, synth);
    judge_table<T>(dtable.block(lk - lq, 0, lq, lk), naive.ds, ref.ds, ref.ds_terms);
    // Nothing outside the call's rows and columns, nothing behind the mask (above the shifted diagonal).
    row_matrix<T> outside = dtable;
    outside.block(lk - lq, 0, lq, lk).setZero();
    CHECK(outside.cwiseAbs().maxCoeff() == T(0));
    for (idx i = 0; i < lq; ++i)
      for (idx j = lk - lq + i + 1; j < lk; ++j) REQUIRE(dtable(lk - lq + i, j) == T(0));
    // dq, dk, dv are those of the call without a logit gradient, bit for bit: one pass writes both.
    const auto plain = attention_backward(q, k, v, fwd, dout, causal{}, synth);
    CHECK(g.dv == plain.dv);
    // Added to, not overwritten: one contribution per entry, so a second call doubles it exactly.
    const row_matrix<T> once = dtable;
    attention_backward(q, k, v, fwd, dout, causal{}, synth, {}, synth.gradient_into(dtable.data()));
    CHECK(dtable == (once * T(2)).eval());
  }
}

TEMPLATE_TEST_CASE("logit gradient: tables shared by batch items and heads get the sum, the same bits on any thread "
                   "count", "[backward][logits]", float, double) {
  using T = TestType;
  random_source rng(12);
  const idx batch = 2, hq = 4, hkv = 2, lq = 150, lk = 200, d = 16;
  call<T> c(batch, hq, hkv, lq, lk, d, rng);
  const std::vector<idx> lengths{200, 131};
  const key_padding mask{lengths};
  // A (Lq, Lk) bias shared by everything (strides 0: the key partitions walk every head in order) and one per
  // (batch item, head) (its own work items).
  const row_matrix<T> shared_bias = rng.matrix<T>(lq, lk);
  std::vector<T> own(static_cast<std::size_t>(batch * hq * lq * lk));
  for (auto& x : own) x = static_cast<T>(rng.uniform());
  const bias_table<T> shared = bias_table<T>::shared(shared_bias);
  const bias_table<T> per_head{own.data(), lq, lk, lk, lq * lk, hq * lq * lk};
  for (const bool one_table : {true, false}) {
    CAPTURE(one_table);
    const bias_table<T>& bias = one_table ? shared : per_head;
    const auto score = dot_product{} + bias;
    c.forward(mask, score);
    const idx tables = one_table ? 1 : batch * hq;
    std::vector<row_matrix<T>> runs;
    for (const int threads : {1, 2, 7}) {
      row_matrix<T> dtable = row_matrix<T>::Zero(tables * lq, lk);
      c.backward(mask, score, bias.gradient_into(dtable.data()), threads);
      runs.push_back(dtable);
    }
    CHECK(runs[0] == runs[1]);
    CHECK(runs[0] == runs[2]);
    // Against the oracle, summed over the heads that share a table; dq, dk and dv as without it.
    row_matrix<T> naive = row_matrix<T>::Zero(tables * lq, lk);
    row_matrix<oracle_t<T>> ref = row_matrix<oracle_t<T>>::Zero(tables * lq, lk);
    double terms = 0;
    for (idx b = 0; b < batch; ++b)
      for (idx h = 0; h < hq; ++h) {
        const idx t = one_table ? 0 : b * hq + h;
        const auto n = c.template reference<T>(b, h, mask, score);
        const auto r = c.template reference<oracle_t<T>>(b, h, mask, score);
        naive.middleRows(t * lq, lq) += n.ds;
        ref.middleRows(t * lq, lq) += r.ds;
        terms += r.ds_terms;
        const auto dq = judge<T>(c.head(c.dq, b * hq + h, lq), n.dq, r.dq, std::max(finite_scale(r.dq), r.dq_terms));
        CAPTURE(b, h, dq.kernel_error, dq.floor);
        CHECK(dq.ok());
        // The padded keys of batch item 1 add nothing to a table of its own.
        if (b == 1 && !one_table) CHECK(runs[0].middleRows(t * lq, lq).rightCols(lk - lengths[1]).cwiseAbs().maxCoeff() == T(0));
      }
    judge_table<T>(runs[0], naive, ref, terms);
  }
}

TEST_CASE("logit gradient: softcap over dot product and table differentiates the table through the cap",
          "[backward][logits]") {
  using T = float;
  random_source rng(13);
  const idx l = 97;
  const row_matrix<T> table = rng.matrix<T>(l, l, 3.0);
  const auto synth = synthesizer_random<T>::shared(table);
  const softcap<score_sum<dot_product, synthesizer_random<T>>> score{2.0, dot_product{} + synth};
  const row_matrix<T> q = rng.matrix<T>(l, 16, 2.0), k = rng.matrix<T>(l, 16, 2.0), v = rng.matrix<T>(l, 16),
                      dout = rng.matrix<T>(l, 16);
  row_matrix<T> dtable = row_matrix<T>::Zero(l, l);
  const auto fwd = attention_with_lse(q, k, v, sliding_window{20, 20}, score);
  attention_backward(q, k, v, fwd, dout, sliding_window{20, 20}, score, {}, synth.gradient_into(dtable.data()));
  const auto naive = naive_attention_backward<T>(q, k, v, dout, sliding_window{20, 20}, score);
  const auto ref = naive_attention_backward<double>(q, k, v, dout, sliding_window{20, 20}, score);
  judge_table<T>(dtable, naive.ds, ref.ds, ref.ds_terms);
}

TEST_CASE("logit gradient: a table entry's gradient is the loss's central difference, in double", "[backward][logits]") {
  random_source rng(14);
  const idx lq = 40, lk = 70, max_len = 80;
  row_matrix<double> table = rng.matrix<double>(max_len, max_len);
  const row_matrix<double> q = rng.matrix<double>(lq, 8), k = rng.matrix<double>(lk, 8), v = rng.matrix<double>(lk, 8),
                           dout = rng.matrix<double>(lq, 8);
  const auto score_of = [&] {
    auto s = synthesizer_random<double>::shared(table);
    s.query_offset = 5;
    return dot_product{} + s;
  };
  const auto loss = [&] { return attention(q, k, v, causal{}, score_of()).cwiseProduct(dout).sum(); };
  row_matrix<double> dtable = row_matrix<double>::Zero(max_len, max_len);
  const auto score = score_of();
  attention_backward(q, k, v, attention_with_lse(q, k, v, causal{}, score), dout, causal{}, score, {},
                     score.b.gradient_into(dtable.data()));
  for (const auto& [i, j] : {std::pair<idx, idx>{5, 0}, {5 + 17, 40}, {5 + 39, 69}, {5 + 39, 3}, {5 + 10, 60}, {0, 0}}) {
    CAPTURE(i, j);
    const double h = 1e-5, x = table(i, j);
    table(i, j) = x + h;
    const double up = loss();
    table(i, j) = x - h;
    const double down = loss();
    table(i, j) = x;
    CHECK(std::abs(dtable(i, j) - (up - down) / (2 * h)) <= 1e-8 * std::max(1.0, std::abs(dtable(i, j))));
  }
}

TEST_CASE("logit gradient: refusals name the call and write nothing", "[backward][logits][bad_input]") {
  using T = float;
  random_source rng(15);
  call<T> c(1, 2, 1, 20, 30, 8, rng);
  const row_matrix<T> table = rng.matrix<T>(20, 30);
  const auto bias = bias_table<T>::shared(table);
  const auto score = dot_product{} + bias;
  c.forward(no_mask{}, score);
  const row_matrix<T> dq0 = c.dq;
  const auto refuses = [&](const logit_gradient<T>& g, const char* what) {
    CAPTURE(what);
    try {
      c.backward(no_mask{}, score, g, 1);
      FAIL("no error");
    } catch (const error& e) {
      CHECK_THAT(e.what(), Catch::Matchers::Contains("salt::attention_backward") && Catch::Matchers::Contains(what));
    }
    CHECK(std::memcmp(c.dq.data(), dq0.data(), sizeof(T) * static_cast<std::size_t>(dq0.size())) == 0);
  };
  row_matrix<T> dtable = row_matrix<T>::Constant(40, 30, T(7));
  auto g = bias.gradient_into(dtable.data());
  g.rows = 19;
  refuses(g, "the logit gradient is 19 x 30 but the call needs rows 0 to 20 and 30 columns");
  g = bias.gradient_into(dtable.data());
  g.head_stride = 30;
  refuses(g, "the logit gradient's heads overlap (head_stride 30 < one table's 600 elements)");
  g = bias.gradient_into(c.dq.data());
  refuses(g, "the logit gradient overlaps dq, dk or dv");
  g = bias.gradient_into(const_cast<T*>(c.out.data()));
  refuses(g, "the logit gradient overlaps an input");
  CHECK((dtable.array() == T(7)).all());
  CHECK_THROWS_WITH(bias.gradient_into(const_cast<T*>(table.data())),
                    Catch::Matchers::Contains("salt::bias_table::gradient_into: the gradient's buffer is the table itself"));
}
