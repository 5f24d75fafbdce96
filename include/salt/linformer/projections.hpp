#pragma once
/// \file linformer/projections.hpp
/// The projections E and F of a Linformer layer (k, max_len), owned: drawn from the library's generator
/// (N(0, 1/k) or Xavier-normal) or given, shared per head, across heads, or between keys and values.

#include <Eigen/Core>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <type_traits>
#include <vector>

#include "../config.hpp"
#include "../error.hpp"
#include "../random.hpp"
#include "../tensor.hpp"

namespace salt {

/// Which projections are shared, as in the paper's section 4.
enum class linformer_sharing {
  per_head,      ///< one (E, F) pair per K/V head
  shared_heads,  ///< one (E, F) pair for every head ("headwise sharing")
  shared_kv,     ///< one matrix, E = F, for keys, values and every head ("key-value sharing")
};

/// The projections E and F of a Linformer layer, each (k, max_len), owned: (pairs, k, max_len) row-major per
/// matrix, pairs = heads() (F not stored under shared_kv). Sharing across layers is the caller's: pass the
/// same object to every layer. Memory: pairs * k * max_len values for E, as many for F.
template <class T>
class linformer_projections {
 public:
  static_assert(std::is_same_v<T, float> || std::is_same_v<T, double>,
                "salt::linformer_projections holds float or double.");
  /// A read-only (k, max_len) row-major view of one projection, into this object's storage.
  using matrix_map = Eigen::Map<const row_matrix<T>>;

  /// Entries drawn from N(0, 1/k), the paper's fixed random projection (Johnson-Lindenstrauss scaling).
  /// `heads` is the number of K/V heads served: per_head draws one pair for each, the shared modes draw
  /// one and serve any number. Draw order: E of head 0, F of head 0, E of head 1, ... (shared_kv: E only),
  /// each row by row, every entry stddev * random_generator(seed).normal() rounded to T; so float and double
  /// projections of one seed agree to rounding. Throws salt::error when k, max_len or heads < 1.
  static linformer_projections gaussian(index k, index max_len, index heads, linformer_sharing mode,
                                        std::uint64_t seed) {
    check_sizes(k, max_len, heads, "salt::linformer_projections::gaussian");
    return draw(k, max_len, heads, mode, seed, 1.0 / std::sqrt(static_cast<double>(k)));
  }

  /// Xavier (Glorot) normal, the initialiser of a learned projection: N(0, 2 / (max_len + k)), the layer
  /// mapping max_len positions to k. Same draw order and errors as gaussian().
  static linformer_projections xavier_normal(index k, index max_len, index heads, linformer_sharing mode,
                                             std::uint64_t seed) {
    check_sizes(k, max_len, heads, "salt::linformer_projections::xavier_normal");
    return draw(k, max_len, heads, mode, seed, std::sqrt(2.0 / static_cast<double>(k + max_len)));
  }

  /// Given matrices, copied: per_head takes one E and one F per K/V head, shared_heads one of each,
  /// shared_kv one E and no F. Every matrix is (k, max_len) with the same k and max_len; otherwise, or when
  /// the counts do not fit the mode, throws salt::error naming salt::linformer_projections::from_matrices.
  static linformer_projections from_matrices(linformer_sharing mode, const std::vector<row_matrix<T>>& e,
                                             const std::vector<row_matrix<T>>& f = {}) {
    constexpr const char* api = "salt::linformer_projections::from_matrices";
    const std::size_t want_f = mode == linformer_sharing::shared_kv ? 0 : e.size();
    detail::require(!e.empty(), api, ": no E matrix given");
    detail::require(mode == linformer_sharing::per_head || e.size() == 1, api, ": ", e.size(),
                    " E matrices given, but shared modes take one");
    detail::require(f.size() == want_f, api, ": ", e.size(), " E and ", f.size(), " F matrices given, but ",
                    mode == linformer_sharing::shared_kv ? "shared_kv takes no F (F = E)" : "E and F must pair up");
    const index k = e[0].rows(), max_len = e[0].cols();
    check_sizes(k, max_len, 1, api);
    for (std::size_t h = 0; h < e.size(); ++h) {
      detail::require(e[h].rows() == k && e[h].cols() == max_len, api, ": E[", h, "] is ", e[h].rows(), " x ",
                      e[h].cols(), " but E[0] is ", k, " x ", max_len);
      if (want_f)
        detail::require(f[h].rows() == k && f[h].cols() == max_len, api, ": F[", h, "] is ", f[h].rows(), " x ",
                        f[h].cols(), " but E[0] is ", k, " x ", max_len);
    }
    linformer_projections p(mode, k, max_len, static_cast<index>(e.size()));
    const index n = k * max_len;
    for (std::size_t h = 0; h < e.size(); ++h) {
      std::copy_n(e[h].data(), n, p.e_.data() + static_cast<index>(h) * n);
      if (want_f) std::copy_n(f[h].data(), n, p.f_.data() + static_cast<index>(h) * n);
    }
    return p;
  }

