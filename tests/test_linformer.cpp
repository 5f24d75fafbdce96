// Linformer: the seeded projections (committed draws, statistics, sharing modes), the kernel against the
// formula K' = E K, V' = F V, softmax(Q K'^T / sqrt(d)) V' written out with Eigen in fp64 (long double for
// double kernels) under the accuracy criterion, the identity case that is exact attention, key padding
// (and a user's key-only mask), errors, thread independence.
#include <salt/linformer.hpp>

#include <cmath>
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
using salt::linformer_sharing;
template <class U>
using mat = salt::row_matrix<U>;

/// A user's key-only mask, defined here: the first `keys` keys of every batch item. Offering valid_keys makes
/// it a salt::key_length_mask, which is all Linformer asks of a mask.
struct first_keys {
  idx keys = 0;
  bool allows(idx, idx k, const salt::problem_shape&) const noexcept { return k < keys; }
  static constexpr bool is_always_full() { return false; }
  idx valid_keys(const salt::problem_shape&) const noexcept { return keys; }
};

const char* name_of(linformer_sharing s) {
  switch (s) {
    case linformer_sharing::per_head:
      return "per_head";
    case linformer_sharing::shared_heads:
      return "shared_heads";
    case linformer_sharing::shared_kv:
      return "shared_kv";
  }
  return "?";
}

/// The paper's formula for one query head in precision U: n = the valid length of the batch item,
/// K' = E[:, :n] K[:n], V' = F[:, :n] V[:n], out = softmax(Q K'^T / sqrt(d)) V'.
template <class U, class T>
mat<U> linformer_formula(const mat<T>& q, const mat<T>& k, const mat<T>& v, const mat<T>& e, const mat<T>& f, idx n) {
  const mat<U> kp = e.leftCols(n).template cast<U>() * k.topRows(n).template cast<U>();  // (k, d)
  const mat<U> vp = f.leftCols(n).template cast<U>() * v.topRows(n).template cast<U>();  // (k, dv)
  const mat<U> s = q.template cast<U>() * kp.transpose() / std::sqrt(static_cast<U>(q.cols()));
  mat<U> out(q.rows(), v.cols());
  for (idx i = 0; i < s.rows(); ++i) {
    const U m = s.row(i).maxCoeff();
    const Eigen::Matrix<U, 1, Eigen::Dynamic> p = (s.row(i).array() - m).exp().matrix();
    out.row(i) = p * vp / p.sum();
  }
  return out;
}

/// A (batch, heads, tokens, features) buffer stored as rows of a matrix, with its view.
template <class T>
struct heads_buffer {
  idx batch, heads, tokens, features;
  mat<T> data;
  heads_buffer(idx b, idx h, idx l, idx f, random_source& rng)
      : batch(b), heads(h), tokens(l), features(f), data(rng.matrix<T>(b * h * l, f)) {}
  salt::tensor_view<const T> view() const {
    return salt::tensor_view<const T>::bhld(data.data(), batch, heads, tokens, features);
  }
  salt::tensor_view<T> out_view() { return salt::tensor_view<T>::bhld(data.data(), batch, heads, tokens, features); }
  mat<T> head(idx b, idx h) const { return data.middleRows((b * heads + h) * tokens, tokens); }
};

/// Multi-head Linformer (batch 2, grouped-query 4 / 2 heads) against the formula, head by head.
template <class T>
void check_multi_head(linformer_sharing mode, idx lq, idx L, idx max_len, idx kproj, idx d, idx dv, bool padded,
                      std::uint64_t seed) {
  const idx B = 2, Hq = 4, Hkv = 2;
  random_source rng(seed);
  const heads_buffer<T> q(B, Hq, lq, d, rng), k(B, Hkv, L, d, rng), v(B, Hkv, L, dv, rng);
  heads_buffer<T> out(B, Hq, lq, dv, rng);
  const auto proj = salt::linformer_projections<T>::gaussian(kproj, max_len, Hkv, mode, seed);
  const std::vector<idx> lengths{L, L - L / 3};
  if (padded) {
    salt::linformer_attention<T>(q.view(), k.view(), v.view(), out.out_view(), proj, salt::key_padding{lengths});
  } else {
    salt::linformer_attention<T>(q.view(), k.view(), v.view(), out.out_view(), proj);
  }
  // The formula head by head, stacked like the output: (batch * heads * lq, dv).
  mat<T> naive(B * Hq * lq, dv);
  mat<oracle_t<T>> ref(B * Hq * lq, dv);
  for (idx b = 0; b < B; ++b)
    for (idx h = 0; h < Hq; ++h) {
      const idx g = h / (Hq / Hkv), n = padded ? lengths[static_cast<std::size_t>(b)] : L;
      const mat<T> e = proj.e(g), f = proj.f(g);
      naive.middleRows((b * Hq + h) * lq, lq) = linformer_formula<T>(q.head(b, h), k.head(b, g), v.head(b, g), e, f, n);
      ref.middleRows((b * Hq + h) * lq, lq) =
          linformer_formula<oracle_t<T>>(q.head(b, h), k.head(b, g), v.head(b, g), e, f, n);
    }
  CAPTURE(name_of(mode), lq, L, max_len, kproj, d, dv, padded, sizeof(T));
  const auto acc = judge<T>(out.data, naive, ref, finite_scale(ref));
  CAPTURE(acc.kernel_error, acc.naive_error, acc.floor);
  CHECK(acc.ok());
}

}  // namespace

