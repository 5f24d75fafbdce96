#pragma once
/// \file precision.hpp
/// Storage type and compute type. Q, K, V and the output may be stored as float, double, `Eigen::bfloat16` or
/// `Eigen::half`; the kernels compute in `accumulator_t` of the storage type: float for float, bf16 and fp16,
/// double for double. Logits, the running max and sum, the output accumulators and the log-sum-exp are all in
/// that type; a low-precision input is widened (exactly) once per block, and the output rounded to nearest even
/// once, when it is written.
///
///     salt::row_matrix<Eigen::bfloat16> q = ..., k = ..., v = ...;
///     salt::row_matrix<Eigen::bfloat16> out = salt::attention(q, k, v, salt::causal{});  // float inside
///
/// With this release's widening kernels, a bf16 or fp16 call gives exactly the bits of the float kernel run on
/// the widened inputs, with its output rounded: the storage type changes the bytes read, not the arithmetic.

#include <Eigen/Core>

#include <type_traits>

namespace salt {

/// The element types a kernel's Q, K, V and output may be stored in.
template <class T>
concept storage_type = std::is_same_v<T, float> || std::is_same_v<T, double> ||
                       std::is_same_v<T, Eigen::bfloat16> || std::is_same_v<T, Eigen::half>;

/// Whether T is one of the 16-bit storage types (bf16, fp16), which the kernels widen to float.
template <class T>
inline constexpr bool is_half_width = std::is_same_v<T, Eigen::bfloat16> || std::is_same_v<T, Eigen::half>;

/// The type a kernel over storage type T computes and accumulates in, and returns its log-sum-exp in.
template <storage_type T>
using accumulator_t = std::conditional_t<std::is_same_v<T, double>, double, float>;

}  // namespace salt
