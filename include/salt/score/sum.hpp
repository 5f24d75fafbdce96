#pragma once
/// \file score/sum.hpp
/// `a + b`: logits that are the sum of two score sources, e.g. `dot_product{} + alibi{slopes}`.

#include "concept.hpp"

namespace salt {

/// The sum of two score sources' logits. At most one of them may use the dot product; the engine writes
/// it into the tile, then `a` and `b` apply to that tile in turn. Additive terms (biases, Synthesizer
/// tables) sum in any order; a term that transforms its input (softcap, elementwise_score) sees what the
/// terms before it wrote: `elementwise_score{f} + bias` is f(dot) + bias, `bias + elementwise_score{f}` is
/// f(dot + bias).
template <class A, class B>
struct score_sum {
  static_assert(!(A::uses_dot_product() && B::uses_dot_product()),
                "salt::operator+ on score policies: at most one term may use the dot product.");
  [[no_unique_address]] A a;  ///< the first term, applied first
  [[no_unique_address]] B b;  ///< the second term, applied to what `a` left

  /// score_policy_for: whether either term uses the dot product.
  static constexpr bool uses_dot_product() { return A::uses_dot_product() || B::uses_dot_product(); }
  /// score_policy_for: whether both terms' `apply` do nothing.
  static constexpr bool is_identity() { return A::is_identity() && B::is_identity(); }
  /// The scale of the term that uses the dot product.
  double dot_scale(index d) const noexcept { return A::uses_dot_product() ? a.dot_scale(d) : b.dot_scale(d); }

  /// `a.apply`, then `b.apply`, on the same tile.
  template <class U>
  void apply(const logit_tile<U>& t, const problem_shape& p) const noexcept {
    a.apply(t, p);
    b.apply(t, p);
  }
  /// differentiable_score_for: whether both terms are additive.
  static constexpr bool is_additive() { return detail::is_additive_score<A>() && detail::is_additive_score<B>(); }
  /// differentiable_score_for: `a`, then `b`, on the tile and its slope (the chain rule, in the order they apply).
  template <class U>
  void apply_with_slope(const logit_tile<U>& t, const logit_tile<U>& slope, const problem_shape& p) const noexcept
    requires(differentiable_score_for<A, U> && differentiable_score_for<B, U>)
  {
    detail::apply_with_slope(a, t, slope, p);
    detail::apply_with_slope(b, t, slope, p);
  }
  /// The sink logit of query head h, of the term that carries attention sinks (attention_sinks.hpp).
  double sink_logit(index h) const noexcept
    requires(requires { a.sink_logit(index{}); } || requires { b.sink_logit(index{}); })
  {
    static_assert(!(requires { a.sink_logit(index{}); } && requires { b.sink_logit(index{}); }),
                  "salt::operator+ on score policies: at most one term may carry attention sinks.");
    if constexpr (requires { a.sink_logit(index{}); }) return a.sink_logit(h);
    else return b.sink_logit(h);
  }
  /// The terms' own checks, `a`'s first.
  template <class Dims>
  void check(const Dims& dims, const char* api) const {
    if constexpr (requires { a.check(dims, api); }) a.check(dims, api);
    if constexpr (requires { b.check(dims, api); }) b.check(dims, api);
  }
};

/// Sum of two score sources: `score_sum<A, B>{a, b}`, holding copies of both (views stay views).
template <score_policy A, score_policy B>
constexpr score_sum<A, B> operator+(const A& a, const B& b) {
  return {a, b};
}

}  // namespace salt