TEST_CASE("normal() is standard normal; projections have the stated spread", "[linformer][random]") {
  salt::random_generator g(99);
  const int n = 200000;
  double sum = 0, sum2 = 0, sum4 = 0;
  for (int i = 0; i < n; ++i) {
    const double x = g.normal();
    sum += x, sum2 += x * x, sum4 += x * x * x * x;
  }
  CHECK(std::abs(sum / n) < 0.01);        // standard error 0.0022
  CHECK(std::abs(sum2 / n - 1) < 0.015);  // standard error 0.0032
  CHECK(std::abs(sum4 / n - 3) < 0.1);    // kurtosis of a normal; standard error 0.022

  auto spread = [](const salt::linformer_projections<double>& p) {
    const auto m = p.e(0);
    return std::sqrt(m.squaredNorm() / static_cast<double>(m.size()));
  };
  const auto gauss = salt::linformer_projections<double>::gaussian(64, 1024, 1, linformer_sharing::shared_kv, 1);
  CHECK(std::abs(spread(gauss) - 1.0 / 8.0) < 0.01 / 8.0);  // N(0, 1/k)
  const auto xavier = salt::linformer_projections<double>::xavier_normal(64, 1024, 1, linformer_sharing::shared_kv, 1);
  CHECK(std::abs(spread(xavier) - std::sqrt(2.0 / 1088.0)) < 0.01 * std::sqrt(2.0 / 1088.0));
}

TEST_CASE("sharing modes and seeds", "[linformer]") {
  using P = salt::linformer_projections<float>;
  const auto a = P::gaussian(8, 40, 3, linformer_sharing::per_head, 5);
  const auto b = P::gaussian(8, 40, 3, linformer_sharing::per_head, 5);
  const auto c = P::gaussian(8, 40, 3, linformer_sharing::per_head, 6);
  CHECK(a.heads() == 3);
  for (idx h = 0; h < 3; ++h) {
    CHECK(a.e(h) == b.e(h));  // same seed, same bits
    CHECK(a.f(h) == b.f(h));
    CHECK(a.e(h) != c.e(h));  // another seed, other draws
    CHECK(a.e(h) != a.f(h));
  }
  CHECK(a.e(0) != a.e(1));
  const auto s = P::gaussian(8, 40, 3, linformer_sharing::shared_heads, 5);
  CHECK(s.heads() == 1);
  CHECK((s.e(0) == s.e(2) && s.f(0) == s.f(2) && s.e(0) != s.f(0)));
  CHECK(s.e(0) == a.e(0));  // the same draw order: head 0's pair comes first
  const auto kv = P::gaussian(8, 40, 3, linformer_sharing::shared_kv, 5);
  CHECK((kv.e(0) == kv.f(0) && kv.e(2) == kv.f(1) && kv.e(0) == a.e(0)));
  CHECK((kv.k() == 8 && kv.max_len() == 40 && kv.sharing() == linformer_sharing::shared_kv));

  const mat<float> e0 = mat<float>::Random(8, 40), e1 = mat<float>::Random(8, 40), f0 = mat<float>::Random(8, 40),
                   f1 = mat<float>::Random(8, 40);
  const auto given = P::from_matrices(linformer_sharing::per_head, {e0, e1}, {f0, f1});
  CHECK((given.e(1) == e1 && given.f(0) == f0 && given.heads() == 2));
  const auto given_kv = P::from_matrices(linformer_sharing::shared_kv, {e1});
  CHECK((given_kv.e(5) == e1 && given_kv.f(3) == e1));
}

TEMPLATE_TEST_CASE("Linformer matches its fp64 formula in every sharing mode", "[linformer][reference]", float,
                   double) {
  using T = TestType;
  struct shape {
    idx lq, L, max_len, k;
  };
  const std::vector<shape> shapes = {{1, 1, 1, 1},        {7, 7, 64, 16},     {65, 65, 65, 70},
                                     {200, 150, 256, 32}, {64, 200, 200, 64}, {33, 257, 300, 5}};
  std::uint64_t seed = 500;
  for (const linformer_sharing mode :
       {linformer_sharing::per_head, linformer_sharing::shared_heads, linformer_sharing::shared_kv})
    for (const auto& s : shapes) {
      check_multi_head<T>(mode, s.lq, s.L, s.max_len, s.k, 32, 32, false, seed++);
      check_multi_head<T>(mode, s.lq, s.L, s.max_len, s.k, 20, 3, true, seed++);  // packet and scalar tails; padding
    }
}

