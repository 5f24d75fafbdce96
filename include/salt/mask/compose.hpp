#pragma once
/// \file mask/compose.hpp
/// `a | b` (pairs either allows) and `a & b` (pairs both allow). The composite plans by merging its
/// parts' block runs, so its cost stays O(visited blocks) however the parts are nested.

#include <algorithm>
#include <concepts>
#include <cstdint>
#include <limits>

#include "capabilities.hpp"
#include "concept.hpp"

namespace salt {
namespace detail {

/// Kind of a key block in a plan: not visited, visited with per-pair tests, visited whole.
enum class block_kind : int { none = 0, partial = 1, full = 2 };

/// Merges two plans block-run by block-run; `combine` decides each stretch's kind from its parts'.
template <class Combine>
void merge_plans(const block_plan& a, const block_plan& b, Combine combine, block_plan& out) noexcept {
  static constexpr index never = std::numeric_limits<index>::max();
  const auto ra = a.runs(), rb = b.runs();
  std::size_t ia = 0, ib = 0;
  index pos = 0;
  // Sweep the block axis from edge to edge; between two consecutive edges both kinds are constant.
  auto kind = [&pos](const block_run* r) {
    if (r == nullptr || r->first > pos) return block_kind::none;
    return r->full ? block_kind::full : block_kind::partial;
  };
  auto next_edge = [&pos](const block_run* r) { return r == nullptr ? never : (r->first > pos ? r->first : r->last); };
  while (ia < ra.size() || ib < rb.size()) {
    const block_run* x = ia < ra.size() ? &ra[ia] : nullptr;
    const block_run* y = ib < rb.size() ? &rb[ib] : nullptr;
    pos = std::max(pos, std::min(x ? x->first : never, y ? y->first : never));
    const index end = std::min(next_edge(x), next_edge(y));
    const block_kind k = combine(kind(x), kind(y));
    if (k != block_kind::none) out.add(pos, end, k == block_kind::full);
    pos = end;
    if (x && x->last <= pos) ++ia;
    if (y && y->last <= pos) ++ib;
  }
}

}  // namespace detail

namespace detail {

/// How `|` combines two masks: a pair is allowed when either part allows it.
struct either {
  static constexpr bool pair(bool x, bool y) noexcept { return x || y; }
  static constexpr query_bits bits(query_bits x, query_bits y) noexcept { return x | y; }
  static constexpr block_kind block(block_kind x, block_kind y) noexcept { return std::max(x, y); }
};
/// How `&` combines two masks: a pair is allowed when both parts allow it.
struct both {
  static constexpr bool pair(bool x, bool y) noexcept { return x && y; }
  static constexpr query_bits bits(query_bits x, query_bits y) noexcept { return x & y; }
  static constexpr block_kind block(block_kind x, block_kind y) noexcept { return std::min(x, y); }
};

/// A part that its shapes describe whole (capabilities.hpp): an intersection of such parts is again
/// described by its parts' shapes, so it offers them; any other part would be forgotten.
template <class M>
concept shaped_mask = prefix_mask<M> || key_length_mask<M>;

}  // namespace detail

/// Two masks combined pair by pair (`Combine` is detail::either for `|`, detail::both for `&`). Its plans
/// merge the parts' plans; its column form combines theirs, so compositions stay as cheap as their parts.
template <mask_policy A, mask_policy B, class Combine>
struct combined_mask {
  [[no_unique_address]] A a;  ///< the first part (a copy: views stay views)
  [[no_unique_address]] B b;  ///< the second part

  /// mask_policy: the parts' answers, combined.
  bool allows(index q, index k, const problem_shape& s) const noexcept {
    return Combine::pair(a.allows(q, k, s), b.allows(q, k, s));
  }
  /// mask_policy: the parts' constants, combined (`|` is full when either part is, `&` when both are).
  static constexpr bool is_always_full() { return Combine::pair(A::is_always_full(), B::is_always_full()); }
  /// The composite's plan, then A's and B's plans (and their own spares) in the lists after it.
  static constexpr index plan_lists() { return 1 + plan_lists_v<A> + plan_lists_v<B>; }

  /// column_mask: the parts' bits, combined with one `|` or `&`.
  query_bits allowed_queries(index k, index q_begin, index count, const problem_shape& s) const noexcept {
    return Combine::bits(detail::allowed_queries(a, k, q_begin, count, s), detail::allowed_queries(b, k, q_begin, count, s));
  }

  /// planned_mask: both parts' plans, merged run by run; O(the parts' runs) beyond their own planning.
  void plan(const block_query& bq, block_plan& out) const noexcept {
    block_plan pa = out.spare(0), pb = out.spare(plan_lists_v<A>);
    detail::plan_blocks(a, bq, pa);
    detail::plan_blocks(b, bq, pb);
    detail::merge_plans(pa, pb, Combine::block, out);
  }

  /// `a & b` of prefix-shaped and key-only parts is a prefix_mask when a part is: its last key is the
  /// earlier of its prefix parts' (still the query plus a constant).
  index last_key(index q, const problem_shape& s) const noexcept
    requires std::same_as<Combine, detail::both> && detail::shaped_mask<A> && detail::shaped_mask<B> &&
             (prefix_mask<A> || prefix_mask<B>)
  {
    if constexpr (prefix_mask<A> && prefix_mask<B>) return std::min(a.last_key(q, s), b.last_key(q, s));
    else if constexpr (prefix_mask<A>) return a.last_key(q, s);
    else return b.last_key(q, s);
  }
  /// Likewise a key_length_mask when a part is: the fewer of its key-only parts' valid keys.
  index valid_keys(const problem_shape& s) const noexcept
    requires std::same_as<Combine, detail::both> && detail::shaped_mask<A> && detail::shaped_mask<B> &&
             (key_length_mask<A> || key_length_mask<B>)
  {
    if constexpr (key_length_mask<A> && key_length_mask<B>) return std::min(a.valid_keys(s), b.valid_keys(s));
    else if constexpr (key_length_mask<A>) return a.valid_keys(s);
    else return b.valid_keys(s);
  }

  /// The parts' own checks, `a`'s first.
  template <class Dims>
  void check(const Dims& dims, const char* api) const {
    if constexpr (requires { a.check(dims, api); }) a.check(dims, api);
    if constexpr (requires { b.check(dims, api); }) b.check(dims, api);
  }
};

namespace detail {
/// A composition has a prefix part when either of its parts has one, whether it offers the shape or not.
template <class A, class B, class Combine>
struct has_prefix_part<combined_mask<A, B, Combine>>
    : std::bool_constant<has_prefix_part<A>::value || has_prefix_part<B>::value> {};
}  // namespace detail

/// Pairs allowed by A or by B.
template <mask_policy A, mask_policy B>
using union_mask = combined_mask<A, B, detail::either>;
/// Pairs allowed by both A and B.
template <mask_policy A, mask_policy B>
using intersect_mask = combined_mask<A, B, detail::both>;

/// `causal{} | key_padding{...}`: pairs either mask allows.
template <mask_policy A, mask_policy B>
constexpr union_mask<A, B> operator|(const A& a, const B& b) {
  return {a, b};
}
/// `causal{} & key_padding{...}`: pairs both masks allow.
template <mask_policy A, mask_policy B>
constexpr intersect_mask<A, B> operator&(const A& a, const B& b) {
  return {a, b};
}

}  // namespace salt
