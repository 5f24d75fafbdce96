// Synthesizer score policies (Random, factorized Random, Dense, and mixtures with the dot product) through
// the engine, against the formulas of the paper written out here with Eigen in fp64 (long double for
// double kernels), under the accuracy criterion; masks, multi-head layouts, errors, thread independence.
#include <salt/synthesizer.hpp>

#include <salt/attention.hpp>

#include <cstdint>
#include <limits>
#include <string>
#include <vector>

#include "catch.hpp"
#include "checks.hpp"
#include "reference.hpp"

namespace {

using idx = salt::index;
using namespace salt::test;
template <class U>
using mat = salt::row_matrix<U>;

/// softmax(S + masked) V in precision U: S (Lq, Lk) logits, `allowed(i, j)` the mask. Rows that see no key
/// are zero. Written independently of the engine and of the policies' apply().
template <class U, class Allowed>
mat<U> softmax_rows(const mat<U>& s, const mat<U>& v, Allowed allowed) {
  mat<U> out = mat<U>::Zero(s.rows(), v.cols());
  for (idx i = 0; i < s.rows(); ++i) {
    U m = -std::numeric_limits<U>::infinity();
    for (idx j = 0; j < s.cols(); ++j)
      if (allowed(i, j)) m = std::max(m, s(i, j));
    if (m == -std::numeric_limits<U>::infinity()) continue;
    U sum = 0;
    for (idx j = 0; j < s.cols(); ++j)
      if (allowed(i, j)) {
        const U p = std::exp(s(i, j) - m);
        sum += p;
        out.row(i) += p * v.row(j);
      }
    out.row(i) /= sum;
  }
  return out;
}

/// The parameters of every Synthesizer mode for `heads` heads, owned, with the paper's logits in any
/// precision (`logits<U>`) and the policy views salt takes (`random()`, `factorized()`, `dense()`).
template <class T>
struct synth_params {
  idx heads, max_len, rank, d_model, hidden, batch, lq;
  std::vector<T> table, r1, r2, w1, b1, w2, b2, x;  // (heads, ...) each; x is (batch, 1, lq, d_model)
  idx query_offset = 0;

  synth_params(idx heads_, idx max_len_, idx rank_, idx d_model_, idx hidden_, idx batch_, idx lq_, random_source& rng)
      : heads(heads_), max_len(max_len_), rank(rank_), d_model(d_model_), hidden(hidden_), batch(batch_), lq(lq_) {
    auto fill = [&](std::vector<T>& a, idx n, double scale) {
      a.resize(static_cast<std::size_t>(n));
      for (T& e : a) e = static_cast<T>(scale * rng.uniform());
    };
    fill(table, heads * max_len * max_len, 3.0);
    fill(r1, heads * max_len * rank, 1.0);
    fill(r2, heads * max_len * rank, 1.0);
    fill(w1, heads * hidden * d_model, 0.5);
    fill(b1, heads * hidden, 0.5);
    fill(w2, heads * max_len * hidden, 0.5);
    fill(b2, heads * max_len, 1.0);
    fill(x, batch * lq * d_model, 1.0);
  }

  salt::synthesizer_random<T> random() const {
    auto p = salt::synthesizer_random<T>::per_head(table.data(), heads, max_len);
    p.query_offset = query_offset;
    return p;
  }
  salt::synthesizer_factorized<T> factorized() const {
    auto p = salt::synthesizer_factorized<T>::per_head(r1.data(), r2.data(), heads, max_len, rank);
    p.query_offset = query_offset;
    return p;
  }
  salt::synthesizer_dense<T> dense() const {
    const auto xv = salt::tensor_view<const T>::bhld(x.data(), batch, 1, lq, d_model);
    return {xv, w1.data(), b1.data(), w2.data(), b2.data(), heads, d_model, hidden, max_len};
  }

  /// Row-major (rows, cols) matrix at `p`, converted to U.
  template <class U>
  static mat<U> block(const T* p, idx rows, idx cols) {
    return Eigen::Map<const mat<T>>(p, rows, cols).template cast<U>();
  }

