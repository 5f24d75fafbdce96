// The paged KV cache (kv_cache.hpp): attention read through shuffled pages equals the same cache stored
// contiguously bit for bit, with ragged sequence lengths, pages that do not divide the key block, every layout
// of the pages, masks on logical positions; append_tokens writes where the table says and nothing on bad input;
// bad page tables are refused naming the sequence and the page. Attention sinks (score/sinks.hpp) against the
// oracle with the sink as one more key of value zero, on whole and on split rows.
#include <salt/attention.hpp>
#include <salt/kv_cache.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <numeric>
#include <string>
#include <vector>

#include "catch.hpp"
#include "checks.hpp"
#include "reference.hpp"

namespace {

using idx = salt::index;
using namespace salt::test;

/// causal<>{.offset = -1} over lk real keys, and key lk (the sink) for every query: the oracle's sink.
struct sink_and_causal {
  idx lq, lk;
  bool allows(idx i, idx j, const salt::problem_shape&) const noexcept { return j == lk || j <= i + lk - lq - 1; }
  static constexpr bool is_always_full() { return false; }
};

/// A ragged batch held twice: contiguously, (B, Hkv, capacity, d) with each sequence's first lengths[b] tokens
/// used, and in shuffled pages of `page_tokens` through a page table.
template <class T>
struct two_caches {
  idx batch, heads, capacity, d, page_tokens, table_stride, pages;
  std::vector<idx> lengths, table;
  salt::row_matrix<T> k, v;    // contiguous: (B Hkv capacity, d)
  std::vector<T> k_pages, v_pages;

  two_caches(std::vector<idx> lens, idx heads_, idx d_, idx page_tokens_, random_source& rng, bool token_major = false)
      : batch(static_cast<idx>(lens.size())), heads(heads_), capacity(0), d(d_), page_tokens(page_tokens_),
        table_stride(0), pages(0), lengths(std::move(lens)) {
    for (const idx l : lengths) capacity = std::max(capacity, l);
    table_stride = (capacity + page_tokens - 1) / page_tokens;
    pages = batch * table_stride + 3;  // a few pages nobody uses
    k = rng.matrix<T>(batch * heads * capacity, d);
    v = rng.matrix<T>(batch * heads * capacity, d);
    std::vector<idx> order(static_cast<std::size_t>(pages));
    std::iota(order.begin(), order.end(), 0);
    for (idx i = pages - 1; i > 0; --i) std::swap(order[static_cast<std::size_t>(i)], order[rng.bits() % static_cast<std::uint64_t>(i + 1)]);
    table.assign(order.begin(), order.begin() + batch * table_stride);
    k_pages.assign(static_cast<std::size_t>(pages * heads * page_tokens * d), std::numeric_limits<T>::quiet_NaN());
    v_pages = k_pages;  // unused rows are NaN: a read of one shows
    // Write every sequence's used tokens through append_tokens, one sequence length at a time.
    for (idx b = 0; b < batch; ++b) {
      const std::vector<idx> one_at{0};
      const std::vector<idx> one_len{lengths[static_cast<std::size_t>(b)]};
      const std::span<const idx> row(table.data() + b * table_stride, static_cast<std::size_t>(table_stride));
      auto kc = paged(k_pages.data(), row, one_len, token_major);
      auto vc = paged(v_pages.data(), row, one_len, token_major);
      const auto src = [&](const salt::row_matrix<T>& m) {
        return salt::tensor_view<const T>{m.data() + b * heads * capacity * d, 1, heads, lengths[static_cast<std::size_t>(b)], d, 0, capacity * d, d};
      };
      salt::append_tokens(kc, src(k), one_at);
      salt::append_tokens(vc, src(v), one_at);
    }
  }

  salt::paged_view<T> paged(T* data, std::span<const idx> t, std::span<const idx> lens, bool token_major) const {
    return token_major ? salt::paged_view<T>::pthd(data, pages, page_tokens, heads, d, t, table_stride, lens)
                       : salt::paged_view<T>::phtd(data, pages, heads, page_tokens, d, t, table_stride, lens);
  }
};

}  // namespace

