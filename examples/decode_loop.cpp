// A decode loop over a paged KV cache: four sequences of different lengths (a ragged batch), grouped-query
// heads (32 query heads over 8 K/V heads, d = 128), one new token per sequence per step: append its K and V
// rows to the pages, then attend. Prints tokens/s and the GB/s of cache read, and checks the last step of one
// sequence against a plain softmax over its keys.
//
//   build/examples/decode_loop [steps]
#include <salt/salt.hpp>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <vector>

int main(int argc, char** argv) {
  using salt::index;
  const int steps = argc > 1 ? std::atoi(argv[1]) : 32;
  const index hq = 32, hkv = 8, d = 128, page_tokens = 128;
  std::vector<index> lengths = {4096, 1000, 8191, 2048};  // tokens already cached per sequence
  const index batch = static_cast<index>(lengths.size());
  const index table_stride = (8192 + steps + page_tokens - 1) / page_tokens;  // pages a sequence may take
  const index pages = batch * table_stride;

  // The page pool, (pages, Hkv, page_tokens, d), and each sequence's pages: every fourth page, interleaved.
  std::vector<float> k_pages(static_cast<std::size_t>(pages * hkv * page_tokens * d));
  std::vector<float> v_pages(k_pages.size());
  std::vector<index> table(static_cast<std::size_t>(batch * table_stride));
  for (index b = 0; b < batch; ++b)
    for (index p = 0; p < table_stride; ++p) table[static_cast<std::size_t>(b * table_stride + p)] = p * batch + b;
  const auto cache = [&](std::vector<float>& pool) {
    return salt::paged_view<float>::phtd(pool.data(), pages, hkv, page_tokens, d, table, table_stride, lengths);
  };

  // The prompts' keys and values, written through the page table like every later token.
  salt::random_generator rng(1);
  const auto normal = [&rng](std::vector<float>& x) {
    for (float& e : x) e = static_cast<float>(rng.normal());
  };
  {
    const index longest = 8191;
    std::vector<float> prompt(static_cast<std::size_t>(batch * hkv * longest * d));
    const std::vector<index> at(static_cast<std::size_t>(batch), 0);
    const std::vector<index> saved = lengths;
    for (auto* pool : {&k_pages, &v_pages}) {
      normal(prompt);
      for (index b = 0; b < batch; ++b) {  // each sequence its own prompt length
        std::vector<index> one_table(table.begin() + b * table_stride, table.begin() + (b + 1) * table_stride);
        const std::vector<index> one_len{0}, zero{0};
        const auto one = salt::paged_view<float>::phtd(pool->data(), pages, hkv, page_tokens, d, one_table,
                                                       table_stride, one_len);
        const salt::tensor_view<const float> rows{prompt.data() + b * hkv * longest * d, 1, hkv, saved[b], d, 0,
                                                  longest * d, d};
        salt::append_tokens(one, rows, zero);
      }
    }
  }

  std::vector<float> q(static_cast<std::size_t>(batch * hq * d)), out(q.size());
  std::vector<float> new_k(static_cast<std::size_t>(batch * hkv * d)), new_v(new_k.size());
  const auto step_rows = [&](std::vector<float>& x, index heads) {
    return salt::tensor_view<const float>::bhld(x.data(), batch, heads, 1, d);
  };
  double seconds = 0, bytes = 0;
  for (int s = 0; s < steps; ++s) {
    normal(q), normal(new_k), normal(new_v);  // what the model's projections would give
    const auto t0 = std::chrono::steady_clock::now();
    salt::append_tokens(cache(k_pages), step_rows(new_k, hkv), lengths);
    salt::append_tokens(cache(v_pages), step_rows(new_v, hkv), lengths);
    for (index& l : lengths) ++l;
    salt::attention(step_rows(q, hq), salt::paged_view<const float>(cache(k_pages)),
                    salt::paged_view<const float>(cache(v_pages)), salt::tensor_view<float>::bhld(out.data(), batch, hq, 1, d),
                    salt::causal{});
    seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    for (const index l : lengths) bytes += 2.0 * static_cast<double>(l * hkv * d) * sizeof(float);
  }
  std::printf("decode: %lld sequences of %lld to %lld cached tokens, 32/8 heads, d = 128, pages of %lld tokens\n",
              static_cast<long long>(batch), static_cast<long long>(lengths[1]), static_cast<long long>(lengths[2]),
              static_cast<long long>(page_tokens));
  std::printf("  %d steps: %.0f tokens/s, %.1f GB/s of cache read (append + attend)\n", steps,
              steps * static_cast<double>(batch) / seconds, bytes / seconds * 1e-9);

  // The last step of sequence 1, query head 5 (K/V head 1), against a plain softmax over its keys.
  const index b = 1, h = 5, g = h / (hq / hkv), n = lengths[1];
  const auto kc = salt::paged_view<const float>(cache(k_pages)).head(b, g);
  const auto vc = salt::paged_view<const float>(cache(v_pages)).head(b, g);
  std::vector<double> p(static_cast<std::size_t>(n));
  double top = -INFINITY, sum = 0, worst = 0;
  for (index j = 0; j < n; ++j) {
    double dot = 0;
    for (index c = 0; c < d; ++c) dot += double(q[static_cast<std::size_t>((b * hq + h) * d + c)]) * kc.row(j)[c];
    p[static_cast<std::size_t>(j)] = dot / std::sqrt(double(d));
    top = std::max(top, p[static_cast<std::size_t>(j)]);
  }
  for (double& e : p) sum += (e = std::exp(e - top));
  for (index c = 0; c < d; ++c) {
    double o = 0;
    for (index j = 0; j < n; ++j) o += p[static_cast<std::size_t>(j)] * vc.row(j)[c];
    worst = std::max(worst, std::abs(o / sum - out[static_cast<std::size_t>((b * hq + h) * d + c)]));
  }
  std::printf("  sequence 1, head 5 against a plain softmax: max |difference| %.2e\n", worst);
  return worst < 1e-5 ? 0 : 1;
}
