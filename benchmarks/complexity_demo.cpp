// The complexity demo (the README's first command): every kernel salt has, over sequence lengths from
// 512 up, timed on all cores; prints time, GFLOP/s, extra memory, the fitted growth exponent and, for
// kernels that approximate, the error against exact attention; writes complexity.csv and, when gnuplot
// is installed, complexity.png (time against L, log-log).
//
//   salt_demo [--max-seconds S] [--out DIR]
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
          }};
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
          "approximate"};
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
          "own logits"};  // learned logits: a model of its own, not an approximation of dot-product attention
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
          std::move(fidelity)};
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
          "table below"};  // shared QK: errors are measured on clustered keys, against their own reference
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
  std::function<double()> error;  // ||out - exact|| / ||exact|| at L = error_max_length
};

constexpr index error_max_length = 4096;  // errors need a dense run beside the kernel's

/// ||out - exact|| / ||exact|| (Frobenius) of one call of `run` on `in`, exact being dense attention.
double relative_error(attention_inputs& in, const runner& run) {
  run(in);
  const salt::row_matrix<float> approx = Eigen::Map<const salt::row_matrix<float>>(in.out.data(), in.lq, d);
  salt::row_matrix<float> exact(in.lq, d);
  salt::attention(in.qv(), in.kv(), in.vv(), salt::tensor_view<float>::of(exact));
  return salt::bench::relative_error(approx, exact);
}

std::vector<fidelity_case> fidelity_cases() {
  constexpr index L = error_max_length;
  const std::string uniform = "q, k, v uniform in [-1, 1)";
  std::vector<fidelity_case> c;
  for (index k : {64, 256, 1024}) {
    c.push_back({"linformer N(0, 1/k)", "k = " + std::to_string(k), uniform, [k] {
                   attention_inputs in(1, 1, 1, L, L, d);
                   return relative_error(in, linformer_kernel(k, 0).prepare(L));
                 }});
  }
  // The same k with structured projections: row i of E = F averages the i-th run of L/k positions. Untrained
  // random projections mix every position into every projected key and do not approximate softmax
  // attention; how close Linformer comes depends on how well E and F fit the data (the paper learns them).
  for (index k : {64, 256, 1024}) {
    c.push_back({"linformer mean-pool", "k = " + std::to_string(k), uniform, [k] {
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
    c.push_back({"favor+ orthogonal", "m = " + std::to_string(m), "q, k in [-0.5, 0.5)", [m] {
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
    c.push_back({"lsh, chunk 64", "rounds = " + std::to_string(rounds), "64 key clusters", [rounds] {
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
  const double error = has_error ? relative_error(in, run) : std::nan("");
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

}  // namespace

int main(int argc, char** argv) {
  double max_seconds = 150;  // leave the README's 3 minutes room for the build
  std::string out_dir = ".";
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string flag = argv[i];
    if (flag == "--max-seconds") max_seconds = std::atof(argv[i + 1]);
    else if (flag == "--out") out_dir = argv[i + 1];
  }
  std::filesystem::create_directories(out_dir);
  const double peak = salt::bench::measure_fma_peak_gflops<float>(0.3);
  int threads = 1;
#if SALT_HAS_OPENMP
  threads = omp_get_max_threads();
#endif
  std::printf("salt complexity demo: d = %td, batch 1, one head, float, %d thread(s); FMA peak %.0f GFLOP/s per core\n\n",
              d, threads, peak);
  std::printf("%-22s %8s %12s %10s %8s %12s %10s\n", "kernel", "L", "time", "GFLOP/s", "of peak", "extra mem", "rel. error");

  const auto start = std::chrono::steady_clock::now();
  std::ofstream csv(out_dir + "/complexity.csv");
  csv << "kernel,L,seconds,gflops,extra_bytes,error\n";
  const auto kernels = all_kernels();
  std::vector<std::pair<std::string, double>> exponents;
  for (const auto& kernel : kernels) {
    std::vector<measurement> ms;
    for (salt::index L = 512; L <= kernel.max_length; L *= 2) {
      const double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
      if (elapsed > max_seconds) {
        std::printf("%-22s %8td  (skipped: the demo's time budget of %.0f s is spent)\n", kernel.name.c_str(), L, max_seconds);
        break;
      }
      const auto m = measure(kernel, L, L <= 4096 ? 5 : 3);
      ms.push_back(m);
      char err[32];
      std::snprintf(err, sizeof err, "%s", kernel.fidelity == "approximate" ? "-" : kernel.fidelity.c_str());
      if (!std::isnan(m.error)) std::snprintf(err, sizeof err, "%.2e", m.error);
      std::printf("%-22s %8td %10.3f ms %10.1f %7.0f%% %12s %10s\n", kernel.name.c_str(), L, m.seconds * 1e3, m.gflops,
                  100 * m.gflops / (peak * threads), human_bytes(m.extra_bytes).c_str(), err);
      csv << kernel.name << ',' << L << ',' << m.seconds << ',' << m.gflops << ',' << m.extra_bytes << ','
          << (std::isnan(m.error) ? std::string() : std::to_string(m.error)) << '\n';
      std::fflush(stdout);
    }
    exponents.emplace_back(kernel.name, growth_exponent(ms));
  }
  csv.close();

  std::printf("\nfitted growth exponent (time ~ L^k, L >= 2048):\n");
  for (const auto& [name, k] : exponents) std::printf("  %-22s k = %.2f\n", name.c_str(), k);

  std::printf("\nerror against exact attention as the budget grows (L = %td, ||out - exact|| / ||exact||):\n",
              error_max_length);
  for (const auto& c : fidelity_cases())
    std::printf("  %-22s %-13s %-28s %.3e\n", c.family.c_str(), c.budget.c_str(), c.inputs.c_str(), c.error());

  // The plot: one line per kernel, log-log.
  const std::string script = out_dir + "/complexity.gp";
  std::ofstream gp(script);
  gp << "set terminal pngcairo size 1000,700 noenhanced\nset output '" << out_dir << "/complexity.png'\n"
     << "set logscale xy 2\nset xlabel 'sequence length L'\nset ylabel 'time per call (s)'\n"
     << "set title 'salt: time against sequence length (d = " << d << ", " << threads << " threads)'\n"
     << "set key left top\nset grid\nset datafile separator ','\n"
     << "plot for [k in '";
  for (const auto& kernel : kernels) gp << kernel.name << ' ';
  gp << "'] '" << out_dir << "/complexity.csv' using (strcol(1) eq k ? $2 : NaN):3 with linespoints title k\n";
  gp.close();
  if (std::system("command -v gnuplot > /dev/null 2>&1") == 0 && std::system(("gnuplot " + script).c_str()) == 0) {
    std::printf("\nwrote %s/complexity.csv and %s/complexity.png\n", out_dir.c_str(), out_dir.c_str());
  } else {
    std::printf("\nwrote %s/complexity.csv (install gnuplot for the plot)\n", out_dir.c_str());
  }
  return 0;
}