TEST_CASE("paged cache: the bits of the contiguous cache, per sequence, for ragged lengths and any page size",
          "[kv_cache][paged]") {
  using T = float;
  for (const idx page_tokens : {16, 48, 64, 128}) {
    for (const bool token_major : {false, true}) {
      CAPTURE(page_tokens, token_major);
      random_source rng(static_cast<std::uint64_t>(page_tokens) + token_major);
      const two_caches<T> c({2000, 37, 2800, 0, 1}, 2, 32, page_tokens, rng, token_major);
      const idx hq = 8, lq = 3;
      const salt::row_matrix<T> q = rng.matrix<T>(c.batch * hq * lq, c.d);
      const auto qv = salt::tensor_view<const T>::bhld(q.data(), c.batch, hq, lq, c.d);
      const auto kp = c.paged(const_cast<T*>(c.k_pages.data()), c.table, c.lengths, token_major);
      const auto vp = c.paged(const_cast<T*>(c.v_pages.data()), c.table, c.lengths, token_major);
      salt::row_matrix<T> out(c.batch * hq * lq, c.d);
      std::vector<T> lse(static_cast<std::size_t>(c.batch * hq * lq));
      const std::vector<double> sinks(hq, 1.5);
      const auto score = salt::dot_product{} + salt::attention_sinks{sinks};
      salt::attention(qv, salt::paged_view<const T>(kp), salt::paged_view<const T>(vp),
                      salt::tensor_view<T>::bhld(out.data(), c.batch, hq, lq, c.d),
                      salt::lse_view<T>::bht(lse.data(), hq, lq), salt::causal{}, score);
      for (idx b = 0; b < c.batch; ++b) {
        CAPTURE(b);
        const idx len = c.lengths[static_cast<std::size_t>(b)];
        // The same sequence as its own contiguous call: (1, Hkv, len, d) over the contiguous rows.
        salt::row_matrix<T> one(hq * lq, c.d);
        std::vector<T> one_lse(static_cast<std::size_t>(hq * lq));
        const auto kv_of = [&](const salt::row_matrix<T>& m) {
          return salt::tensor_view<const T>{m.data() + b * c.heads * c.capacity * c.d, 1, c.heads, len, c.d, 0,
                                            c.capacity * c.d, c.d};
        };
        salt::attention(salt::tensor_view<const T>{q.data() + b * hq * lq * c.d, 1, hq, lq, c.d, 0, lq * c.d, c.d},
                        kv_of(c.k), kv_of(c.v), salt::tensor_view<T>::bhld(one.data(), 1, hq, lq, c.d),
                        salt::lse_view<T>::bht(one_lse.data(), hq, lq), salt::causal{}, score);
        CHECK((out.middleRows(b * hq * lq, hq * lq).array() == one.array()).all());
        CHECK(std::equal(one_lse.begin(), one_lse.end(), lse.begin() + b * hq * lq));
      }
      // A sequence of no token outputs zeros with the sink's LSE; one of one token is that token's value.
      CHECK((out.middleRows(3 * hq * lq, hq * lq).array() == 0).all());
      CHECK(lse[static_cast<std::size_t>(3 * hq * lq)] == T(1.5));
    }
  }
}

TEST_CASE("paged cache: every sequence against the oracle over its logical positions", "[kv_cache][reference]") {
  using T = double;
  random_source rng(9);
  const two_caches<T> c({1500, 300, 4100}, 2, 16, 48, rng);
  const idx hq = 4, lq = 5;
  const salt::row_matrix<T> q = rng.matrix<T>(c.batch * hq * lq, c.d);
  const auto kp = c.paged(const_cast<T*>(c.k_pages.data()), c.table, c.lengths, false);
  const auto vp = c.paged(const_cast<T*>(c.v_pages.data()), c.table, c.lengths, false);
  salt::row_matrix<T> out(c.batch * hq * lq, c.d);
  const auto mask = salt::sliding_window{.left = 1000, .right = 0} & salt::causal{};
  salt::attention(salt::tensor_view<const T>::bhld(q.data(), c.batch, hq, lq, c.d), salt::paged_view<const T>(kp),
                  salt::paged_view<const T>(vp), salt::tensor_view<T>::bhld(out.data(), c.batch, hq, lq, c.d), mask);
  for (idx b = 0; b < c.batch; ++b) {
    const idx len = c.lengths[static_cast<std::size_t>(b)];
    for (idx h = 0; h < hq; ++h) {
      CAPTURE(b, h);
      const salt::row_matrix<T> qh = q.middleRows((b * hq + h) * lq, lq);
      const idx first = (b * c.heads + h / (hq / c.heads)) * c.capacity;
      const salt::row_matrix<T> kh = c.k.middleRows(first, len), vh = c.v.middleRows(first, len);
      const salt::problem_shape where{lq, len, b, h};
      const auto naive = naive_attention<T>(qh, kh, vh, mask, salt::dot_product{}, where);
      const auto ref = naive_attention<oracle_t<T>>(qh, kh, vh, mask, salt::dot_product{}, where);
      const auto acc = judge<T>(salt::row_matrix<T>(out.middleRows((b * hq + h) * lq, lq)), naive.out, ref.out, finite_scale(vh));
      CAPTURE(acc.kernel_error, acc.naive_error, acc.floor);
      CHECK(acc.ok());
    }
  }
}