  /// The logits (Lq, Lk) of `mode` for batch item b, query head h: the paper's formulas.
  template <class U>
  mat<U> logits(const std::string& mode, idx b, idx h, idx lk) const {
    const idx hh = heads == 1 ? 0 : h;
    if (mode == "random")  // the table, sliced
      return block<U>(table.data() + hh * max_len * max_len, max_len, max_len).block(query_offset, 0, lq, lk);
    if (mode == "factorized") {  // R1 R2^T
      const mat<U> a = block<U>(r1.data() + hh * max_len * rank, max_len, rank).middleRows(query_offset, lq);
      const mat<U> c = block<U>(r2.data() + hh * max_len * rank, max_len, rank).topRows(lk);
      return a * c.transpose();
    }
    // dense: row i is W2 relu(W1 x_i + b1) + b2, first lk entries
    const mat<U> xb = block<U>(x.data() + b * lq * d_model, lq, d_model);
    const mat<U> W1 = block<U>(w1.data() + hh * hidden * d_model, hidden, d_model);
    const mat<U> B1 = block<U>(b1.data() + hh * hidden, 1, hidden);
    const mat<U> W2 = block<U>(w2.data() + hh * max_len * hidden, max_len, hidden).topRows(lk);
    const mat<U> B2 = block<U>(b2.data() + hh * max_len, 1, max_len).leftCols(lk);
    mat<U> hid = (xb * W1.transpose()).rowwise() + B1.row(0);
    hid = hid.cwiseMax(U(0));
    return (hid * W2.transpose()).rowwise() + B2.row(0);
  }
};

/// Runs `score` (mode, optionally + dot product) on one head through the engine and judges it against the
/// formula in oracle_t<T>, the formula in T setting the bar.
template <class T, class Mask, class Score>
void check_one_head(const std::string& mode, bool with_dot, const synth_params<T>& prm, const mat<T>& q,
                    const mat<T>& k, const mat<T>& v, const Mask& mask, const Score& score) {
  const idx lq = q.rows(), lk = k.rows();
  CAPTURE(mode, with_dot, lq, lk, sizeof(T));
  const mat<T> kernel = salt::attention(q, k, v, mask, score);
  auto formula = [&](auto zero) {
    using U = decltype(zero);
    mat<U> s = prm.template logits<U>(mode, 0, 0, lk);
    if (with_dot) s += (q.template cast<U>() * k.template cast<U>().transpose()) / std::sqrt(U(q.cols()));
    const salt::problem_shape where{lq, lk, 0, 0};
    return softmax_rows<U>(s, v.template cast<U>(), [&](idx i, idx j) { return mask.allows(i, j, where); });
  };
  const auto naive = formula(T(0));
  const auto ref = formula(oracle_t<T>(0));
  const auto out = judge<T>(kernel, naive, ref, finite_scale(v));
  CAPTURE(out.kernel_error, out.naive_error, out.floor);
  CHECK(out.ok());
}

/// Every mode, alone and mixed with the dot product, under `mask`.
template <class T, class Mask>
void check_modes(const synth_params<T>& prm, const mat<T>& q, const mat<T>& k, const mat<T>& v, const Mask& mask) {
  check_one_head<T>("random", false, prm, q, k, v, mask, prm.random());
  check_one_head<T>("random", true, prm, q, k, v, mask, salt::dot_product{} + prm.random());
  check_one_head<T>("factorized", false, prm, q, k, v, mask, prm.factorized());
  check_one_head<T>("factorized", true, prm, q, k, v, mask, prm.factorized() + salt::dot_product{});
  check_one_head<T>("dense", false, prm, q, k, v, mask, prm.dense());
  check_one_head<T>("dense", true, prm, q, k, v, mask, salt::dot_product{} + prm.dense());
}

}  // namespace

TEMPLATE_TEST_CASE("Synthesizer modes match their fp64 formulas", "[synthesizer][reference]", float, double) {
  using T = TestType;
  struct lengths {
    idx lq, lk;
  };
  const std::vector<lengths> sizes = {{1, 1}, {7, 65}, {63, 63}, {65, 200}, {200, 7}, {130, 130}};
  std::uint64_t seed = 7000;
  for (const auto [lq, lk] : sizes) {
    random_source rng(seed++);
    // rank 40 and hidden 50 cross the policies' 32-wide inner chunks; max_len 210 > every length.
    const synth_params<T> prm(1, 210, 40, 20, 50, 1, lq, rng);
    const mat<T> q = rng.matrix<T>(lq, 32), k = rng.matrix<T>(lk, 32), v = rng.matrix<T>(lk, 24);
    const std::vector<idx> length{lk - lk / 3};
    check_modes(prm, q, k, v, salt::no_mask{});
    check_modes(prm, q, k, v, salt::causal{});
    check_modes(prm, q, k, v, salt::key_padding{length});
    check_modes(prm, q, k, v, salt::causal{} & salt::key_padding{length});
  }
}

