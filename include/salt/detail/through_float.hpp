#pragma once
/// \file detail/through_float.hpp
/// The 16-bit storage path of the families whose drivers read float rows throughout (LSH's hashing and gathers,
/// Linformer's projections, linear attention's feature maps): every input widened once into a contiguous float
/// copy, the family's float form run on the copies into a float output, which is then rounded once into the
/// caller's. Extra memory: the size of the inputs and the output in float. The result is the float form's on the
/// widened inputs, rounded once, as the engine's own 16-bit path gives.

#include <array>
#include <cstddef>
#include <utility>
#include <vector>

#include "../config.hpp"
#include "../precision.hpp"
#include "../tensor.hpp"
#include "checks.hpp"
#include "simd.hpp"

namespace salt::detail {

/// A contiguous (B, H, L, d) float copy of x, widened.
template <class S>
tensor_view<const float> widened_copy(const tensor_view<const S>& x, std::vector<float>& buffer) {
  buffer.resize(static_cast<std::size_t>(x.batch * x.heads * x.tokens * x.features));
  for (index b = 0; b < x.batch; ++b)
    for (index h = 0; h < x.heads; ++h)
      for (index t = 0; t < x.tokens; ++t)
        widen_row(x.head(b, h).row(t), x.features, buffer.data() + ((b * x.heads + h) * x.tokens + t) * x.features);
  return tensor_view<const float>::bhld(buffer.data(), x.batch, x.heads, x.tokens, x.features);
}

/// Runs `run(float views of inputs..., float view of out)` for 16-bit inputs and rounds its output into `out`.
/// The views are checked first (well formed, out over no input), since the copies would hide an overlap; the
/// family checks the rest on the copies, whose shapes are the inputs'. Nothing is written to out on an error.
template <class S, class Run, class... Inputs>
void through_float(const char* api, const char* family, Run&& run, const tensor_view<S>& out,
                   const Inputs&... inputs) {
  static_assert(is_half_width<S>, "salt: through_float is the path of the 16-bit storage types");
  (check_view(inputs, api, "an input"), ...);
  check_view(out, api, "out");
  check_not_in_place(out, api, family, inputs...);
  std::array<std::vector<float>, sizeof...(Inputs)> copies;
  std::vector<float> result(static_cast<std::size_t>(out.batch * out.heads * out.tokens * out.features));
  [&]<std::size_t... I>(std::index_sequence<I...>) {
    run(widened_copy(inputs, copies[I])..., tensor_view<float>::bhld(result.data(), out.batch, out.heads, out.tokens,
                                                                       out.features));
  }(std::make_index_sequence<sizeof...(Inputs)>{});
  for (index b = 0; b < out.batch; ++b)
    for (index h = 0; h < out.heads; ++h)
      for (index t = 0; t < out.tokens; ++t)
        narrow_row(result.data() + ((b * out.heads + h) * out.tokens + t) * out.features, out.features,
                   out.head(b, h).row(t));
}

}  // namespace salt::detail