TEST_CASE("attention sinks: one more key of value zero in every row's softmax, whole rows and split rows",
          "[kv_cache][sinks][reference]") {
  for (const idx lq : {1, 40}) {    // a decode call (split keys) and a prefill call (whole tiles)
    for (const idx lk : {1, 3000}) {
      CAPTURE(lq, lk);
      random_source rng(static_cast<std::uint64_t>(lq + lk));
      const idx hq = 4, hkv = 2, d = 16;
      const salt::row_matrix<float> q = rng.matrix<float>(hq * lq, d), k = rng.matrix<float>(hkv * lk, d),
                                    v = rng.matrix<float>(hkv * lk, d);
      const std::vector<double> sinks = {0.0, 4.0, -3.0, -std::numeric_limits<double>::infinity()};
      salt::row_matrix<float> out(hq * lq, d);
      std::vector<float> lse(static_cast<std::size_t>(hq * lq));
      const auto score = salt::dot_product{} + salt::attention_sinks{sinks};
      const salt::causal<> mask{.offset = -1};  // the first row of a prefill call sees no key: only its sink
      salt::attention(salt::tensor_view<const float>::bhld(q.data(), 1, hq, lq, d),
                      salt::tensor_view<const float>::bhld(k.data(), 1, hkv, lk, d),
                      salt::tensor_view<const float>::bhld(v.data(), 1, hkv, lk, d),
                      salt::tensor_view<float>::bhld(out.data(), 1, hq, lq, d), salt::lse_view<float>::bht(lse.data(), hq, lq),
                      mask, score);
      for (idx h = 0; h < hq; ++h) {
        CAPTURE(h);
        // The oracle: the sink as key lk, of logit sinks[h] (a bias on that key alone) and value 0.
        const idx g = h / (hq / hkv);
        salt::row_matrix<float> kh(lk + 1, d), vh = salt::row_matrix<float>::Zero(lk + 1, d);
        kh.topRows(lk) = k.middleRows(g * lk, lk);
        kh.row(lk).setZero();
        vh.topRows(lk) = v.middleRows(g * lk, lk);
        const salt::row_matrix<float> qh = q.middleRows(h * lq, lq);
        salt::row_matrix<float> bias = salt::row_matrix<float>::Zero(lq, lk + 1);
        bias.col(lk).setConstant(static_cast<float>(sinks[static_cast<std::size_t>(h)]));
        const salt::bias_table<float> sink_key{bias.data(), lq, lk + 1, lk + 1, 0, 0};
        const sink_and_causal m{lq, lk};
        const auto sc = salt::dot_product{} + sink_key;
        const auto naive = naive_attention<float>(qh, kh, vh, m, sc);
        const auto ref = naive_attention<double>(qh, kh, vh, m, sc);
        const salt::row_matrix<float> got = out.middleRows(h * lq, lq);
        const auto acc = judge<float>(got, naive.out, ref.out, finite_scale(vh));
        CAPTURE(acc.kernel_error, acc.naive_error, acc.floor);
        CHECK(acc.ok());
        const Eigen::Map<const salt::column<float>> lse_h(lse.data() + h * lq, lq);
        const auto lse_acc = judge<float>(lse_h, naive.lse, ref.lse, finite_scale(ref.lse));
        CAPTURE(lse_acc.kernel_error, lse_acc.naive_error, lse_acc.floor);
        CHECK(lse_acc.ok());
      }
    }
  }
}

