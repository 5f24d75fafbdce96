#pragma once
/// \file mask/capabilities.hpp
/// What a mask offers besides its pairs, for the kernels that cannot take an arbitrary set of (query, key)
/// pairs: linear attention follows a prefix of the keys through its running state, Linformer drops padded
/// keys before projecting. A mask offers a shape through a member; each such kernel takes every mask, the
/// library's or a user's, that offers the shapes it needs, and rejects the others at compile time.
///
/// The contract: a mask's allowed pairs are exactly those its offered shapes allow, k <= last_key(q, s) for a
/// prefix_mask and k < valid_keys(s) for a key_length_mask (both, for a mask that offers both), and
/// allows() must agree.

#include <concepts>
#include <type_traits>

#include "../config.hpp"
#include "../error.hpp"
#include "concept.hpp"

namespace salt {

/// A prefix-shaped mask: query q sees exactly the keys [0, last_key(q, s)], and last_key(q, s) =
/// q + last_key(0, s), a diagonal shifted by a constant (which may depend on Lq and Lk). `causal` is one,
/// with any alignment and offset. A negative last key means the query sees no key.
template <class M>
concept prefix_mask = mask_policy<M> && requires(const M& m, index q, const problem_shape& s) {
  { m.last_key(q, s) } noexcept -> std::same_as<index>;
};

/// A key-only mask: every query of batch item s.batch sees exactly the keys [0, valid_keys(s)), with
/// 0 <= valid_keys(s) <= s.lk. `key_padding` is one; `no_mask` is one trivially (every key is valid).
template <class M>
concept key_length_mask = mask_policy<M> && requires(const M& m, const problem_shape& s) {
  { m.valid_keys(s) } noexcept -> std::same_as<index>;
};

namespace detail {

/// Whether a mask has a prefix-shaped (causal) part anywhere, offered or not: `causal | x` offers no shape
/// but still hides keys by position. Compositions specialise it (compose.hpp).
template <class M>
struct has_prefix_part : std::bool_constant<prefix_mask<M>> {};

/// The last key of query q under a mask: its prefix's, or the last key of the sequence for a mask without one.
template <class M>
index last_key_of(const M& m, index q, const problem_shape& s) noexcept {
  if constexpr (prefix_mask<M>) return m.last_key(q, s);
  else return s.lk - 1;
}

/// The valid keys of batch item s.batch under a mask: its key length, or every key for a mask without one.
template <class M>
index valid_keys_of(const M& m, const problem_shape& s) noexcept {
  if constexpr (key_length_mask<M>) return m.valid_keys(s);
  else return s.lk;
}

/// A key-only mask's valid keys lie in [0, lk] for every batch item, as key_length_mask requires; checked at
/// a kernel's entry for masks without a check of their own (key_padding checks its lengths first, with its
/// own message).
template <class M>
void check_valid_keys(const M& m, index batch, index lq, index lk, const char* api) {
  if constexpr (key_length_mask<M>) {
    for (index b = 0; b < batch; ++b) {
      const index n = m.valid_keys(problem_shape{lq, lk, b, 0});
      require(n >= 0 && n <= lk, api, ": the mask's valid_keys of batch item ", b, " is ", n, ", outside [0, ", lk,
              "]");
    }
  }
}

}  // namespace detail
}  // namespace salt
