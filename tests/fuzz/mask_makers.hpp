#pragma once
/// \file fuzz/mask_makers.hpp
/// Decodes every mask policy of include/salt/mask/ from a byte_reader, and any composition of them with
/// `|` and `&` (maker<combined_mask<A, B, C>> decodes A, then B). Parameters cover the ordinary range,
/// the edges (empty, everything, one token) and huge values; a few percent of decodes give parameters salt
/// must reject with salt::error. The storage the masks' spans point into lives in `mask_context`.

#include <salt/mask.hpp>

#include <algorithm>
#include <cstdint>
#include <deque>
#include <limits>
#include <span>
#include <type_traits>
#include <vector>

#include "byte_reader.hpp"

namespace salt::fuzz {

/// What the makers read from and where they keep the data their masks point to (deques: stable addresses).
struct mask_context {
  byte_reader& in;
  random_generator& rng;
  index batch = 1, q_heads = 1, lq = 0, lk = 0;
  std::deque<std::vector<index>> indices;
  std::deque<std::vector<std::uint8_t>> flags;
  std::deque<std::vector<std::int32_t>> tables;
  std::deque<block_layout_csr> csr;

  /// A huge extent: past every sequence, up to the largest index (masks must saturate, not overflow).
  index huge() {
    switch (in.choice(3)) {
      case 0: return index{1} << 40;
      case 1: return index{1} << 62;
      default: return std::numeric_limits<index>::max();
    }
  }
  /// Flags with one of a few densities: none, all, a random fraction.
  std::vector<std::uint8_t> random_flags(index n) {
    std::vector<std::uint8_t> f(static_cast<std::size_t>(std::max<index>(n, 0)));
    const int mode = in.choice(4);
    const double p = mode == 0 ? 1.0 : mode == 1 ? 0.0 : mode == 2 ? 0.5 : in.byte() / 255.0;
    for (auto& x : f) x = rng.uniform() < p ? 1 : 0;
    return f;
  }
};

template <class M>
struct maker;

/// Masks defined only for Lq == Lk (their indices name one token of one sequence).
template <class M>
inline constexpr bool square_only = false;
template <>
inline constexpr bool square_only<global_tokens> = true;
template <>
inline constexpr bool square_only<segments> = true;
template <>
inline constexpr bool square_only<bigbird> = true;
template <class A, class B, class C>
inline constexpr bool square_only<combined_mask<A, B, C>> = square_only<A> || square_only<B>;

template <>
struct maker<no_mask> {
  static no_mask make(mask_context&) { return {}; }
};

template <causal_alignment A>
struct maker<causal<A>> {
  static causal<A> make(mask_context& c) {
    const index span = c.lq + c.lk + 2;
    switch (c.in.choice(4)) {
      case 0: return {0};
      case 1: return {c.in.integer(-span, span)};
      case 2: return {-1};
      default: return {c.in.flag() ? index{1} << 40 : -(index{1} << 40)};
    }
  }
};

template <>
struct maker<sliding_window> {
  static index extent(mask_context& c) {
    if (c.in.one_in(48)) return -1;  // rejected
    switch (c.in.choice(4)) {
      case 0: return c.in.integer(0, 8);
      case 1: return c.in.integer(0, c.lq + c.lk + 2);
      case 2: return c.huge();
      default: return 0;
    }
  }
  static sliding_window make(mask_context& c) {
    sliding_window w;
    w.left = extent(c);
    w.right = extent(c);
    switch (c.in.choice(5)) {
      case 0: w.dilation = 1; break;
      case 1: w.dilation = c.in.integer(1, 8); break;
      case 2: w.dilation = c.in.integer(1, c.lq + c.lk + 70); break;
      case 3: w.dilation = c.huge(); break;
      default: w.dilation = c.in.one_in(8) ? 0 : 2;  // 0 is rejected
    }
    return w;
  }
};

template <>
struct maker<global_tokens> {
  static global_tokens make(mask_context& c) {
    std::vector<index> g;
    switch (c.in.choice(4)) {
      case 0: break;  // none
      case 1: {
        const double p = c.in.byte() / 255.0;
        for (index t = 0; t < c.lk; ++t)
          if (c.rng.uniform() < p * p) g.push_back(t);
        break;
      }
      case 2:
        for (index t = 0; t < c.lk; ++t) g.push_back(t);
        break;
      default:
        for (index n = c.in.integer(1, 4), i = 0; i < n && c.lk > 0; ++i) g.push_back(c.in.integer(0, c.lk - 1));
        std::sort(g.begin(), g.end());
        g.erase(std::unique(g.begin(), g.end()), g.end());
    }
    if (c.in.one_in(40)) g.push_back(c.in.flag() ? c.lk : (g.empty() ? -1 : g.back()));  // out of range or repeated
    c.indices.push_back(std::move(g));
    return {c.indices.back()};
  }
};

template <>
struct maker<segments> {
  static segments make(mask_context& c) {
    std::vector<index> ids(static_cast<std::size_t>(c.lk));
    switch (c.in.choice(3)) {
      case 0: break;  // one segment
      case 1: {
        const double p = c.in.byte() / 255.0;
        index id = 0;
        for (auto& x : ids) x = c.rng.uniform() < p * p ? ++id : id;
        break;
      }
      default: {
        index id = c.in.integer(-3, 3);
        for (index t = 0, next = c.in.integer(1, 40); t < c.lk; ++t) {
          if (t == next) ++id, next += c.in.integer(1, 40);
          ids[static_cast<std::size_t>(t)] = id;
        }
      }
    }
    if (c.lk > 1 && c.in.one_in(40)) ids[static_cast<std::size_t>(c.in.integer(0, c.lk - 1))] -= 5;  // may decrease
    if (c.in.one_in(60)) ids.push_back(1 << 20);                                                   // one id too many
    c.indices.push_back(std::move(ids));
    return {c.indices.back()};
  }
};

/// One valid length per batch item in [0, limit] (limit, 0, any, limit - 1), now and then one outside it or
/// one length too many (rejected); stored in the context, which the padding mask views.
inline const std::vector<index>& padding_lengths(mask_context& c, index limit) {
  std::vector<index> lengths(static_cast<std::size_t>(c.batch));
  for (auto& n : lengths) {
    switch (c.in.choice(4)) {
      case 0: n = limit; break;
      case 1: n = 0; break;
      case 2: n = c.in.integer(0, limit); break;
      default: n = std::max<index>(limit - 1, 0);
    }
    if (c.in.one_in(60)) n = c.in.flag() ? limit + 1 : -1;  // rejected
  }
  if (c.in.one_in(60)) lengths.push_back(0);  // one length too many
  c.indices.push_back(std::move(lengths));
  return c.indices.back();
}

template <>
struct maker<key_padding> {
  static key_padding make(mask_context& c) { return {padding_lengths(c, c.lk)}; }
};

template <>
struct maker<query_padding> {
  static query_padding make(mask_context& c) { return {padding_lengths(c, c.lq)}; }
};

template <>
struct maker<key_mask> {
  static key_mask make(mask_context& c) {
    std::vector<std::uint8_t> f = c.random_flags(c.batch * c.lk);
    if (c.in.one_in(60)) f.push_back(1);  // size mismatch, rejected
    c.flags.push_back(std::move(f));
    return {c.flags.back()};
  }
};

/// Block size and block count of a layout over lk keys; the count is sometimes too small (rejected).
inline void layout_sizes(mask_context& c, index& block, index& blocks) {
  switch (c.in.choice(3)) {
    case 0: block = c.in.integer(1, 8); break;
    case 1: block = c.in.integer(1, 70); break;
    default: block = 64;
  }
  blocks = (c.lk + block - 1) / block + c.in.integer(0, 2);
  if (c.in.one_in(48)) blocks = std::max<index>(blocks - 3, 0);  // may not cover lk
}

inline index layout_heads(mask_context& c) {
  if (c.in.one_in(48)) return c.q_heads + 1;  // rejected (unless 1)
  return c.in.flag() ? c.q_heads : 1;
}

template <>
struct maker<block_layout> {
  static block_layout make(mask_context& c) {
    block_layout m;
    layout_sizes(c, m.block, m.blocks);
    m.heads = layout_heads(c);
    std::vector<std::uint8_t> f = c.random_flags(m.heads * m.blocks * m.blocks);
    if (c.in.one_in(60) && !f.empty()) f.pop_back();  // a layout one flag short, rejected
    c.flags.push_back(std::move(f));
    m.layout = c.flags.back();
    return m;
  }
};

template <>
struct maker<block_layout_csr_view> {
  static block_layout_csr_view make(mask_context& c) {
    index block = 1, blocks = 0;
    layout_sizes(c, block, blocks);
    const index heads = layout_heads(c);
    if (c.in.flag()) {  // from a dense table
      c.flags.push_back(c.random_flags(heads * blocks * blocks));
      c.csr.emplace_back(block_layout{block, heads, blocks, c.flags.back()});
    } else {  // from per-row lists
      const double p = c.in.byte() / 255.0;
      std::vector<index> offsets{0}, columns;
      for (index r = 0; r < heads * blocks; ++r) {
        for (index col = 0; col < blocks; ++col)
          if (c.rng.uniform() < p) columns.push_back(col);
        offsets.push_back(static_cast<index>(columns.size()));
      }
      if (c.in.one_in(48) && !columns.empty()) columns.back() = blocks;  // rejected
      c.csr.emplace_back(block, heads, blocks, std::move(offsets), std::move(columns));
    }
    return c.csr.back().mask();
  }
};

template <>
struct maker<bigbird> {
  static bigbird make(mask_context& c) {
    bigbird m;
    switch (c.in.choice(3)) {
      case 0: m.block = c.in.integer(1, 8); break;
      case 1: m.block = c.in.integer(1, 70); break;
      default: m.block = 64;
    }
    m.random = c.in.integer(0, 4);
    m.heads = layout_heads(c);
    index nb = m.blocks_for(c.lk);
    if (c.in.one_in(48)) ++nb;  // a table for the wrong length: rejected
    std::vector<std::int32_t> t;
    if (c.in.flag() && m.heads >= 1) {
      const bigbird_table drawn = bigbird_random_table(m.heads, nb, m.random, c.rng.next());
      t.assign(drawn.entries().begin(), drawn.entries().end());
    } else {  // explicit entries, repeats and -1 included
      t.resize(static_cast<std::size_t>(std::max<index>(m.heads, 0) * std::max<index>(nb - 2, 0) * m.random));
      for (auto& e : t) e = static_cast<std::int32_t>(static_cast<index>(c.rng.below(static_cast<std::uint64_t>(nb + 1))) - 1);
      if (!t.empty() && c.in.one_in(48)) t[0] = static_cast<std::int32_t>(nb);  // rejected
    }
    c.tables.push_back(std::move(t));
    m.table = c.tables.back();
    return m;
  }
};

template <>
struct maker<strided> {
  static strided make(mask_context& c) {
    if (c.in.one_in(48)) return {0};  // rejected
    switch (c.in.choice(4)) {
      case 0: return {c.in.integer(1, 8)};
      case 1: return {c.in.integer(1, c.lq + c.lk + 2)};
      case 2: return {c.huge()};
      default: return {64};
    }
  }
};

template <>
struct maker<fixed> {
  static fixed make(mask_context& c) {
    fixed m;
    switch (c.in.choice(4)) {
      case 0: m.block = c.in.integer(1, 8); break;
      case 1: m.block = c.in.integer(1, c.lq + c.lk + 2); break;
      case 2: m.block = c.huge(); break;
      default: m.block = 64;
    }
    switch (c.in.choice(4)) {
      case 0: m.summary = 0; break;
      case 1: m.summary = c.in.integer(0, std::min<index>(m.block, 300)); break;
      case 2: m.summary = m.block; break;
      default: m.summary = std::min<index>(m.block, 1);
    }
    if (c.in.one_in(48))  // rejected; a block of the largest index has no larger summary to reject
      m.summary = c.in.flag() || m.block == std::numeric_limits<index>::max() ? -1 : m.block + 1;
    if (m.summary < -1) m.summary = -1;
    return m;
  }
};

template <class A, class B, class C>
struct maker<combined_mask<A, B, C>> {
  static combined_mask<A, B, C> make(mask_context& c) {
    const A a = maker<A>::make(c);
    const B b = maker<B>::make(c);
    return {a, b};
  }
};


}  // namespace salt::fuzz