TEST_CASE("paged cache: bad page tables and appends are refused, naming the sequence and the page; nothing is written",
          "[kv_cache][bad_input]") {
  const idx pages = 6, heads = 1, P = 4, d = 2;
  std::vector<float> pool(static_cast<std::size_t>(pages * heads * P * d), 7.0f);
  std::vector<idx> table = {0, 1, 2, 3, 4, 5}, lengths = {8, 5};  // two sequences of up to 3 pages
  const auto cache = [&] { return salt::paged_view<float>::phtd(pool.data(), pages, heads, P, d, table, 3, lengths); };
  std::vector<float> q(static_cast<std::size_t>(2 * 1 * 1 * d), 1.0f), out(q.size(), -1.0f);
  const auto qv = salt::tensor_view<const float>::bhld(q.data(), 2, 1, 1, d);
  const auto ov = salt::tensor_view<float>::bhld(out.data(), 2, 1, 1, d);
  const auto attend = [&] {
    const auto c = cache();
    salt::attention(qv, salt::paged_view<const float>(c), salt::paged_view<const float>(c), ov);
  };
  CHECK(error_of(attend).empty());
  const std::vector<float> good = out;
  std::fill(out.begin(), out.end(), -1.0f);
  table[4] = 6;  // sequence 1's page 1
  CHECK(error_of(attend) == "salt::attention: k: sequence 1's page 1 is page 6, outside the cache's 6 pages");
  table[4] = -1;
  CHECK(error_of(attend) == "salt::attention: k: sequence 1's page 1 is page -1, outside the cache's 6 pages");
  table[4] = 4;
  lengths[0] = 13;  // more than its 3 pages of 4 hold
  CHECK(error_of(attend) == "salt::attention: k: sequence 0 has 13 tokens, more than its 3 pages of 4 hold");
  lengths[0] = -2;
  CHECK(error_of(attend) == "salt::attention: k: sequence 0 has a negative length (-2)");
  lengths[0] = 8;
  CHECK(std::all_of(out.begin(), out.end(), [](float x) { return x == -1.0f; }));  // nothing written
  table.resize(5);
  CHECK(error_of(attend) == "salt::attention: k's page table holds 5 entries, fewer than 2 sequences x 3 pages");
  table = {0, 1, 2, 3, 4, 5};
  CHECK(error_of(attend).empty());
  CHECK(out == good);
  const std::vector<double> three_sinks = {0.0, 1.0, 2.0};  // one per query head is 1
  CHECK(error_of([&] {
          const auto c = cache();
          salt::attention(qv, salt::paged_view<const float>(c), salt::paged_view<const float>(c), ov, salt::no_mask{},
                          salt::dot_product{} + salt::attention_sinks{three_sinks});
        }) == "salt::attention: attention_sinks has 3 logits for 1 query heads");
  CHECK(out == good);

  // Appending 2 tokens to sequences at 8 and 5 tokens: the first fits only 12 tokens.
  const std::vector<float> rows(static_cast<std::size_t>(2 * heads * 2 * d), 3.0f);
  const auto rv = salt::tensor_view<const float>::bhld(rows.data(), 2, heads, 2, d);
  const std::vector<float> before = pool;
  const std::vector<idx> at_bad = {11, 5};
  CHECK(error_of([&] { salt::append_tokens(cache(), rv, at_bad); }) ==
        "salt::append_tokens: sequence 0's tokens [11, 13) do not fit its 3 pages of 4");
  CHECK(pool == before);
  table[4] = 9;
  const std::vector<idx> at = {8, 5};
  lengths = {0, 0};  // appending checks the pages it writes, whatever the lengths
  CHECK(error_of([&] { salt::append_tokens(cache(), rv, at); }) ==
        "salt::append_tokens: sequence 1's page 1 is page 9, outside the cache's 6 pages");
  CHECK(pool == before);
  table[4] = 4;
  CHECK(error_of([&] { salt::append_tokens(cache(), rv, at); }).empty());
  // Sequence 0's tokens 8, 9 are page 2's rows 0, 1; sequence 1's tokens 5, 6 are page 4's rows 1, 2.
  for (const idx row : {2 * P + 0, 2 * P + 1, 4 * P + 1, 4 * P + 2})
    for (idx c = 0; c < d; ++c) CHECK(pool[static_cast<std::size_t>(row * d + c)] == 3.0f);
  CHECK(std::count(pool.begin(), pool.end(), 3.0f) == 4 * d);
}
