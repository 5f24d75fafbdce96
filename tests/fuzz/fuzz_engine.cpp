// libFuzzer harness of the exact engine: a byte string decodes into sizes (0 and 1 included), a float or
// double problem with grouped-query heads and strided layouts, one of a fixed set of mask compositions
// (every mask policy appears under `|` and under `&` across the set; the leaves' parameters come from the
// bytes, so one composition covers many effective masks), passed as it is or through a prebuilt
// salt::block_mask, and a score policy (an elementwise_score among them), and inputs with occasional
// NaN, +-Inf and huge values. It checks, for every query row whose visible inputs are finite, the engine's
// output and LSE against the naive fp64 (long double for double) reference under the accuracy criterion;
// that the inputs are unchanged; that results do not depend on the thread count; and that the mask's block
// plans agree with its per-pair test. Parameters salt rejects with salt::error end the case quietly.
#include <salt/attention.hpp>
#include <salt/block_mask.hpp>
#include <salt/synthesizer.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include "../plan_violation.hpp"
#include "../reference.hpp"
#include "byte_reader.hpp"
#include "mask_makers.hpp"
#include "score_params.hpp"

namespace {

using idx = salt::index;
using salt::fuzz::byte_reader;
using salt::fuzz::fail;
using salt::fuzz::same_kind;
using salt::fuzz::finite_row;
using salt::fuzz::mask_context;
using salt::fuzz::maker;
template <class U>
using mat = salt::row_matrix<U>;
template <class A, class B>
using U_ = salt::union_mask<A, B>;
template <class A, class B>
using I_ = salt::intersect_mask<A, B>;

using salt::bigbird;
using salt::block_layout;
using salt::block_layout_csr_view;
using salt::fixed;
using salt::global_tokens;
using salt::key_mask;
using salt::key_padding;
using salt::no_mask;
using salt::query_padding;
using salt::segments;
using salt::sliding_window;
using salt::strided;
using causal_br = salt::causal<salt::causal_alignment::bottom_right>;
using causal_tl = salt::causal<salt::causal_alignment::top_left>;

// The compositions. Across them every policy is a direct operand of `|` and of `&`:
// A: each leaf under `&`, the pairs joined by `|`; B: each leaf under `|`, the pairs joined by `&`.
// C and D leave out the masks that need Lq == Lk, so that Lq != Lk is fuzzed too.
using shape_a = U_<U_<U_<U_<U_<I_<causal_br, sliding_window>, I_<global_tokens, key_padding>>, I_<segments, bigbird>>,
                          I_<block_layout, fixed>>,
                     I_<block_layout_csr_view, strided>>,
                  I_<key_mask, no_mask>>;
using shape_b = I_<I_<I_<I_<I_<U_<causal_br, global_tokens>, U_<sliding_window, segments>>, U_<key_padding, block_layout>>,
                          U_<bigbird, block_layout_csr_view>>,
                     U_<fixed, key_mask>>,
                  U_<strided, no_mask>>;
using shape_c = U_<U_<I_<causal_tl, key_padding>, I_<sliding_window, block_layout_csr_view>>, I_<strided, fixed>>;
using shape_d = I_<I_<U_<causal_tl, sliding_window>, U_<key_mask, block_layout>>, U_<U_<strided, fixed>, causal_br>>;
// Query padding, under `&` (rows past the length see nothing) and under `|` (rows below it see every key).
using shape_e = I_<query_padding, shape_d>;
using shape_f = U_<I_<query_padding, key_padding>, I_<causal_br, bigbird>>;

// ---------------------------------------------------------------------------------------------------------------
// Score policies and the data they point to

template <class T>
struct score_context {
  byte_reader& in;
  salt::random_generator& rng;
  idx batch, q_heads, lq, lk, d;
  std::vector<double> slopes;
  std::vector<T> bias, r1, r2;
};

template <class T, class S>
struct score_maker;

template <class T>
struct score_maker<T, salt::dot_product> {
  static salt::dot_product make(score_context<T>& c) { return salt::fuzz::dot_product_from(c.in); }
};

template <class T>
struct score_maker<T, salt::alibi> {
  static salt::alibi make(score_context<T>& c) {
    c.slopes.resize(static_cast<std::size_t>(c.q_heads));
    const int mode = c.in.choice(4);
    for (idx h = 0; h < c.q_heads; ++h) {
      double& s = c.slopes[static_cast<std::size_t>(h)];
      s = mode == 0 ? std::exp2(-8.0 * static_cast<double>(h + 1) / static_cast<double>(c.q_heads))
          : mode == 1 ? 0.0
          : mode == 2 ? 2 * c.rng.uniform() - 0.5
                      : 1000 * c.rng.uniform();
    }
    if (c.in.one_in(48) && !c.slopes.empty()) c.slopes.pop_back();  // rejected
    return {c.slopes};
  }
};

/// A bias table over (batch, heads, Lq, Lk) with strides 0 (shared) or packed, padded rows; -inf (a masking
/// bias), huge values, NaN and +inf now and then.
template <class T>
struct score_maker<T, salt::bias_table<T>> {
  static salt::bias_table<T> make(score_context<T>& c) {
    salt::bias_table<T> b;
    b.rows = c.lq;
    b.cols = c.lk;
    if (c.in.one_in(48)) ++b.cols;  // rejected
    b.row_stride = b.cols + c.in.integer(0, 3);
    b.head_stride = c.in.flag() ? b.rows * b.row_stride : 0;
    b.batch_stride = c.in.flag() ? c.q_heads * std::max<idx>(b.head_stride, b.rows * b.row_stride) : 0;
    const idx size = (c.batch - 1) * b.batch_stride + (c.q_heads - 1) * b.head_stride + b.rows * b.row_stride;
    c.bias.resize(static_cast<std::size_t>(std::max<idx>(size, 1)));
    salt::fuzz::fill(c.bias, c.rng, c.in.flag() ? 1.0 : 20.0, c.in, 3);
    for (idx n = c.in.integer(0, 3), i = 0; i < n; ++i)
      c.bias[static_cast<std::size_t>(c.in.integer(0, size - 1))] = -std::numeric_limits<T>::infinity();
    b.data = c.bias.data();
    return b;
  }
};

template <class T>
struct score_maker<T, salt::synthesizer_factorized<T>> {
  static salt::synthesizer_factorized<T> make(score_context<T>& c) {
    salt::synthesizer_factorized<T> s;
    s.heads = c.in.flag() ? c.q_heads : 1;
    s.rank = c.in.integer(0, 40);
    s.query_offset = c.in.integer(0, 3);
    s.max_len = std::max(c.lq + s.query_offset, c.lk) + c.in.integer(0, 3);
    if (c.in.one_in(48)) s.max_len = c.lk - 1;  // rejected
    const idx size = std::max<idx>(s.heads * std::max<idx>(s.max_len, 0) * s.rank, 1);
    c.r1.resize(static_cast<std::size_t>(size));
    c.r2.resize(static_cast<std::size_t>(size));
    salt::fuzz::fill(c.r1, c.rng, 1.0, c.in, 1);
    salt::fuzz::fill(c.r2, c.rng, 1.0, c.in, 1);
    s.r1 = c.r1.data();
    s.r2 = c.r2.data();
    return s;
  }
};

/// f of an elementwise_score: a per-head temperature, a relative-position bias and a per-batch-item offset,
/// so that every argument f receives changes its result.
struct relative_position {
  double slope = 0, temperature = 1;
  template <class S>
  S operator()(S s, idx b, idx h, idx q, idx k) const noexcept {
    return s * S(temperature * static_cast<double>(h + 1)) - S(slope) * S(static_cast<double>(q > k ? q - k : k - q)) +
           S(static_cast<double>(b));
  }
};

template <class T, class Inner>
struct score_maker<T, salt::elementwise_score<relative_position, Inner>> {
  static salt::elementwise_score<relative_position, Inner> make(score_context<T>& c) {
    relative_position f;
    switch (c.in.choice(4)) {
      case 0: break;  // the identity
      case 1: f.slope = static_cast<double>(c.in.integer(0, 64)) / 16; break;
      case 2: f.temperature = static_cast<double>(c.in.integer(0, 40)) / 8; break;
      default: f.slope = 1e6;  // huge biases: far keys get weights that underflow to 0
    }
    return {f, score_maker<T, Inner>::make(c)};
  }
};

template <class T, class A, class B>
struct score_maker<T, salt::score_sum<A, B>> {
  static salt::score_sum<A, B> make(score_context<T>& c) {
    const A a = score_maker<T, A>::make(c);
    const B b = score_maker<T, B>::make(c);
    return {a, b};
  }
};

template <class T, class Inner>
struct score_maker<T, salt::softcap<Inner>> {
  // The cap is decoded first, then the inner policy (a braced list is evaluated in order).
  static salt::softcap<Inner> make(score_context<T>& c) {
    return {salt::fuzz::cap_from(c.in), score_maker<T, Inner>::make(c)};
  }
};

// ---------------------------------------------------------------------------------------------------------------
// Which inputs a query row sees

/// Whether everything row i of head (b, h) may read is finite: its query (when the score uses the dot product),
/// and the keys, values and bias entries of the keys it may see. A bias of -inf masks a pair and is allowed.
template <class T, class Score>
bool bias_entry_ok(const Score& s, idx b, idx h, idx i, idx j) {
  if constexpr (std::is_same_v<Score, salt::bias_table<T>>) {
    const T x = s.data[b * s.batch_stride + h * s.head_stride + i * s.row_stride + j];
    return !std::isnan(x) && x != std::numeric_limits<T>::infinity();
  } else if constexpr (requires { s.inner; }) {
    return bias_entry_ok<T>(s.inner, b, h, i, j);
  } else if constexpr (requires { s.a; s.b; }) {
    return bias_entry_ok<T>(s.a, b, h, i, j) && bias_entry_ok<T>(s.b, b, h, i, j);
  } else {
    return true;
  }
}

template <class T>
double row_scale(const T* x, idx n) {
  double s = 0;
  for (idx c = 0; c < n; ++c) s = std::max(s, std::abs(static_cast<double>(x[c])));
  return s;
}

/// Copies one head of a view into a matrix.
template <class T>
mat<T> head_of(const salt::tensor_view<const T>& t, idx b, idx h) {
  const salt::head_view<const T> hv = t.head(b, h);
  mat<T> m(hv.rows, hv.cols);
  for (idx r = 0; r < hv.rows; ++r)
    for (idx c = 0; c < hv.cols; ++c) m(r, c) = hv.row(r)[c];
  return m;
}


/// A (batch, heads, tokens, features) buffer and its view, in one of two layouts.
template <class T>
struct tensor_buffer {
  std::vector<T> data;
  salt::tensor_view<const T> view;
  void make(idx b, idx h, idx l, idx f, bool blhd) {
    data.resize(static_cast<std::size_t>(std::max<idx>(b * h * l * f, 1)));
    view = blhd ? salt::tensor_view<const T>::blhd(data.data(), b, l, h, f)
                : salt::tensor_view<const T>::bhld(data.data(), b, h, l, f);
  }
};

// ---------------------------------------------------------------------------------------------------------------
// One case

/// One case: Prebuilt passes the mask through a salt::block_mask built for the call's sizes.
template <class T, class Mask, class Score, bool Prebuilt = false>
void run_case(byte_reader& in, int shape_id) {
  using U = salt::test::oracle_t<T>;
  // Sizes: mostly small, so that a case runs fast; 0 and 1 are common (1 is what a short input decodes to).
  auto length = [&] { return in.one_in(16) ? 0 : in.one_in(4) ? in.integer(1, 200) : in.integer(1, 70); };
  auto width = [&] { return in.one_in(12) ? 0 : in.one_in(3) ? in.integer(1, 70) : in.integer(1, 16); };
  idx batch = in.integer(1, 2), hkv = in.integer(1, 2), group = in.integer(1, 3);
  if (in.one_in(40)) batch = 0;
  idx hq = hkv * group;
  if (in.one_in(40)) hq = in.integer(0, 5);  // may not be a multiple of hkv: rejected (0 heads is fine)
  const idx lq = length();
  const idx lk = salt::fuzz::square_only<Mask> || in.flag() ? lq : length();
  idx d = width(), dv = width();
  // Keep each case cheap: the long double reference is O(batch heads lq lk (d + dv)).
  while (batch * hq * lq * lk * (d + dv + 8) > 600'000) {
    if (batch > 1) batch = 1;
    else if (hq > hkv) hq = hkv;
    else if (hkv > 1) hq = hkv = 1;
    else d = dv = std::min<idx>(d, 16);
    if (batch <= 1 && hq <= 1 && d <= 16 && dv <= 16) break;
  }
  const std::string what = salt::fuzz::describe_case("composition", shape_id, batch, hq, hkv, lq, lk, d, dv, std::is_same_v<T, double>);
  salt::random_generator rng(in.seed());

  // Inputs: uniform values of a chosen scale, a few specials.
  tensor_buffer<T> q, k, v;
  q.make(batch, hq, lq, d, in.flag());
  k.make(batch, hkv, lk, d, in.flag());
  v.make(batch, hkv, lk, dv, in.flag());
  const double scales[] = {1.0, 4.0, 30.0, 0.01};
  salt::fuzz::fill(q.data, rng, scales[in.choice(4)], in, 3);
  salt::fuzz::fill(k.data, rng, scales[in.choice(4)], in, 3);
  salt::fuzz::fill(v.data, rng, 1.0, in, 3);

  mask_context mc{in, rng, batch, hq, lq, lk, {}, {}, {}, {}};
  const Mask mask = maker<Mask>::make(mc);
  score_context<T> sc{in, rng, batch, hq, lq, lk, d, {}, {}, {}, {}};
  const Score score = score_maker<T, Score>::make(sc);
  const int threads = in.flag() ? 2 : 1;
  std::optional<salt::block_mask<T, Mask>> planned;
  if constexpr (Prebuilt) planned.emplace(mask, salt::problem_dims{.batch = batch, .q_heads = hq, .lq = lq, .lk = lk});
  // The mask the kernel gets: the prebuilt plans, or the mask itself.
  const auto attend = [&](salt::tensor_view<T> o, salt::lse_view<T> l, int n) {
    if constexpr (Prebuilt) {
      salt::attention<T>(q.view, k.view, v.view, o, l, planned->mask(), score, salt::run_options{n});
    } else {
      salt::attention<T>(q.view, k.view, v.view, o, l, mask, score, salt::run_options{n});
    }
  };

  const std::vector<T> q0 = q.data, k0 = k.data, v0 = v.data, bias0 = sc.bias;
  mat<T> out(std::max<idx>(batch * hq * lq, 1), std::max<idx>(dv, 1));
  out.setConstant(T(-12345));
  std::vector<T> lse(static_cast<std::size_t>(std::max<idx>(batch * hq * lq, 1)), T(-12345));
  const auto out_view = salt::tensor_view<T>::bhld(out.data(), batch, hq, lq, dv);
  const auto lse_view = salt::lse_view<T>::bht(lse.data(), hq, lq);
  try {
    attend(out_view, lse_view, threads);
  } catch (const salt::error& e) {
    if (salt::fuzz::verbose()) std::fprintf(stderr, "case: %s: rejected: %s\n", what.c_str(), e.what());
    throw;
  }

  if (!salt::fuzz::same_bits(q.data, q0) || !salt::fuzz::same_bits(k.data, k0) || !salt::fuzz::same_bits(v.data, v0) ||
      !salt::fuzz::same_bits(sc.bias, bias0)) fail(what + ": an input was modified");
  if (in.flag()) {  // the other thread count gives the same bits
    mat<T> out2(out.rows(), out.cols());
    out2.setConstant(T(-12345));
    std::vector<T> lse2(lse.size(), T(-12345));
    attend(salt::tensor_view<T>::bhld(out2.data(), batch, hq, lq, dv), salt::lse_view<T>::bht(lse2.data(), hq, lq),
           3 - threads);
    if (std::memcmp(out.data(), out2.data(), sizeof(T) * static_cast<std::size_t>(batch * hq * lq * dv)) != 0 ||
        std::memcmp(lse.data(), lse2.data(), sizeof(T) * static_cast<std::size_t>(batch * hq * lq)) != 0)
      fail(what + ": results differ between 1 and 2 threads");
  }

  // The block plans against the per-pair test: the engine's tiles, and one other tile and block size.
  {
    using shape = salt::detail::tile_shape<T>;
    const idx other_tile = in.integer(1, 64), other_block = in.integer(1, 80);
    // One (batch item, head) per case keeps a case fast; the bytes choose which.
    if (batch > 0 && hq > 0) {
      const idx b = in.integer(0, batch - 1), h = in.integer(0, hq - 1);
      std::string v1;
      if constexpr (Prebuilt) {  // the stored plans, then the pattern's own
        v1 = salt::test::plan_violation(planned->mask(), lq, lk, shape::query_tile, shape::key_block, false, h, b);
      }
      if (v1.empty()) v1 = salt::test::plan_violation(mask, lq, lk, shape::query_tile, shape::key_block, false, h, b);
      if (v1.empty()) v1 = salt::test::plan_violation(mask, lq, lk, other_tile, other_block, false, h, b);
      if (!v1.empty()) fail(what + ", batch item " + std::to_string(b) + ": block plan: " + v1);
    }
  }

  idx checked_rows = 0;
  // Output and LSE against the oracle, head by head, over the rows whose visible inputs are finite and where
  // the naive computation in T does not overflow where the oracle does not (there the criterion has no bar).
  const idx g = hkv > 0 && hq > 0 ? hq / hkv : 1;
  for (idx b = 0; b < batch; ++b)
    for (idx h = 0; h < hq; ++h) {
      const mat<T> qh = head_of(q.view, b, h), kh = head_of(k.view, b, h / g), vh = head_of(v.view, b, h / g);
      const salt::problem_shape where{lq, lk, b, h};
      const auto naive = salt::test::naive_attention<T>(qh, kh, vh, mask, score, where);
      const auto ref = salt::test::naive_attention<U>(qh, kh, vh, mask, score, where);
      // The naive computation's error is one draw of the rounding of the logits, which dominates once logits are
      // large (tens and more) and can be small by luck: the bar is the worse of two naive computations whose dot
      // products sum the features in opposite orders (same exact logits, different rounding).
      const mat<T> qr = qh.rowwise().reverse(), kr = kh.rowwise().reverse();
      const auto naive2 = salt::test::naive_attention<T>(qr, kr, vh, mask, score, where);
      std::vector<char> k_ok(static_cast<std::size_t>(lk));
      std::vector<double> v_scale(static_cast<std::size_t>(lk));
      for (idx j = 0; j < lk; ++j) {
        k_ok[static_cast<std::size_t>(j)] = (!Score::uses_dot_product() || finite_row(kh.row(j).data(), d)) &&
                                            finite_row(vh.row(j).data(), dv);
        v_scale[static_cast<std::size_t>(j)] = row_scale(vh.row(j).data(), dv);
      }
      std::vector<idx> rows;
      // scale: the largest visible value (the output's floor); terms: the largest magnitude of the terms summed
      // into a visible logit, |scale| sum_c |q_ic k_jc| beside the row's LSE (which bounds the bias terms' sum).
      // Rounding the logits costs a few ulp of `terms` in any summation order, however small the logit
      // itself after cancellation: the floor of the LSE, and (times the values) of the output, is scaled by it.
      double scale = 1, terms = 1;
      const double dot_scale = Score::uses_dot_product() ? std::abs(score.dot_scale(d)) : 0.0;
      for (idx i = 0; i < lq; ++i) {
        bool ok = !Score::uses_dot_product() || finite_row(qh.row(i).data(), d);
        double s = 0, t = std::abs(static_cast<double>(ref.lse(i)));
        for (idx j = 0; j < lk && ok; ++j) {
          if (!mask.allows(i, j, where)) continue;
          ok = k_ok[static_cast<std::size_t>(j)] && bias_entry_ok<T>(score, b, h, i, j);
          s = std::max(s, v_scale[static_cast<std::size_t>(j)]);
          if (Score::uses_dot_product() && ok) {
            double sum = 0;
            for (idx c = 0; c < d; ++c) sum += std::abs(static_cast<double>(qh(i, c)) * static_cast<double>(kh(j, c)));
            t = std::max(t, dot_scale * sum);
          }
        }
        for (idx c = 0; c < dv && ok; ++c) ok = same_kind(naive.out(i, c), ref.out(i, c)) && same_kind(naive2.out(i, c), ref.out(i, c));
        ok = ok && same_kind(naive.lse(i), ref.lse(i)) && same_kind(naive2.lse(i), ref.lse(i));
        if (!ok) continue;
        rows.push_back(i);
        scale = std::max(scale, s);
        if (std::isfinite(t)) terms = std::max(terms, t);
      }
      if (rows.empty()) continue;
      const idx n = static_cast<idx>(rows.size());
      checked_rows += n;
      mat<T> ko(n, dv), no(n, dv), no2(n, dv);
      mat<U> ro(n, dv);
      salt::column<T> kl(n), nl(n), nl2(n);
      salt::column<U> rl(n);
      for (idx r = 0; r < n; ++r) {
        const idx i = rows[static_cast<std::size_t>(r)];
        for (idx c = 0; c < dv; ++c) ko(r, c) = out((b * hq + h) * lq + i, c);
        no.row(r) = naive.out.row(i);
        no2.row(r) = naive2.out.row(i);
        nl2(r) = naive2.lse(i);
        ro.row(r) = ref.out.row(i);
        kl(r) = lse[static_cast<std::size_t>((b * hq + h) * lq + i)];
        nl(r) = naive.lse(i);
        rl(r) = ref.lse(i);
      }
      const double out_scale = scale * terms, lse_scale = std::max(salt::test::finite_scale(rl), terms);
      const auto eo1 = salt::test::judge<T>(ko, no, ro, out_scale), eo2 = salt::test::judge<T>(ko, no2, ro, out_scale);
      const auto el1 = salt::test::judge<T>(kl, nl, rl, lse_scale), el2 = salt::test::judge<T>(kl, nl2, rl, lse_scale);
      const auto& eo = eo1.naive_error >= eo2.naive_error ? eo1 : eo2;
      const auto& el = el1.naive_error >= el2.naive_error ? el1 : el2;
      if (!eo.ok() || !el.ok()) {
        // Name the worst rows, to make the report easy to act on.
        idx wo = 0, wl = 0;
        for (idx r = 0; r < n; ++r) {
          if (salt::test::max_abs_diff(ko.row(r), ro.row(r)) > salt::test::max_abs_diff(ko.row(wo), ro.row(wo))) wo = r;
          if (salt::test::max_abs_diff(kl.segment(r, 1), rl.segment(r, 1)) >
              salt::test::max_abs_diff(kl.segment(wl, 1), rl.segment(wl, 1)))
            wl = r;
        }
        auto visible = [&](idx r) {
          idx count = 0;
          for (idx j = 0; j < lk; ++j) count += mask.allows(rows[static_cast<std::size_t>(r)], j, where);
          return count;
        };
        std::ostringstream s;
        s.precision(17);
        s << what << ", batch item " << b << ", head " << h << ": accuracy criterion fails: output error "
          << eo.kernel_error << " (naive " << eo.naive_error << ", floor " << eo.floor << "), LSE error "
          << el.kernel_error << " (naive " << el.naive_error << ", floor " << el.floor << "); worst output row "
          << rows[static_cast<std::size_t>(wo)] << " (" << visible(wo) << " keys visible, LSE " << kl(wo)
          << ", reference " << static_cast<double>(rl(wo)) << ", error " << salt::test::max_abs_diff(ko.row(wo), ro.row(wo))
          << ", naive " << salt::test::max_abs_diff(no.row(wo), ro.row(wo)) << " and "
          << salt::test::max_abs_diff(no2.row(wo), ro.row(wo)) << "), worst LSE row "
          << rows[static_cast<std::size_t>(wl)] << " (" << visible(wl) << " keys visible, LSE " << kl(wl) << ", reference "
          << static_cast<double>(rl(wl)) << ", naive " << nl(wl) << ")";
        fail(s.str());
      }
    }
  if (salt::fuzz::verbose())
    std::fprintf(stderr, "case: %s: %ld of %ld rows checked\n", what.c_str(), static_cast<long>(checked_rows),
                 static_cast<long>(batch * hq * lq));
}

template <class T>
using softcap_bias = salt::softcap<salt::score_sum<salt::dot_product, salt::bias_table<T>>>;
template <class T>
using dot_alibi = salt::score_sum<salt::dot_product, salt::alibi>;
template <class T>
using bias_alibi = salt::score_sum<salt::bias_table<T>, salt::alibi>;
template <class T>
using dot_synth = salt::score_sum<salt::dot_product, salt::synthesizer_factorized<T>>;
using relative = salt::elementwise_score<relative_position>;
template <class T>
using relative_bias = salt::elementwise_score<relative_position, salt::score_sum<salt::dot_product, salt::bias_table<T>>>;

/// The (composition, score) pairs: every composition with the plain dot product and one other score; the
/// other scores with no mask; a prebuilt block_mask of two compositions.
template <class T>
void run_one(byte_reader& in) {
  const int pair = in.choice(17);
  switch (pair) {
    case 0: return run_case<T, shape_a, salt::dot_product>(in, pair);
    case 1: return run_case<T, shape_a, softcap_bias<T>>(in, pair);
    case 2: return run_case<T, shape_b, salt::dot_product>(in, pair);
    case 3: return run_case<T, shape_b, dot_alibi<T>>(in, pair);
    case 4: return run_case<T, shape_c, salt::dot_product>(in, pair);
    case 5: return run_case<T, shape_c, bias_alibi<T>>(in, pair);
    case 6: return run_case<T, shape_d, salt::dot_product>(in, pair);
    case 7: return run_case<T, shape_d, dot_synth<T>>(in, pair);
    case 8: return run_case<T, no_mask, salt::dot_product>(in, pair);
    case 9: return run_case<T, no_mask, dot_alibi<T>>(in, pair);
    case 10: return run_case<T, no_mask, softcap_bias<T>>(in, pair);
    case 11: return run_case<T, no_mask, bias_alibi<T>>(in, pair);
    case 12: return run_case<T, no_mask, dot_synth<T>>(in, pair);
    case 13: return run_case<T, shape_c, salt::dot_product, true>(in, pair);
    case 14: return run_case<T, shape_e, relative>(in, pair);
    case 15: return run_case<T, shape_f, relative_bias<T>, true>(in, pair);
    default: return run_case<T, no_mask, relative>(in, pair);
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  return salt::fuzz::run_in_either_precision(data, size, [](byte_reader& in, auto t) { run_one<decltype(t)>(in); });
}
