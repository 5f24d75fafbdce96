// The README's bad-input table, for the rows the kernels' own test files do not already pin: an output
// that aliases an input, NaN in one token, empty sequences and rows that see no key, for LSH, linear and
// Linformer attention. (The engine's rows are in test_edge_cases.cpp, the masks' in test_sparse_*.cpp,
// each kernel's bad sizes in its own file; the README names the test behind every row.)
#include <salt/linear.hpp>
#include <salt/linformer.hpp>
#include <salt/lsh.hpp>

#include <cmath>
#include <limits>
#include <vector>

#include "catch.hpp"
#include "checks.hpp"
#include "reference.hpp"

namespace {

using idx = salt::index;
using namespace salt::test;
template <class U>
using mat = salt::row_matrix<U>;
constexpr float not_a_number = std::numeric_limits<float>::quiet_NaN();

salt::tensor_view<const float> in(const mat<float>& m) { return salt::tensor_view<const float>::of(m); }
salt::tensor_view<float> out_of(mat<float>& m) { return salt::tensor_view<float>::of(m); }

bool rows_nan(const mat<float>& m, idx first, idx last) {
  for (idx r = first; r < last; ++r)
    if (!m.row(r).array().isNaN().all()) return false;
  return true;
}

const salt::lsh_options lsh_opt{.n_hashes = 2, .n_buckets = {4}, .chunk_length = 8};

}  // namespace

TEST_CASE("an output that shares memory with an input is refused, and nothing is written", "[errors][aliasing]") {
  random_source rng(1);
  mat<float> q = rng.matrix<float>(32, 8);
  const mat<float> k = rng.matrix<float>(32, 8), v = rng.matrix<float>(32, 8), before = q;
  const auto rot = salt::lsh_rotations<float>::gaussian(1, 8, lsh_opt, 1);
  CHECK(error_of([&] { salt::lsh_attention<float>(in(q), in(v), out_of(q), rot, lsh_opt); }) ==
        "salt::lsh_attention: out overlaps an input; LSH attention cannot run in place");
  CHECK(error_of([&] { salt::linear_attention<float>(in(q), in(k), in(v), out_of(q), salt::elu_plus_one{}); }) ==
        "salt::linear_attention: out overlaps an input; linear attention cannot run in place");
  const auto proj = salt::linformer_projections<float>::gaussian(4, 32, 1, salt::linformer_sharing::shared_heads, 1);
  CHECK(error_of([&] { salt::linformer_attention<float>(in(q), in(k), in(v), out_of(q), proj); }) ==
        "salt::linformer_attention: out overlaps an input; Linformer attention cannot run in place");
  CHECK(q == before);
}