TEMPLATE_TEST_CASE("small ranks and hidden layers, and tables read from a query offset", "[synthesizer][reference]",
                   float, double) {
  using T = TestType;
  random_source rng(7100);
  for (const idx rank : {1, 5, 32, 33}) {
    // Decoding: 7 queries at the end of 65 keys; the tables' rows line up with causal's bottom-right default.
    synth_params<T> prm(1, 80, rank, 3, rank, 1, 7, rng);
    prm.query_offset = 65 - 7;
    const mat<T> q = rng.matrix<T>(7, 16), k = rng.matrix<T>(65, 16), v = rng.matrix<T>(65, 16);
    check_modes(prm, q, k, v, salt::causal{});
  }
}

TEMPLATE_TEST_CASE("Synthesizer on many heads: batch, grouped-query, one table per head", "[synthesizer][reference]",
                   float, double) {
  using T = TestType;
  const idx B = 2, Hq = 4, Hkv = 2, lq = 70, lk = 90, d = 16, dv = 8;
  random_source rng(7200);
  for (const idx heads : {idx{1}, Hq}) {
    const synth_params<T> prm(heads, 96, 6, 12, 20, B, lq, rng);
    const mat<T> q = rng.matrix<T>(B * Hq * lq, d), k = rng.matrix<T>(B * Hkv * lk, d),
                 v = rng.matrix<T>(B * Hkv * lk, dv);
    const auto qv = salt::tensor_view<const T>::bhld(q.data(), B, Hq, lq, d);
    const auto kv = salt::tensor_view<const T>::bhld(k.data(), B, Hkv, lk, d);
    const auto vv = salt::tensor_view<const T>::bhld(v.data(), B, Hkv, lk, dv);
    const std::vector<idx> lengths{lk, 41};
    const auto mask = salt::causal{} & salt::key_padding{lengths};
    auto run = [&](const std::string& mode, const auto& score) {
      mat<T> out(B * Hq * lq, dv);
      salt::attention<T>(qv, kv, vv, salt::tensor_view<T>::bhld(out.data(), B, Hq, lq, dv), mask, score);
      for (idx b = 0; b < B; ++b)
        for (idx h = 0; h < Hq; ++h) {
          CAPTURE(mode, heads, b, h, sizeof(T));
          const idx qrow = (b * Hq + h) * lq, krow = (b * Hkv + h / (Hq / Hkv)) * lk;
          const salt::problem_shape where{lq, lk, b, h};
          auto formula = [&](auto zero) {
            using U = decltype(zero);
            mat<U> s = prm.template logits<U>(mode, b, h, lk);
            s += (q.middleRows(qrow, lq).template cast<U>() * k.middleRows(krow, lk).template cast<U>().transpose()) /
                 std::sqrt(U(d));
            return softmax_rows<U>(s, mat<U>(v.middleRows(krow, lk).template cast<U>()),
                                   [&](idx i, idx j) { return mask.allows(i, j, where); });
          };
          const mat<T> kernel = out.middleRows(qrow, lq);
          const auto acc = judge<T>(kernel, formula(T(0)), formula(oracle_t<T>(0)), 1.0);
          CAPTURE(acc.kernel_error, acc.naive_error, acc.floor);
          CHECK(acc.ok());
        }
    };
    run("random", salt::dot_product{} + prm.random());
    run("factorized", salt::dot_product{} + prm.factorized());
    run("dense", salt::dot_product{} + prm.dense());
  }
}

TEMPLATE_TEST_CASE("causal masks and key padding are honoured (naive reference, same objects)",
                   "[synthesizer][reference]", float, double) {
  using T = TestType;
  random_source rng(7300);
  const idx lq = 100, lk = 150;
  const synth_params<T> prm(1, 160, 8, 10, 12, 1, lq, rng);
  const mat<T> q = rng.matrix<T>(lq, 32), k = rng.matrix<T>(lk, 32), v = rng.matrix<T>(lk, 32);
  const std::vector<idx> length{77};
  auto check = [&](const std::string& name, const auto& mask, const auto& score) {
    CAPTURE(name, sizeof(T));
    check_head(q, k, v, mask, score);
    // Masked keys carry no weight: changing their values changes nothing.
    mat<T> v2 = v;
    const salt::problem_shape where{lq, lk, 0, 0};
    for (idx j = 0; j < lk; ++j) {
      bool seen = false;
      for (idx i = 0; i < lq; ++i) seen |= mask.allows(i, j, where);
      if (!seen) v2.row(j).setConstant(T(1e6));
    }
    CHECK(salt::attention(q, k, v2, mask, score) == salt::attention(q, k, v, mask, score));
  };
  const salt::causal<salt::causal_alignment::top_left> top_left{};
  check("random, causal", salt::causal{}, prm.random());
  check("random, top-left causal & padding", top_left & salt::key_padding{length}, salt::dot_product{} + prm.random());
  check("factorized, causal", salt::causal{}, prm.factorized());
  check("factorized, padding", salt::key_padding{length}, salt::dot_product{} + prm.factorized());
  check("dense, causal & padding", salt::causal{} & salt::key_padding{length}, prm.dense());
  check("dense + random + dot, causal", salt::causal{}, salt::dot_product{} + prm.dense() + prm.random());
}

