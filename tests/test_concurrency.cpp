// Every kernel called at once from 8 std::threads sharing read-only masks, score policies, projections,
// rotations and feature maps: each thread's results must equal, bit for bit, what one thread computed alone
// beforehand. The threads' Q/K/V differ (all read-only, all shared), so that state shared between calls
// inside a kernel (LSH keeps a workspace per calling thread, the engine one per OpenMP thread) would show
// as another thread's numbers; the inputs must come out unchanged.
#include <salt/salt.hpp>

#include <algorithm>
#include <atomic>
#include <bit>
#include <cstdint>
#include <functional>
#include <new>
#include <string>
#include <thread>
#include <vector>

#include "catch.hpp"
#include "reference.hpp"

namespace {

using idx = salt::index;
using namespace salt::test;
using mat = salt::row_matrix<float>;

constexpr idx L = 300, d = 32;  // several query tiles, LSH chunks and linear-attention chunks, any tail
constexpr int callers = 8;

/// What every caller shares, and the Q/K/V of caller `seed`.
struct shared_inputs {
  mat q, k, v, table;
  std::vector<idx> global{0, 7, 150};
  salt::bigbird_table bigbird = salt::bigbird_random_table(1, (L + 15) / 16, 2, 5);
  salt::linformer_projections<float> proj =
      salt::linformer_projections<float>::gaussian(64, L, 1, salt::linformer_sharing::shared_heads, 3);
  salt::lsh_options lsh = {.n_hashes = 2, .n_buckets = {8}, .chunk_length = 32, .chunks_before = 1};
  salt::lsh_rotations<float> rot = salt::lsh_rotations<float>::gaussian(1, d, lsh, 11);
  salt::favor_plus<float> favor{salt::random_features<float>::orthogonal(64, d, 13)};

  explicit shared_inputs(std::uint64_t seed) {
    random_source rng(17 + seed);
    q = rng.matrix<float>(L, d);
    k = rng.matrix<float>(L, d);
    v = rng.matrix<float>(L, d);
    table = random_source(99).matrix<float>(L, L);
  }
};

/// The kernels, each a function of the shared inputs giving its output.
std::vector<std::pair<std::string, std::function<mat(const shared_inputs&)>>> kernels() {
  using S = const shared_inputs&;
  return {
      {"dense", [](S in) { return salt::attention(in.q, in.k, in.v); }},
      {"causal", [](S in) { return salt::attention(in.q, in.k, in.v, salt::causal{}); }},
      {"longformer",
       [](S in) {
         return salt::attention(in.q, in.k, in.v, salt::sliding_window{.left = 20, .right = 20} | salt::global_tokens{in.global});
       }},
      {"bigbird", [](S in) { return salt::attention(in.q, in.k, in.v, in.bigbird.mask(16)); }},
      {"strided & causal", [](S in) { return salt::attention(in.q, in.k, in.v, salt::strided{.stride = 17} & salt::causal{}); }},
      {"synthesizer", [](S in) {
         return salt::attention(in.q, in.k, in.v, salt::causal{}, salt::dot_product{} + salt::synthesizer_random<float>::shared(in.table));
       }},
      {"linformer", [](S in) { return salt::linformer_attention(in.q, in.k, in.v, in.proj); }},
      {"lsh", [](S in) { return salt::lsh_attention(in.q, in.v, in.rot, in.lsh); }},
      {"lsh causal", [](S in) {
         salt::lsh_options o = in.lsh;
         o.causal = true;
         return salt::lsh_attention(in.q, in.v, in.rot, o);
       }},
      {"linear", [](S in) { return salt::linear_attention(in.q, in.k, in.v, in.favor); }},
      {"linear causal", [](S in) { return salt::linear_attention(in.q, in.k, in.v, in.favor, salt::causal{}); }},
      {"streaming", [](S in) {
         salt::recurrent_state<float, salt::favor_plus<float>> state(in.favor, d, d);
         mat out(L, d);
         for (idx t = 0; t < L; ++t) {
           state.append(in.k.row(t).data(), in.v.row(t).data());
           state.query(in.q.row(t).data(), out.row(t).data());
         }
         return out;
       }},
  };
}

}  // namespace

TEST_CASE("every kernel gives the same bits when 8 threads call it at once", "[threads]") {
  std::vector<shared_inputs> in, copy;
  for (int t = 0; t < callers; ++t) in.emplace_back(static_cast<std::uint64_t>(t));
  copy = in;  // to check that no caller wrote to the inputs
  const auto same_bits = [](const mat& a, const mat& b) {
    return a.rows() == b.rows() && a.cols() == b.cols() &&
           std::equal(a.data(), a.data() + a.size(), b.data(),
                      [](float x, float y) { return std::bit_cast<std::uint32_t>(x) == std::bit_cast<std::uint32_t>(y); });
  };
  for (const auto& entry : kernels()) {
    const auto& kernel = entry.second;  // a named reference: clang 14 cannot capture structured bindings
    CAPTURE(entry.first);
    std::vector<mat> alone, got(callers);
    for (int t = 0; t < callers; ++t) alone.push_back(kernel(in[static_cast<std::size_t>(t)]));
    std::vector<std::thread> threads;
    for (int t = 0; t < callers; ++t)
      threads.emplace_back([&, t] {
        const auto i = static_cast<std::size_t>(t);
        for (int repeat = 0; repeat < 3; ++repeat) got[i] = kernel(in[i]);  // overlap the callers' calls
      });
    for (std::thread& t : threads) t.join();
    for (int t = 0; t < callers; ++t) {
      CAPTURE(t);
      CHECK(same_bits(got[static_cast<std::size_t>(t)], alone[static_cast<std::size_t>(t)]));
    }
  }
  for (int t = 0; t < callers; ++t) {
    const auto i = static_cast<std::size_t>(t);
    CHECK((same_bits(in[i].q, copy[i].q) && same_bits(in[i].k, copy[i].k) && same_bits(in[i].v, copy[i].v)));
  }
}

TEST_CASE("a workspace that cannot be made throws to the caller, and no item runs", "[threads]") {
  // Each OpenMP thread makes its own workspace (detail/parallel.hpp); the first one fails, as an allocation
  // would. The exception must reach the caller, not terminate inside the parallel region, and no item may run
  // with the workspaces the other threads made.
  std::atomic<int> made{0}, ran{0};
  const auto make = [&] {
    if (made.fetch_add(1) == 0) throw std::bad_alloc();
    return std::vector<float>(64);
  };
  for (const int threads : {1, 4}) {
    made = 0;
    CHECK_THROWS_AS(salt::detail::parallel_for(100, threads, make, [&](idx, std::vector<float>&) { ++ran; }),
                    std::bad_alloc);
    CHECK(ran == 0);
  }
}
