#pragma once
/// \file detail/simd.hpp
/// The SIMD vocabulary of the kernels: Eigen's packet of the widest instruction set the translation unit
/// is compiled for, and a base-2 exponential on it. Compiling with -mavx512f, -mavx2 -mfma, or nothing
/// selects the width; the code is the same.

#include <Eigen/Core>

#include "../config.hpp"

#include <bit>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <type_traits>

#if defined(__AVX512F__) || defined(__AVX2__) || defined(__F16C__)
#include <immintrin.h>
#endif

/// Unrolls the register-tile loops of the micro-kernels. GCC 12 at -O2 keeps them rolled, which leaves
/// the accumulators in memory and the kernels 3x slower; the order of operations does not change.
#if defined(__clang__) || defined(__GNUC__)
#define SALT_UNROLL _Pragma("GCC unroll 16")
#else
#define SALT_UNROLL
#endif

namespace salt::detail {

namespace ei = Eigen::internal;

/// What the target offers for widening 16-bit storage in registers (pload_widened).
#if defined(__AVX512F__) || defined(__AVX2__)
inline constexpr bool has_integer_widening = true;
#else
inline constexpr bool has_integer_widening = false;
#endif
#if defined(__F16C__) && (defined(__AVX512F__) || defined(__AVX2__))
inline constexpr bool has_half_widening = true;
#else
inline constexpr bool has_half_widening = false;
#endif

template <class T>
using packet = typename ei::packet_traits<T>::type;

template <class T>
inline constexpr int lanes = ei::unpacket_traits<packet<T>>::size;

/// Vector registers of the target (32 with AVX-512, 16 with AVX/SSE): sizes the micro-kernels' tiles.
inline constexpr int vector_registers = EIGEN_ARCH_DEFAULT_NUMBER_OF_REGISTERS;

/// Alignment of workspace buffers: enough for aligned packet loads, and a cache line.
inline constexpr std::size_t workspace_alignment = 64;

/// Coefficients of 2^f on [-1/2, 1/2]. float: Cephes exp2f's minimax fit (relative error 1.7e-7);
/// double: Taylor series of exp(f ln 2) to degree 13 (remainder below 1e-17).
template <class T>
struct exp2_poly;
template <>
struct exp2_poly<float> {
  static constexpr int degree = 6;
  static constexpr float c[degree + 1] = {1.0f, 6.931472028550421E-001f, 2.402264791363012E-001f,
                                          5.550332471162809E-002f, 9.618437357674640E-003f,
                                          1.339887440266574E-003f, 1.535336188319500E-004f};
  static constexpr float lowest = -200.0f;  // 2^-200 is 0 in float; -inf clamps here
  static constexpr float zero_at = -151.0f;  // p 2^x rounds to 0 for x <= this: below half the smallest subnormal
};
template <>
struct exp2_poly<double> {
  static constexpr int degree = 13;
  static constexpr double c[degree + 1] = {
      1.0,
      6.931471805599453094e-01,
      2.402265069591007123e-01,
      5.550410866482157995e-02,
      9.618129107628477161e-03,
      1.333355814642844343e-03,
      1.540353039338160981e-04,
      1.525273380405984028e-05,
      1.321548679014430931e-06,
      1.017808600923969859e-07,
      7.054911620801123330e-09,
      4.445538271870811501e-10,
      2.567843599348820466e-11,
      1.369148885390412368e-12};
  static constexpr double lowest = -1200.0;  // 2^-1200 is 0 in double
  static constexpr double zero_at = -1076.0;  // p 2^x rounds to 0 for x <= this
};

/// max(a, b), returning `a` when either is NaN (Eigen's convention). The AVX-512 forms are spelled with a
/// full zero-mask because GCC 12's unmasked intrinsics trip -Wmaybe-uninitialized (GCC bug 105593).
template <class T>
EIGEN_STRONG_INLINE packet<T> pmax_nan_first(const packet<T>& a, const packet<T>& b) noexcept {
#if defined(__AVX512F__)
  if constexpr (std::is_same_v<T, float>) return _mm512_maskz_max_ps(__mmask16(0xFFFF), b, a);
  else return _mm512_maskz_max_pd(__mmask8(0xFF), b, a);
#else
  return ei::pmax(a, b);
#endif
}

/// 2^x elementwise for x <= 0 (the engine only needs non-positive arguments: logits minus their max).
/// -inf gives exactly 0, NaN stays NaN; results below the smallest normal may flush to 0.
template <class T>
EIGEN_STRONG_INLINE packet<T> pexp2(packet<T> x) {
  using P = packet<T>;
  using poly = exp2_poly<T>;
  x = pmax_nan_first<T>(x, ei::pset1<P>(poly::lowest));  // -inf -> lowest; NaN stays
  P n;                                                 // nearest integer
#if defined(__AVX512F__)
  if constexpr (std::is_same_v<T, float>) n = _mm512_maskz_roundscale_ps(__mmask16(0xFFFF), x, _MM_FROUND_TO_NEAREST_INT);
  else n = _mm512_maskz_roundscale_pd(__mmask8(0xFF), x, _MM_FROUND_TO_NEAREST_INT);
#else
  n = ei::print(x);
#endif
  const P f = ei::psub(x, n);  // in [-1/2, 1/2], exact
  P p = ei::pset1<P>(poly::c[poly::degree]);
  for (int i = poly::degree - 1; i >= 0; --i) p = ei::pmadd(p, f, ei::pset1<P>(poly::c[i]));
  // Lanes whose result rounds to 0 whatever p (x <= zero_at), the masked logits among them, are set to 0
  // rather than computed: on Intel cores an underflowing result costs a microcode assist of about a hundred
  // cycles per instruction (Sapphire Rapids ran the sparse patterns' partial blocks 1.5-3x slower than
  // dense for it), while masked-out lanes raise none. The bits are those of the full computation.
#if defined(__AVX512F__)
  // p * 2^n in one instruction, exact for the whole range; the write mask skips the dead lanes.
  if constexpr (std::is_same_v<T, float>) {
    const __mmask16 live = _mm512_cmp_ps_mask(x, _mm512_set1_ps(poly::zero_at), _CMP_NLE_UQ);  // NaN stays live
    return _mm512_maskz_scalef_ps(live, p, n);
  } else {
    const __mmask8 live = _mm512_cmp_pd_mask(x, _mm512_set1_pd(poly::zero_at), _CMP_NLE_UQ);
    return _mm512_maskz_scalef_pd(live, p, n);
  }
#else
  const P zero = ei::pzero(x);
  const P dead = ei::pcmp_le(x, ei::pset1<P>(poly::zero_at));  // false for NaN
  return ei::pselect(dead, zero, ei::pldexp(p, ei::pselect(dead, zero, n)));
#endif
}

/// Whether every element of a (rows, cols) block with row stride `stride` is finite. x * 0 is 0 for finite x
/// and NaN for +-inf and NaN, so sums of such products answer for the whole block, a packet at a time
/// (Eigen's allFinite() is a scalar loop: it cost more than the masking of the blocks it guards).
template <class T>
bool all_finite(const T* data, index rows, index cols, index stride) noexcept {
  using P = packet<T>;
  constexpr int W = lanes<T>;
  const P zero = ei::pset1<P>(T(0));
  P acc[4] = {zero, zero, zero, zero};  // independent chains: the adds' latency is hidden
  T tail = 0;
  for (index r = 0; r < rows; ++r) {
    const T* row = data + r * stride;
    index c = 0;
    for (; c + W <= cols; c += W) acc[(c / W) & 3] = ei::padd(acc[(c / W) & 3], ei::pmul(ei::ploadu<P>(row + c), zero));
    for (; c < cols; ++c) tail += row[c] * T(0);
  }
  const T sum = ei::predux(ei::padd(ei::padd(acc[0], acc[1]), ei::padd(acc[2], acc[3]))) + tail;
  return sum == sum;  // false only for NaN
}

/// all_finite over 16-bit storage (bf16, fp16): every value widened, the same answer as over the widened rows.
template <class S>
  requires(std::is_same_v<S, Eigen::bfloat16> || std::is_same_v<S, Eigen::half>)
bool all_finite(const S* data, index rows, index cols, index stride) noexcept {
  for (index r = 0; r < rows; ++r)
    for (index c = 0; c < cols; ++c)
      if (!std::isfinite(static_cast<float>(data[r * stride + c]))) return false;
  return true;
}

/// Keeps a packet in a register: stops the compiler from re-reading it from memory as an operand of
/// every instruction that uses it (which would double the loads of the P.V kernel).
template <class P>
EIGEN_STRONG_INLINE void keep_in_register(P& p) noexcept {
#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__)) && defined(__SSE2__)
  asm("" : "+v"(p));
#else
  (void)p;
#endif
}

/// dst[0, n) = src[0, n) a packet at a time: the gathers (LSH, the Sparse Transformer passes) and the merge
/// copy one short row per call, where a library memmove spends more on its call and size dispatch than on the
/// copy.
template <class T>
void copy_row(const T* src, index n, T* dst) noexcept {
  using P = packet<T>;
  constexpr int N = lanes<T>;
  index j = 0;
  for (; j + N <= n; j += N) ei::pstoreu(dst + j, ei::ploadu<P>(src + j));
  for (; j < n; ++j) dst[j] = src[j];
}

/// dst[0, n) = src[0, n) widened to float, exactly (every bf16 and fp16 value is a float). bf16 is a float's
/// upper half: a zero-extend and a shift, which the compiler vectorises. fp16 goes through vcvtph2ps where the
/// target has it (F16C: 8 at a time; AVX-512: 16), through Eigen's bit manipulation otherwise.
inline void widen_row(const Eigen::bfloat16* src, index n, float* dst) noexcept {
  for (index j = 0; j < n; ++j) dst[j] = std::bit_cast<float>(std::uint32_t{src[j].value} << 16);
}
inline void widen_row(const Eigen::half* src, index n, float* dst) noexcept {
  index j = 0;
#if defined(__AVX512F__)
  for (; j + 16 <= n; j += 16)
    _mm512_storeu_ps(dst + j, _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(src + j))));
