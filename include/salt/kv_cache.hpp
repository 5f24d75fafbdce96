#pragma once
/// \file kv_cache.hpp
/// A paged KV cache (vLLM's and FlashAttention's layout), read in place by salt::attention, and the writes
/// that append new tokens to it or to a contiguous cache, so that a decode loop is: append, attend.
///
///     // 4,096 pages of 128 tokens, 8 K/V heads of 128 features: (pages, heads, page tokens, features)
///     std::vector<float> k_pages(4096 * 8 * 128 * 128), v_pages(k_pages.size());
///     std::vector<salt::index> table(batch * 64), lengths(batch);   // 64 pages per sequence at most
///     auto k = salt::paged_view<float>::phtd(k_pages.data(), 4096, 8, 128, 128, table, 64, lengths);
///     salt::append_tokens(k, new_k, lengths);   // new_k (batch, 8, n, 128): written at each sequence's end
///     ...                                        // the same for v, then lengths[b] += n
///     salt::attention(q, k, v, out, salt::causal{});
///
/// Sequence b's token t lives in page table[b * table_stride + t / page_tokens], at row t % page_tokens of it.
/// Masks and score policies see logical positions: key t of sequence b, whose length (Lk) is lengths[b], so
/// a causal mask aligns each sequence's new queries with its own last keys (ragged batches).

#include <algorithm>
#include <span>
#include <utility>

#include "borrowed_span.hpp"
#include "config.hpp"
#include "detail/checks.hpp"
#include "error.hpp"
#include "tensor.hpp"

namespace salt {

/// K or V of a batch of sequences stored in fixed-size pages (a paged KV cache). Page p, K/V head h, row r
/// (the page's r-th token) starts at data + p * page_stride + h * head_stride + r * token_stride; its
/// `features` values are contiguous. The view owns nothing: the pages, the page table and the lengths must
/// outlive it (the table and lengths are borrowed spans: a temporary container does not compile). It is
/// checked where it is used (attention, append_tokens), against the pages it names.
template <class T>
struct paged_view {
  T* data = nullptr;           ///< page 0
  index pages = 0;             ///< pages in the cache
  index heads = 0;             ///< K/V heads
  index page_tokens = 0;       ///< tokens per page (P)
  index features = 0;          ///< d (K) or dv (V)
  /// Elements from one page, K/V head and token of a page to the next, as above.
  /// @{
  index page_stride = 0, head_stride = 0, token_stride = 0;
  /// @}
  borrowed_span<const index> table;    ///< (batch, table_stride): each sequence's pages, in token order
  index table_stride = 0;              ///< the most pages a sequence may have (the table's row length)
  borrowed_span<const index> lengths;  ///< (batch): each sequence's tokens in the cache

  /// Pages stored (pages, heads, page_tokens, features) contiguously, each head's tokens of a page one run.
  static paged_view phtd(T* data, index pages, index heads, index page_tokens, index features,
                         borrowed_span<const index> table, index table_stride, borrowed_span<const index> lengths) {
    return {data, pages, heads, page_tokens, features, heads * page_tokens * features, page_tokens * features,
            features, table, table_stride, lengths};
  }
  /// Pages stored (pages, page_tokens, heads, features) contiguously: FlashAttention's k_cache layout.
  static paged_view pthd(T* data, index pages, index page_tokens, index heads, index features,
                         borrowed_span<const index> table, index table_stride, borrowed_span<const index> lengths) {
    return {data, pages, heads, page_tokens, features, page_tokens * heads * features, features, heads * features,
            table, table_stride, lengths};
  }

  /// Sequences in the batch (the length of `lengths`).
  index batch() const noexcept { return static_cast<index>(lengths.size()); }
  /// The longest sequence's tokens (0 for an empty batch).
  index max_tokens() const noexcept {
    index n = 0;
    for (const index l : lengths) n = std::max(n, l);
    return n;
  }

  /// Read-only view of the same cache.
  operator paged_view<const T>() const noexcept {  // NOLINT(google-explicit-constructor): views convert like pointers
    return {data, pages, heads, page_tokens, features, page_stride, head_stride, token_stride, table, table_stride,
            lengths};
  }

