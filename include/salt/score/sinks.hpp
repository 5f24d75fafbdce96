#pragma once
/// \file score/sinks.hpp
/// `attention_sinks`: a learned logit per query head that joins every row's softmax denominator as a key whose
/// value is zero (gpt-oss; ONNX Runtime's head_sink, llama.cpp's add_sinks), so a row may put part of its
/// attention nowhere:
///
///     out = sum_j e^(s_j) v_j / (sum_j e^(s_j) + e^(sink_h)),   lse = log(sum_j e^(s_j) + e^(sink_h))
///
///     const std::vector<double> sinks(q_heads, 0.5);
///     salt::attention(q, k, v, out, salt::causal{}, salt::dot_product{} + salt::attention_sinks{sinks});

#include <concepts>

#include "../borrowed_span.hpp"
#include "../config.hpp"
#include "../error.hpp"
#include "concept.hpp"

namespace salt {

/// Attention sinks, as a score policy term: adds nothing to the logits of the tile; the engine adds
/// e^(logits[h]) to the denominator of every row of query head h once, after all of the row's keys (and after a
/// split row's partitions are merged). A row that sees no key outputs zeros and has LSE logits[h]. Views
/// (q_heads) logits, which must outlive the call (a borrowed span: a temporary container does not compile).
struct attention_sinks {
  borrowed_span<const double> logits;  ///< (q_heads): each query head's sink logit, natural-log units

  /// score_policy_for: sinks add no logit to the tile.
  static constexpr bool uses_dot_product() { return false; }
  /// score_policy_for: `apply` does nothing.
  static constexpr bool is_identity() { return true; }
  /// differentiable_score_for: sinks add no logit (the saved LSE holds them, which is all the backward needs).
  static constexpr bool is_additive() { return true; }
  /// Unused (no dot product).
  double dot_scale(index) const noexcept { return 0; }
  /// Nothing: the sink joins the denominator, not the tile.
  template <class U>
  void apply(const logit_tile<U>&, const problem_shape&) const noexcept {}
  /// Query head h's sink logit.
  double sink_logit(index h) const noexcept { return logits[static_cast<std::size_t>(h)]; }

  /// Throws salt::error naming `api` unless there is one logit per query head.
  void check(const problem_dims& dims, const char* api) const {
    detail::require(static_cast<index>(logits.size()) == dims.q_heads, api, ": attention_sinks has ", logits.size(),
                    " logits for ", dims.q_heads, " query heads");
  }
};

/// Whether a score policy carries attention sinks (attention_sinks, or a sum with it as a term).
template <class S>
concept has_sinks = requires(const S& s, index h) {
  { s.sink_logit(h) } -> std::convertible_to<double>;
};

}  // namespace salt
