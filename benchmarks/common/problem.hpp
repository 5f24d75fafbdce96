#pragma once
/// \file problem.hpp
/// Inputs for benchmarks and the demo: random (batch, heads, tokens, features) buffers and the views
/// over them, made once per shape and reused across iterations.

#include <salt/salt.hpp>

#include <vector>

namespace salt::bench {

struct attention_inputs {
  index batch = 1, heads = 1, kv_heads = 1, lq = 0, lk = 0, d = 64;
  std::vector<float> q, k, v, out;

  attention_inputs(index batch_, index heads_, index kv_heads_, index lq_, index lk_, index d_)
      : batch(batch_), heads(heads_), kv_heads(kv_heads_), lq(lq_), lk(lk_), d(d_) {
    random_generator rng(0x5a17);
    auto fill = [&](std::vector<float>& x, index n) {
      x.resize(static_cast<std::size_t>(n));
      for (float& e : x) e = static_cast<float>(2 * rng.uniform() - 1);
    };
    fill(q, batch * heads * lq * d);
    fill(k, batch * kv_heads * lk * d);
    fill(v, batch * kv_heads * lk * d);
    out.assign(static_cast<std::size_t>(batch * heads * lq * d), 0.0f);
  }

  tensor_view<const float> qv() const { return tensor_view<const float>::bhld(q.data(), batch, heads, lq, d); }
  tensor_view<const float> kv() const { return tensor_view<const float>::bhld(k.data(), batch, kv_heads, lk, d); }
  tensor_view<const float> vv() const { return tensor_view<const float>::bhld(v.data(), batch, kv_heads, lk, d); }
  tensor_view<float> ov() { return tensor_view<float>::bhld(out.data(), batch, heads, lq, d); }
  problem_dims dims() const { return {batch, heads, kv_heads, lq, lk, d, d}; }
};

}  // namespace salt::bench