TEMPLATE_TEST_CASE("dot product + a zero Synthesizer source is plain attention", "[synthesizer][reference]", float,
                   double) {
  using T = TestType;
  random_source rng(7400);
  const idx max_len = 260;
  const mat<T> zeros_table = mat<T>::Zero(max_len, max_len);
  const mat<T> r1 = mat<T>::Zero(max_len, 4), r2 = rng.matrix<T>(max_len, 4);
  for (const idx len : {1, 64, 65, 257}) {
    const mat<T> q = rng.matrix<T>(len, 64), k = rng.matrix<T>(len, 64), v = rng.matrix<T>(len, 64);
    const mat<T> w1 = rng.matrix<T>(5, 64), w2 = mat<T>::Zero(max_len, 5);
    const salt::column<T> b1 = salt::column<T>::Ones(5), b2 = salt::column<T>::Zero(max_len);
    auto check = [&](const std::string& name, const auto& mask, const auto& score) {
      CAPTURE(name, len, sizeof(T));
      const mat<T> kernel = salt::attention(q, k, v, mask, score);
      const auto naive = naive_attention<T>(q, k, v, mask);  // plain attention
      const auto ref = naive_attention<oracle_t<T>>(q, k, v, mask);
      const auto out = judge<T>(kernel, naive.out, ref.out, finite_scale(v));
      CAPTURE(out.kernel_error, out.naive_error, out.floor);
      CHECK(out.ok());
    };
    check("dot + zero table", salt::no_mask{}, salt::dot_product{} + salt::synthesizer_random<T>::shared(zeros_table));
    check("zero table + dot, causal", salt::causal{},
          salt::synthesizer_random<T>::shared(zeros_table) + salt::dot_product{});
    check("dot + zero R1 R2^T", salt::causal{}, salt::dot_product{} + salt::synthesizer_factorized<T>::shared(r1, r2));
    check("dot + zero dense", salt::no_mask{},
          salt::dot_product{} + salt::synthesizer_dense<T>::shared(q, w1, b1, w2, b2));
  }
}

TEST_CASE("a constant table gives uniform weights", "[synthesizer]") {
  // Every logit equal: each query averages the values it may see.
  random_source rng(7500);
  const mat<double> table = mat<double>::Constant(40, 40, 2.5);
  const mat<double> q = rng.matrix<double>(30, 8), k = rng.matrix<double>(30, 8), v = rng.matrix<double>(30, 8);
  const mat<double> out = salt::attention(q, k, v, salt::causal{}, salt::synthesizer_random<double>::shared(table));
  for (idx i = 0; i < 30; ++i) CHECK((out.row(i) - v.topRows(i + 1).colwise().mean()).cwiseAbs().maxCoeff() < 1e-14);
}

TEST_CASE("results do not depend on the number of threads", "[synthesizer]") {
  random_source rng(7600);
  const idx B = 2, H = 3, L = 300, d = 32;
  const synth_params<float> prm(H, 320, 12, 16, 24, B, L, rng);
  const mat<float> q = rng.matrix<float>(B * H * L, d), k = rng.matrix<float>(B * H * L, d),
                   v = rng.matrix<float>(B * H * L, d);
  const auto qv = salt::tensor_view<const float>::bhld(q.data(), B, H, L, d);
  const auto kv = salt::tensor_view<const float>::bhld(k.data(), B, H, L, d);
  const auto vv = salt::tensor_view<const float>::bhld(v.data(), B, H, L, d);
  const auto score = salt::dot_product{} + prm.random() + prm.factorized() + prm.dense();
  mat<float> one(B * H * L, d), two(B * H * L, d);
  salt::attention<float>(qv, kv, vv, salt::tensor_view<float>::bhld(one.data(), B, H, L, d), salt::causal{}, score,
                         {.threads = 1});
  salt::attention<float>(qv, kv, vv, salt::tensor_view<float>::bhld(two.data(), B, H, L, d), salt::causal{}, score,
                         {.threads = 2});
  CHECK(one == two);
}