#endif
#if defined(__F16C__)
  for (; j + 8 <= n; j += 8)
    _mm256_storeu_ps(dst + j, _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(src + j))));
#endif
  for (; j < n; ++j) dst[j] = static_cast<float>(src[j]);
}

/// dst[0, n) = src[0, n) dequantized: float(src[c]) * scales[c / group] (quantized.hpp).
inline void dequantize_row(const std::int8_t* src, const float* scales, index group, index n, float* dst) noexcept {
  for (index c0 = 0; c0 < n; c0 += group) {
    const float scale = scales[c0 / group];
    for (index c = c0; c < c0 + group; ++c) dst[c] = static_cast<float>(src[c]) * scale;
  }
}

/// Whether pload_widened reads S in registers on this target (AVX2 or AVX-512; fp16 also needs F16C). Elsewhere
/// the engine widens a block into scratch first, which costs less than a packet through memory.
template <class T, class S>
inline constexpr bool widens_in_registers =
    std::is_same_v<T, S> ||
    (std::is_same_v<T, float> && (((std::is_same_v<S, Eigen::bfloat16> || std::is_same_v<S, std::int8_t>) &&
                                   has_integer_widening) ||
                                  (std::is_same_v<S, Eigen::half> && has_half_widening)));

/// A packet of T from lanes<T> values stored as S: a plain load when S is T, else bf16 or fp16 widened in
/// registers, to the very values widen_row gives.
template <class T, class S>
EIGEN_STRONG_INLINE packet<T> pload_widened(const S* src) noexcept {
  if constexpr (std::is_same_v<T, S>) {
    return ei::ploadu<packet<T>>(src);
  } else {
    static_assert(widens_in_registers<T, S>, "salt: pload_widened on a target that cannot widen in registers");
#if defined(__AVX512F__)
    const __m256i raw = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(src));
    if constexpr (std::is_same_v<S, Eigen::bfloat16>) return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(raw), 16));
    else return _mm512_cvtph_ps(raw);
