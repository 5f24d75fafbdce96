// The complexity demo (the README's first command): every kernel salt has, over sequence lengths from
// 512 up, timed on all cores; prints time, GFLOP/s, extra memory, the fitted growth exponent and, for
// kernels that approximate, the error against exact attention; writes complexity.csv (a row per kernel per
// length) and complexity_error.csv (error against budget), which scripts/plot_complexity.py draws.
// Each kernel's length ladder is planned as it runs, from the times it has measured, so that every kernel
// gets its share of the time budget and at least min_lengths lengths on any machine.
//
//   salt_demo [--max-seconds S] [--max-length L] [--out DIR]
//   salt_demo --list      (the kernels' names, one per line)
#include <salt/salt.hpp>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "common/alloc_counter.hpp"
#include "common/approximations.hpp"
#include "common/fma_peak.hpp"
#include "common/problem.hpp"
#include "common/parameter_setups.hpp"
#include "common/sparse_setups.hpp"

namespace {

using salt::index;
using salt::bench::attention_inputs;

constexpr index d = 64;

/// A kernel made ready for one length: its mask and parameters built, so that calls time only the kernel.
using runner = std::function<void(attention_inputs&)>;

/// One kernel of the demo: how to prepare it at length L, how many FLOPs a call does, up to which L, and
/// whether it approximates exact attention (then the table shows its error against it).
struct kernel_entry {
  std::string name;
  index max_length;
  std::function<runner(index L)> prepare;
  std::function<double(const attention_inputs&)> flops;
  /// "exact" (the kernel computes its definition exactly; for masks, exact attention over the pairs they
  /// allow), "approximate" (then the error against exact attention is measured up to L = 4096) or another
  /// word for kernels whose definition is not an approximation of exact attention.
  std::string fidelity = "exact";
  /// exact, sparse, low-rank, synthesizer, linear or lsh: the plot's colours.
  std::string family = "exact";
  /// Whether the exact attention it approximates is causal (its error is measured against that).
  bool causal = false;
};

/// FLOPs of exact attention over `pairs` (query, key) pairs: 2 d for the logit, 2 dv for the output.
double pair_flops(double pairs) { return 4.0 * pairs * static_cast<double>(d); }

/// An exact kernel: the engine with the mask `make_mask(L)`, FLOPs from the pairs its plan visits.
template <class MakeMask>
kernel_entry exact_kernel(std::string name, index max_length, MakeMask make_mask, double flop_share = 0) {
  return {std::move(name), max_length,
          [make_mask](index L) -> runner {
            return [mask = make_mask(L)](attention_inputs& in) {
              salt::attention(in.qv(), in.kv(), in.vv(), in.ov(), mask);
            };
          },
          [make_mask, flop_share](const attention_inputs& in) {
            // Dense and causal count 4 Lq Lk d (halved for causal), as is usual; others the visited pairs.
            const double lq = static_cast<double>(in.lq), lk = static_cast<double>(in.lk);
            if (flop_share > 0) return flop_share * pair_flops(lq * lk);
            return pair_flops(static_cast<double>(salt::plan_work<float>(make_mask(in.lk), in.dims()).visited_pairs));
          },
          "exact",
          flop_share > 0 ? "exact" : "sparse"};  // dense and causal count whole matrices; masks count their pairs
}

/// Linformer with k projected keys: 2 k L (d + dv) to project, 4 Lq k d to attend.
kernel_entry linformer_kernel(index k, index max_length) {
  return {"linformer k=" + std::to_string(k), max_length,
          [k](index L) -> runner {
            return [&proj = salt::bench::linformer_for(L, k)](attention_inputs& in) {
              salt::linformer_attention(in.qv(), in.kv(), in.vv(), in.ov(), proj);
            };
          },
          [k](const attention_inputs& in) {
            const double kp = static_cast<double>(k);
            return 2.0 * kp * static_cast<double>(in.lk) * 2 * d + pair_flops(static_cast<double>(in.lq) * kp);
          },
          "approximate",
          "low-rank"};
}

/// A Synthesizer score policy on the engine, dense mask: `logit_flops` per pair for its logits, 2 dv for
/// the output.
template <class MakeScore>
kernel_entry synthesizer_kernel(std::string name, index max_length, MakeScore make_score, double logit_flops) {
  return {std::move(name), max_length,
          [make_score](index L) -> runner {
            return [make_score, L](attention_inputs& in) {
              salt::attention(in.qv(), in.kv(), in.vv(), in.ov(), salt::no_mask{}, make_score(L, in));
            };
          },
          [logit_flops](const attention_inputs& in) {
            return (logit_flops + 2.0 * d) * static_cast<double>(in.lq) * static_cast<double>(in.lk);
          },
          "own logits",  // learned logits: a model of its own, not an approximation of dot-product attention
          "synthesizer"};
}

/// Linear attention with feature map `map` (m features from p rows of W), non-causal or causal (chunked).
/// FAVOR+ and FAVOR trig estimate softmax attention; ReLU and elu + 1 are kernels of their own.
template <bool Causal, class Map>
kernel_entry linear_kernel(std::string name, index max_length, Map map, index m, index p,
                           std::string fidelity = "own kernel") {
  return {std::move(name), max_length,
          [map](index) -> runner {
            return [map](attention_inputs& in) {
              if constexpr (Causal) salt::linear_attention(in.qv(), in.kv(), in.vv(), in.ov(), map, salt::causal{});
              else salt::linear_attention(in.qv(), in.kv(), in.vv(), in.ov(), map);
            };
          },
          [m, p](const attention_inputs& in) {
            return salt::bench::linear_flops(in.lq, d, m, p, salt::detail::linear_default_chunk, Causal);
          },
          std::move(fidelity),
          "linear",
          Causal};
}

salt::random_features<float> demo_features(index m) { return salt::random_features<float>::orthogonal(m, d, 42); }

/// LSH attention with Reformer's settings (chunks of 64, one before, its bucket rule) and `rounds` rounds;
/// the demo's q serves as the shared query/key. FLOPs from the pairs its softmaxes hold.
kernel_entry lsh_kernel(index rounds, index max_length) {
  return {"lsh rounds=" + std::to_string(rounds), max_length,
          [rounds](index L) -> runner {
            const auto opt = std::make_shared<salt::lsh_options>(salt::bench::reformer_options(L, rounds, false));
            const auto rot = std::make_shared<salt::lsh_rotations<float>>(salt::lsh_rotations<float>::gaussian(1, d, *opt, 7));
            return [opt, rot](attention_inputs& in) { salt::lsh_attention<float>(in.qv(), in.vv(), in.ov(), *rot, *opt); };
          },
          [rounds](const attention_inputs& in) {
            return pair_flops(salt::lsh_visited_pairs(in.lq, salt::bench::reformer_options(in.lq, rounds, false)));
          },
          "table below",  // shared QK: errors are measured on clustered keys, against their own reference
          "lsh"};
}

std::vector<kernel_entry> all_kernels() {
  std::vector<kernel_entry> k;
  k.push_back(exact_kernel("dense", 16384, [](index) { return salt::no_mask{}; }, 1.0));
  k.push_back(exact_kernel("causal", 65536, [](index) { return salt::causal{}; }, 0.5));
  namespace sb = salt::bench;
  k.push_back(exact_kernel("sliding_window w=256", 262144, [](index) { return sb::local_window(); }));
  k.push_back(exact_kernel("longformer w=256 g=16", 262144, sb::longformer));
  k.push_back(exact_kernel("bigbird B=64 r=3", 262144, sb::bigbird_mask));
  k.push_back(exact_kernel("block_layout B=64", 262144, sb::layout_mask));
  k.push_back(exact_kernel("segments 2048", 262144, sb::segments_mask));
  k.push_back(exact_kernel("strided 128 & causal", 32768, sb::strided_causal));
  k.push_back(exact_kernel("fixed 128/8 & causal", 32768, sb::fixed_causal));
  k.push_back(linformer_kernel(sb::linformer_k, 262144));
  k.push_back(synthesizer_kernel(
      "synth. random", 8192,
      [](index L, const attention_inputs&) { return salt::synthesizer_random<float>::shared(sb::synthesizer_table_for(L)); },
      1.0));
  k.push_back(synthesizer_kernel(
      "synth. factorized k=8", 16384,
      [](index L, const attention_inputs&) {
        const auto& f = sb::synthesizer_factors_for(L);
        return salt::synthesizer_factorized<float>::shared(f.r1, f.r2);
      },
      2.0 * sb::synthesizer_rank));
  k.push_back(synthesizer_kernel(
      "synth. dense h=64", 8192,
      [](index L, const attention_inputs& in) {
        // The MLP's input is each query's own vector (d_model = d).
        const auto& w = sb::synthesizer_mlp_for(L, d);
        return salt::synthesizer_dense<float>{in.qv(), w.w1.data(), w.b1.data(), w.w2.data(), w.b2.data(),
                                              1, d, sb::synthesizer_hidden, L};
      },
      2.0 * sb::synthesizer_hidden));
  k.push_back(synthesizer_kernel(
      "dot + synth. random", 8192,
      [](index L, const attention_inputs&) {
        return salt::dot_product{} + salt::synthesizer_random<float>::shared(sb::synthesizer_table_for(L));
      },
      2.0 * d + 1));
  k.push_back(linear_kernel<false>("favor+ m=256", 1 << 20, salt::favor_plus<float>(demo_features(256)), 256, 256,
                                      "approximate"));
  k.push_back(linear_kernel<true>("favor+ causal m=256", 1 << 20, salt::favor_plus<float>(demo_features(256)), 256,
                                  256, "approximate"));
  k.push_back(linear_kernel<false>("favor trig m=2x128", 262144, salt::favor_trig<float>(demo_features(128)), 256, 128,
                                   "approximate"));
  k.push_back(linear_kernel<false>("relu m=256", 262144, salt::relu_features<float>(demo_features(256)), 256, 256));
  k.push_back(linear_kernel<false>("elu+1", 262144, salt::elu_plus_one{}, d, 0));
  k.push_back(linear_kernel<true>("elu+1 causal", 262144, salt::elu_plus_one{}, d, 0));
  k.push_back(lsh_kernel(2, 262144));
  return k;
}

/// One approximate kernel at one budget, for the table of errors against exact attention.
struct fidelity_case {
  std::string family, budget, inputs;
  double budget_value;  // k, m or rounds: the error plot's x
  std::function<double()> error;  // ||out - exact|| / ||exact|| at L = error_max_length
};

constexpr index error_max_length = 4096;  // errors need a dense run beside the kernel's

/// ||out - exact|| / ||exact|| (Frobenius) of one call of `run` on `in`, exact being softmax attention over
/// the same pairs: dense, or causal for a causal kernel (against dense, a causal kernel's error would be the
/// distance between two different attentions, which the demo once printed as FAVOR+ causal's 2.7-3.3).
double relative_error(attention_inputs& in, const runner& run, bool causal = false) {
  run(in);
  const salt::row_matrix<float> approx = Eigen::Map<const salt::row_matrix<float>>(in.out.data(), in.lq, d);
  salt::row_matrix<float> exact(in.lq, d);
  if (causal) salt::attention(in.qv(), in.kv(), in.vv(), salt::tensor_view<float>::of(exact), salt::causal{});
  else salt::attention(in.qv(), in.kv(), in.vv(), salt::tensor_view<float>::of(exact));
  return salt::bench::relative_error(approx, exact);
}

std::vector<fidelity_case> fidelity_cases() {
  constexpr index L = error_max_length;
  const std::string uniform = "q, k, v uniform in [-1, 1)";
  std::vector<fidelity_case> c;
  for (index k : {64, 256, 1024}) {
    c.push_back({"linformer N(0, 1/k)", "k = " + std::to_string(k), uniform, static_cast<double>(k), [k] {
                   attention_inputs in(1, 1, 1, L, L, d);
                   return relative_error(in, linformer_kernel(k, 0).prepare(L));
                 }});
  }
  // The same k with structured projections: row i of E = F averages the i-th run of L/k positions. Untrained
  // random projections mix every position into every projected key and do not approximate softmax
  // attention; how close Linformer comes depends on how well E and F fit the data (the paper learns them).
  for (index k : {64, 256, 1024}) {
    c.push_back({"linformer mean-pool", "k = " + std::to_string(k), uniform, static_cast<double>(k), [k] {
                   salt::row_matrix<float> e = salt::row_matrix<float>::Zero(k, L);
                   for (index j = 0; j < L; ++j) e(j * k / L, j) = static_cast<float>(k) / static_cast<float>(L);
                   const auto proj = salt::linformer_projections<float>::from_matrices(salt::linformer_sharing::shared_kv, {e});
                   attention_inputs in(1, 1, 1, L, L, d);
                   return relative_error(in, [&proj](attention_inputs& x) {
                     salt::linformer_attention(x.qv(), x.kv(), x.vv(), x.ov(), proj);
                   });
                 }});
  }
  // Random features estimate softmax well where query and key norms are small (their variance grows like
  // exp(|q' + k'|^2)): the inputs are halved.
  for (index m : {16, 64, 256, 1024}) {
    c.push_back({"favor+ orthogonal", "m = " + std::to_string(m), "q, k in [-0.5, 0.5)", static_cast<double>(m), [m] {
                   attention_inputs in(1, 1, 1, L, L, d);
                   for (float& x : in.q) x *= 0.5f;
                   for (float& x : in.k) x *= 0.5f;
                   const salt::favor_plus<float> map(demo_features(m));
                   return relative_error(in, [&map](attention_inputs& x) {
                     salt::linear_attention(x.qv(), x.kv(), x.vv(), x.ov(), map);
                   });
                 }});
  }
  for (index rounds : {1, 2, 4, 8}) {
    c.push_back({"lsh, chunk 64", "rounds = " + std::to_string(rounds), "64 key clusters", static_cast<double>(rounds), [rounds] {
                   const salt::bench::clustered_problem p(L, d);
                   const auto opt = salt::bench::reformer_options(L, rounds, false);
                   const auto rot = salt::lsh_rotations<float>::gaussian(1, d, opt, 7);
                   return salt::bench::relative_error(salt::lsh_attention(p.qk, p.v, rot, opt), p.exact);
                 }});
  }
  return c;
}

struct measurement {
  index length;
  double seconds, gflops, extra_bytes, error;
};

/// Median of `reps` calls (after one warm-up call, which also measures the extra memory).
measurement measure(const kernel_entry& kernel, index L, int reps) {
  attention_inputs in(1, 1, 1, L, L, d);
  const runner run = kernel.prepare(L);
  salt::bench::reset_alloc_stats();
  run(in);
  const double extra = static_cast<double>(salt::bench::read_alloc_stats().peak_live);
  std::vector<double> t;
  for (int r = 0; r < reps; ++r) {
    const auto t0 = std::chrono::steady_clock::now();
    run(in);
    t.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  }
  std::sort(t.begin(), t.end());
  const double median = t[t.size() / 2];
  const bool has_error = kernel.fidelity == "approximate" && L <= error_max_length;
  const double error = has_error ? relative_error(in, run, kernel.causal) : std::nan("");
  return {L, median, kernel.flops(in) / median * 1e-9, extra, error};
}

/// Least-squares slope of log(time) against log(L) over lengths >= 2048 (shorter ones are dominated by
/// fixed costs): 2 for quadratic kernels, 1 for linear ones.
double growth_exponent(const std::vector<measurement>& m) {
  double sx = 0, sy = 0, sxx = 0, sxy = 0;
  int n = 0;
  for (const auto& p : m) {
    if (p.length < 2048) continue;
    const double x = std::log(static_cast<double>(p.length)), y = std::log(p.seconds);
    sx += x, sy += y, sxx += x * x, sxy += x * y, ++n;
  }
  if (n < 2) return std::nan("");
  return (n * sxy - sx * sy) / (n * sxx - sx * sx);
}

std::string human_bytes(double b) {
  char s[32];
  if (b < 1024) std::snprintf(s, sizeof s, "%.0f B", b);
  else if (b < 1024 * 1024) std::snprintf(s, sizeof s, "%.1f KiB", b / 1024);
  else std::snprintf(s, sizeof s, "%.1f MiB", b / 1024 / 1024);
  return s;
}

/// The single-core FMA peak, robustly: the best of several short measurements (one low reading, taken while a
/// neighbour loads the core, would make every "of peak" figure too high).
double robust_fma_peak() {
  double best = 0;
  for (int r = 0; r < 5; ++r) best = std::max(best, salt::bench::measure_fma_peak_gflops<float>(0.06));
  return best;
}

/// Each kernel's ladder: lengths 512, 1024, ... up to its max_length, at least min_lengths of them, and
/// further lengths only while the time they are predicted to take fits the kernel's share of the budget.
constexpr int min_lengths = 4;

/// Calls a measurement at L makes: a warm-up, the timed ones, and for an approximate kernel an error run.
int calls_at(index L) { return 1 + (L <= 4096 ? 5 : 3); }

}  // namespace

