// libFuzzer harness of LSH attention: a byte string decodes into sizes (0 and 1 included), float or double,
// lsh_options (rounds, bucket counts plain or factorised, chunk length, chunks before and after, causal,
// bucket_pure), a padding (none, key_padding, key_mask), Gaussian rotations from a seed (per head or
// shared), and inputs with occasional NaN, +-Inf and huge values. It checks every head's output and LSE
// against the naive LSH oracle (tests/lsh_reference.hpp, in fp64 or long double) under the accuracy
// criterion, over the rows where the oracle and the naive computation in T are finite; that the inputs are
// unchanged; and that results do not depend on the thread count. Parameters salt rejects with salt::error
// end the case quietly.
#include <salt/lsh.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <limits>
#include <sstream>
#include <string>
#include <vector>

#include "../lsh_reference.hpp"
#include "../reference.hpp"
#include "byte_reader.hpp"

namespace {

using idx = salt::index;
using salt::fuzz::byte_reader;
using salt::fuzz::fail;
using salt::fuzz::finite_row;
template <class U>
using mat = salt::row_matrix<U>;


template <class T, class Padding>
void run_case(byte_reader& in, const Padding& padding, const std::vector<std::uint8_t>& flags, idx B, idx H, idx L,
              idx d, idx dv, const salt::lsh_options& opt, bool shared_rotations, salt::random_generator& rng,
              const std::string& what) {
  using U = salt::test::oracle_t<T>;
  const double scales[] = {1.0, 2.0, 10.0, 0.01};
  std::vector<T> qk(static_cast<std::size_t>(std::max<idx>(B * H * L * d, 1))),
      v(static_cast<std::size_t>(std::max<idx>(B * H * L * dv, 1)));
  salt::fuzz::fill(qk, rng, scales[in.choice(4)], in, 2);
  salt::fuzz::fill(v, rng, 1.0, in, 2);
  const auto rot = salt::lsh_rotations<T>::gaussian(shared_rotations ? 1 : std::max<idx>(H, 1), d, opt, rng.next());
  const int threads = in.flag() ? 2 : 1;
  const std::vector<T> qk0 = qk, v0 = v;
  const auto qkv = salt::tensor_view<const T>::bhld(qk.data(), B, H, L, d);
  const auto vv = salt::tensor_view<const T>::bhld(v.data(), B, H, L, dv);
  mat<T> out(std::max<idx>(B * H * L, 1), std::max<idx>(dv, 1));
  out.setConstant(T(-12345));
  std::vector<T> lse(static_cast<std::size_t>(std::max<idx>(B * H * L, 1)), T(-12345));
  try {
    salt::lsh_attention<T>(qkv, vv, salt::tensor_view<T>::bhld(out.data(), B, H, L, dv),
                           salt::lse_view<T>::bht(lse.data(), H, L), rot, opt, padding, salt::run_options{threads});
  } catch (const salt::error& e) {
    if (salt::fuzz::verbose()) std::fprintf(stderr, "case: %s: rejected: %s\n", what.c_str(), e.what());
    throw;
  }
  if (!salt::fuzz::same_bits(qk, qk0) || !salt::fuzz::same_bits(v, v0)) fail(what + ": an input was modified");
  if (in.flag()) {
    mat<T> out2(out.rows(), out.cols());
    out2.setConstant(T(-12345));
    std::vector<T> lse2(lse.size(), T(-12345));
    salt::lsh_attention<T>(qkv, vv, salt::tensor_view<T>::bhld(out2.data(), B, H, L, dv),
                           salt::lse_view<T>::bht(lse2.data(), H, L), rot, opt, padding, salt::run_options{3 - threads});
    if (std::memcmp(out.data(), out2.data(), sizeof(T) * static_cast<std::size_t>(B * H * L * dv)) != 0 ||
        std::memcmp(lse.data(), lse2.data(), sizeof(T) * static_cast<std::size_t>(B * H * L)) != 0)
      fail(what + ": results differ between 1 and 2 threads");
  }
  idx checked = 0;
  // (The oracle needs L >= 1: at L = 0 there is no row to check.)
  for (idx b = 0; b < B && L > 0; ++b) {
    std::vector<std::uint8_t> valid(static_cast<std::size_t>(L), 1);
    if constexpr (std::is_same_v<Padding, salt::key_padding>)
      for (idx p = padding.lengths[static_cast<std::size_t>(b)]; p < L; ++p) valid[static_cast<std::size_t>(p)] = 0;
    if constexpr (std::is_same_v<Padding, salt::key_mask>)
      for (idx p = 0; p < L; ++p) valid[static_cast<std::size_t>(p)] = flags[static_cast<std::size_t>(b * L + p)];
    for (idx h = 0; h < H; ++h) {
      const idx r0 = (b * H + h) * L;
      const mat<T> qh = Eigen::Map<const mat<T>>(qk.data() + r0 * d, L, d);
      const mat<T> vh = Eigen::Map<const mat<T>>(v.data() + r0 * dv, L, dv);
      const salt::test::lsh_bucket_matrix bk = salt::lsh_buckets(qh, rot, opt, shared_rotations ? 0 : h);
      const auto naive = salt::test::naive_lsh<T>(qh, vh, bk, opt, valid);
      const auto ref = salt::test::naive_lsh<U>(qh, vh, bk, opt, valid);
      // The oracle merges rounds as HuggingFace does, with weights exp(lse_r - total), total = m + log(sum): once
      // |lse| is so large (qk of 1e25) that total cannot resolve log(sum), it weighs every round 1, and so does
      // the naive computation in T, while salt's merge stays a convex combination. Such rows are not judged.
      // (HF's form stays in the oracle: the tests match HF's outputs to 1e-12 with it.)
      std::vector<idx> rows;
      const double resolvable = 0.01 / static_cast<double>(std::numeric_limits<U>::epsilon());
      for (idx i = 0; i < L; ++i)
        if (finite_row(ref.out.row(i).data(), dv) && std::isfinite(ref.lse(i)) &&
            finite_row(naive.out.row(i).data(), dv) && std::isfinite(naive.lse(i)) &&
            std::abs(static_cast<double>(ref.lse(i))) < resolvable)
          rows.push_back(i);
      const idx n = static_cast<idx>(rows.size());
      checked += n;
      if (n == 0) continue;
      mat<T> ko(n, dv), no(n, dv);
      mat<U> ro(n, dv);
      salt::column<T> kl(n), nl(n);
      salt::column<U> rl(n);
      for (idx r = 0; r < n; ++r) {
        const idx i = rows[static_cast<std::size_t>(r)];
        if (dv > 0) ko.row(r) = out.row(r0 + i).head(dv);
        no.row(r) = naive.out.row(i);
        ro.row(r) = ref.out.row(i);
        kl(r) = lse[static_cast<std::size_t>(r0 + i)];
        nl(r) = naive.lse(i);
        rl(r) = ref.lse(i);
      }
      // Floors scaled by the magnitude of the terms of the logits, sum_c |q_c k_c| <= |q|_1 (keys are normalised to
      // unit length): rounding the logits costs a few ulp of it in any order, and once that reaches O(1) (qk of
      // 1e8 in float) the softmax weights are not determined in T at all (see fuzz_engine.cpp).
      double terms = 1;
      for (const idx i : rows) terms = std::max(terms, static_cast<double>(qh.row(i).template cast<double>().cwiseAbs().sum()));
      const auto eo = salt::test::judge<T>(ko, no, ro, salt::test::finite_scale(vh) * terms);
      const auto el = salt::test::judge<T>(kl, nl, rl, std::max(salt::test::finite_scale(rl), terms));
      if (!eo.ok() || !el.ok()) {
        idx wo = 0;
        for (idx r = 0; r < n; ++r)
          if (salt::test::max_abs_diff(ko.row(r), ro.row(r)) > salt::test::max_abs_diff(ko.row(wo), ro.row(wo))) wo = r;
        const idx i = rows[static_cast<std::size_t>(wo)];
        std::ostringstream s;
        s.precision(10);
        s << what << ", batch item " << b << ", head " << h << ": accuracy criterion fails: output error "
          << eo.kernel_error << " (naive " << eo.naive_error << ", floor " << eo.floor << "), LSE error "
          << el.kernel_error << " (naive " << el.naive_error << ", floor " << el.floor << "); worst row " << i
          << " (max |qk| " << qh.row(i).cwiseAbs().maxCoeff() << ", max |qk| of the head " << qh.cwiseAbs().maxCoeff()
          << ", valid " << int(valid[static_cast<std::size_t>(i)]) << "): kernel LSE " << kl(wo) << ", reference "
          << static_cast<double>(rl(wo)) << ", naive " << nl(wo) << "; kernel out " << ko.row(wo) << "; reference "
          << ro.row(wo).template cast<double>();
        fail(s.str());
      }
    }
  }
  if (salt::fuzz::verbose())
    std::fprintf(stderr, "case: %s: %ld of %ld rows checked\n", what.c_str(), static_cast<long>(checked),
                 static_cast<long>(B * H * L));
}

template <class T>
void run_one(byte_reader& in) {
  idx B = in.integer(1, 2), H = in.integer(1, 3);
  if (in.one_in(40)) B = 0;
  if (in.one_in(40)) H = 0;
  const idx L = in.one_in(16) ? 0 : in.one_in(4) ? in.integer(1, 130) : in.integer(1, 64);
  idx d = in.one_in(4) ? in.integer(1, 40) : in.integer(1, 12);
  if (in.one_in(40)) d = 0;  // rotations need d >= 1: rejected
  const idx dv = in.one_in(12) ? 0 : in.integer(1, 16);
  salt::lsh_options opt;
  opt.n_hashes = in.integer(1, 4);
  opt.n_buckets.clear();
  for (idx f = 0, factors = in.integer(1, 2); f < factors; ++f) opt.n_buckets.push_back(2 * in.integer(1, 8));
  if (in.one_in(48)) opt.n_buckets.back() += 1;  // odd: rejected
  switch (in.choice(4)) {
    case 0: opt.chunk_length = in.integer(1, 8); break;
    case 1: opt.chunk_length = in.integer(1, 70); break;
    case 2: opt.chunk_length = 64; break;
    default: opt.chunk_length = std::max<idx>(L, 1);
  }
  opt.chunks_before = in.integer(0, 3);
  opt.chunks_after = in.integer(0, 2);
  if (in.one_in(48)) opt.chunks_before = -1;  // rejected
  opt.causal = in.flag();
  opt.bucket_pure = in.flag();
  const bool shared = in.flag();
  // Keep each case cheap: the oracle lists (1 + before + after) c keys for every sorted row.
  const idx band = (1 + opt.chunks_before + opt.chunks_after) * std::min(opt.chunk_length, std::max<idx>(L, 1));
  if (B * H * opt.n_hashes * (L + opt.chunk_length) * band * (d + dv + 4) > 2'000'000) {
    B = std::min<idx>(B, 1);
    H = std::min<idx>(H, 1);
    opt.n_hashes = 1;
  }
  std::ostringstream w;
  w << (std::is_same_v<T, double> ? "double" : "float") << ", batch " << B << ", heads " << H << ", L " << L << ", d "
    << d << ", dv " << dv << ", n_hashes " << opt.n_hashes << ", buckets " << opt.buckets() << " (" << opt.n_buckets.size()
    << " factors), chunk " << opt.chunk_length << ", before " << opt.chunks_before << ", after " << opt.chunks_after
    << (opt.causal ? ", causal" : "") << (opt.bucket_pure ? ", bucket_pure" : "") << (shared ? ", shared rotations" : "");
  salt::random_generator rng(in.seed());
  std::vector<idx> lengths(static_cast<std::size_t>(B));
  std::vector<std::uint8_t> flags(static_cast<std::size_t>(B * L), 1);
  switch (in.choice(3)) {
    case 0:
      return run_case<T>(in, salt::no_mask{}, flags, B, H, L, d, dv, opt, shared, rng, w.str() + ", no padding");
    case 1:
      for (auto& n : lengths) n = in.flag() ? L : in.integer(0, L);
      if (in.one_in(48)) lengths.push_back(0);  // rejected
      return run_case<T>(in, salt::key_padding{lengths}, flags, B, H, L, d, dv, opt, shared, rng, w.str() + ", key_padding");
    default: {
      const double p = in.byte() / 255.0;
      for (auto& f : flags) f = rng.uniform() < p ? 0 : 1;
      return run_case<T>(in, salt::key_mask{flags}, flags, B, H, L, d, dv, opt, shared, rng, w.str() + ", key_mask");
    }
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  return salt::fuzz::run_in_either_precision(data, size, [](byte_reader& in, auto t) { run_one<decltype(t)>(in); });
}