TEST_CASE("Synthesizer errors name the sizes", "[synthesizer][errors]") {
  random_source rng(7700);
  const mat<float> table = rng.matrix<float>(128, 128), r = rng.matrix<float>(64, 4);
  const mat<float> q200 = rng.matrix<float>(200, 8), q100 = rng.matrix<float>(100, 8), k200 = rng.matrix<float>(200, 8),
                   k100 = rng.matrix<float>(100, 8), k65 = rng.matrix<float>(65, 8);
  const auto random = salt::synthesizer_random<float>::shared(table);
  CHECK(error_of([&] { salt::attention(q100, k200, k200, salt::no_mask{}, random); }) ==
        "salt::attention: synthesizer_random table is 128 x 128 but the sequence has 200 keys");
  CHECK(error_of([&] { salt::attention(q200, k100, k100, salt::no_mask{}, random); }) ==
        "salt::attention: synthesizer_random table is 128 x 128 but the sequence has 200 queries");
  auto shifted = random;
  shifted.query_offset = 50;
  CHECK(error_of([&] { salt::attention(q100, k100, k100, salt::no_mask{}, shifted); }) ==
        "salt::attention: synthesizer_random table is 128 x 128 but 100 queries from query_offset 50 need 150 rows");
  const auto three = salt::synthesizer_random<float>::per_head(table.data(), 3, 64);
  const mat<float> q4(4 * 10, 8);
  mat<float> out4(4 * 10, 8);
  CHECK(error_of([&] {
          salt::attention<float>(salt::tensor_view<const float>::bhld(q4.data(), 1, 4, 10, 8),
                                 salt::tensor_view<const float>::bhld(q4.data(), 1, 4, 10, 8),
                                 salt::tensor_view<const float>::bhld(q4.data(), 1, 4, 10, 8),
                                 salt::tensor_view<float>::bhld(out4.data(), 1, 4, 10, 8), salt::no_mask{}, three);
        }) ==
        "salt::attention: synthesizer_random has 3 heads for 4 query heads (it needs 1, shared by all, or one per "
        "query head)");
  CHECK(error_of([&] { (void)salt::synthesizer_random<float>::shared(r); }) ==
        "salt::synthesizer_random::shared: the table is 64 x 4 but must be square (max_len x max_len)");

  const auto fact = salt::synthesizer_factorized<float>::shared(r, r);
  CHECK(error_of([&] { salt::attention(k65, k65, k65, salt::no_mask{}, fact); }) ==
        "salt::attention: synthesizer_factorized R1 and R2 have 64 rows but the sequence has 65 keys");
  const mat<float> r_other = rng.matrix<float>(64, 5);
  CHECK(error_of([&] { (void)salt::synthesizer_factorized<float>::shared(r, r_other); }) ==
        "salt::synthesizer_factorized::shared: R1 is 64 x 4 but R2 is 64 x 5");

  const mat<float> w1 = rng.matrix<float>(6, 8), w2 = rng.matrix<float>(64, 6);
  const salt::column<float> b1 = salt::column<float>::Zero(6), b2 = salt::column<float>::Zero(64);
  const auto dense = salt::synthesizer_dense<float>::shared(k65, w1, b1, w2, b2);
  CHECK(error_of([&] { salt::attention(k65, k65, k65, salt::no_mask{}, dense); }) ==
        "salt::attention: synthesizer_dense W2 makes 64 logits per query but the sequence has 65 keys");
  // x must have one token per query.
  const auto dense100 = salt::synthesizer_dense<float>::shared(q100, w1, b1, w2, b2);
  const mat<float> q10 = rng.matrix<float>(10, 8);
  CHECK(error_of([&] { salt::attention(q10, q10, q10, salt::no_mask{}, dense100); }) ==
        "salt::attention: synthesizer_dense x is (1, 1, 100, 8) but must be (1, 1, 10, 8)");
  const salt::column<float> b1_short = salt::column<float>::Zero(5);
  CHECK(error_of([&] { (void)salt::synthesizer_dense<float>::shared(q10, w1, b1_short, w2, b2); }) ==
        "salt::synthesizer_dense::shared: W1 has 6 rows but b1 has 5 entries");
  // Short inputs are fine: the first Lq x Lk of the table.
  CHECK(error_of([&] { salt::attention(q10, q10, q10, salt::no_mask{}, random); }).empty());
}