int main(int argc, char** argv) {
  double max_seconds = 150;  // leave the README's 3 minutes room for the build
  salt::index max_length = salt::index{1} << 20;
  std::string out_dir = ".";
  if (argc == 2 && std::string(argv[1]) == "--list") {  // the kernels, one per line, for tests
    for (const auto& kernel : all_kernels()) std::printf("%s\n", kernel.name.c_str());
    return 0;
  }
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string flag = argv[i];
    if (flag == "--max-seconds") max_seconds = std::atof(argv[i + 1]);
    else if (flag == "--max-length") max_length = std::atol(argv[i + 1]);
    else if (flag == "--out") out_dir = argv[i + 1];
  }
  std::filesystem::create_directories(out_dir);
  double peak = robust_fma_peak();
  int threads = 1;
#if SALT_HAS_OPENMP
  threads = omp_get_max_threads();
#endif
  std::printf("salt complexity demo: d = %td, batch 1, one head, float, %d thread(s); FMA peak %.0f GFLOP/s per core"
              " (best of 5 short runs)\n\n", d, threads, peak);
  std::printf("%-22s %8s %12s %10s %8s %12s %10s\n", "kernel", "L", "time", "GFLOP/s", "of peak", "extra mem", "rel. error");

  const auto now = [] { return std::chrono::steady_clock::now(); };
  const auto since = [&](auto t0) { return std::chrono::duration<double>(now() - t0).count(); };
  const auto start = now();
  std::ofstream csv(out_dir + "/complexity.csv");
  csv << "kernel,family,L,seconds,tokens_per_second,gflops,extra_bytes,error\n";
  const auto kernels = all_kernels();
  std::vector<std::pair<std::string, double>> exponents;
  std::vector<std::string> shortened;
  bool above_peak = false;
  for (std::size_t n = 0; n < kernels.size(); ++n) {
    const kernel_entry& kernel = kernels[n];
    // This kernel's share: what is left of the budget, split over the kernels still to run.
    const double share = std::max(0.0, max_seconds - since(start)) / static_cast<double>(kernels.size() - n);
    const auto kernel_start = now();
    std::vector<measurement> ms;
    const salt::index top = std::min(kernel.max_length, max_length);
    for (salt::index L = 512; L <= top; L *= 2) {
      // A call at 2L takes the last call's time times the growth seen between the last two lengths
      // (4 before there are two, as for a quadratic kernel).
      double predicted = 0;
      if (!ms.empty()) {
        const double t = ms.back().seconds;
        const double growth = ms.size() >= 2 ? std::clamp(t / ms[ms.size() - 2].seconds, 1.5, 4.5) : 4.0;
        predicted = calls_at(L) * t * growth;
      }
      if (static_cast<int>(ms.size()) >= min_lengths && since(kernel_start) + predicted > share) {
        shortened.push_back(kernel.name + ": to L = " + std::to_string(L / 2) + " (of " + std::to_string(top) + ")");
        break;
      }
      if (predicted > 3) {
        std::printf("  ... %s at L = %td: about %.0f s\r", kernel.name.c_str(), L, predicted);
        std::fflush(stdout);
      }
      const auto m = measure(kernel, L, L <= 4096 ? 5 : 3);
      ms.push_back(m);
      char err[32];
      std::snprintf(err, sizeof err, "%s", kernel.fidelity == "approximate" ? "(L>4096)" : kernel.fidelity.c_str());
      if (!std::isnan(m.error)) std::snprintf(err, sizeof err, "%.2e", m.error);
      const double of_peak = 100 * m.gflops / (peak * threads);
      above_peak |= of_peak > 100;
      std::printf("%-22s %8td %10.3f ms %10.1f %7.0f%%%s %11s %10s\n", kernel.name.c_str(), L, m.seconds * 1e3,
                  m.gflops, of_peak, of_peak > 100 ? "!" : " ", human_bytes(m.extra_bytes).c_str(), err);
      csv << '"' << kernel.name << "\"," << kernel.family << ',' << L << ',' << m.seconds << ','
          << static_cast<double>(L) / m.seconds << ',' << m.gflops << ',' << m.extra_bytes << ','
          << (std::isnan(m.error) ? std::string() : std::to_string(m.error)) << '\n';
      std::fflush(stdout);
    }
    exponents.emplace_back(kernel.name, growth_exponent(ms));
  }
  csv.close();
  const double peak_after = robust_fma_peak();
  std::printf("\nFMA peak re-measured at the end: %.0f GFLOP/s per core (start: %.0f)\n", peak_after, peak);
  if (above_peak)
    std::printf("! above 100%% of the peak: the peak was measured low (the core was shared); read those rows' share "
                "against %.0f GFLOP/s\n", std::max(peak, peak_after));
  std::printf("rel. error: ||out - exact|| / ||exact|| against softmax attention over the same pairs (causal for causal\n"
              "kernels), measured up to L = %td, where exact attention is cheap enough to run beside; \"own kernel\"\n"
              "and \"own logits\" kernels define attention of their own and approximate nothing; LSH's error is in the\n"
              "last table, on keys that cluster, as LSH assumes.\n", error_max_length);
  std::printf("extra mem: the peak of bytes the call allocates beyond its inputs and outputs. The engine's kernels\n"
              "hold per thread a few tiles (50-65 KiB at d = 64) and the block plans (24 bytes per key block), and for\n"
              "masks with global rows 8 bytes per query tile and the cut tiles' partial rows: it grows like L / 64.\n"
              "LSH holds its sorted copies (rounds x L x (d + dv) values), the Sparse Transformer patterns their\n"
              "passes' partial results (L x (dv + 1) each), causal linear attention its scan's block states.\n");
  if (!shortened.empty()) {
    std::printf("\nranges shortened to fit the %.0f s budget (--max-seconds raises it):\n", max_seconds);
    for (const auto& line : shortened) std::printf("  %s\n", line.c_str());
  }

  std::printf("\nfitted growth exponent (time ~ L^k, L >= 2048):\n");
  for (const auto& [name, k] : exponents) std::printf("  %-22s k = %.2f\n", name.c_str(), k);

  std::printf("\nerror against exact attention as the budget grows (L = %td, ||out - exact|| / ||exact||):\n",
              error_max_length);
  std::ofstream errors(out_dir + "/complexity_error.csv");
  errors << "family,budget,budget_value,inputs,error\n";
  for (const auto& c : fidelity_cases()) {
    const double e = c.error();
    std::printf("  %-22s %-13s %-28s %.3e\n", c.family.c_str(), c.budget.c_str(), c.inputs.c_str(), e);
    errors << '"' << c.family << "\",\"" << c.budget << "\"," << c.budget_value << ",\"" << c.inputs << "\"," << e << '\n';
  }
  errors.close();
  std::printf("\nwrote %s/complexity.csv and %s/complexity_error.csv (scripts/plot_complexity.py draws them)\n",
              out_dir.c_str(), out_dir.c_str());
  return 0;
}