  /// K/V head h of sequence b as the kernels read it: lengths[b] tokens through the sequence's page table.
  head_view<T> head(index b, index h) const noexcept {
    head_view<T> v{data + h * head_stride, lengths[static_cast<std::size_t>(b)], features, token_stride};
    v.pages = table.data() + b * table_stride;
    v.page_tokens = page_tokens;
    v.page_stride = page_stride;
    return v;
  }
};

namespace detail {

/// A paged view whose every sequence's pages exist: sizes non-negative, lengths within the table's row, each
/// page in use named in [0, pages). Messages name the sequence and the page.
template <class T>
void check_paged(const paged_view<T>& c, const char* api, const char* name) {
  require(c.pages >= 0 && c.heads >= 0 && c.page_tokens > 0 && c.features >= 0 && c.table_stride >= 0, api, ": ",
          name, " has pages ", c.pages, ", heads ", c.heads, ", page_tokens ", c.page_tokens, ", features ",
          c.features, ", table_stride ", c.table_stride, " (page_tokens must be > 0, the others >= 0)");
  require(c.page_stride >= 0 && c.head_stride >= 0 && c.token_stride >= 0, api, ": ", name, " has a negative stride");
  require(c.data != nullptr || c.pages == 0, api, ": ", name, " is null but has ", c.pages, " pages");
  require(static_cast<index>(c.table.size()) >= c.batch() * c.table_stride, api, ": ", name, "'s page table holds ",
          c.table.size(), " entries, fewer than ", c.batch(), " sequences x ", c.table_stride, " pages");
  for (index b = 0; b < c.batch(); ++b) {
    const index len = c.lengths[static_cast<std::size_t>(b)];
    require(len >= 0, api, ": ", name, ": sequence ", b, " has a negative length (", len, ")");
    require(len <= c.table_stride * c.page_tokens, api, ": ", name, ": sequence ", b, " has ", len,
            " tokens, more than its ", c.table_stride, " pages of ", c.page_tokens, " hold");
    for (index p = 0; p < (len + c.page_tokens - 1) / c.page_tokens; ++p) {
      const index page = c.table[static_cast<std::size_t>(b * c.table_stride + p)];
      require(page >= 0 && page < c.pages, api, ": ", name, ": sequence ", b, "'s page ", p, " is page ", page,
              ", outside the cache's ", c.pages, " pages");
    }
  }
}

/// The checks of attention over a paged cache: q (B, Hq, Lq, d), k and v paged with B sequences of the same
/// lengths, Hkv dividing Hq, out (B, Hq, Lq, dv) not over any page.
template <class T>
void check_paged_qkv(const tensor_view<const T>& q, const paged_view<const T>& k, const paged_view<const T>& v,
                     const tensor_view<T>& out, const run_options& opts, const char* api) {
  check_view(q, api, "q");
  check_view(out, api, "out");
  check_paged(k, api, "k");
  check_paged(v, api, "v");
  require(q.features == k.features, api, ": q has ", q.features, " features but k has ", k.features);
  require(q.batch == k.batch() && k.batch() == v.batch(), api, ": batch sizes differ: q ", q.batch, ", k ", k.batch(),
          " sequences, v ", v.batch());
  for (index b = 0; b < k.batch(); ++b)
    require(k.lengths[static_cast<std::size_t>(b)] == v.lengths[static_cast<std::size_t>(b)], api, ": sequence ", b,
            " has ", k.lengths[static_cast<std::size_t>(b)], " keys but ", v.lengths[static_cast<std::size_t>(b)],
            " values");
  check_heads_and_out(q, k.heads, v.heads, v.features, out, api);
  const auto pool = [](const paged_view<const T>& c) {  // the bytes from the pool's first element to its last
    const auto* p = reinterpret_cast<const char*>(c.data);
    if (c.pages == 0 || c.heads == 0 || c.features == 0) return std::pair{p, p};
    const index last = (c.pages - 1) * c.page_stride + (c.heads - 1) * c.head_stride +
                       (c.page_tokens - 1) * c.token_stride + c.features;
    return std::pair{p, p + last * static_cast<index>(sizeof(T))};
  };
  const auto [o0, o1] = byte_range(out);
  for (const auto& c : {k, v}) {
    const auto [p0, p1] = pool(c);
    require(!(o0 < p1 && p0 < o1), api, ": out overlaps the cache's pages; attention cannot run in place");
  }
  require(!overlaps(out, q), api, ": out overlaps q; attention cannot run in place");
  check_run_options(opts, api);
}

}  // namespace detail

/// Writes n new tokens of every sequence, new_rows (batch, heads, n, features), at the end of each sequence of
/// `cache`: token i of sequence b goes to position at[b] + i (at[b]: the sequence's current length; pass the
/// lengths the cache view reads, and add n to them after writing K and V). The pages must be in the table
/// already (the caller allocates pages; salt never does). Checks everything first: nothing is written when a
/// position falls outside the table or a page index outside the cache. O(batch heads n features).
template <class T>
void append_tokens(const paged_view<T>& cache, const tensor_view<const T>& new_rows, std::span<const index> at) {
  constexpr const char* api = "salt::append_tokens";
  detail::check_paged(cache, api, "cache");
  detail::require(new_rows.batch == cache.batch() && new_rows.heads == cache.heads && new_rows.features == cache.features, api,
          ": new rows are (", new_rows.batch, ", ", new_rows.heads, ", ", new_rows.tokens, ", ", new_rows.features,
          ") but the cache holds ", cache.batch(), " sequences of ", cache.heads, " heads of ", cache.features,
          " features");
  detail::require(static_cast<index>(at.size()) == cache.batch(), api, ": ", at.size(), " positions for ", cache.batch(),
          " sequences");
  for (index b = 0; b < cache.batch(); ++b) {
    const index first = at[static_cast<std::size_t>(b)], last = first + new_rows.tokens;
    detail::require(first >= 0 && last <= cache.table_stride * cache.page_tokens, api, ": sequence ", b, "'s tokens [", first,
            ", ", last, ") do not fit its ", cache.table_stride, " pages of ", cache.page_tokens);
    for (index p = first / cache.page_tokens; p < (last + cache.page_tokens - 1) / cache.page_tokens; ++p) {
      const index page = cache.table[static_cast<std::size_t>(b * cache.table_stride + p)];
      detail::require(page >= 0 && page < cache.pages, api, ": sequence ", b, "'s page ", p, " is page ", page,
              ", outside the cache's ", cache.pages, " pages");
    }
  }
  for (index b = 0; b < cache.batch(); ++b)
    for (index h = 0; h < cache.heads; ++h) {
      head_view<T> dst = cache.head(b, h);
      dst.rows = cache.table_stride * cache.page_tokens;
      const head_view<const T> src = new_rows.head(b, h);
      for (index i = 0; i < new_rows.tokens; ++i)
        std::copy_n(src.row(i), cache.features, dst.row(at[static_cast<std::size_t>(b)] + i));
    }
}

/// Writes n new tokens, new_rows (batch, heads, n, features), into a contiguous cache (batch, heads, capacity,
/// features) at positions [at[b], at[b] + n) of each sequence b. Checks first; nothing is written when a
/// sequence's tokens do not fit the capacity. O(batch heads n features).
template <class T>
void append_tokens(const tensor_view<T>& cache, const tensor_view<const T>& new_rows, std::span<const index> at) {
  constexpr const char* api = "salt::append_tokens";
  detail::require(new_rows.batch == cache.batch && new_rows.heads == cache.heads && new_rows.features == cache.features, api,
          ": new rows are (", new_rows.batch, ", ", new_rows.heads, ", ", new_rows.tokens, ", ", new_rows.features,
          ") but the cache is (", cache.batch, ", ", cache.heads, ", ", cache.tokens, ", ", cache.features, ")");
  detail::require(static_cast<index>(at.size()) == cache.batch, api, ": ", at.size(), " positions for ", cache.batch,
          " sequences");
  for (index b = 0; b < cache.batch; ++b) {
    const index first = at[static_cast<std::size_t>(b)];
    detail::require(first >= 0 && first + new_rows.tokens <= cache.tokens, api, ": sequence ", b, "'s tokens [", first, ", ",
            first + new_rows.tokens, ") do not fit the cache's ", cache.tokens);
  }
  for (index b = 0; b < cache.batch; ++b)
    for (index h = 0; h < cache.heads; ++h) {
      const head_view<T> dst = cache.head(b, h);
      const head_view<const T> src = new_rows.head(b, h);
      for (index i = 0; i < new_rows.tokens; ++i)
        std::copy_n(src.row(i), cache.features, dst.row(at[static_cast<std::size_t>(b)] + i));
    }
}

}  // namespace salt