#elif defined(__AVX2__)
    const __m128i raw = _mm_loadu_si128(reinterpret_cast<const __m128i*>(src));
    if constexpr (std::is_same_v<S, Eigen::bfloat16>) return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(raw), 16));
#if defined(__F16C__)
    else return _mm256_cvtph_ps(raw);
#endif
#endif
  }
}

/// A packet of float from lanes<float> int8 values times one scale, dequantized in registers to the very values
/// dequantize_row gives (float(value) * scale, one rounding).
EIGEN_STRONG_INLINE packet<float> pload_dequantized(const std::int8_t* src, float scale) noexcept {
#if defined(__AVX512F__)
  const __m128i raw = _mm_loadu_si128(reinterpret_cast<const __m128i*>(src));
  return _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(raw)), _mm512_set1_ps(scale));
#elif defined(__AVX2__)
  const __m128i raw = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(src));
  return _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(raw)), _mm256_set1_ps(scale));
#else
  alignas(workspace_alignment) float values[lanes<float>];
  for (int u = 0; u < lanes<float>; ++u) values[u] = static_cast<float>(src[u]) * scale;
  return ei::pload<packet<float>>(values);
#endif
}

/// The scales of int8 rows read in place (quantized.hpp): feature c of row j is float(value) * at(j, c), with
/// data[j * stride + (first + c) / group]. Empty (data null) for every other storage type, which has no scale.
struct row_scales {
  const float* data = nullptr;
  index stride = 0, group = 1, first = 0;
  /// The same rows from feature `feature` on.
  row_scales from(index feature) const noexcept { return {data, stride, group, first + feature}; }
  float at(index j, index c) const noexcept { return data[j * stride + (first + c) / group]; }
};