TEMPLATE_TEST_CASE("Linformer with k = L and E = F = identity is exact attention", "[linformer][reference]", float,
                   double) {
  using T = TestType;
  random_source rng(600);
  for (const idx L : {1, 64, 65, 257}) {
    for (const idx max_len : {L, L + 30}) {
      CAPTURE(L, max_len, sizeof(T));
      const mat<T> q = rng.matrix<T>(L, 64), k = rng.matrix<T>(L, 64), v = rng.matrix<T>(L, 48);
      const mat<T> identity = mat<T>::Identity(L, max_len);  // (k, max_len) = [I 0]
      for (const auto mode : {linformer_sharing::shared_heads, linformer_sharing::shared_kv}) {
        const auto proj = mode == linformer_sharing::shared_kv
                              ? salt::linformer_projections<T>::from_matrices(mode, {identity})
                              : salt::linformer_projections<T>::from_matrices(mode, {identity}, {identity});
        const mat<T> lin = salt::linformer_attention(q, k, v, proj);
        const auto naive = naive_attention<T>(q, k, v);
        const auto ref = naive_attention<oracle_t<T>>(q, k, v);
        const auto acc = judge<T>(lin, naive.out, ref.out, finite_scale(v));
        CAPTURE(acc.kernel_error, acc.naive_error, acc.floor);
        CHECK(acc.ok());
        // The projection sums exact zeros and one exact product per entry, so K' = K bit for bit, and the
        // engine then computes exactly what salt::attention does.
        CHECK(lin == salt::attention(q, k, v));
      }
    }
  }
}

TEST_CASE("key padding: padded keys and values do not reach the projection", "[linformer]") {
  random_source rng(700);
  const idx L = 90, len = 50;
  const mat<double> q = rng.matrix<double>(20, 16), k = rng.matrix<double>(L, 16), v = rng.matrix<double>(L, 16);
  const auto proj = salt::linformer_projections<double>::gaussian(12, 128, 1, linformer_sharing::shared_heads, 3);
  const std::vector<idx> length{len};
  const mat<double> padded = salt::linformer_attention(q, k, v, proj, salt::key_padding{length});
  // The same as zeroing the padded tokens, and as not having them at all.
  mat<double> kz = k, vz = v;
  kz.bottomRows(L - len).setZero();
  vz.bottomRows(L - len).setZero();
  CHECK((padded - salt::linformer_attention(q, kz, vz, proj)).cwiseAbs().maxCoeff() < 1e-15);
  CHECK((padded - salt::linformer_attention(q, mat<double>(k.topRows(len)), mat<double>(v.topRows(len)), proj))
            .cwiseAbs()
            .maxCoeff() < 1e-15);
  // Garbage (even NaN) in the padding changes nothing.
  mat<double> kn = k, vn = v;
  kn.bottomRows(L - len).setConstant(std::numeric_limits<double>::quiet_NaN());
  vn.bottomRows(L - len).setConstant(1e300);
  CHECK(salt::linformer_attention(q, kn, vn, proj, salt::key_padding{length}) == padded);
  // No valid key: zero projected keys and values, so zero output.
  const std::vector<idx> none{0};
  CHECK(salt::linformer_attention(q, k, v, proj, salt::key_padding{none}).isZero(0));
  // A user's key-only mask reaches the kernel and means what key_padding means; so does key_padding & no_mask.
  STATIC_REQUIRE(salt::key_length_mask<first_keys>);
  CHECK(salt::linformer_attention(q, k, v, proj, first_keys{len}) == padded);
  CHECK(salt::linformer_attention(q, k, v, proj, salt::key_padding{length} & salt::no_mask{}) == padded);
}

TEST_CASE("Linformer results do not depend on the number of threads", "[linformer]") {
  random_source rng(800);
  const idx B = 2, Hq = 4, Hkv = 2, L = 700, d = 64;
  const heads_buffer<float> q(B, Hq, L, d, rng), k(B, Hkv, L, d, rng), v(B, Hkv, L, d, rng);
  heads_buffer<float> one(B, Hq, L, d, rng), two(B, Hq, L, d, rng);
  const auto proj = salt::linformer_projections<float>::gaussian(200, 1024, Hkv, linformer_sharing::per_head, 4);
  const std::vector<idx> lengths{L, 333};
  salt::linformer_attention<float>(q.view(), k.view(), v.view(), one.out_view(), proj, salt::key_padding{lengths}, {},
                                   {.threads = 1});
  salt::linformer_attention<float>(q.view(), k.view(), v.view(), two.out_view(), proj, salt::key_padding{lengths}, {},
                                   {.threads = 2});
  CHECK(one.data == two.data);
}

