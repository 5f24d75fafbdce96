#pragma once
/// \file detail/checks.hpp
/// The input checks every family's public entry makes before any work, each message naming the function
/// and the sizes: views well formed, shapes that agree, no output over an input, and the policies' own
/// checks. Kernels themselves never throw.

#include <utility>

#include "../config.hpp"
#include "../error.hpp"
#include "../mask/concept.hpp"
#include "../run_options.hpp"
#include "../tensor.hpp"

namespace salt::detail {

/// The bytes a view spans, from its first element to one past its last (empty for an empty view).
template <class T>
std::pair<const char*, const char*> byte_range(const tensor_view<T>& t) {
  const auto* p = reinterpret_cast<const char*>(t.data);
  if (t.batch == 0 || t.heads == 0 || t.tokens == 0 || t.features == 0) return {p, p};
  const index last = (t.batch - 1) * t.batch_stride + (t.heads - 1) * t.head_stride + (t.tokens - 1) * t.token_stride +
                     t.features;
  return {p, p + last * static_cast<index>(sizeof(T))};
}

/// Whether two views' byte ranges overlap (conservative for interleaved strides).
template <class T, class U>
bool overlaps(const tensor_view<T>& a, const tensor_view<U>& b) {
  const auto [a0, a1] = byte_range(a);
  const auto [b0, b1] = byte_range(b);
  return a0 < b1 && b0 < a1;
}

/// A view with non-negative sizes and strides, and data unless it is empty.
template <class T>
void check_view(const tensor_view<T>& t, const char* api, const char* name) {
  require(t.batch >= 0 && t.heads >= 0 && t.tokens >= 0 && t.features >= 0, api, ": ", name,
          " has a negative size (", t.batch, ", ", t.heads, ", ", t.tokens, ", ", t.features, ")");
  require(t.batch_stride >= 0 && t.head_stride >= 0 && t.token_stride >= 0, api, ": ", name,
          " has a negative stride");
  require(t.data != nullptr || t.batch * t.heads * t.tokens * t.features == 0, api, ": ", name,
          " is null but has ", t.batch * t.heads * t.tokens * t.features, " elements");
}

/// `out` may not share a byte with any input: no family can run in place.
template <class T, class... Inputs>
void check_not_in_place(const tensor_view<T>& out, const char* api, const char* family, const Inputs&... inputs) {
  require((!overlaps(out, inputs) && ...), api, ": out overlaps an input; ", family, " cannot run in place");
}

inline void check_run_options(const run_options& opts, const char* api) {
  require(opts.threads >= 0, api, ": threads must be >= 0, got ", opts.threads);
}

/// The sizes of a (q, k, v) call as the policies see them.
template <class T>
problem_dims dims_of(const tensor_view<const T>& q, const tensor_view<const T>& k, const tensor_view<const T>& v) {
  return {q.batch, q.heads, k.heads, q.tokens, k.tokens, q.features, v.features};
}

/// Each policy's own `check(dims, api)`, for the policies that have one.
template <class... Policies>
void check_policies(const problem_dims& dims, const char* api, const Policies&... policies) {
  auto one = [&](const auto& p) {
    if constexpr (requires { p.check(dims, api); }) p.check(dims, api);
  };
  (one(policies), ...);
}

/// The checks every (q, K/V) -> out call shares, whatever holds K and V (strided views, a paged cache): k and v
/// with the same number of heads, which divides q's; out (B, Hq, Lq, dv) (O: T, or const T for a backward pass's
/// forward output).
template <class T, class O>
void check_heads_and_out(const tensor_view<const T>& q, index k_heads, index v_heads, index dv,
                         const tensor_view<O>& out, const char* api) {
  require(k_heads == v_heads, api, ": k has ", k_heads, " heads but v has ", v_heads);
  require(k_heads <= q.heads, api, ": k and v have ", k_heads, " heads, more than q's ", q.heads);
  require(q.heads == 0 || (k_heads > 0 && q.heads % k_heads == 0), api, ": q has ", q.heads,
          " heads, not a multiple of k and v's ", k_heads);
  require(out.batch == q.batch && out.heads == q.heads && out.tokens == q.tokens && out.features == dv, api,
          ": out is (", out.batch, ", ", out.heads, ", ", out.tokens, ", ", out.features, ") but must be (", q.batch,
          ", ", q.heads, ", ", q.tokens, ", ", dv, ")");
}

/// Every shape check of a (q, k, v) -> out call with grouped-query heads, in the order a user would fix
/// them: q (B, Hq, Lq, d), k (B, Hkv, Lk, d), v (B, Hkv, Lk, dv), out (B, Hq, Lq, dv), Hkv dividing Hq. K and V may
/// be stored in a type of their own (U: the int8 values of a quantized cache); out is written (O = T), or is the
/// forward's output a backward pass reads (O = const T).
template <class T, class U = T, class O = T>
void check_qkv(const tensor_view<const T>& q, const tensor_view<const U>& k, const tensor_view<const U>& v,
               const tensor_view<O>& out, const run_options& opts, const char* api, const char* family) {
  check_view(q, api, "q");
  check_view(k, api, "k");
  check_view(v, api, "v");
  check_view(out, api, "out");
  require(q.features == k.features, api, ": q has ", q.features, " features but k has ", k.features);
  require(k.tokens == v.tokens, api, ": k has ", k.tokens, " tokens but v has ", v.tokens);
  require(q.batch == k.batch && k.batch == v.batch, api, ": batch sizes differ: q ", q.batch, ", k ", k.batch, ", v ",
          v.batch);
  check_heads_and_out(q, k.heads, v.heads, v.features, out, api);
  check_not_in_place(out, api, family, q, k, v);
  check_run_options(opts, api);
}

}  // namespace salt::detail
