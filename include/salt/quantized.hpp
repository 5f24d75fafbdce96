#pragma once
/// \file quantized.hpp
/// K and V stored as int8 with float scales, as llama.cpp's q8_0 cache and ONNX Runtime's and oneDNN's quantized
/// caches hold them: element (b, h, t, c) is values(b, h, t, c) * scales(b, h, t, c / group), with one scale per
/// token and head (group = d) or per group of features (32, as q8_0). salt::attention reads such a cache in place,
/// dequantizing in registers (decode tiles) or one key block at a time into its workspace (prefill tiles), never the
/// whole cache; `quantize` writes one.
///
///     std::vector<std::int8_t> k8(B * H * L * d);
///     std::vector<float> k_scales(B * H * L);                           // one scale per token and head
///     auto k = salt::quantized_view<std::int8_t>::bhld(k8.data(), k_scales.data(), B, H, L, d);
///     salt::quantize(k_float, k);                                      // scale = max |x| / 127, round to nearest
///     salt::attention(q, k, v, out, salt::causal{});                   // q and out in float, bf16 or fp16
///
/// The kernels compute in float on the dequantized values, float(value) * scale, so a call gives the bits of the
/// float kernel run on those values.

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <type_traits>

#include "config.hpp"
#include "detail/checks.hpp"
#include "error.hpp"
#include "precision.hpp"
#include "tensor.hpp"

namespace salt {

/// One head of a quantized cache as the kernels read it: the int8 values (the base view), and `scales` (one row
/// per token, of cols / group scales).
template <class I>
struct quantized_head : head_view<I> {
  head_view<std::conditional_t<std::is_const_v<I>, const float, float>> scales;  ///< (tokens, features / group)
  index group = 0;  ///< features per scale
};

/// A (batch, heads, tokens, features) tensor of int8 values (the base view, with its strides) and its scales, a
/// (batch, heads, tokens, features / group) float tensor with strides of its own. I is std::int8_t, or const
/// std::int8_t for reading. Non-owning, like tensor_view.
template <class I>
struct quantized_view : tensor_view<I> {
  static_assert(std::is_same_v<std::remove_const_t<I>, std::int8_t>, "salt::quantized_view holds int8 values.");
  using scale_type = std::conditional_t<std::is_const_v<I>, const float, float>;  ///< float, const for reading
  tensor_view<scale_type> scales;  ///< (batch, heads, tokens, features / group)
  index group = 0;                 ///< features per scale: a divisor of features

  /// (batch, heads, tokens, features) values and (batch, heads, tokens, features / group) scales, both stored
  /// contiguously in that order; group 0 means one scale per token and head (group = features).
  static quantized_view bhld(I* values, scale_type* scales, index batch, index heads, index tokens, index features,
                             index group = 0) {
    const index g = group == 0 ? features : group;
    const index per_token = g > 0 ? features / g : 0;
    return {tensor_view<I>::bhld(values, batch, heads, tokens, features),
            tensor_view<scale_type>::bhld(scales, batch, heads, tokens, per_token), g};
  }