  index k() const noexcept { return k_; }              ///< projected length
  index max_len() const noexcept { return max_len_; }  ///< longest sequence the projections take
  linformer_sharing sharing() const noexcept { return mode_; }  ///< which projections are shared
  index heads() const noexcept { return pairs_; }  ///< distinct E matrices: 1 unless per_head
  /// The stored pair K/V head h uses (stored_e, stored_f): h itself under per_head, else 0.
  index pair_of(index h) const noexcept { return mode_ == linformer_sharing::per_head ? h : 0; }
  /// E of K/V head h, (k, max_len), a view into this object; every head gets the same one unless per_head.
  matrix_map e(index h) const& noexcept { return {e_.data() + pair_of(h) * k_ * max_len_, k_, max_len_}; }
  /// F of K/V head h, (k, max_len), a view into this object; E itself under shared_kv.
  matrix_map f(index h) const& noexcept {
    return {(mode_ == linformer_sharing::shared_kv ? e_ : f_).data() + pair_of(h) * k_ * max_len_, k_, max_len_};
  }
  /// Stored pair p's E (p < heads()), writable: what an optimiser steps (linformer_projection_gradients holds
  /// its gradient at the same index).
  Eigen::Map<row_matrix<T>> stored_e(index p) & noexcept { return {e_.data() + p * k_ * max_len_, k_, max_len_}; }
  /// Stored pair p's F, writable; E itself under shared_kv, whose one matrix serves keys and values.
  Eigen::Map<row_matrix<T>> stored_f(index p) & noexcept {
    return {(mode_ == linformer_sharing::shared_kv ? e_ : f_).data() + p * k_ * max_len_, k_, max_len_};
  }
  /// A view of a temporary's E or F would dangle at the end of the statement: it does not compile.
  template <class Self = linformer_projections>
  matrix_map e(index) const&& {
    static_assert(sizeof(Self) == 0,
                  "salt::linformer_projections::e and ::f view the projections, which must outlive the view: keep "
                  "them in a variable, not a temporary.");
    return {nullptr, 0, 0};
  }
  /// As e() on a temporary: does not compile.
  template <class Self = linformer_projections>
  matrix_map f(index) const&& {
    static_assert(sizeof(Self) == 0,
                  "salt::linformer_projections::e and ::f view the projections, which must outlive the view: keep "
                  "them in a variable, not a temporary.");
    return {nullptr, 0, 0};
  }

 private:
  linformer_projections(linformer_sharing mode, index k, index max_len, index pairs)
      : e_(static_cast<std::size_t>(pairs * k * max_len)),
        f_(mode == linformer_sharing::shared_kv ? 0 : static_cast<std::size_t>(pairs * k * max_len)),
        k_(k),
        max_len_(max_len),
        pairs_(pairs),
        mode_(mode) {}

  static void check_sizes(index k, index max_len, index heads, const char* api) {
    detail::require(k >= 1 && max_len >= 1, api, ": k and max_len must be >= 1, got k = ", k, ", max_len = ", max_len);
    detail::require(heads >= 1, api, ": heads must be >= 1, got ", heads);
  }

  static linformer_projections draw(index k, index max_len, index heads, linformer_sharing mode, std::uint64_t seed,
                                    double stddev) {
    linformer_projections p(mode, k, max_len, mode == linformer_sharing::per_head ? heads : 1);
    random_generator rng(seed);
    const index n = k * max_len;
    for (index h = 0; h < p.pairs_; ++h) {
      for (index i = 0; i < n; ++i) p.e_[static_cast<std::size_t>(h * n + i)] = static_cast<T>(stddev * rng.normal());
      if (mode == linformer_sharing::shared_kv) continue;
      for (index i = 0; i < n; ++i) p.f_[static_cast<std::size_t>(h * n + i)] = static_cast<T>(stddev * rng.normal());
    }
    return p;
  }

  std::vector<T> e_, f_;  // (pairs, k, max_len) each; f_ empty under shared_kv
  index k_ = 0, max_len_ = 0, pairs_ = 0;
  linformer_sharing mode_ = linformer_sharing::per_head;
};

}  // namespace salt
