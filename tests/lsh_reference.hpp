#pragma once
/// \file lsh_reference.hpp
/// The oracle of LSH attention: HuggingFace's semantics written out naively (explicit chunk lists with
/// repeats, HF's -1e9 / -1e5 mask values), in any precision U. Shared by test_lsh.cpp and the LSH fuzzer.

#include <salt/lsh.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <numeric>
#include <vector>

#include "reference.hpp"

namespace salt::test {

template <class U>
using lsh_mat = row_matrix<U>;
/// Buckets of one head, (n_hashes, L), as salt::lsh_buckets returns them.
using lsh_bucket_matrix = Eigen::Matrix<index, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

/// LSH attention of one head in precision U, as HuggingFace computes it: per sorted row, the keys of its
/// chunk band listed (repeats included), scores replaced by -1e9 (padding, future, other bucket under
/// bucket_pure) and then -1e5 (own position), softmax, rounds merged by LSE. `buckets` (n_hashes, L) are
/// the hashes (ignored when L <= chunk_length), `valid` the per-key flags.
template <class U, class T>
reference_result<U> naive_lsh(const lsh_mat<T>& qk, const lsh_mat<T>& v, const lsh_bucket_matrix& buckets,
                              const lsh_options& opt, const std::vector<std::uint8_t>& valid) {
  const index L = qk.rows(), d = qk.cols(), dv = v.cols(), c = opt.chunk_length, nb = opt.buckets();
  const bool hashed = L > c;
  const index rounds = hashed ? opt.n_hashes : 1, Lp = hashed ? (L + c - 1) / c * c : L, chunk = hashed ? c : L;
  const index before = hashed ? opt.chunks_before : 0, after = hashed ? opt.chunks_after : 0;
  const bool pure = hashed && opt.bucket_pure;
  auto ok = [&](index p) { return p < L && valid[static_cast<std::size_t>(p)] != 0; };
  lsh_mat<U> q = lsh_mat<U>::Zero(Lp, d), k = lsh_mat<U>::Zero(Lp, d), vu = lsh_mat<U>::Zero(Lp, dv);
  for (index p = 0; p < L; ++p) {
    q.row(p) = qk.row(p).template cast<U>();
    const U ms = q.row(p).squaredNorm() / static_cast<U>(d);
    k.row(p) = q.row(p) / std::sqrt(ms + static_cast<U>(1e-6)) / std::sqrt(static_cast<U>(d));
    vu.row(p) = v.row(p).template cast<U>();
  }
  auto bucket = [&](index r, index p) { return ok(p) ? (hashed ? buckets(r, p) : 0) : nb; };
  std::vector<index> order;  // sorted positions of all rounds
  for (index r = 0; r < rounds; ++r) {
    std::vector<index> ps(static_cast<std::size_t>(Lp));
    std::iota(ps.begin(), ps.end(), index{0});
    std::stable_sort(ps.begin(), ps.end(), [&](index a, index b) { return bucket(r, a) < bucket(r, b); });
    order.insert(order.end(), ps.begin(), ps.end());
  }
  const index rows = rounds * Lp, chunks = rows / chunk;
  lsh_mat<U> os = lsh_mat<U>::Zero(rows, dv);
  std::vector<U> ls(static_cast<std::size_t>(rows));
  for (index s = 0; s < rows; ++s) {
    const index pq = order[static_cast<std::size_t>(s)], cq = s / chunk, rq = s / Lp;
    std::vector<index> keys;  // sorted rows
    for (index o = -before; o <= after; ++o) {
      const index ck = ((cq + o) % chunks + chunks) % chunks;
      for (index j = ck * chunk; j < (ck + 1) * chunk; ++j) keys.push_back(j);
    }
    std::vector<U> sc;
    for (const index ks : keys) {
      const index pk = order[static_cast<std::size_t>(ks)], rk = ks / Lp;
      U x = q.row(pq).dot(k.row(pk));
      if (!ok(pk) || (opt.causal && pk > pq) || (pure && (rk != rq || bucket(rk, pk) != bucket(rq, pq))))
        x = static_cast<U>(-1e9);
      if (pk == pq) x = static_cast<U>(-1e5);
      sc.push_back(x);
    }
    const U m = *std::max_element(sc.begin(), sc.end());
    U sum = 0;
    for (U& x : sc) sum += (x = std::exp(x - m));
    for (std::size_t j = 0; j < keys.size(); ++j)
      os.row(s) += sc[j] / sum * vu.row(order[static_cast<std::size_t>(keys[j])]);
    ls[static_cast<std::size_t>(s)] = m + std::log(sum);
  }
  reference_result<U> r{lsh_mat<U>::Zero(L, dv), column<U>(L)};
  for (index p = 0; p < L; ++p) {
    std::vector<index> at;
    for (index rr = 0; rr < rounds; ++rr)
      for (index s = rr * Lp; s < (rr + 1) * Lp; ++s)
        if (order[static_cast<std::size_t>(s)] == p) at.push_back(s);
    U m = -std::numeric_limits<U>::infinity();
    for (const index s : at) m = std::max(m, ls[static_cast<std::size_t>(s)]);
    U sum = 0;
    for (const index s : at) sum += std::exp(ls[static_cast<std::size_t>(s)] - m);
    const U total = m + std::log(sum);
    for (const index s : at) r.out.row(p) += std::exp(ls[static_cast<std::size_t>(s)] - total) * os.row(s);
    r.lse(p) = total;
  }
  return r;
}

}  // namespace salt::test
