#pragma once
/// \file linear/state.hpp
/// The log-offset of a linear-attention state, shared by the chunked kernels (linear/attention.hpp) and the
/// recurrent state (linear/recurrent_state.hpp). Maps with a log scale give phi(x) = exp(s(x)) f(x); the
/// state S = sum w_j phi(k_j) v_j^T, z = sum w_j phi(k_j) holds each key weighted w_j = exp(s(k_j) - ref)
/// against a running reference ref, which is raised (S and z rescaled by exp(ref_old - ref_new)) only when a
/// key's scale passes it by the margin, so weights stay below exp(margin) and nothing overflows.

#include <cmath>
#include <limits>
#include <type_traits>

#include "../config.hpp"

namespace salt::detail {

/// Weights stay below exp(margin) before the state's reference is raised: 2^40 in float, 2^320 in double,
/// leaving room for the sums of up to 2^40 (float) keys times values before anything overflows.
template <class T>
inline constexpr T linear_rescale_margin = std::is_same_v<T, float> ? T(27.725887222397812) : T(221.80709777918249);

/// The reference (log-offset) of one head's state; -inf while the state holds nothing (all zeros).
template <class T>
struct state_reference {
  T ref = -std::numeric_limits<T>::infinity();

  /// Whether a key of log scale c would weigh more than exp(margin): then the reference must be raised first.
  bool passed_by(T c) const noexcept { return c > ref + linear_rescale_margin<T>; }
  /// A key's weight against the reference; a key of scale -inf weighs nothing.
  T weight(T c) const noexcept { return c == -std::numeric_limits<T>::infinity() ? T(0) : std::exp(c - ref); }

  /// Moves the reference to r (> ref), rescaling S (m, dv; rows ld apart) and z (m) by exp(ref - r). A state
  /// with no reference is all zeros and is left alone. O(m dv).
  void raise(T r, T* s, index m, index dv, index ld, T* z) noexcept {
    if (ref != -std::numeric_limits<T>::infinity()) {
      const T f = std::exp(ref - r);
      for (index l = 0; l < m; ++l) {
        T* row = s + l * ld;
        for (index c = 0; c < dv; ++c) row[c] *= f;
        z[l] *= f;
      }
    }
    ref = r;
  }
};

}  // namespace salt::detail
