#pragma once
/// \file mask_cases.hpp
/// The one list of every mask policy salt ships and of the compositions users write, each as a small "case"
/// type that owns the storage its mask views and builds the mask for given (batch, heads, Lq, Lk). A sweep
/// (tests/test_every_mask.cpp) runs one generic body over `every_mask_case<T>` (T: the precision of the
/// calls, which only a prebuilt `block_mask` depends on); adding a mask to the library means adding its case
/// here. Free of Catch2, so that fuzz harnesses can share it.
///
/// A case C has
///   - `static std::string name()`: what a failure report calls it;
///   - `static bool fits(index lq, index lk)`: whether the shape is meaningful (global tokens, segments and
///     BigBird name one token of one sequence, so they need Lq == Lk);
///   - `static constexpr bool varies`: whether the mask depends on the batch item or the query head (then
///     the multi-head path is worth checking against the oracle per head);
///   - `static constexpr bool tight`: whether its plans visit no block without an allowed pair (leaf masks
///     and unions of them; an intersection may visit blocks where the parts never agree);
///   - a constructor from `mask_shape`, and `mask()`, a view into the case's storage: build the case in place
///     (`const C c(shape);`) and keep it alive while the mask is used. Cases cannot be copied or moved.

#include <salt/block_mask.hpp>
#include <salt/mask.hpp>
#include <salt/random.hpp>

#include <algorithm>
#include <cstdint>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