/// A packet of T from feature c of row j of rows stored as S: pload_widened, or dequantized with its scale.
template <class T, class S>
EIGEN_STRONG_INLINE packet<T> pload_stored(const S* src, const row_scales& scales, index j, index c) noexcept {
  if constexpr (std::is_same_v<S, std::int8_t>) return pload_dequantized(src, scales.at(j, c));
  else return pload_widened<T>(src);
}
/// One value of T from feature c of row j, as pload_stored reads it.
template <class T, class S>
EIGEN_STRONG_INLINE T stored_value(const S* src, const row_scales& scales, index j, index c) noexcept {
  if constexpr (std::is_same_v<S, std::int8_t>) return static_cast<T>(*src) * scales.at(j, c);
  else return static_cast<T>(*src);
}

/// dst[0, n) = src[0, n) rounded to the storage type S, to nearest even (NaN stays NaN, overflow gives +-inf).
template <class S, class T>
void narrow_row(const T* src, index n, S* dst) noexcept {
  for (index j = 0; j < n; ++j) dst[j] = static_cast<S>(src[j]);
}

/// An N x N square (N = lanes<T>) scaled and transposed in registers: row u of the output, N entries at
/// out + u * out_stride, is scale times column u of the input, whose row r is N entries at
/// in + r * in_stride. The engine packs its query tiles this way (a scalar store per element cost a sparse
/// tile a tenth of its time).
template <class T>
EIGEN_STRONG_INLINE void scaled_transpose_square(const T* in, index in_stride, T scale, T* out, index out_stride) noexcept {
  using P = packet<T>;
  constexpr int N = lanes<T>;
  const P factor = ei::pset1<P>(scale);
#if defined(__GNUC__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wignored-attributes"  // Eigen's own block of vector types, as Eigen does
#endif
  ei::PacketBlock<P, N> square;
#if defined(__GNUC__)
#pragma GCC diagnostic pop
#endif
  SALT_UNROLL
  for (int u = 0; u < N; ++u) square.packet[u] = ei::pmul(ei::ploadu<P>(in + u * in_stride), factor);
  ei::ptranspose(square);
  SALT_UNROLL
  for (int u = 0; u < N; ++u) ei::pstoreu(out + u * out_stride, square.packet[u]);
}

