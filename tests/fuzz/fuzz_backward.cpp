// libFuzzer harness of the exact engine's backward pass (salt::attention_backward): a byte string decodes into
// sizes (0 and 1 included, now and then past one key block, so that several key partitions share a dQ tile), a
// float or double problem with grouped-query heads and strided layouts whose padding holds NaN, one of a few mask
// compositions (mask_makers.hpp; their leaves' parameters come from the bytes), a differentiable score (the dot
// product at various scales, plus a bias table, soft-capped with and without one, a Synthesizer Random table
// alone), and inputs that are mostly moderate, now and then with NaN, +-Inf and huge values. It runs salt's forward
// for out and LSE, then the backward, and checks: for every query row and key whose inputs (and those of the keys
// and rows they interact with) are finite, dQ per row and dK, dV per key (summed over the query heads of its group)
// against the textbook backward in fp64 (long double for double) under the accuracy criterion, the worse of two
// naive computations in T (features summed in opposite orders) setting the bar; the table's gradient, when the
// score has one (`gradient_into`, dS added into zeros laid out as the table, shared tables summing their batch
// items and heads), the same way, and nothing added to the entries the mask hides; that rows seeing no key and keys
// seen by no row get zero gradients, and a score without the dot product zero dQ and dK, whatever the inputs; that
// every gradient entry is written and no padding is; that the inputs are unchanged; and that the gradients and the
// table's gradient are the same bits on 1 thread and on 2 or 3 (the backward promises determinism). The floors
// scale with the gradients' terms and the logits' magnitudes, the sources of the rounding any order of summation
// makes; where the naive computation in T overflows, or the kernel's own order does (it sums dS K before scaling
// it), there is no bar and only the checks that hold whatever the inputs apply. Parameters the forward rejects with
// salt::error end the case quietly; the backward rejecting what the forward accepted is a finding (its gradients
// are laid out legitimately).
#include <salt/attention.hpp>
#include <salt/attention_backward.hpp>
#include <salt/synthesizer.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <limits>
#include <sstream>
#include <string>
#include <vector>

#include "../reference.hpp"
#include "byte_reader.hpp"
#include "mask_makers.hpp"
#include "score_params.hpp"

namespace {

using idx = salt::index;
using salt::fuzz::byte_reader;
using salt::fuzz::fail;
using salt::fuzz::finite_row;
using salt::fuzz::mask_context;
using salt::fuzz::maker;
using salt::fuzz::same_bits;
using salt::fuzz::same_kind;
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

// The compositions, few (each pairs with the forward and backward engines and three references): bands and
// layouts for Lq != Lk; the masks that need Lq == Lk; query padding (rows that see nothing) beside key padding;
// summaries and per-key flags over a CSR layout.
using shape_g = U_<I_<causal_br, sliding_window>, I_<key_padding, block_layout>>;
using shape_h = I_<U_<sliding_window, global_tokens>, U_<segments, bigbird>>;
using shape_i = U_<I_<query_padding, key_padding>, I_<causal_tl, strided>>;
using shape_j = I_<U_<fixed, key_mask>, U_<block_layout_csr_view, causal_br>>;

// ---------------------------------------------------------------------------------------------------------------
// Score policies and the data they point to

template <class T>
struct score_context {
  byte_reader& in;
  salt::random_generator& rng;
  idx batch, q_heads, lq, lk;
  int specials;       // the most special values a table gets
  std::vector<T> table;  // the bias or Synthesizer table's storage
};

template <class T, class S>
struct score_maker;

template <class T>
struct score_maker<T, salt::dot_product> {
  static salt::dot_product make(score_context<T>& c) { return salt::fuzz::dot_product_from(c.in); }
};

/// A bias table over (batch, heads, Lq, Lk) with strides 0 (shared) or packed, padded rows; -inf (a masking bias),
/// huge values, NaN and +inf now and then.
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
    c.table.resize(static_cast<std::size_t>(std::max<idx>(size, 1)));
    salt::fuzz::fill(c.table, c.rng, c.in.flag() ? 1.0 : 20.0, c.in, c.specials);
    for (idx n = c.in.one_in(3) ? c.in.integer(1, 3) : 0, i = 0; i < n && size > 0; ++i)
      c.table[static_cast<std::size_t>(c.in.integer(0, size - 1))] = -std::numeric_limits<T>::infinity();
    b.data = c.table.data();
    return b;
  }
};

