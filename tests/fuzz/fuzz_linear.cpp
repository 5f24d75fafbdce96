// libFuzzer harness of kernelized linear attention: a byte string decodes into sizes (0 and 1 included),
// float or double, grouped-query heads, a feature map (FAVOR+ with orthogonal or Gaussian features, FAVOR
// trigonometric, ReLU with and without a projection, elu + 1), a mask (none, key padding, causal with
// either alignment and an offset, causal & key padding), and inputs of magnitude up to 30 with occasional
// NaN, +-Inf and huge values. It checks every head against the fp64 (long double for double) formula of
// the map (tests/linear_reference.hpp) under the accuracy criterion, over the rows whose visible inputs are
// finite (where the naive computation in T does not overflow where the oracle does not); that inputs of
// magnitude at most 30 give finite outputs; that inputs are unchanged; that results do not depend on the
// thread count; and that the streaming recurrent_state meets the same criterion as the causal parallel
// form (and forgets everything on reset()). Parameters salt rejects with salt::error end the case quietly.
#include <salt/linear.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <limits>
#include <sstream>
#include <string>
#include <vector>

#include "../linear_reference.hpp"
#include "../reference.hpp"
#include "byte_reader.hpp"

namespace {

using idx = salt::index;
using salt::fuzz::byte_reader;
using salt::fuzz::fail;
using salt::fuzz::same_kind;
using salt::fuzz::finite_row;
template <class U>
using mat = salt::row_matrix<U>;
using causal_br = salt::causal<salt::causal_alignment::bottom_right>;
using causal_tl = salt::causal<salt::causal_alignment::top_left>;

using salt::test::linear_formula;  // the oracle, shared with the tests (tests/linear_reference.hpp)

/// Keys row i sees: [0, visible_keys(i)).
struct visibility {
  bool causal = false;
  idx shift = 0, len = 0;
  idx keys(idx i) const { return causal ? std::clamp<idx>(i + shift + 1, 0, len) : len; }
};



/// The largest magnitude of the terms a map's features are computed from, over the first `n` rows of x:
/// sum_c |W_lc x'_c| (the projection) plus |x'|^2 / 2 for the exponential maps. Features are only accurate to a
/// few ulp of it in any computation (cos of an argument of 40 carries 40 ulp), which the floor must allow.
template <class Map, class T>
double feature_terms(const mat<T>& x, const mat<T>& w, idx n) {
  double top = 0;
  const double s = std::pow(static_cast<double>(std::max<idx>(x.cols(), 1)), -0.25);
  for (idx r = 0; r < n; ++r) {
    const Eigen::RowVectorXd xs = x.row(r).template cast<double>().cwiseAbs() * s;
    double t = w.size() ? (xs * w.template cast<double>().cwiseAbs().transpose()).maxCoeff() : 0.0;
    if (Map::log_scaled()) t += xs.squaredNorm() / 2;
    if (std::isfinite(t)) top = std::max(top, t);
  }
  return top;
}

/// Checks `kernel` (one head, (lq, dv)) against the formula of `map`, row by row where the row's visible
/// inputs are finite. `bounded`: every input lies within [-30, 30], so no output may be NaN or infinite.
template <class T, class Map>
void check_head(const std::string& what, const Map& map, const mat<T>& w, const mat<T>& q, const mat<T>& k,
                const mat<T>& v, const mat<T>& kernel, const visibility& vis, bool bounded, idx& checked) {
  using U = salt::test::oracle_t<T>;
  const idx lq = q.rows(), lk = k.rows(), d = q.cols(), dv = v.cols();
  const mat<T> naive = linear_formula<T, T>(salt::test::features_def<T>(map, q, w), salt::test::features_def<T>(map, k, w), v,
                                            vis.causal, vis.shift, vis.len);
  std::vector<U> den, cond;
  const mat<U> ref = linear_formula<U, T>(salt::test::features_def<U>(map, q, w), salt::test::features_def<U>(map, k, w), v,
                                          vis.causal, vis.shift, vis.len, &den, &cond);
  // The floor is a few ulp of the values times the condition of the row's ratio: where signed (trig) features
  // cancel in the denominator, any two summation orders differ by that much, and the naive one can be lucky.
  double condition = 1;
  // First non-finite key or value row: rows that see it are not checked.
  idx first_bad = lk;
  for (idx j = 0; j < lk && first_bad == lk; ++j)
    if (!finite_row(k.row(j).data(), d) || !finite_row(v.row(j).data(), dv)) first_bad = j;
  // Running sums of max|phi(k_j)| max|v_j| (in U): past T's range the kernel's state S = sum phi(k) v^T overflows
  // (inputs of 1e20, say, far beyond the promised 30), where the formula, scaling V by phi(q).phi(k), may not.
  std::vector<U> state_bound(static_cast<std::size_t>(lk + 1), U(0));
  {
    const mat<U> fk = salt::test::features_def<U>(map, k, w);
    for (idx j = 0; j < lk; ++j) {
      const U phi = fk.cols() > 0 ? fk.row(j).cwiseAbs().maxCoeff() : U(0);
      const U val = dv > 0 ? static_cast<U>(v.row(j).cwiseAbs().maxCoeff()) : U(0);
      state_bound[static_cast<std::size_t>(j + 1)] = state_bound[static_cast<std::size_t>(j)] + phi * val;
    }
  }
  std::vector<idx> rows;
  idx keys = 0;  // the most keys a judged row sees
  for (idx i = 0; i < lq; ++i) {
    const idx n = vis.keys(i);
    if (n > first_bad || !finite_row(q.row(i).data(), d)) continue;
    if (bounded && !finite_row(kernel.row(i).data(), dv)) {
      std::ostringstream s;
      s << what << ": row " << i << " is not finite though every input lies within [-30, 30]";
      fail(s.str());
    }
    // The formula has no stabiliser: where its features underflow (|x| beyond about 40 for FAVOR+ in fp64) its
    // denominator sinks towards the subnormal range and it is no oracle; those rows are not judged (the
    // kernel's own guard applies to its stabilised denominator). A row that sees no key has den = 0 and is.
    // Maps without a log scale compute the formula's very denominator, and the kernel outputs zeros where it is
    // below T's smallest normal (its documented guard): rows near that threshold are not judged either.
    const U d_i = std::abs(den[static_cast<std::size_t>(i)]);
    const U guard = Map::log_scaled() ? std::numeric_limits<U>::min() / std::numeric_limits<U>::epsilon()
                                      : static_cast<U>(std::numeric_limits<T>::min() / std::numeric_limits<T>::epsilon());
    bool ok = vis.keys(i) == 0 || !(d_i < guard);
    for (idx c = 0; c < dv && ok; ++c) ok = std::isfinite(ref(i, c)) && same_kind(naive(i, c), ref(i, c));
    if (ok && !finite_row(kernel.row(i).data(), dv) &&
        !(state_bound[static_cast<std::size_t>(std::min(n, lk))] < static_cast<U>(std::numeric_limits<T>::max())))
      ok = false;  // the state overflows T: not judged (bounded inputs never get here, they failed above)
    if (ok) {
      rows.push_back(i);
      keys = std::max(keys, n);
      const double ci = static_cast<double>(cond[static_cast<std::size_t>(i)]);
      if (std::isfinite(ci)) condition = std::max(condition, ci);
    }
  }
  const idx n = static_cast<idx>(rows.size());
  checked += n;
  if (n == 0) return;
  mat<T> ko(n, dv), no(n, dv);
  mat<U> ro(n, dv);
  for (idx r = 0; r < n; ++r) {
    const idx i = rows[static_cast<std::size_t>(r)];
    ko.row(r) = kernel.row(i);
    no.row(r) = naive.row(i);
    ro.row(r) = ref.row(i);
  }
  const idx seen = std::min(first_bad, lk);
  const double terms = 1 + std::max(feature_terms<Map>(q, w, lq), feature_terms<Map>(k, w, seen));
  // Where the denominator cancels, the output itself grows with the condition (|out| up to |v| cond), and so
  // does its error relative to it: the floor takes the larger of the values and the reference outputs.
  const double magnitude = std::max(salt::test::finite_scale(v.topRows(seen)), salt::test::finite_scale(ro));
  // The kernel associates differently from the formula (features summed over keys first, then read by phi(q)),
  // so the formula's own error does not bound the kernel's: the floor adds the worst-case error of the kernel's
  // association, derived at linear_association_floor (tests/linear_reference.hpp).
  auto e = salt::test::judge<T>(ko, no, ro, magnitude * condition * terms);
  e.floor += salt::test::linear_association_floor<T>(keys, map.features(d), condition, magnitude);
  if (!e.ok()) {
    idx worst = 0;
    double worst_err = -1;
    for (idx r = 0; r < n; ++r) {
      const double er = salt::test::max_abs_diff(ko.row(r), ro.row(r));
      if (er > worst_err) worst_err = er, worst = r;
    }
    const idx i = rows[static_cast<std::size_t>(worst)];
    std::ostringstream s;
    s << what << ": accuracy criterion fails: error " << e.kernel_error << " (naive " << e.naive_error << ", floor "
      << e.floor << "); worst row " << i << " (sees " << vis.keys(i) << " keys, max |q| "
      << (d > 0 ? q.row(i).cwiseAbs().maxCoeff() : T(0)) << ", max |k| " << (vis.keys(i) > 0 && d > 0 ? k.topRows(vis.keys(i)).cwiseAbs().maxCoeff() : T(0))
      << "): kernel " << ko.row(worst) << ", reference " << ro.row(worst).template cast<double>();
    fail(s.str());
  }
}

struct problem {
  idx batch, hq, hkv, lq, lk, d, dv;
};

template <class T, class Map, class Mask>
void run_case(byte_reader& in, salt::random_generator& rng, const problem& p, const Map& map, const mat<T>& w,
              const Mask& mask, const std::vector<idx>& lengths, bool causal, idx shift, const std::string& what) {
  const auto [B, Hq, Hkv, Lq, Lk, d, dv] = p;
  // Inputs: magnitudes up to 30 (no NaN or overflow allowed there), now and then specials beyond.
  const double scales[] = {1.0, 0.1, 3.0, 30.0};
  std::vector<T> q(static_cast<std::size_t>(std::max<idx>(B * Hq * Lq * d, 1))),
      k(static_cast<std::size_t>(std::max<idx>(B * Hkv * Lk * d, 1))),
      v(static_cast<std::size_t>(std::max<idx>(B * Hkv * Lk * dv, 1)));
  salt::fuzz::fill(q, rng, scales[in.choice(4)], in, 2);
  salt::fuzz::fill(k, rng, scales[in.choice(4)], in, 2);
  salt::fuzz::fill(v, rng, in.flag() ? 1.0 : 30.0, in, 2);
  auto bounded = [](const std::vector<T>& x) {
    return std::all_of(x.begin(), x.end(), [](T e) { return std::abs(e) <= T(30); });
  };
  const bool all_bounded = bounded(q) && bounded(k) && bounded(v);
  const auto qv = salt::tensor_view<const T>::bhld(q.data(), B, Hq, Lq, d);
  const auto kv = salt::tensor_view<const T>::bhld(k.data(), B, Hkv, Lk, d);
  const auto vv = salt::tensor_view<const T>::bhld(v.data(), B, Hkv, Lk, dv);
  const int threads = in.flag() ? 2 : 1;
  const std::vector<T> q0 = q, k0 = k, v0 = v;
  mat<T> out(std::max<idx>(B * Hq * Lq, 1), std::max<idx>(dv, 1));
  out.setConstant(T(-12345));
  try {
    salt::linear_attention<T>(qv, kv, vv, salt::tensor_view<T>::bhld(out.data(), B, Hq, Lq, dv), map, mask,
                              salt::run_options{threads});
  } catch (const salt::error& e) {
    if (salt::fuzz::verbose()) std::fprintf(stderr, "case: %s: rejected: %s\n", what.c_str(), e.what());
    throw;
  }
  if (!salt::fuzz::same_bits(q, q0) || !salt::fuzz::same_bits(k, k0) || !salt::fuzz::same_bits(v, v0)) fail(what + ": an input was modified");
  if (in.flag()) {
    mat<T> out2(out.rows(), out.cols());
    out2.setConstant(T(-12345));
    salt::linear_attention<T>(qv, kv, vv, salt::tensor_view<T>::bhld(out2.data(), B, Hq, Lq, dv), map, mask,
                              salt::run_options{3 - threads});
    if (std::memcmp(out.data(), out2.data(), sizeof(T) * static_cast<std::size_t>(B * Hq * Lq * dv)) != 0)
      fail(what + ": results differ between 1 and 2 threads");
  }
  idx checked = 0;
  const idx g = Hq / Hkv;
  for (idx b = 0; b < B; ++b)
    for (idx h = 0; h < Hq; ++h) {
      const idx kh = b * Hkv + h / g;
      const mat<T> qh = Eigen::Map<const mat<T>>(q.data() + (b * Hq + h) * Lq * d, Lq, d);
      const mat<T> khm = Eigen::Map<const mat<T>>(k.data() + kh * Lk * d, Lk, d);
      const mat<T> vh = Eigen::Map<const mat<T>>(v.data() + kh * Lk * dv, Lk, dv);
      const mat<T> oh = out.block((b * Hq + h) * Lq, 0, Lq, dv);
      const visibility vis{causal, shift, lengths.empty() ? Lk : lengths[static_cast<std::size_t>(b)]};
      check_head<T>(what + ", batch item " + std::to_string(b) + ", head " + std::to_string(h), map, w, qh, khm, vh, oh,
                    vis, all_bounded, checked);
    }

  // Streaming: token by token through recurrent_state, against the same formula (causal, top-left aligned),
  // beside the causal parallel form on the same tokens.
  if (B >= 1 && Hq >= 1 && d >= 1 && dv >= 1 && in.flag()) {
    const idx n = std::min(Lq, Lk);
    const mat<T> qs = Eigen::Map<const mat<T>>(q.data(), n, d), ks = Eigen::Map<const mat<T>>(k.data(), n, d),
                 vs = Eigen::Map<const mat<T>>(v.data(), n, dv);
    salt::recurrent_state<T, Map> state(map, d, dv);
    mat<T> stream(n, dv);
    for (idx t = 0; t < n; ++t) {
      state.append(ks.row(t), vs.row(t));
      state.query(qs.row(t), stream.row(t));
    }
    if (state.size() != n) fail(what + ": recurrent_state size is not the number of tokens appended");
    const std::vector<idx> all{n};
    const mat<T> parallel =
        salt::linear_attention(qs, ks, vs, map, salt::key_padding{all} & causal_tl{}, salt::run_options{1});
    const visibility vis{true, 0, n};
    check_head<T>(what + ", streaming", map, w, qs, ks, vs, stream, vis, all_bounded, checked);
    check_head<T>(what + ", causal parallel of the streamed tokens", map, w, qs, ks, vs, parallel, vis, all_bounded,
                  checked);
    if (n > 0) {
      const mat<T> first = stream.row(0);
      state.reset();
      if (state.size() != 0) fail(what + ": recurrent_state size is not 0 after reset()");
      state.append(ks.row(0), vs.row(0));
      state.query(qs.row(0), stream.row(0));
      if (std::memcmp(first.data(), stream.row(0).data(), sizeof(T) * static_cast<std::size_t>(dv)) != 0)
        fail(what + ": recurrent_state after reset() differs from a fresh state");
    }
  }
  if (salt::fuzz::verbose())
    std::fprintf(stderr, "case: %s: %ld rows checked\n", what.c_str(), static_cast<long>(checked));
}

template <class T, class Map>
void with_mask(byte_reader& in, salt::random_generator& rng, const problem& p, const Map& map, const mat<T>& w,
               const std::string& what) {
  std::vector<idx> lengths(static_cast<std::size_t>(p.batch));
  for (auto& n : lengths) n = in.flag() ? p.lk : in.integer(0, p.lk);
  if (!lengths.empty() && in.one_in(48)) lengths[0] = p.lk + 1;  // rejected
  const idx span = p.lq + p.lk + 2;
  const idx offset = in.flag() ? 0 : in.integer(-span, span);
  const idx br = p.lk - p.lq + offset;
  switch (in.choice(5)) {
    case 0: return run_case<T>(in, rng, p, map, w, salt::no_mask{}, {}, false, 0, what + ", no mask");
    case 1: return run_case<T>(in, rng, p, map, w, salt::key_padding{lengths}, lengths, false, 0, what + ", key_padding");
    case 2: return run_case<T>(in, rng, p, map, w, causal_br{offset}, {}, true, br, what + ", causal");
    case 3:
      return run_case<T>(in, rng, p, map, w, causal_br{offset} & salt::key_padding{lengths}, lengths, true, br,
                         what + ", causal & key_padding");
    default:
      return run_case<T>(in, rng, p, map, w, salt::key_padding{lengths} & causal_tl{offset}, lengths, true, offset,
                         what + ", key_padding & causal<top_left>");
  }
}

template <class T>
void run_one(byte_reader& in) {
  problem p{};
  p.batch = in.integer(1, 2);
  p.hkv = in.integer(1, 2);
  p.hq = p.hkv * in.integer(1, 3);
  if (in.one_in(40)) p.batch = 0;
  auto length = [&] { return in.one_in(16) ? 0 : in.one_in(4) ? in.integer(1, 200) : in.integer(1, 70); };
  p.lq = length();
  p.lk = in.flag() ? p.lq : length();
  p.d = in.one_in(4) ? in.integer(1, 32) : in.integer(1, 8);
  p.dv = in.one_in(12) ? 0 : in.integer(1, 16);
  const idx m = in.flag() ? 2 * p.d + 5 : in.integer(1, 64);
  if (p.batch * p.hq * (p.lq + p.lk) * (m + p.d + p.dv) * 4 > 4'000'000) p.batch = p.hq = p.hkv = 1;
  salt::random_generator rng(in.seed());
  std::ostringstream w;
  w << (std::is_same_v<T, double> ? "double" : "float") << ", batch " << p.batch << ", heads " << p.hq << "/" << p.hkv
    << ", lq " << p.lq << ", lk " << p.lk << ", d " << p.d << ", dv " << p.dv;
  const std::uint64_t seed = rng.next();
  auto features = [&] {
    switch (in.choice(3)) {
      case 0: return salt::random_features<T>::orthogonal(m, p.d, seed);
      case 1: return salt::random_features<T>::orthogonal(m, p.d, seed, salt::feature_norms::sqrt_d);
      default: return salt::random_features<T>::gaussian(m, p.d, seed);
    }
  };
  const mat<T> none;
  switch (in.choice(5)) {
    case 0: {
      const auto f = features();
      return with_mask<T>(in, rng, p, salt::favor_plus<T>(f), f.matrix(), w.str() + ", favor_plus m " + std::to_string(m));
    }
    case 1: {
      const auto f = features();
      return with_mask<T>(in, rng, p, salt::favor_trig<T>(f), f.matrix(), w.str() + ", favor_trig m " + std::to_string(m));
    }
    case 2: {
      const auto f = features();
      const T eps = in.flag() ? T(1e-3) : in.flag() ? T(0) : static_cast<T>(in.integer(0, 100) / 10.0);
      return with_mask<T>(in, rng, p, salt::relu_features<T>(f, eps), f.matrix(), w.str() + ", relu(Wx) m " + std::to_string(m));
    }
    case 3: {
      const T eps = in.flag() ? T(1e-3) : in.flag() ? T(0) : static_cast<T>(in.integer(0, 100) / 10.0);
      return with_mask<T>(in, rng, p, salt::relu_features<T>(eps), none, w.str() + ", relu(x)");
    }
    default: return with_mask<T>(in, rng, p, salt::elu_plus_one{}, none, w.str() + ", elu+1");
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  return salt::fuzz::run_in_either_precision(data, size, [](byte_reader& in, auto t) { run_one<decltype(t)>(in); });
}