/// Lane u of the result = the sum of the lanes of packet u, for N = lanes<T> packets: N horizontal sums for
/// one transpose and N - 1 adds (one predux per packet costs log N shuffles and adds each).
template <class P>
EIGEN_STRONG_INLINE P sum_lanes_transposed(ei::PacketBlock<P, ei::unpacket_traits<P>::size>& block) noexcept {
  constexpr int N = ei::unpacket_traits<P>::size;
  ei::ptranspose(block);
  P sum = block.packet[0];
  SALT_UNROLL
  for (int u = 1; u < N; ++u) sum = ei::padd(sum, block.packet[u]);
  return sum;
}

/// x[i] = value for every i < packets * lanes<T> whose bit i in `keep` is 0; the other entries stay. With
/// AVX-512 one masked move per packet (the engine masks a key row of a cut block this way).
template <class T>
EIGEN_STRONG_INLINE void replace_unset(T* x, std::uint64_t keep, int packets, T value) noexcept {
  constexpr int N = lanes<T>;
#if defined(__AVX512F__)
  for (int p = 0; p < packets; ++p) {
    const auto bits = keep >> (p * N);
    if constexpr (std::is_same_v<T, float>) {
      const __m512 v = _mm512_maskz_loadu_ps(__mmask16(0xFFFF), x + p * N);
      _mm512_storeu_ps(x + p * N, _mm512_mask_mov_ps(_mm512_set1_ps(value), __mmask16(bits & 0xFFFF), v));
    } else {
      const __m512d v = _mm512_maskz_loadu_pd(__mmask8(0xFF), x + p * N);
      _mm512_storeu_pd(x + p * N, _mm512_mask_mov_pd(_mm512_set1_pd(value), __mmask8(bits & 0xFF), v));
    }
  }
#else
  for (int i = 0; i < packets * N; ++i)
    if (!((keep >> i) & 1)) x[i] = value;
#endif
}

/// How int32 entries are compared with a value in compare_bits.
enum class int_compare { equal, at_least };

/// Bit i (i < n <= 64) set where x[i] == value (equal) or x[i] >= value (at_least): sixteen entries per
/// compare with AVX-512.
template <int_compare Test>
std::uint64_t compare_bits(const std::int32_t* x, index n, std::int32_t value) noexcept {
  std::uint64_t bits = 0;
#if defined(__AVX512F__)
  const __m512i v = _mm512_set1_epi32(value);
  for (index i = 0; i < n; i += 16) {
    const __mmask16 live = n - i >= 16 ? __mmask16(0xFFFF) : static_cast<__mmask16>((1u << (n - i)) - 1);
    const __m512i e = _mm512_maskz_loadu_epi32(live, x + i);
    const __mmask16 hit = Test == int_compare::equal ? _mm512_mask_cmpeq_epi32_mask(live, v, e)
                                                     : _mm512_mask_cmple_epi32_mask(live, v, e);
    bits |= std::uint64_t{hit} << i;
  }
#else
  for (index i = 0; i < n; ++i) bits |= std::uint64_t{Test == int_compare::equal ? x[i] == value : x[i] >= value} << i;
#endif
  return bits;
}

}  // namespace salt::detail
