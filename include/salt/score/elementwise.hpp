#pragma once
/// \file score/elementwise.hpp
/// `elementwise_score{f}`: a score policy from one function of a logit and its position, the form of
/// FlexAttention's `score_mod`. Relative-position biases, ALiBi variants, per-head temperature or
/// capping are one lambda each.

#include <type_traits>

#include "concept.hpp"
#include "dot_product.hpp"

namespace salt {

/// Logit (q, k) of batch item b and query head h becomes `f(s, b, h, q, k)`, where s is the logit of the
/// `inner` policy (by default the scaled dot product scale * q.k) and q, k are positions in the call
/// (salt::index). f is called with s as float or double, the kernel's precision, and its result is
/// converted back; it must not throw (the engine runs it inside noexcept tiles).
///
///     const float slope = 0.25f;
///     const auto relative = salt::elementwise_score{[slope](auto s, salt::index, salt::index, salt::index q,
///                                                           salt::index k) {
///       using S = decltype(s);
///       return s - S(slope) * S(std::abs(static_cast<int>(q - k)));
///     }};
///     salt::attention(q, k, v, salt::causal{}, relative);
///
/// Take s as `auto` (as above) so that a double kernel computes f in double. Positions are 64-bit; an f
/// that narrows a distance to int before converting it to S (as above) vectorises on every x86 level,
/// where a 64-bit integer to floating-point conversion needs AVX-512.
/// The one-function form complements the tile form of score_policy (four members and an `apply` over a
/// key-major logit tile): f runs once per visited pair, over each key's row of queries, which the compiler
/// vectorises when f inlines; a policy that needs per-tile set-up or a table walk (bias_table, alibi,
/// Synthesizer) is faster in the tile form. The policy is trivially copyable when f is (a lambda that
/// captures values or pointers); what f points to must outlive the call. It composes with `+` (e.g.
/// `elementwise_score{f} + bias`, where f sees only the dot product) and with any mask; f is never called
/// on a pair the mask's plan skips, and a masked pair's result is discarded.
template <class F, class Inner = dot_product>
struct elementwise_score {
  static_assert(std::is_invocable_v<const F&, float, index, index, index, index> &&
                    std::is_invocable_v<const F&, double, index, index, index, index>,
                "salt::elementwise_score: f must be callable as f(logit, batch, head, q, k) with a float or double "
                "logit and salt::index positions.");
  static_assert(std::is_trivially_copyable_v<F>,
                "salt::elementwise_score: f must be trivially copyable: capture values or pointers, not containers.");

  F f;                                ///< the score modification
  [[no_unique_address]] Inner inner{};  ///< where the logits f receives come from

  /// score_policy_for: as `inner`.
  static constexpr bool uses_dot_product() { return Inner::uses_dot_product(); }
  /// score_policy_for: `apply` calls f.
  static constexpr bool is_identity() { return false; }
  /// `inner`'s scale.
  double dot_scale(index d) const noexcept { return inner.dot_scale(d); }

  /// Applies `inner`, then replaces each logit s of the tile with f(s, b, h, q, k); queries * keys calls of f.
  template <class U>
  void apply(const logit_tile<U>& t, const problem_shape& p) const noexcept {
    inner.apply(t, p);
    // Key-major: each key's logits for the tile's queries are contiguous, so the inner loop runs along
    // queries with k fixed, the loop the compiler vectorises once f is inlined.
    for (index j = 0; j < t.keys; ++j) {
      U* row = t.key_row(j);
      const index k = t.k_begin + j;
      for (index i = 0; i < t.queries; ++i) row[i] = static_cast<U>(f(row[i], p.batch, p.head, t.q_begin + i, k));
    }
  }

  /// `inner`'s check, when it has one.
  template <class Dims>
  void check(const Dims& dims, const char* api) const {
    if constexpr (requires { inner.check(dims, api); }) inner.check(dims, api);
  }
};

/// `salt::elementwise_score{f}` applies f to the scaled dot product.
template <class F>
elementwise_score(F) -> elementwise_score<F>;
/// `salt::elementwise_score{f, inner}` applies f to another score policy's logits.
template <class F, class Inner>
elementwise_score(F, Inner) -> elementwise_score<F, Inner>;

}  // namespace salt