namespace salt::test {

/// The sizes a case builds its mask for: batch items, query heads, query and key tokens.
struct mask_shape {
  index batch = 1, heads = 1, lq = 1, lk = 1;
};

namespace cases {

/// What every case shares: no copies (masks view the case's storage) and default traits.
struct case_base {
  case_base() = default;
  case_base(const case_base&) = delete;
  case_base& operator=(const case_base&) = delete;
  static bool fits(index, index) { return true; }
  static constexpr bool varies = false;
  static constexpr bool tight = true;
};

/// For masks whose indices name one token of one sequence.
struct square_case : case_base {
  static bool fits(index lq, index lk) { return lq == lk; }
};

inline index blocks_for(index length, index block) { return (length + block - 1) / block; }

/// A (heads, nb, nb) 0/1 block layout: the diagonal, plus each other block with probability about 1 / 3.
inline std::vector<std::uint8_t> random_layout(index heads, index nb, std::uint64_t seed) {
  random_generator rng(seed);
  std::vector<std::uint8_t> flags(static_cast<std::size_t>(heads * nb * nb));
  for (index h = 0; h < heads; ++h)
    for (index i = 0; i < nb; ++i)
      for (index j = 0; j < nb; ++j) flags[static_cast<std::size_t>((h * nb + i) * nb + j)] = i == j || rng.below(3) == 0;
  return flags;
}

struct no_mask_case : case_base {
  static std::string name() { return "no_mask"; }
  explicit no_mask_case(const mask_shape&) {}
  no_mask mask() const { return {}; }
};

/// causal with an alignment and an offset (Offset < 0 leaves the first rows without keys).
template <causal_alignment Align, index Offset>
struct causal_case : case_base {
  static std::string name() {
    return std::string(Align == causal_alignment::bottom_right ? "causal" : "causal<top_left>") +
           (Offset == 0 ? "" : " offset " + std::to_string(Offset));
  }
  explicit causal_case(const mask_shape&) {}
  causal<Align> mask() const { return {Offset}; }
};

/// Batch item b sees its first lk - lk / 3 keys (item 0) or lk / 2 keys (item 1, none when lk is 1).
struct key_padding_case : case_base {
  static constexpr bool varies = true;
  static std::string name() { return "key_padding"; }
  std::vector<index> lengths;
  explicit key_padding_case(const mask_shape& s) {
    for (index b = 0; b < s.batch; ++b) lengths.push_back(b % 2 == 0 ? s.lk - s.lk / 3 : s.lk / 2);
  }
  key_padding mask() const { return {lengths}; }
};

/// Batch item b's queries past lq - lq / 4 (item 0) or lq / 2 (item 1, every query when lq is 1) see no key.
struct query_padding_case : case_base {
  static constexpr bool varies = true;
  static std::string name() { return "query_padding"; }
  std::vector<index> lengths;
  explicit query_padding_case(const mask_shape& s) {
    for (index b = 0; b < s.batch; ++b) lengths.push_back(b % 2 == 0 ? s.lq - s.lq / 4 : s.lq / 2);
  }
  query_padding mask() const { return {lengths}; }
};

/// Keys flagged off in an irregular pattern that differs per batch item; the tail past key 100 is all on.
struct key_mask_case : case_base {
  static constexpr bool varies = true;
  static std::string name() { return "key_mask"; }
  std::vector<std::uint8_t> flags;
  explicit key_mask_case(const mask_shape& s) {
    for (index b = 0; b < s.batch; ++b)
      for (index k = 0; k < s.lk; ++k) flags.push_back((k * 7 + 3 + b) % 5 != 0 || k > 100);
  }
  key_mask mask() const { return {flags}; }
};

template <index Left, index Right, index Dilation>
struct sliding_window_case : case_base {
  static std::string name() {
    return "sliding_window{" + std::to_string(Left) + ", " + std::to_string(Right) + ", " + std::to_string(Dilation) + "}";
  }
  explicit sliding_window_case(const mask_shape&) {}
  sliding_window mask() const { return {Left, Right, Dilation}; }
};

/// Tokens 0, L / 2 and L - 1 are global.
struct global_tokens_case : square_case {
  static std::string name() { return "global_tokens{0, L/2, L-1}"; }
  std::vector<index> indices;
  explicit global_tokens_case(const mask_shape& s) : indices{0, s.lk / 2, s.lk - 1} {
    indices.erase(std::unique(indices.begin(), indices.end()), indices.end());
  }
  global_tokens mask() const { return {indices}; }
};

/// Packed sequences of irregular lengths (1, 3, 20, 7, 64, 2, 45, 100, then again): segments shorter and
/// longer than a query tile or a key block, edges inside and on block boundaries.
struct segments_case : square_case {
  static std::string name() { return "segments"; }
  std::vector<index> ids;
  explicit segments_case(const mask_shape& s) {
    static constexpr index lengths[] = {1, 3, 20, 7, 64, 2, 45, 100};
    for (index id = 0; static_cast<index>(ids.size()) < s.lk; ++id)
      for (index t = 0; t < lengths[id % 8] && static_cast<index>(ids.size()) < s.lk; ++t) ids.push_back(id);
  }
  segments mask() const { return {ids}; }
};

/// A dense layout of B = 16, one per query head, covering one block more than Lk.
struct block_layout_case : case_base {
  static constexpr bool varies = true;
  static constexpr index block = 16;
  static std::string name() { return "block_layout B=16"; }
  index heads, blocks;
  std::vector<std::uint8_t> flags;
  explicit block_layout_case(const mask_shape& s)
      : heads(s.heads), blocks(blocks_for(s.lk, block) + 1), flags(random_layout(heads, blocks, 16 + s.lk)) {}
  block_layout mask() const { return {block, heads, blocks, flags}; }
};

/// The CSR view of a dense layout of B = 24 (not a divisor of the engine's key block), one per query head.
struct block_layout_csr_case : case_base {
  static constexpr bool varies = true;
  static constexpr index block = 24;
  static std::string name() { return "block_layout_csr B=24"; }
  std::vector<std::uint8_t> flags;
  block_layout dense;
  block_layout_csr csr;
  explicit block_layout_csr_case(const mask_shape& s)
      : flags(random_layout(s.heads, blocks_for(s.lk, block), 24 + s.lk)),
        dense{block, s.heads, blocks_for(s.lk, block), flags},
        csr(dense) {}
  block_layout_csr_view mask() const { return csr.mask(); }
};

/// BigBird with blocks of B tokens, R random blocks per row, a seeded table per query head.
template <index B, index R>
struct bigbird_case : square_case {
  static constexpr bool varies = true;
  static std::string name() { return "bigbird B=" + std::to_string(B) + " r=" + std::to_string(R); }
  bigbird_table table;
  explicit bigbird_case(const mask_shape& s)
      : table(bigbird_random_table(s.heads, blocks_for(s.lk, B), R, static_cast<std::uint64_t>(B * 100 + R))) {}
  bigbird mask() const { return table.mask(B); }
};

template <index Stride>
struct strided_case : case_base {
  static std::string name() { return "strided " + std::to_string(Stride); }
  explicit strided_case(const mask_shape&) {}
  strided mask() const { return {Stride}; }
};

template <index Block, index Summary>
struct fixed_case : case_base {
  static std::string name() { return "fixed " + std::to_string(Block) + "/" + std::to_string(Summary); }
  explicit fixed_case(const mask_shape&) {}
  fixed mask() const { return {Block, Summary}; }
};

/// `A | B`: the parts' storage side by side. A union of tight masks is tight (a block either part visits
/// holds a pair that part allows).
template <class A, class B>
struct either_case : case_base {
  static constexpr bool varies = A::varies || B::varies;
  static constexpr bool tight = A::tight && B::tight;
  static bool fits(index lq, index lk) { return A::fits(lq, lk) && B::fits(lq, lk); }
  static std::string name() { return "(" + A::name() + " | " + B::name() + ")"; }
  A a;
  B b;
  explicit either_case(const mask_shape& s) : a(s), b(s) {}
  auto mask() const { return a.mask() | b.mask(); }
};

/// `A & B`. Not tight: a block both parts visit may hold no pair both allow.
template <class A, class B>
struct both_case : case_base {
  static constexpr bool varies = A::varies || B::varies;
  static constexpr bool tight = false;
  static bool fits(index lq, index lk) { return A::fits(lq, lk) && B::fits(lq, lk); }
  static std::string name() { return "(" + A::name() + " & " + B::name() + ")"; }
  A a;
  B b;
  explicit both_case(const mask_shape& s) : a(s), b(s) {}
  auto mask() const { return a.mask() & b.mask(); }
};

/// A `block_mask` of Inner's mask, planned once for the case's sizes in the engine's geometry for T: calls
/// copy the stored runs instead of planning.
template <class T, class Inner>
struct block_mask_case : case_base {
  static constexpr bool varies = Inner::varies;
  static constexpr bool tight = Inner::tight;
  static bool fits(index lq, index lk) { return Inner::fits(lq, lk); }
  static std::string name() { return "block_mask of " + Inner::name(); }
  using inner_mask = decltype(std::declval<const Inner&>().mask());
  Inner inner;
  salt::block_mask<T, inner_mask> planned;
  explicit block_mask_case(const mask_shape& s)
      : inner(s), planned(inner.mask(), problem_dims{.batch = s.batch, .q_heads = s.heads, .lq = s.lq, .lk = s.lk}) {}
  planned_mask_view<inner_mask> mask() const { return planned.mask(); }
};

using causal_bottom_right = causal_case<causal_alignment::bottom_right, 0>;
using window = sliding_window_case<5, 5, 1>;

}  // namespace cases

/// Every mask the library ships, with its variants, and the compositions users write, for calls in T.
template <class T>
using every_mask_case = std::tuple<
    cases::no_mask_case,
    cases::causal_bottom_right,
    cases::causal_case<causal_alignment::top_left, 0>,
    cases::causal_case<causal_alignment::bottom_right, -3>,
    cases::causal_case<causal_alignment::bottom_right, 20>,
    cases::key_padding_case,
    cases::key_mask_case,
    cases::query_padding_case,
    cases::sliding_window_case<9, 0, 1>,       // one-sided: causal local attention
    cases::window,                             // two-sided
    cases::sliding_window_case<0, 30, 1>,      // looks ahead only
    cases::sliding_window_case<20, 13, 3>,     // dilated, every block of the band visited
    cases::sliding_window_case<300, 300, 90>,  // dilated past a key block plus a tile: the sparse walk
    cases::global_tokens_case,
    cases::segments_case,
    cases::block_layout_case,
    cases::block_layout_csr_case,
    cases::bigbird_case<16, 2>,
    cases::bigbird_case<7, 1>,
    cases::strided_case<7>,
    cases::strided_case<100>,
    cases::fixed_case<16, 4>,
    cases::fixed_case<5, 0>,
    cases::either_case<cases::window, cases::global_tokens_case>,
    cases::both_case<cases::causal_bottom_right, cases::key_padding_case>,
    cases::both_case<cases::key_padding_case, cases::query_padding_case>,
    cases::both_case<cases::strided_case<7>, cases::causal_bottom_right>,
    cases::both_case<cases::fixed_case<16, 4>, cases::causal_bottom_right>,
    cases::both_case<cases::segments_case, cases::causal_bottom_right>,
    cases::both_case<cases::either_case<cases::window, cases::global_tokens_case>, cases::key_padding_case>,
    cases::either_case<cases::block_layout_case, cases::fixed_case<16, 4>>,
    cases::both_case<cases::block_layout_csr_case, cases::causal_bottom_right>,
    cases::both_case<cases::bigbird_case<16, 2>, cases::key_mask_case>,
    cases::block_mask_case<T, cases::both_case<cases::either_case<cases::window, cases::global_tokens_case>,
                                               cases::key_padding_case>>,
    cases::block_mask_case<T, cases::block_layout_csr_case>>;

/// One entry of a sweep over every mask case: a case in one precision (the sweeps run float and double).
template <class Case, class T>
struct in_precision {
  using mask_case = Case;
  using scalar = T;
};
template <class T, class List>
struct in_precision_list;
template <class T, class... Cases>
struct in_precision_list<T, std::tuple<Cases...>> {
  using type = std::tuple<in_precision<Cases, T>...>;
};
template <class A, class B>
struct concatenated;
template <class... A, class... B>
struct concatenated<std::tuple<A...>, std::tuple<B...>> {
  using type = std::tuple<A..., B...>;
};
/// Every mask case in float, then in double: the type list of the sweeps' TEMPLATE_LIST_TEST_CASEs.
using every_case_in_both_precisions = concatenated<in_precision_list<float, every_mask_case<float>>::type,
                                                   in_precision_list<double, every_mask_case<double>>::type>::type;

}  // namespace salt::test