TEST_CASE("NaN in one token reaches exactly the rows that read it", "[nan]") {
  random_source rng(2);
  const idx L = 48, p = 20;
  const mat<float> q = rng.matrix<float>(L, 8), k = rng.matrix<float>(L, 8), v = rng.matrix<float>(L, 8);
  mat<float> k_nan = k;
  k_nan(p, 3) = not_a_number;

  // Linear attention sums every key into its state: non-causal, every row reads key p; causal, the rows
  // from p on. The rows before p keep the very bits they have without the NaN.
  const salt::elu_plus_one phi;
  CHECK(rows_nan(salt::linear_attention(q, k_nan, v, phi), 0, L));
  const mat<float> clean = salt::linear_attention(q, k, v, phi, salt::causal{});
  const mat<float> dirty = salt::linear_attention(q, k_nan, v, phi, salt::causal{});
  CHECK(dirty.topRows(p) == clean.topRows(p));
  CHECK(rows_nan(dirty, p, L));

  // A chunk whose first key is large takes several rescaling passes; a NaN value later in it must still not
  // reach the rows before it (the fuzzer's finding: 0 * NaN of keys outside a pass leaked into the state).
  {
    random_source r2(7);
    mat<float> qs = r2.matrix<float>(35, 6), ks = r2.matrix<float>(35, 6), vs = r2.matrix<float>(35, 11);
    ks.row(0) *= 29.0f;
    vs(5, 9) = not_a_number;
    const salt::favor_plus<float> favor(salt::random_features<float>::orthogonal(17, 6, 3));
    const mat<float> o = salt::linear_attention(qs, ks, vs, favor, salt::causal{});
    CHECK(o.topRows(5).allFinite());
    for (idx r = 5; r < 35; ++r) CHECK(std::isnan(o(r, 9)));
  }

  // Linformer projects every key into every projected key: every row reads it.
  const auto proj = salt::linformer_projections<float>::gaussian(8, L, 1, salt::linformer_sharing::shared_heads, 3);
  CHECK(rows_nan(salt::linformer_attention(q, k_nan, v, proj), 0, L));

  // Causal LSH: the last position's value is read by its own query only (every earlier query has it in
  // its future); the hashing sees only qk, so the chunks do not move.
  mat<float> v_nan = v;
  v_nan(L - 1, 0) = not_a_number;
  salt::lsh_options causal = lsh_opt;
  causal.causal = true;
  const auto rot = salt::lsh_rotations<float>::gaussian(1, 8, causal, 4);
  const mat<float> lsh_clean = salt::lsh_attention(q, v, rot, causal);
  const mat<float> lsh_dirty = salt::lsh_attention(q, v_nan, rot, causal);
  CHECK(lsh_dirty.topRows(L - 1) == lsh_clean.topRows(L - 1));
  CHECK(std::isnan(lsh_dirty(L - 1, 0)));
}

TEST_CASE("empty sequences give empty outputs", "[empty]") {
  const mat<float> none(0, 8);
  const auto rot = salt::lsh_rotations<float>::gaussian(1, 8, lsh_opt, 1);
  CHECK(salt::lsh_attention(none, none, rot, lsh_opt).rows() == 0);
  CHECK(salt::linear_attention(none, none, none, salt::elu_plus_one{}, salt::causal{}).rows() == 0);
  const auto proj = salt::linformer_projections<float>::gaussian(4, 16, 1, salt::linformer_sharing::shared_heads, 1);
  CHECK(salt::linformer_attention(none, none, none, proj).rows() == 0);
}

TEST_CASE("rows that see no key: zeros for linear and Linformer attention, the own value for LSH", "[masked]") {
  random_source rng(5);
  const idx L = 24;
  const mat<float> q = rng.matrix<float>(L, 8), k = rng.matrix<float>(L, 8), v = rng.matrix<float>(L, 4);
  const std::vector<idx> nothing{0};

  // Linear attention: the denominator is zero, and the guard gives zeros (not 0/0).
  CHECK(salt::linear_attention(q, k, v, salt::elu_plus_one{}, salt::key_padding{nothing}).isZero(0));
  // Causal with offset -1: query 0 sees no key.
  const mat<float> shifted = salt::linear_attention(q, k, v, salt::elu_plus_one{}, salt::causal<>{.offset = -1});
  CHECK(shifted.row(0).isZero(0));
  CHECK(shifted.bottomRows(L - 1).allFinite());

  // Linformer: padded keys and values are zeroed before projecting, so every projected key scores 0 and
  // every projected value is 0.
  const auto proj = salt::linformer_projections<float>::gaussian(6, L, 1, salt::linformer_sharing::per_head, 2);
  CHECK(salt::linformer_attention(q, k, v, proj, salt::key_padding{nothing}).isZero(0));

  // LSH follows Reformer: a query's own position has the finite score -1e5, above every masked key's, so a
  // query whose keys are all padded attends to itself in every round and returns its own value.
  const mat<float> qk = rng.matrix<float>(L, 8);
  const auto rot = salt::lsh_rotations<float>::gaussian(1, 8, lsh_opt, 6);
  const mat<float> own = salt::lsh_attention(qk, v, rot, lsh_opt, salt::key_padding{nothing});
  const auto e = judge<float>(own, v, v, finite_scale(v));
  CAPTURE(e.kernel_error, e.floor);
  CHECK(e.ok());
}
