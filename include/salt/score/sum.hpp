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
  [[no_unique_address]] A a;
  [[no_unique_address]] B b;

  static constexpr bool uses_dot_product() { return A::uses_dot_product() || B::uses_dot_product(); }
  static constexpr bool is_identity() { return A::is_identity() && B::is_identity(); }
  double dot_scale(index d) const noexcept { return A::uses_dot_product() ? a.dot_scale(d) : b.dot_scale(d); }

  template <class U>
  void apply(const logit_tile<U>& t, const problem_shape& p) const noexcept {
    a.apply(t, p);
    b.apply(t, p);
  }
  template <class Dims>
  void check(const Dims& dims, const char* api) const {
    if constexpr (requires { a.check(dims, api); }) a.check(dims, api);
    if constexpr (requires { b.check(dims, api); }) b.check(dims, api);
  }
};

/// Sum of two score sources.
template <score_policy A, score_policy B>
constexpr score_sum<A, B> operator+(const A& a, const B& b) {
  return {a, b};
}

}  // namespace salt
