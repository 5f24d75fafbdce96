// LSH attention (Reformer): HuggingFace's LSHSelfAttention fixtures (tools/make_lsh_fixtures.py: buckets
// exactly, outputs to 1e-10 in double, the accuracy criterion in float); a naive implementation of the same
// semantics (explicit chunk lists with repeats, HF's -1e9 / -1e5 mask values) as the oracle over a sweep of
// options, paddings, shapes and both precisions; the exact engine on cases where LSH must equal exact
// attention; seeded rotations, Reformer's bucket rule, errors, thread independence.
#include <salt/lsh.hpp>

#include <salt/attention.hpp>  // exact attention, where LSH must equal it

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <numeric>
#include <span>
#include <string>
#include <system_error>
#include <utility>
#include <vector>

#include "catch.hpp"
#include "checks.hpp"
#include "fixtures.hpp"
#include "lsh_reference.hpp"
#include "reference.hpp"

namespace {

using idx = salt::index;
using namespace salt::test;
template <class U>
using mat = salt::row_matrix<U>;
using bucket_matrix = Eigen::Matrix<idx, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

/// One batch item of several heads, (heads * L, features) stacked, with its view.
template <class T>
salt::tensor_view<const T> view_of(const mat<T>& m, idx batch, idx heads) {
  return salt::tensor_view<const T>::bhld(m.data(), batch, heads, m.rows() / (batch * heads), m.cols());
}

/// Runs lsh_attention on (batch, heads) stacked inputs and checks every head's output and LSE against naive_lsh
/// under the accuracy criterion.
template <class T, class Padding = salt::no_mask>
void check_lsh(idx batch, idx heads, idx L, idx d, idx dv, const salt::lsh_options& opt, std::uint64_t seed,
               const Padding& padding = {}, bool shared_rotations = false) {
  random_source rng(seed);
  const mat<T> qk = rng.matrix<T>(batch * heads * L, d, 2.0), v = rng.matrix<T>(batch * heads * L, dv);
  const auto rot = salt::lsh_rotations<T>::gaussian(shared_rotations ? 1 : heads, d, opt, seed + 1);
  mat<T> out(batch * heads * L, dv);
  salt::column<T> lse(batch * heads * L);
  salt::lsh_attention<T>(view_of(qk, batch, heads), view_of(v, batch, heads),
                         salt::tensor_view<T>::bhld(out.data(), batch, heads, L, dv),
                         salt::lse_view<T>::bht(lse.data(), heads, L), rot, opt, padding);
  for (idx b = 0; b < batch; ++b) {
    std::vector<std::uint8_t> valid(static_cast<std::size_t>(L), 1);
    if constexpr (std::is_same_v<Padding, salt::key_padding>)
      for (idx p = padding.lengths[static_cast<std::size_t>(b)]; p < L; ++p) valid[static_cast<std::size_t>(p)] = 0;
    if constexpr (std::is_same_v<Padding, salt::key_mask>)
      for (idx p = 0; p < L; ++p) valid[static_cast<std::size_t>(p)] = padding.valid[static_cast<std::size_t>(b * L + p)];
    for (idx h = 0; h < heads; ++h) {
      const idx r0 = (b * heads + h) * L;
      const mat<T> qh = qk.middleRows(r0, L), vh = v.middleRows(r0, L);
      const bucket_matrix bk = salt::lsh_buckets(qh, rot, opt, shared_rotations ? 0 : h);
      const auto naive = naive_lsh<T>(qh, vh, bk, opt, valid);
      const auto ref = naive_lsh<oracle_t<T>>(qh, vh, bk, opt, valid);
      CAPTURE(b, h, L, opt.n_hashes, opt.chunk_length, opt.chunks_before, opt.chunks_after, opt.causal,
              opt.bucket_pure);
      const auto e = judge<T>(out.middleRows(r0, L), naive.out, ref.out, finite_scale(vh));
      CAPTURE(e.kernel_error, e.naive_error, e.floor);
      CHECK(e.ok());
      const auto el = judge<T>(lse.segment(r0, L), naive.lse, ref.lse, finite_scale(ref.lse));
      CAPTURE(el.kernel_error, el.naive_error, el.floor);
      CHECK(el.ok());
    }
  }
}

// ---------------------------------------------------------------------------------------------------------------
// HuggingFace fixtures

struct hf_case {
  salt::lsh_options opt;
  idx heads = 0, L = 0, d = 0;
  std::vector<mat<double>> rotations;  // per head (d, n_hashes * w); empty when HF drew none
  std::vector<std::uint8_t> valid;     // per key
  bool padded = false;                 // some key is padding
};

hf_case read_case(const fixture_file& f) {
  hf_case c;
  c.opt.n_hashes = static_cast<idx>(f.scalar("n_hashes"));
  c.opt.chunk_length = static_cast<idx>(f.scalar("chunk_length"));
  c.opt.chunks_before = static_cast<idx>(f.scalar("chunks_before"));
  c.opt.chunks_after = static_cast<idx>(f.scalar("chunks_after"));
  c.opt.causal = f.scalar("causal") != 0;
  c.opt.n_buckets = f.integers("bucket_factors");
  const fixture_array& qk = f.get("qk");
  c.heads = qk.shape[0];
  c.L = qk.shape[1];
  c.d = qk.shape[2];
  if (f.get("rotations").shape[2] > 0)
    for (idx h = 0; h < c.heads; ++h) c.rotations.push_back(f.as_matrix<double>("rotations", h));
  c.valid.assign(static_cast<std::size_t>(c.L), 1);
  if (f.has("valid")) {
    const auto flags = f.integers<int>("valid");
    for (idx p = 0; p < c.L; ++p) c.valid[static_cast<std::size_t>(p)] = static_cast<std::uint8_t>(flags[static_cast<std::size_t>(p)]);
  }
  c.padded = std::count(c.valid.begin(), c.valid.end(), 0) > 0;
  return c;
}

template <class T>
salt::lsh_rotations<T> rotations_of(const hf_case& c) {
  if (c.rotations.empty()) return salt::lsh_rotations<T>::gaussian(c.heads, c.d, c.opt, 1);  // unused: not hashed
  std::vector<mat<T>> per_head;
  for (const auto& r : c.rotations) per_head.push_back(r.cast<T>());
  return salt::lsh_rotations<T>::from_matrices(per_head, c.opt.n_hashes);
}

/// Every head of a fixture through salt, in T.
template <class T>
mat<T> run_case(const fixture_file& f, const hf_case& c) {
  mat<T> qk(c.heads * c.L, c.d), v(c.heads * c.L, c.d);
  for (idx h = 0; h < c.heads; ++h) {
    qk.middleRows(h * c.L, c.L) = f.as_matrix<T>("qk", h);
    v.middleRows(h * c.L, c.L) = f.as_matrix<T>("v", h);
  }
  mat<T> out(c.heads * c.L, c.d);
  const auto rot = rotations_of<T>(c);
  const auto outv = salt::tensor_view<T>::bhld(out.data(), 1, c.heads, c.L, c.d);
  if (c.padded)
    salt::lsh_attention<T>(view_of(qk, 1, c.heads), view_of(v, 1, c.heads), outv, rot, c.opt, salt::key_mask{c.valid});
  else
    salt::lsh_attention<T>(view_of(qk, 1, c.heads), view_of(v, 1, c.heads), outv, rot, c.opt);
  return out;
}

TEST_CASE("salt matches transformers' LSHSelfAttention on its fixtures", "[lsh][hf]") {
  const auto files = fixtures_named("lsh_");
  REQUIRE(files.size() >= 7);
  for (const std::string& path : files) {
    const fixture_file f(path);
    const hf_case c = read_case(f);
    CAPTURE(path, c.L, c.opt.n_hashes, c.opt.chunk_length, c.opt.causal, c.padded);
    INFO(f.header());
    // Buckets: exactly HF's (its padding positions hold the extra bucket).
    if (f.has("buckets")) {
      const auto rot = rotations_of<double>(c);
      const auto rotf = rotations_of<float>(c);
      const auto want = f.integers("buckets");
      for (idx h = 0; h < c.heads; ++h) {
        const bucket_matrix got = salt::lsh_buckets(f.as_matrix<double>("qk", h), rot, c.opt, h);
        const bucket_matrix gotf = salt::lsh_buckets(f.as_matrix<float>("qk", h), rotf, c.opt, h);
        idx wrong = 0, wrong_float = 0;
        for (idx r = 0; r < c.opt.n_hashes; ++r)
          for (idx p = 0; p < c.L; ++p) {
            const idx expected = want[static_cast<std::size_t>((h * c.opt.n_hashes + r) * c.L + p)];
            const bool pad = c.valid[static_cast<std::size_t>(p)] == 0;
            wrong += (pad ? c.opt.buckets() : got(r, p)) != expected;
            wrong_float += (pad ? c.opt.buckets() : gotf(r, p)) != expected;
          }
        CHECK(wrong == 0);
        CHECK(wrong_float == 0);
      }
    }
    // Double: HF's output to 1e-10.
    const mat<double> out = run_case<double>(f, c);
    double err = 0;
    for (idx h = 0; h < c.heads; ++h)
      err = std::max(err, max_abs_diff(out.middleRows(h * c.L, c.L), f.as_matrix<double>("out", h)));
    CAPTURE(err);
    CHECK(err <= 1e-10);
    // Float: the accuracy criterion, HF's float64 output on the float-rounded inputs (naive_lsh in double) as
    // the reference and the same computation in float setting the bar.
    const mat<float> outf = run_case<float>(f, c);
    for (idx h = 0; h < c.heads; ++h) {
      const mat<float> qk = f.as_matrix<float>("qk", h), v = f.as_matrix<float>("v", h);
      const bucket_matrix bk = c.rotations.empty() ? bucket_matrix(c.opt.n_hashes, c.L)
                                                   : salt::lsh_buckets(qk, rotations_of<float>(c), c.opt, h);
      const auto naive = naive_lsh<float>(qk, v, bk, c.opt, c.valid);
      const auto ref = naive_lsh<double>(qk, v, bk, c.opt, c.valid);
      const auto e = judge<float>(outf.middleRows(h * c.L, c.L), naive.out, ref.out, finite_scale(v));
      CAPTURE(h, e.kernel_error, e.naive_error, e.floor);
      CHECK(e.ok());
      // and the float64 reference itself agrees with HF (the oracle is right)
      const auto ref64 = naive_lsh<double>(f.as_matrix<double>("qk", h), f.as_matrix<double>("v", h),
                                           c.rotations.empty() ? bucket_matrix(c.opt.n_hashes, c.L)
                                                               : salt::lsh_buckets(f.as_matrix<double>("qk", h),
                                                                                   rotations_of<double>(c), c.opt, h),
                                           c.opt, c.valid);
      CHECK(max_abs_diff(ref64.out, f.as_matrix<double>("out", h)) <= 1e-12);
    }
  }
}

// ---------------------------------------------------------------------------------------------------------------
// The oracle over options and shapes

TEMPLATE_TEST_CASE("lsh_attention matches the naive LSH semantics", "[lsh]", float, double) {
  using T = TestType;
  salt::lsh_options opt;
  SECTION("several rounds, one chunk before, chunks not a multiple of the engine's blocks") {
    opt = {.n_hashes = 3, .n_buckets = {8}, .chunk_length = 24, .chunks_before = 1, .chunks_after = 0};
    check_lsh<T>(1, 2, 192, 16, 16, opt, 11);
  }
  SECTION("causal, two before and one after, value width differs") {
    opt = {.n_hashes = 2, .n_buckets = {16}, .chunk_length = 16, .chunks_before = 2, .chunks_after = 1,
           .causal = true};
    check_lsh<T>(2, 2, 160, 8, 12, opt, 12);
  }
  SECTION("L not a multiple of the chunk length (model padding), shared rotations") {
    opt = {.n_hashes = 2, .n_buckets = {4}, .chunk_length = 20, .chunks_before = 1, .chunks_after = 1,
           .causal = true};
    check_lsh<T>(1, 3, 131, 8, 8, opt, 13, salt::no_mask{}, true);
  }
  SECTION("key padding") {
    opt = {.n_hashes = 2, .n_buckets = {8}, .chunk_length = 16, .chunks_before = 1, .chunks_after = 0};
    const std::vector<idx> lengths{100, 37, 0};
    check_lsh<T>(3, 2, 100, 8, 8, opt, 14, salt::key_padding{lengths});
  }
  SECTION("key mask, causal") {
    opt = {.n_hashes = 2, .n_buckets = {8}, .chunk_length = 8, .chunks_before = 1, .chunks_after = 1,
           .causal = true};
    random_source rng(99);
    std::vector<std::uint8_t> flags(2 * 64);
    for (auto& f : flags) f = rng.uniform() > -0.5;  // about a quarter padding
    check_lsh<T>(2, 1, 64, 8, 8, opt, 15, salt::key_mask{flags});
  }
  SECTION("bucket_pure") {
    opt = {.n_hashes = 2, .n_buckets = {4}, .chunk_length = 16, .chunks_before = 1, .chunks_after = 1,
           .bucket_pure = true};
    check_lsh<T>(1, 2, 96, 8, 8, opt, 16);
    opt.causal = true;
    check_lsh<T>(1, 2, 90, 8, 8, opt, 17);
  }
  SECTION("factorised buckets") {
    opt = {.n_hashes = 2, .n_buckets = {4, 6}, .chunk_length = 12, .chunks_before = 1, .chunks_after = 0};
    check_lsh<T>(1, 2, 120, 8, 8, opt, 18);
  }
  SECTION("repeated chunks: the band wraps over fewer chunks than it spans") {
    opt = {.n_hashes = 1, .n_buckets = {4}, .chunk_length = 8, .chunks_before = 2, .chunks_after = 2};
    check_lsh<T>(1, 1, 24, 8, 8, opt, 19);
    opt.n_hashes = 2;
    opt.causal = true;
    check_lsh<T>(1, 1, 16, 8, 8, opt, 20);
  }
  SECTION("sequences no longer than one chunk") {
    opt = {.n_hashes = 4, .n_buckets = {4}, .chunk_length = 64, .chunks_before = 1, .causal = true};
    check_lsh<T>(1, 2, 64, 8, 8, opt, 21);
    check_lsh<T>(1, 1, 1, 8, 8, opt, 22);
    opt.causal = false;
    const std::vector<idx> lengths{40};
    check_lsh<T>(1, 1, 50, 8, 8, opt, 23, salt::key_padding{lengths});
  }
  SECTION("long enough for many query tiles and key blocks") {
    if (in_sweep(600, 600)) {
      opt = {.n_hashes = 2, .n_buckets = {16}, .chunk_length = 64, .chunks_before = 1, .chunks_after = 1};
      check_lsh<T>(1, 1, 1024, 16, 16, opt, 24);
      opt.causal = true;
      opt.chunk_length = 50;
      check_lsh<T>(1, 1, 777, 16, 16, opt, 25);
    }
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Exact attention where LSH must equal it

/// Every pair but a query with itself.
struct off_diagonal {
  bool allows(idx q, idx k, const salt::problem_shape&) const noexcept { return q != k; }
  static constexpr bool is_always_full() { return false; }
};

TEMPLATE_TEST_CASE("lsh_attention equals exact attention when every chunk sees every key equally often", "[lsh]",
                   float, double) {
  using T = TestType;
  const idx L = 96, d = 16;
  random_source rng(31);
  const mat<T> qk = rng.matrix<T>(L, d, 2.0), v = rng.matrix<T>(L, d);
  // Keys as LSH normalises them; the self pair's -1e5 vanishes next to any real score, so exact attention
  // without the diagonal is the answer (the first causal query, which sees only itself, outputs its value).
  mat<T> k(L, d);
  for (idx p = 0; p < L; ++p) {
    double ss = 0;
    for (idx j = 0; j < d; ++j) ss += static_cast<double>(qk(p, j)) * static_cast<double>(qk(p, j));
    const T f = static_cast<T>(1.0 / std::sqrt(ss / static_cast<double>(d) + 1e-6));
    for (idx j = 0; j < d; ++j) k(p, j) = qk(p, j) * f;
  }
  const std::vector<salt::lsh_options> settings{
      {.n_hashes = 1, .n_buckets = {8}, .chunk_length = 32, .chunks_before = 2, .chunks_after = 0},  // 3 chunks, once
      {.n_hashes = 2, .n_buckets = {8}, .chunk_length = 48, .chunks_before = 3, .chunks_after = 0},  // 4, once
      {.n_hashes = 2, .n_buckets = {8}, .chunk_length = 48, .chunks_before = 3, .chunks_after = 4},  // 4, twice
      {.n_hashes = 3, .n_buckets = {8}, .chunk_length = 96, .chunks_before = 1},                    // one chunk
  };
  for (bool causal : {false, true}) {
    for (salt::lsh_options opt : settings) {
      opt.causal = causal;
      const auto rot = salt::lsh_rotations<T>::gaussian(1, d, opt, 5);
      const mat<T> got = salt::lsh_attention(qk, v, rot, opt);
      CAPTURE(causal, opt.n_hashes, opt.chunk_length, opt.chunks_before, opt.chunks_after);
      // The exact engine (default scale 1/sqrt(d) on the normalised keys) and the naive computations.
      mat<T> exact = causal ? salt::attention(qk, k, v, salt::causal{} & off_diagonal{})
                            : salt::attention(qk, k, v, off_diagonal{});
      auto naive = causal ? naive_attention<T>(qk, k, v, salt::causal{} & off_diagonal{})
                          : naive_attention<T>(qk, k, v, off_diagonal{});
      auto ref = causal ? naive_attention<oracle_t<T>>(qk, k, v, salt::causal{} & off_diagonal{})
                        : naive_attention<oracle_t<T>>(qk, k, v, off_diagonal{});
      if (causal) {
        exact.row(0) = v.row(0);
        naive.out.row(0) = v.row(0);
        ref.out.row(0) = v.row(0).template cast<oracle_t<T>>();
      }
      const auto e = judge<T>(got, naive.out, ref.out, finite_scale(v));
      const double to_exact = max_abs_diff(got, exact);
      CAPTURE(e.kernel_error, e.naive_error, e.floor, to_exact);
      CHECK(e.ok());
      CHECK(to_exact <= 2 * e.naive_error + e.floor);
    }
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Rotations, bucket rule, errors, threads

TEST_CASE("lsh_rotations: seeded draw order and explicit matrices", "[lsh]") {
  const salt::lsh_options opt{.n_hashes = 3, .n_buckets = {4, 6}};
  const auto a = salt::lsh_rotations<double>::gaussian(2, 5, opt, 42);
  const auto b = salt::lsh_rotations<double>::gaussian(2, 5, opt, 42);
  const auto f = salt::lsh_rotations<float>::gaussian(2, 5, opt, 42);
  REQUIRE(a.width() == 5);
  REQUIRE(a.head(1).rows() == 5);
  REQUIRE(a.head(1).cols() == 15);
  salt::random_generator rng(42);
  for (idx h = 0; h < 2; ++h)
    for (idx c = 0; c < 5; ++c)
      for (idx j = 0; j < 15; ++j) {
        const double x = rng.normal();
        CHECK(a.head(h)(c, j) == x);
        CHECK(b.head(h)(c, j) == x);
        CHECK(f.head(h)(c, j) == static_cast<float>(x));
      }
  const auto m = salt::lsh_rotations<double>::from_matrices({mat<double>(a.head(1))}, 3);
  CHECK(m.heads() == 1);
  CHECK(m.head(7) == a.head(1));  // one head's rotations serve every head
}

TEST_CASE("reformer_buckets follows HuggingFace's _set_num_buckets", "[lsh]") {
  using v = std::vector<idx>;
  CHECK(salt::reformer_buckets(1024, 64, 1024) == v{32});
  CHECK(salt::reformer_buckets(4096, 64, 4096) == v{128});
  CHECK(salt::reformer_buckets(65536, 64, 65536) == v{32, 64});
  CHECK(salt::reformer_buckets(65536, 64, 1 << 20) == v{32, 64});
  CHECK(salt::reformer_buckets(524288, 64, 524288) == v{128, 128});
  CHECK(salt::reformer_buckets(100, 64, 100) == v{2});
  CHECK(salt::lsh_visited_pairs(100, {.n_hashes = 2, .chunk_length = 64, .chunks_before = 1}) == 2.0 * 128 * 128);
  CHECK(salt::lsh_visited_pairs(50, {.n_hashes = 2, .chunk_length = 64}) == 2500.0);
}

TEST_CASE("lsh_attention rejects bad input", "[lsh][errors]") {
  random_source rng(3);
  const mat<float> qk = rng.matrix<float>(40, 8), v = rng.matrix<float>(40, 8), v39 = rng.matrix<float>(39, 8);
  salt::lsh_options opt{.n_hashes = 2, .n_buckets = {4}, .chunk_length = 8};
  const auto rot = salt::lsh_rotations<float>::gaussian(1, 8, opt, 1);
  CHECK(error_of([&] { salt::lsh_attention(qk, v39, rot, opt); }) ==
        "salt::lsh_attention: v is (1, 1, 39, 8) but qk is (1, 1, 40, 8)");
  auto bad = opt;
  bad.n_buckets = {5};
  CHECK(error_of([&] { salt::lsh_attention(qk, v, rot, bad); }) ==
        "salt::lsh_attention: every bucket count must be even and >= 2, got 5");
  bad = opt;
  bad.n_hashes = 3;
  CHECK(error_of([&] { salt::lsh_attention(qk, v, rot, bad); }) ==
        "salt::lsh_attention: the rotations hold 2 rounds but n_hashes = 3");
  bad = opt;
  bad.n_buckets = {8};
  CHECK(error_of([&] { salt::lsh_attention(qk, v, rot, bad); }) ==
        "salt::lsh_attention: the rotations have 2 columns per round but n_buckets needs sum/2 = 4");
  bad = opt;
  bad.chunk_length = 0;
  CHECK(error_of([&] { salt::lsh_attention(qk, v, rot, bad); }) ==
        "salt::lsh_attention: chunk_length must be >= 1, got 0");
  bad = opt;
  bad.chunks_before = -1;
  CHECK(error_of([&] { salt::lsh_attention(qk, v, rot, bad); }) ==
        "salt::lsh_attention: chunks_before (-1) and chunks_after (0) must be >= 0");
  const auto rot6 = salt::lsh_rotations<float>::gaussian(1, 6, opt, 1);
  CHECK(error_of([&] { salt::lsh_attention(qk, v, rot6, opt); }) ==
        "salt::lsh_attention: the rotations are for d = 6 but qk has 8 features");
  const std::vector<idx> lengths{41};
  CHECK(error_of([&] { salt::lsh_attention(qk, v, rot, opt, salt::key_padding{lengths}); }) ==
        "salt::lsh_attention: key_padding length 41 of batch item 0 is outside [0, 40]");
  CHECK(error_of([&] { (void)salt::lsh_rotations<float>::gaussian(1, 8, {.n_buckets = {}}, 1); }) != "");
  CHECK(error_of([&] { (void)salt::lsh_rotations<double>::from_matrices({mat<double>(4, 6)}, 4); }) ==
        "salt::lsh_rotations::from_matrices: 6 columns do not split into 4 rounds");
}

TEST_CASE("lsh_attention is independent of the thread count and leaves its inputs alone", "[lsh][threads]") {
  random_source rng(8);
  const idx B = 2, H = 3, L = 200, d = 16;
  const mat<float> qk = rng.matrix<float>(B * H * L, d, 2.0), v = rng.matrix<float>(B * H * L, d);
  const mat<float> qk0 = qk, v0 = v;
  const salt::lsh_options opt{.n_hashes = 2, .n_buckets = {8}, .chunk_length = 32, .chunks_before = 1,
                              .chunks_after = 1, .causal = true};
  const auto rot = salt::lsh_rotations<float>::gaussian(H, d, opt, 3);
  mat<float> one(B * H * L, d), many(B * H * L, d);
  salt::lsh_attention<float>(view_of(qk, B, H), view_of(v, B, H), salt::tensor_view<float>::bhld(one.data(), B, H, L, d),
                             rot, opt, salt::no_mask{}, salt::run_options{.threads = 1});
  salt::lsh_attention<float>(view_of(qk, B, H), view_of(v, B, H), salt::tensor_view<float>::bhld(many.data(), B, H, L, d),
                             rot, opt, salt::no_mask{}, salt::run_options{.threads = 4});
  CHECK(one == many);
  CHECK(qk == qk0);
  CHECK(v == v0);
}

TEST_CASE("one long head splits into blocks of work with the same bits for every thread count", "[lsh][threads]") {
  // Hashing, gathering and merging run in blocks of positions and rows, so one head of L = 1300 (padded to a
  // multiple of the chunk length) makes several work items of each step, and the last block is partial.
  random_source rng(9);
  const idx L = 1300, d = 24, dv = 20;
  const mat<double> qk = rng.matrix<double>(L, d, 2.0), v = rng.matrix<double>(L, dv);
  const salt::lsh_options opt{.n_hashes = 3, .n_buckets = {4, 8}, .chunk_length = 48, .chunks_before = 1,
                              .chunks_after = 1, .causal = true};
  const auto rot = salt::lsh_rotations<double>::gaussian(1, d, opt, 4);
  const std::vector<idx> lengths{1111};
  auto run = [&](int threads) {
    mat<double> out(L, dv);
    salt::column<double> lse(L);
    salt::lsh_attention<double>(view_of(qk, 1, 1), view_of(v, 1, 1), salt::tensor_view<double>::of(out),
                                salt::lse_view<double>::bht(lse.data(), 1, L), rot, opt, salt::key_padding{lengths},
                                salt::run_options{.threads = threads});
    return std::pair{out, lse};
  };
  const auto [out1, lse1] = run(1);
  for (int threads : {2, 3, 7}) {
    CAPTURE(threads);
    const auto [out, lse] = run(threads);
    CHECK(out == out1);
    CHECK(lse == lse1);
  }
}

}  // namespace