  /// Read-only view of the same data.
  operator quantized_view<const I>() const noexcept {  // NOLINT(google-explicit-constructor): views convert like pointers
    return {tensor_view<const I>(*this), tensor_view<const float>(scales), group};
  }
  /// Head h of batch item b, with its scales; no bounds check.
  quantized_head<I> head(index b, index h) const noexcept { return {tensor_view<I>::head(b, h), scales.head(b, h), group}; }
  /// The keys of every sequence (one length for all).
  index max_tokens() const noexcept { return this->tokens; }
};

namespace detail {

/// A quantized view's own consistency: values and scales well formed and of one (batch, heads, tokens), a group
/// that divides the features, features / group scales per token.
inline void check_quantized(const quantized_view<const std::int8_t>& x, const char* api, const char* name) {
  check_view(x, api, name);
  check_view(x.scales, api, name);
  require(x.group > 0 && x.features % x.group == 0, api, ": ", name, " has ", x.features,
          " features, which groups of ", x.group, " do not divide");
  require(x.scales.batch == x.batch && x.scales.heads == x.heads && x.scales.tokens == x.tokens &&
              x.scales.features == x.features / x.group,
          api, ": ", name, "'s scales are (", x.scales.batch, ", ", x.scales.heads, ", ", x.scales.tokens, ", ",
          x.scales.features, ") but must be (", x.batch, ", ", x.heads, ", ", x.tokens, ", ", x.features / x.group, ")");
}

/// Every shape check of attention over a quantized K and V.
template <class T>
void check_quantized_qkv(const tensor_view<const T>& q, const quantized_view<const std::int8_t>& k,
                         const quantized_view<const std::int8_t>& v, const tensor_view<T>& out, const run_options& opts,
                         const char* api) {
  check_quantized(k, api, "k");
  check_quantized(v, api, "v");
  check_qkv<T, std::int8_t>(q, k, v, out, opts, api, "attention");  // the values as any K and V
  check_not_in_place(out, api, "attention", k.scales, v.scales);
}

}  // namespace detail

/// Writes x (batch, heads, tokens, features) into `out` as int8 with scales, symmetric per token, head and group:
/// scale = max |x| / 127 over the group, value = x / scale rounded to nearest even (a group of zeros gets scale 0
/// and values 0). Then |x - value * scale| <= scale / 2 for every element, up to float rounding. x may be float,
/// double, bf16 or fp16.
/// Throws salt::error naming salt::quantize for shapes that differ, a malformed out, out overlapping x, or a
/// non-finite element of x (with its position); nothing is written then.
template <storage_type T>
void quantize(const std::type_identity_t<tensor_view<const T>>& x, const quantized_view<std::int8_t>& out) {
  constexpr const char* api = "salt::quantize";
  detail::check_view(x, api, "x");
  detail::check_quantized(out, api, "out");
  detail::require(x.batch == out.batch && x.heads == out.heads && x.tokens == out.tokens && x.features == out.features,
                  api, ": x is (", x.batch, ", ", x.heads, ", ", x.tokens, ", ", x.features, ") but out is (", out.batch,
                  ", ", out.heads, ", ", out.tokens, ", ", out.features, ")");
  detail::require(!detail::overlaps(x, tensor_view<const std::int8_t>(out)) && !detail::overlaps(x, out.scales) &&
                      !detail::overlaps(tensor_view<const std::int8_t>(out), out.scales),
                  api, ": x, out's values and out's scales must not overlap");
  for (index b = 0; b < x.batch; ++b)
    for (index h = 0; h < x.heads; ++h)
      for (index t = 0; t < x.tokens; ++t) {
        const T* row = x.head(b, h).row(t);
        for (index c = 0; c < x.features; ++c)
          detail::require(std::isfinite(static_cast<double>(row[c])), api, ": x(", b, ", ", h, ", ", t, ", ", c,
                          ") is not finite");
      }
  const index g = out.group;
  for (index b = 0; b < x.batch; ++b)
    for (index h = 0; h < x.heads; ++h) {
      const head_view<const T> src = x.head(b, h);
      const quantized_head<std::int8_t> dst = out.head(b, h);
      for (index t = 0; t < x.tokens; ++t) {
        const T* in = src.row(t);
        std::int8_t* values = dst.row(t);
        float* scales = dst.scales.row(t);
        for (index c0 = 0; c0 < x.features; c0 += g) {
          float top = 0;
          for (index c = c0; c < c0 + g; ++c) top = std::max(top, std::abs(static_cast<float>(in[c])));
          const float scale = top / 127.0f, inverse = top > 0 ? 127.0f / top : 0.0f;
          scales[c0 / g] = scale;
          for (index c = c0; c < c0 + g; ++c) {
            const float v = std::nearbyint(static_cast<float>(in[c]) * inverse);
            values[c] = static_cast<std::int8_t>(std::clamp(v, -127.0f, 127.0f));
          }
        }
      }
    }
}

}  // namespace salt
