// A long document the way Longformer reads it: 32,768 tokens, 8 heads, a 512-wide sliding window
// (256 keys each side) plus a few global tokens, timed beside dense attention over the same tokens.
//
//   build/release/examples/long_document
#include <salt/salt.hpp>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <vector>

int main() {
  constexpr salt::index B = 1, H = 8, L = 32768, D = 64;
  salt::random_generator rng(7);
  auto random_buffer = [&](salt::index n) {
    std::vector<float> x(static_cast<std::size_t>(n));
    for (float& e : x) e = static_cast<float>(2 * rng.uniform() - 1);
    return x;
  };
  const std::vector<float> q = random_buffer(B * H * L * D), k = random_buffer(B * H * L * D),
                           v = random_buffer(B * H * L * D);  // each (B, H, L, D)
  std::vector<float> sparse_out(q.size()), dense_out(q.size());
  using view = salt::tensor_view<const float>;
  const view qv = view::bhld(q.data(), B, H, L, D), kv = view::bhld(k.data(), B, H, L, D),
             vv = view::bhld(v.data(), B, H, L, D);

  // The classification token and one token per 4096 attend everywhere and are attended by all.
  const std::vector<salt::index> global{0, 4096, 8192, 12288, 16384, 20480, 24576, 28672};
  const auto longformer = salt::sliding_window{.left = 256, .right = 256} | salt::global_tokens{global};

  auto seconds = [](auto&& run) {
    const auto t0 = std::chrono::steady_clock::now();
    run();
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  };
  const double sparse = seconds([&] {
    salt::attention(qv, kv, vv, salt::tensor_view<float>::bhld(sparse_out.data(), B, H, L, D), longformer);
  });
  const double dense = seconds([&] {
    salt::attention(qv, kv, vv, salt::tensor_view<float>::bhld(dense_out.data(), B, H, L, D));
  });

  const auto work = salt::plan_work<float>(longformer, {B, H, H, L, L, D, D});
  std::printf("L = %td tokens, %td heads, d = %td\n", L, H, D);
  std::printf("window 2 x 256 + %zu global tokens: %8.3f s  (%.1f%% of the pairs dense visits)\n", global.size(),
              sparse, 100.0 * static_cast<double>(work.visited_pairs) / static_cast<double>(B * H * L * L));
  std::printf("dense attention:                  %8.3f s  (%.0fx slower)\n", dense, dense / sparse);

  // Check one row by hand: token 20000 of head 3 sees keys 19744 ... 20256 and the global tokens.
  const salt::index h = 3, t = 20000;
  const float* qt = q.data() + (h * L + t) * D;
  std::vector<salt::index> keys;
  for (salt::index j = 0; j < L; ++j)
    if ((j >= t - 256 && j <= t + 256) || std::find(global.begin(), global.end(), j) != global.end()) keys.push_back(j);
  std::vector<double> logit;
  double max_logit = -1e300, sum = 0, worst = 0;
  for (const salt::index j : keys) {
    double s = 0;
    for (salt::index c = 0; c < D; ++c) s += double(qt[c]) * double(k[(h * L + j) * D + c]);
    logit.push_back(s / 8.0);  // 1/sqrt(64)
    max_logit = std::max(max_logit, logit.back());
  }
  for (double& s : logit) sum += (s = std::exp(s - max_logit));
  for (salt::index c = 0; c < D; ++c) {
    double o = 0;
    for (std::size_t n = 0; n < keys.size(); ++n) o += logit[n] / sum * double(v[(h * L + keys[n]) * D + c]);
    worst = std::max(worst, std::abs(o - double(sparse_out[(h * L + t) * D + c])));
  }
  std::printf("row %td of head %td against a direct computation over its %zu keys: max difference %.2e\n", t, h,
              keys.size(), worst);
  return worst < 1e-5 ? 0 : 1;
}