TEST_CASE("Linformer's log-sum-exp and scale", "[linformer]") {
  random_source rng(900);
  const mat<double> q = rng.matrix<double>(10, 8), k = rng.matrix<double>(30, 8), v = rng.matrix<double>(30, 8);
  const auto proj = salt::linformer_projections<double>::xavier_normal(6, 30, 1, linformer_sharing::shared_heads, 2);
  mat<double> out(10, 8);
  salt::column<double> lse(10);
  auto view = [](const mat<double>& m) { return salt::tensor_view<const double>::of(m); };
  salt::linformer_attention<double>(view(q), view(k), view(v), salt::tensor_view<double>::of(out),
                                    salt::lse_view<double>{lse.data(), 0, 0}, proj, salt::no_mask{},
                                    salt::dot_product{.scale = 0.3});
  const mat<double> kp = proj.e(0) * k, vp = proj.f(0) * v;
  const auto exact = salt::attention_with_lse(q, kp, vp, salt::no_mask{}, salt::dot_product{.scale = 0.3});
  CHECK((out - exact.out).cwiseAbs().maxCoeff() < 1e-14);
  CHECK((lse - exact.lse).cwiseAbs().maxCoeff() < 1e-14);
}

TEST_CASE("Linformer errors name the sizes", "[linformer][errors]") {
  random_source rng(1000);
  using P = salt::linformer_projections<float>;
  const mat<float> q = rng.matrix<float>(200, 8), k = rng.matrix<float>(200, 8);
  const auto proj = P::gaussian(16, 128, 1, linformer_sharing::shared_heads, 1);
  CHECK(error_of([&] { (void)salt::linformer_attention(q, k, k, proj); }) ==
        "salt::linformer_attention: the sequence has 200 keys but the projections take at most 128 (max_len)");
  const auto three = P::gaussian(16, 256, 3, linformer_sharing::per_head, 1);
  CHECK(error_of([&] { (void)salt::linformer_attention(q, k, k, three); }) ==
        "salt::linformer_attention: the projections hold one (E, F) pair per head for 3 heads but k and v have 1");
  const std::vector<idx> too_long{201};
  const auto big = P::gaussian(16, 256, 1, linformer_sharing::shared_kv, 1);
  CHECK(error_of([&] { (void)salt::linformer_attention(q, k, k, big, salt::key_padding{too_long}); }) ==
        "salt::linformer_attention: key_padding length 201 of batch item 0 is outside [0, 200]");
  CHECK(error_of([&] { (void)salt::linformer_attention(q, k, k, big, first_keys{201}); }) ==
        "salt::linformer_attention: the mask's valid_keys of batch item 0 is 201, outside [0, 200]");
  const mat<float> k7 = rng.matrix<float>(7, 8);
  CHECK(error_of([&] { (void)salt::linformer_attention(q, k, k7, big); }) ==
        "salt::linformer_attention: k has 200 tokens but v has 7");

  CHECK(error_of([] { (void)P::gaussian(0, 128, 1, linformer_sharing::per_head, 1); }) ==
        "salt::linformer_projections::gaussian: k and max_len must be >= 1, got k = 0, max_len = 128");
  CHECK(error_of([] { (void)P::xavier_normal(4, 128, 0, linformer_sharing::per_head, 1); }) ==
        "salt::linformer_projections::xavier_normal: heads must be >= 1, got 0");
  const mat<float> e(16, 128), e_bad(16, 100);
  CHECK(error_of([&] {
          (void)P::from_matrices(linformer_sharing::per_head, {e, e_bad}, {e, e});
        }) == "salt::linformer_projections::from_matrices: E[1] is 16 x 100 but E[0] is 16 x 128");
  CHECK(error_of([&] {
          (void)P::from_matrices(linformer_sharing::per_head, {e, e}, {e, e_bad});
        }) == "salt::linformer_projections::from_matrices: F[1] is 16 x 100 but E[0] is 16 x 128");
  CHECK(error_of([&] { (void)P::from_matrices(linformer_sharing::shared_heads, {e}, {}); }) ==
        "salt::linformer_projections::from_matrices: 1 E and 0 F matrices given, but E and F must pair up");
  CHECK(error_of([&] { (void)P::from_matrices(linformer_sharing::shared_kv, {e}, {e}); }) ==
        "salt::linformer_projections::from_matrices: 1 E and 1 F matrices given, but shared_kv takes no F (F = E)");
  CHECK(error_of([&] {
          (void)P::from_matrices(linformer_sharing::shared_heads, {e, e}, {e, e});
        }) == "salt::linformer_projections::from_matrices: 2 E matrices given, but shared modes take one");
}