/// A Synthesizer Random table: shared or one per query head, padded rows and heads, a query offset.
template <class T>
struct score_maker<T, salt::synthesizer_random<T>> {
  static salt::synthesizer_random<T> make(score_context<T>& c) {
    salt::synthesizer_random<T> s;
    s.heads = c.in.flag() ? c.q_heads : 1;
    if (c.in.one_in(48)) s.heads = c.q_heads + 1;  // rejected (unless it is 1)
    s.query_offset = c.in.integer(0, 3);
    s.max_len = std::max(c.lq + s.query_offset, c.lk) + c.in.integer(0, 3);
    if (c.in.one_in(48)) s.max_len = c.lk - 1;  // rejected
    s.row_stride = std::max<idx>(s.max_len, 0) + c.in.integer(0, 2);
    s.head_stride = s.heads > 1 ? s.max_len * s.row_stride + c.in.integer(0, 2) : 0;
    const idx size = std::max<idx>(1, std::max<idx>(s.heads, 1) * std::max<idx>(s.head_stride, s.max_len * s.row_stride));
    c.table.resize(static_cast<std::size_t>(size));
    salt::fuzz::fill(c.table, c.rng, c.in.flag() ? 1.0 : 8.0, c.in, c.specials);
    for (idx n = c.in.one_in(3) ? c.in.integer(1, 3) : 0, i = 0; i < n; ++i)
      c.table[static_cast<std::size_t>(c.in.integer(0, size - 1))] = -std::numeric_limits<T>::infinity();
    s.data = c.table.data();
    return s;
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

/// Whether a score holds a per-pair table (bias_table, synthesizer_random), and that table.
template <class S>
inline constexpr bool has_table = false;
template <class T>
inline constexpr bool has_table<salt::bias_table<T>> = true;
template <class T>
inline constexpr bool has_table<salt::synthesizer_random<T>> = true;
template <class I>
inline constexpr bool has_table<salt::softcap<I>> = has_table<I>;
template <class A, class B>
inline constexpr bool has_table<salt::score_sum<A, B>> = has_table<A> || has_table<B>;

template <class S>
const auto& table_of(const S& s) {
  if constexpr (requires { s.inner; }) return table_of(s.inner);
  else if constexpr (requires { s.a; s.b; }) {
    if constexpr (has_table<std::remove_cvref_t<decltype(s.a)>>) return table_of(s.a);
    else return table_of(s.b);
  } else {
    return s;
  }
}

/// The table entry a score adds to pair (i, j) of head (b, h), or null when it has no table.
template <class T>
const T* entry_of(const salt::bias_table<T>& s, idx b, idx h, idx i, idx j) {
  return s.data + b * s.batch_stride + h * s.head_stride + i * s.row_stride + j;
}
template <class T>
const T* entry_of(const salt::synthesizer_random<T>& s, idx, idx h, idx i, idx j) {
  return s.data + (s.heads == 1 ? 0 : h) * s.head_stride + (s.query_offset + i) * s.row_stride + j;
}
template <class T, class S>
const T* entry_of(const S& s, idx b, idx h, idx i, idx j) {
  if constexpr (has_table<S>) return entry_of<T>(table_of(s), b, h, i, j);
  else return nullptr;
}

// ---------------------------------------------------------------------------------------------------------------
// Tensors

/// A (batch, heads, tokens, features) buffer in one of two layouts (bhld, blhd), each token's features followed by
/// `pad` elements of padding: NaN in an input (the kernels must not read it into a result), a sentinel in a
/// gradient (they must not write it).
template <class T>
struct tensor_buffer {
  std::vector<T> data;
  idx batch = 0, heads = 0, tokens = 0, features = 0, width = 0;
  salt::tensor_view<T> view;

  void make(idx b, idx h, idx l, idx f, bool blhd, idx pad) {
    batch = b, heads = h, tokens = l, features = f, width = f + pad;
    data.resize(static_cast<std::size_t>(std::max<idx>(b * h * l * width, 1)));
    view = blhd ? salt::tensor_view<T>{data.data(), b, h, l, f, l * h * width, width, h * width}
                : salt::tensor_view<T>{data.data(), b, h, l, f, h * l * width, l * width, width};
  }
  salt::tensor_view<const T> input() const { return view; }
  /// Calls f on every padding element.
  template <class F>
  void each_pad(F f) const {
    for (idx b = 0; b < batch; ++b)
      for (idx h = 0; h < heads; ++h)
        for (idx t = 0; t < tokens; ++t)
          for (idx c = features; c < width; ++c) f(view.head(b, h).row(t)[c]);
  }
};

/// Whether every entry of a buffer's view (not its padding) is 0.
template <class T>
bool all_zero(const tensor_buffer<T>& t) {
  for (idx b = 0; b < t.batch; ++b)
    for (idx h = 0; h < t.heads; ++h)
      for (idx r = 0; r < t.tokens; ++r)
        for (idx c = 0; c < t.features; ++c)
          if (!(t.view.head(b, h).row(r)[c] == T(0))) return false;
  return true;
}

/// Copies one head of a view into a matrix.
template <class T>
mat<std::remove_const_t<T>> head_of(const salt::tensor_view<T>& t, idx b, idx h) {
  const auto hv = t.head(b, h);
  mat<std::remove_const_t<T>> m(hv.rows, hv.cols);
  for (idx r = 0; r < hv.rows; ++r)
    for (idx c = 0; c < hv.cols; ++c) m(r, c) = hv.row(r)[c];
  return m;
}

/// The rows `rows` of a matrix, in that order.
template <class M>
auto pick(const M& m, const std::vector<idx>& rows) {
  mat<typename M::Scalar> r(static_cast<idx>(rows.size()), m.cols());
  for (std::size_t n = 0; n < rows.size(); ++n) r.row(static_cast<idx>(n)) = m.row(rows[n]);
  return r;
}

/// The kernel's gradient, the two naive ones and the oracle's, over the rows judged, against the criterion: the
/// worse naive computation is the bar. Fails naming `name` and the worst row.
template <class T, class U>
void judge_rows(const std::string& what, const char* name, const mat<T>& kernel, const mat<T>& n1, const mat<T>& n2,
                const mat<U>& ref, const std::vector<idx>& rows, double terms, double logits) {
  if (rows.empty()) return;
  const mat<T> k = pick(kernel, rows), a = pick(n1, rows), b = pick(n2, rows);
  const mat<U> r = pick(ref, rows);
  const double scale = std::max(salt::test::finite_scale(r), terms) * logits;
  const auto e1 = salt::test::judge<T>(k, a, r, scale), e2 = salt::test::judge<T>(k, b, r, scale);
  const auto& e = e1.naive_error >= e2.naive_error ? e1 : e2;
  if (e.ok()) return;
  idx worst = 0;
  for (idx n = 0; n < k.rows(); ++n)
    if (salt::test::max_abs_diff(k.row(n), r.row(n)) > salt::test::max_abs_diff(k.row(worst), r.row(worst))) worst = n;
  std::ostringstream s;
  s.precision(17);
  s << what << ": " << name << " fails the accuracy criterion: error " << e.kernel_error << " (naive " << e.naive_error
    << ", floor " << e.floor << ", terms " << terms << ", logits " << logits << ") over " << rows.size()
    << " rows; worst row " << rows[static_cast<std::size_t>(worst)] << ": kernel";
  for (idx c = 0; c < std::min<idx>(k.cols(), 4); ++c) s << " " << k(worst, c);
  s << ", reference";
  for (idx c = 0; c < std::min<idx>(k.cols(), 4); ++c) s << " " << static_cast<double>(r(worst, c));
  fail(s.str());
}

// ---------------------------------------------------------------------------------------------------------------
// One case

template <class T, class Mask, class Score>
void run_case(byte_reader& in, int pair) {
  using U = salt::test::oracle_t<T>;
  constexpr bool dot = Score::uses_dot_product();
  // Sizes: mostly small; now and then past one key block (64), so that several key partitions add to a dQ tile.
  auto length = [&] { return in.one_in(12) ? 0 : in.one_in(6) ? in.integer(1, 200) : in.integer(1, 80); };
  auto width = [&] { return in.one_in(12) ? 0 : in.one_in(4) ? in.integer(1, 20) : in.integer(1, 8); };
  idx batch = in.integer(1, 2), hkv = in.integer(1, 2), group = in.integer(1, 3);
  if (in.one_in(40)) batch = 0;
  idx hq = hkv * group;
  if (in.one_in(40)) hq = in.integer(0, 5);  // may not be a multiple of hkv: rejected (0 heads is fine)
  idx lq = length();
  idx lk = salt::fuzz::square_only<Mask> || in.flag() ? lq : length();
  idx d = width(), dv = width();
  // Keep each case cheap: three references (two in T, one in long double) of O(batch heads lq lk (d + dv)).
  while (batch * hq * lq * lk * (d + dv + 8) > 250'000) {
    if (batch > 1) batch = 1;
    else if (hq > hkv) hq = hkv;
    else if (hkv > 1) hq = hkv = 1;
    else if (d > 8 || dv > 8) d = std::min<idx>(d, 8), dv = std::min<idx>(dv, 8);
    else {
      const bool same = lq == lk;
      lq = lq * 3 / 4;
      lk = same ? lq : lk * 3 / 4;
    }
  }
  const std::string what = salt::fuzz::describe_case("pair", pair, batch, hq, hkv, lq, lk, d, dv, std::is_same_v<T, double>);
  salt::random_generator rng(in.seed());

  // Inputs: uniform values of a chosen scale; in a third of the cases, a few specials in each.
  const int specials = in.one_in(3) ? 3 : 0;
  tensor_buffer<T> q, k, v, dout;
  const auto pad = [&] { return in.flag() ? idx{0} : in.integer(1, 3); };
  q.make(batch, hq, lq, d, in.flag(), pad());
  k.make(batch, hkv, lk, d, in.flag(), pad());
  v.make(batch, hkv, lk, dv, in.flag(), pad());
  dout.make(batch, hq, lq, dv, in.flag(), pad());
  const double scales[] = {1.0, 4.0, 30.0, 0.01};
  salt::fuzz::fill(q.data, rng, scales[in.choice(4)], in, specials);
  salt::fuzz::fill(k.data, rng, scales[in.choice(4)], in, specials);
  salt::fuzz::fill(v.data, rng, 1.0, in, specials);
  salt::fuzz::fill(dout.data, rng, in.flag() ? 1.0 : 100.0, in, specials);
  for (tensor_buffer<T>* t : {&q, &k, &v, &dout}) t->each_pad([](T& x) { x = std::numeric_limits<T>::quiet_NaN(); });

  mask_context mc{in, rng, batch, hq, lq, lk, {}, {}, {}, {}};
  const Mask mask = maker<Mask>::make(mc);
  score_context<T> sc{in, rng, batch, hq, lq, lk, specials, {}};
  const Score score = score_maker<T, Score>::make(sc);
  const int threads = in.one_in(3) ? 2 : 3;  // the second backward's; the first runs on 1

  // The forward, for out and LSE.
  std::vector<T> out(static_cast<std::size_t>(std::max<idx>(batch * hq * lq * dv, 1)), T(-12345));
  std::vector<T> lse(static_cast<std::size_t>(std::max<idx>(batch * hq * lq, 1)), T(-12345));
  try {
    salt::attention<T>(q.input(), k.input(), v.input(), salt::tensor_view<T>::bhld(out.data(), batch, hq, lq, dv),
                       salt::lse_view<T>::bht(lse.data(), hq, lq), mask, score, salt::run_options{in.flag() ? 2 : 1});
  } catch (const salt::error& e) {
    if (salt::fuzz::verbose()) std::fprintf(stderr, "case: %s: rejected: %s\n", what.c_str(), e.what());
    throw;
  }

  // The gradients' layouts, the same for both runs; padding and unwritten entries hold the sentinel.
  const T sentinel = T(-12345.0);
  struct layout {
    bool blhd;
    idx pad;
  };
  const layout lay_q = {in.flag(), pad()}, lay_k = {in.flag(), pad()}, lay_v = {in.flag(), pad()};
  struct gradients {
    tensor_buffer<T> dq, dk, dv;
    std::vector<T> table;
  };
  const auto backward = [&](int n) {
    gradients g;
    g.dq.make(batch, hq, lq, d, lay_q.blhd, lay_q.pad);
    g.dk.make(batch, hkv, lk, d, lay_k.blhd, lay_k.pad);
    g.dv.make(batch, hkv, lk, dv, lay_v.blhd, lay_v.pad);
    for (tensor_buffer<T>* t : {&g.dq, &g.dk, &g.dv}) std::fill(t->data.begin(), t->data.end(), sentinel);
    const auto out_c = salt::tensor_view<const T>::bhld(out.data(), batch, hq, lq, dv);
    const auto lse_c = salt::lse_view<const T>::bht(lse.data(), hq, lq);
    try {
      if constexpr (has_table<Score>) {
        g.table.assign(sc.table.size(), T(0));
        salt::attention_backward<T>(q.input(), k.input(), v.input(), out_c, lse_c, dout.input(), g.dq.view, g.dk.view,
                                    g.dv.view, mask, score, salt::run_options{n},
                                    table_of(score).gradient_into(g.table.data()));
      } else {
        salt::attention_backward<T>(q.input(), k.input(), v.input(), out_c, lse_c, dout.input(), g.dq.view, g.dk.view,
                                    g.dv.view, mask, score, salt::run_options{n});
      }
    } catch (const salt::error& e) {
      fail(what + ": the backward rejects a call the forward accepted: " + e.what());
    }
    return g;
  };

  const std::vector<T> q0 = q.data, k0 = k.data, v0 = v.data, dout0 = dout.data, out0 = out, lse0 = lse,
                       table0 = sc.table;
  const gradients g = backward(1);
  if (!same_bits(q.data, q0) || !same_bits(k.data, k0) || !same_bits(v.data, v0) || !same_bits(dout.data, dout0) ||
      !same_bits(out, out0) || !same_bits(lse, lse0) || !same_bits(sc.table, table0))
    fail(what + ": an input was modified");
  {
    const gradients g2 = backward(threads);
    if (!same_bits(g.dq.data, g2.dq.data) || !same_bits(g.dk.data, g2.dk.data) || !same_bits(g.dv.data, g2.dv.data))
      fail(what + ": dq, dk or dv differ between 1 and " + std::to_string(threads) + " threads");
    if (!same_bits(g.table, g2.table))
      fail(what + ": the table's gradient differs between 1 and " + std::to_string(threads) + " threads");
  }

  // Every entry written, no padding.
  {
    bool pad_ok = true;
    for (const tensor_buffer<T>* t : {&g.dq, &g.dk, &g.dv})
      t->each_pad([&](const T& x) { pad_ok = pad_ok && std::memcmp(&x, &sentinel, sizeof(T)) == 0; });
    if (!pad_ok) fail(what + ": a gradient's padding was written");
    for (const tensor_buffer<T>* t : {&g.dq, &g.dk, &g.dv})
      for (idx b = 0; b < t->batch; ++b)
        for (idx h = 0; h < t->heads; ++h)
          for (idx r = 0; r < t->tokens; ++r)
            for (idx c = 0; c < t->features; ++c)
              if (std::memcmp(&t->view.head(b, h).row(r)[c], &sentinel, sizeof(T)) == 0)
                fail(what + ": a gradient entry was not written");
  }

  const idx hk = hkv > 0 ? hkv : 1, grp = hq / hk;
  const auto gq = [&](idx b, idx h) { return head_of(g.dq.view, b, h); };
  // The table's gradient, summed over the pairs that share each entry: the naive ones and the oracle's, whether an
  // allowed pair adds to it, and whether one of those pairs has a non-finite input.
  const std::size_t table_size = g.table.size();
  std::vector<T> tn1(table_size, T(0)), tn2(table_size, T(0));
  std::vector<U> tref(table_size, U(0));
  std::vector<char> tseen(table_size, 0), tbad(table_size, 0);
  double table_terms = 0, table_logits = 1;
  salt::logit_gradient<T> lg{};
  if constexpr (has_table<Score>) lg = table_of(score).gradient_into(const_cast<T*>(g.table.data()));
  const double dot_scale = dot ? std::abs(score.dot_scale(d)) : 0.0;
  idx judged_rows = 0, judged_keys = 0;

  // With no key no row sees one, with no query no key is seen: zero gradients. (Then there is nothing else to
  // judge, and the references would hand the score a tile with no storage.)
  if (lk == 0 && !all_zero(g.dq)) fail(what + ": no keys, but dq != 0");
  if (lq == 0 && (!all_zero(g.dk) || !all_zero(g.dv))) fail(what + ": no queries, but dk or dv != 0");
  for (idx b = 0; b < batch && lq > 0 && lk > 0; ++b)
    for (idx kh = 0; kh < hkv && hq % hk == 0; ++kh) {
      const mat<T> kk = head_of(k.input(), b, kh), vv = head_of(v.input(), b, kh);
      const mat<T> kr = kk.rowwise().reverse();
      std::vector<char> k_ok(static_cast<std::size_t>(lk)), key_blocked(static_cast<std::size_t>(lk), 0),
          key_seen(static_cast<std::size_t>(lk), 0);
      for (idx j = 0; j < lk; ++j)
        k_ok[static_cast<std::size_t>(j)] = (!dot || finite_row(kk.row(j).data(), d)) && finite_row(vv.row(j).data(), dv);
      mat<T> dk1 = mat<T>::Zero(lk, d), dk2 = mat<T>::Zero(lk, d), dv1 = mat<T>::Zero(lk, dv), dv2 = mat<T>::Zero(lk, dv);
      mat<U> dkr = mat<U>::Zero(lk, d), dvr = mat<U>::Zero(lk, dv);
      // The engine sums dS K and dS^T Q before it scales them (FlashAttention's order), the naive computations scale
      // dS first: where the unscaled sums leave T's range (huge inputs, a dot scale of 0 or tiny) the kernel's
      // overflow is the order's, and the naive one is no bar. Bounds of the unscaled sums, in double.
      const double range = static_cast<double>(std::numeric_limits<T>::max()) / 16;
      mat<double> dk_raw = mat<double>::Zero(lk, d);
      double dk_terms = 0, dv_terms = 0, key_logits = 1;
      for (idx h = kh * grp; h < (kh + 1) * grp; ++h) {
        const mat<T> qq = head_of(q.input(), b, h), dd = head_of(dout.input(), b, h);
        const salt::problem_shape where{lq, lk, b, h};
        const auto n1 = salt::test::naive_attention_backward<T>(qq, kk, vv, dd, mask, score, where);
        auto n2 = n1;
        if constexpr (dot) {  // the same exact logits, rounded in the other order
          const mat<T> qr = qq.rowwise().reverse();
          n2 = salt::test::naive_attention_backward<T>(qr, kr, vv, dd, mask, score, where);
          n2.dq = n2.dq.rowwise().reverse().eval();
          n2.dk = n2.dk.rowwise().reverse().eval();
        }
        const auto r = salt::test::naive_attention_backward<U>(qq, kk, vv, dd, mask, score, where);
        const mat<T> kq = gq(b, h);
        std::vector<idx> rows;
        double row_logits = 1;
        for (idx i = 0; i < lq; ++i) {
          bool ok = (!dot || finite_row(qq.row(i).data(), d)) && finite_row(dd.row(i).data(), dv), sees = false;
          double t = 0;
          for (idx j = 0; j < lk; ++j) {
            if (!mask.allows(i, j, where)) continue;
            sees = true;
            key_seen[static_cast<std::size_t>(j)] = 1;
            double x = 0;
            if (const T* e = entry_of<T>(score, b, h, i, j)) {
              ok = ok && !std::isnan(*e) && *e != std::numeric_limits<T>::infinity();
              if (std::isfinite(*e)) x = std::abs(static_cast<double>(*e));
            }
            ok = ok && k_ok[static_cast<std::size_t>(j)];
            if (dot && finite_row(qq.row(i).data(), d) && finite_row(kk.row(j).data(), d)) {
              double sum = 0;
              for (idx c = 0; c < d; ++c) sum += std::abs(static_cast<double>(qq(i, c)) * static_cast<double>(kk(j, c)));
              x += dot_scale * sum;
            }
            if (std::isfinite(x)) t = std::max(t, x);
          }
          // A row that sees no key has zero gradients, whatever its inputs.
          if (!sees)
            for (idx c = 0; c < d; ++c)
              if (!(kq(i, c) == T(0))) fail(what + ": row " + std::to_string(i) + " sees no key but has dq != 0");
          if (!ok) {  // every key it sees depends on its non-finite input
            for (idx j = 0; j < lk; ++j)
              if (mask.allows(i, j, where)) key_blocked[static_cast<std::size_t>(j)] = 1;
          } else {
            key_logits = std::max(key_logits, t);
          }
          // Table entries: what the pair adds, when its row is finite.
          if constexpr (has_table<Score>) {
            for (idx j = 0; j < lk; ++j) {
              if (!mask.allows(i, j, where)) continue;
              const auto at = static_cast<std::size_t>(b * lg.batch_stride + h * lg.head_stride +
                                                       (lg.row_offset + i) * lg.row_stride + j);
              tseen[at] = 1;
              if (!ok) {
                tbad[at] = 1;
                continue;
              }
              tn1[at] += n1.ds(i, j);
              tn2[at] += n2.ds(i, j);
              tref[at] += r.ds(i, j);
            }
            if (ok) table_logits = std::max(table_logits, t);
          }
          // Judged: finite inputs, and the naive computations in T as finite as the oracle (else no bar), and the
          // kernel's unscaled sums within T's range.
          if (ok && dot) {
            for (idx j = 0; j < lk; ++j) {
              const double x = std::abs(static_cast<double>(r.ds(i, j)));
              if (x == 0) continue;
              for (idx c = 0; c < d; ++c) dk_raw(j, c) += x * std::abs(static_cast<double>(qq(i, c)));
            }
            for (idx c = 0; c < d && ok; ++c) {
              double sum = 0;
              for (idx j = 0; j < lk; ++j) sum += std::abs(static_cast<double>(r.ds(i, j)) * static_cast<double>(kk(j, c)));
              ok = sum < range;
            }
          }
          for (idx c = 0; c < d && ok && dot; ++c) ok = same_kind(n1.dq(i, c), r.dq(i, c)) && same_kind(n2.dq(i, c), r.dq(i, c));
          for (idx j = 0; j < lk && ok; ++j) ok = same_kind(n1.ds(i, j), r.ds(i, j)) && same_kind(n2.ds(i, j), r.ds(i, j));
          if (!ok) continue;
          rows.push_back(i);
          row_logits = std::max(row_logits, t);
        }
        judged_rows += static_cast<idx>(rows.size());
        // (Without the dot product dQ and dK are 0, checked below; the references' are 0 times dS K, NaN where K is.)
        if constexpr (dot)
          judge_rows<T, U>(what + ", batch item " + std::to_string(b) + ", head " + std::to_string(h), "dq", kq, n1.dq,
                           n2.dq, r.dq, rows, r.dq_terms, row_logits);
        dk1 += n1.dk, dk2 += n2.dk, dv1 += n1.dv, dv2 += n2.dv, dkr += r.dk, dvr += r.dv;
        dk_terms += r.dk_terms, dv_terms += r.dv_terms, table_terms += r.ds_terms;
      }
      const mat<T> kdk = head_of(g.dk.view, b, kh), kdv = head_of(g.dv.view, b, kh);
      std::vector<idx> keys;
      for (idx j = 0; j < lk; ++j) {
        const auto s = static_cast<std::size_t>(j);
        if (!key_seen[s]) {  // a key no row sees has zero gradients, whatever its inputs
          for (idx c = 0; c < d; ++c)
            if (!(kdk(j, c) == T(0))) fail(what + ": key " + std::to_string(j) + " is seen by no row but has dk != 0");
          for (idx c = 0; c < dv; ++c)
            if (!(kdv(j, c) == T(0))) fail(what + ": key " + std::to_string(j) + " is seen by no row but has dv != 0");
        }
        bool ok = !key_blocked[s] && k_ok[s];
        for (idx c = 0; c < d && ok && dot; ++c) ok = dk_raw(j, c) < range;
        for (idx c = 0; c < d && ok && dot; ++c) ok = same_kind(dk1(j, c), dkr(j, c)) && same_kind(dk2(j, c), dkr(j, c));
        for (idx c = 0; c < dv && ok; ++c) ok = same_kind(dv1(j, c), dvr(j, c)) && same_kind(dv2(j, c), dvr(j, c));
        if (ok) keys.push_back(j);
      }
      judged_keys += static_cast<idx>(keys.size());
      const std::string at = what + ", batch item " + std::to_string(b) + ", K/V head " + std::to_string(kh);
      if constexpr (dot) judge_rows<T, U>(at, "dk", kdk, dk1, dk2, dkr, keys, dk_terms, key_logits);
      judge_rows<T, U>(at, "dv", kdv, dv1, dv2, dvr, keys, dv_terms, key_logits);
    }

  // A score without the dot product: dq = dk = 0, whatever the inputs.
  if constexpr (!dot) {
    if (!all_zero(g.dq) || !all_zero(g.dk)) fail(what + ": a score without the dot product gave dq or dk != 0");
  }

  // The table's gradient: nothing added where no allowed pair reaches; the sums of the finite pairs judged.
  if constexpr (has_table<Score>) {
    std::vector<idx> entries;
    for (std::size_t e = 0; e < table_size; ++e) {
      if (!tseen[e]) {
        if (!(g.table[e] == T(0)))
          fail(what + ": the table's gradient has " + std::to_string(static_cast<double>(g.table[e])) + " at entry " +
               std::to_string(e) + ", which no allowed pair reaches");
        continue;
      }
      if (!tbad[e] && same_kind(tn1[e], tref[e]) && same_kind(tn2[e], tref[e])) entries.push_back(static_cast<idx>(e));
    }
    mat<T> kt(static_cast<idx>(table_size), 1), t1(static_cast<idx>(table_size), 1), t2(static_cast<idx>(table_size), 1);
    mat<U> tr(static_cast<idx>(table_size), 1);
    for (std::size_t e = 0; e < table_size; ++e) {
      const auto r = static_cast<idx>(e);
      kt(r, 0) = g.table[e], t1(r, 0) = tn1[e], t2(r, 0) = tn2[e], tr(r, 0) = tref[e];
    }
    judge_rows<T, U>(what, "the table's gradient", kt, t1, t2, tr, entries, table_terms, table_logits);
  }
  if (salt::fuzz::verbose())
    std::fprintf(stderr, "case: %s: %ld of %ld rows and %ld of %ld keys judged\n", what.c_str(),
                 static_cast<long>(judged_rows), static_cast<long>(batch * hq * lq), static_cast<long>(judged_keys),
                 static_cast<long>(batch * hkv * lk));
}

template <class T>
using dot_bias = salt::score_sum<salt::dot_product, salt::bias_table<T>>;
using capped_dot = salt::softcap<salt::dot_product>;
template <class T>
using capped_bias = salt::softcap<dot_bias<T>>;
template <class T>
using synth = salt::synthesizer_random<T>;

/// The (composition, score) pairs: every score with no mask; each composition with one or two of them.
template <class T>
void run_one(byte_reader& in) {
  const int pair = in.choice(12);
  switch (pair) {
    case 0: return run_case<T, no_mask, salt::dot_product>(in, pair);
    case 1: return run_case<T, no_mask, dot_bias<T>>(in, pair);
    case 2: return run_case<T, no_mask, capped_bias<T>>(in, pair);
    case 3: return run_case<T, no_mask, synth<T>>(in, pair);
    case 4: return run_case<T, causal_br, capped_dot>(in, pair);
    case 5: return run_case<T, shape_g, dot_bias<T>>(in, pair);
    case 6: return run_case<T, shape_g, salt::dot_product>(in, pair);
    case 7: return run_case<T, shape_h, capped_bias<T>>(in, pair);
    case 8: return run_case<T, shape_i, salt::dot_product>(in, pair);
    case 9: return run_case<T, shape_i, synth<T>>(in, pair);
    case 10: return run_case<T, shape_j, capped_dot>(in, pair);
    default: return run_case<T, shape_j, dot_bias<T>>(in, pair);
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  return salt::fuzz::run_in_either_precision(data, size, [](byte_reader& in, auto t) { run_one<decltype(t)>(in); });
}
