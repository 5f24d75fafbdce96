// salt quickstart: one head with Eigen matrices, then batched multi-head attention with grouped-query heads.
//
//   g++ -std=c++20 -O2 -march=native -fopenmp -I include -isystem /usr/include/eigen3 examples/quickstart.cpp

#include <salt/salt.hpp>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <random>
#include <vector>

int main() {
  // One head: q, k, v are (tokens, features) row-major matrices, read in place.
  const salt::row_matrix<float> q = salt::row_matrix<float>::Random(1000, 64);  // (Lq, d)
  const salt::row_matrix<float> k = salt::row_matrix<float>::Random(1000, 64);  // (Lk, d)
  const salt::row_matrix<float> v = salt::row_matrix<float>::Random(1000, 64);  // (Lk, dv)

  const salt::row_matrix<float> dense = salt::attention(q, k, v);                  // (Lq, dv)
  const salt::row_matrix<float> causal = salt::attention(q, k, v, salt::causal{});  // (Lq, dv)
  std::printf("one head, dense:  out %td x %td, checksum %.6f\n", dense.rows(), dense.cols(), dense.sum());
  std::printf("one head, causal: out %td x %td, checksum %.6f\n", causal.rows(), causal.cols(), causal.sum());

  // Many heads: any (batch, heads, tokens, features) buffer, here contiguous in that order as PyTorch's SDPA
  // takes it. K and V have 2 heads shared by 8 query heads (grouped-query attention: query head h reads
  // K/V head h / 4).
  constexpr salt::index B = 2, Hq = 8, Hkv = 2, L = 512, D = 64;
  std::mt19937 rng(42);
  std::uniform_real_distribution<float> uniform(-1.0f, 1.0f);
  auto random_buffer = [&](salt::index n) {
    std::vector<float> x(static_cast<std::size_t>(n));
    for (float& e : x) e = uniform(rng);
    return x;
  };
  const std::vector<float> qs = random_buffer(B * Hq * L * D);   // (B, Hq, L, D)
  const std::vector<float> ks = random_buffer(B * Hkv * L * D);  // (B, Hkv, L, D)
  const std::vector<float> vs = random_buffer(B * Hkv * L * D);  // (B, Hkv, L, D)
  std::vector<float> out(static_cast<std::size_t>(B * Hq * L * D));  // (B, Hq, L, D)

  using in_view = salt::tensor_view<const float>;
  salt::attention(in_view::bhld(qs.data(), B, Hq, L, D), in_view::bhld(ks.data(), B, Hkv, L, D),
                  in_view::bhld(vs.data(), B, Hkv, L, D), salt::tensor_view<float>::bhld(out.data(), B, Hq, L, D),
                  salt::causal{});

  // Under the causal mask the first query sees only the first key, so its output is that key's value row.
  double checksum = 0;
  for (float x : out) checksum += x;
  const float* first_out = out.data() + ((1 * Hq + 5) * L) * D;  // batch 1, query head 5, token 0
  const float* first_v = vs.data() + ((1 * Hkv + 5 / (Hq / Hkv)) * L) * D;  // batch 1, its K/V head 1, token 0
  float diff = 0;
  for (salt::index c = 0; c < D; ++c) diff = std::max(diff, std::abs(first_out[c] - first_v[c]));
  std::printf("multi-head GQA, causal: B=%td Hq=%td Hkv=%td L=%td d=%td, checksum %.6f, |out[1,5,0] - v[1,1,0]| = %g\n",
              B, Hq, Hkv, L, D, checksum, diff);
}
