#pragma once
/// \file lsh/chunk_mask.hpp
/// The two policies LSH attention runs the engine with, over the hash-sorted sequence of every round
/// concatenated (rows = n_hashes * round_length per head): `lsh_chunk_mask` allows a sorted query to see the
/// keys of its own chunk and of `before` / `after` neighbouring chunks, cyclically, subject to tests on the
/// rows' original positions; `lsh_self_score` gives every copy of a query's own position the score -1e5 and
/// counts a chunk that the cyclic band reaches several times (short sequences) that many times.
/// Internal: salt::lsh_attention builds both (lsh/attention.hpp).

#include <algorithm>
#include <cmath>
#include <cstdint>

#include "../config.hpp"
#include "../detail/simd.hpp"
#include "../mask/concept.hpp"
#include "../score/concept.hpp"

namespace salt::detail {

/// Shape of the chunk band over the concatenated sorted rounds of one head.
struct lsh_band {
  index chunk = 1;      ///< c: rows per chunk
  index chunks = 1;     ///< N: chunks in all rounds together (rows = N * c)
  index before = 0, after = 0;
  index round_rows = 1; ///< rows per round (a multiple of c)

  /// How often chunk ck enters chunk cq's softmax: the number of offsets o in [-before, after] with
  /// cq + o = ck modulo N (HuggingFace's _look_adjacent concatenates those chunks, repeats included).
  index multiplicity(index cq, index ck) const noexcept {
    index r = (ck - cq) % chunks;
    if (r < 0) r += chunks;
    // o = r + t N for integers t with -before <= o <= after; r < N and after >= 0, so for r > after the
    // largest such t is -1.
    const index hi = after >= r ? (after - r) / chunks : -1;
    const index lo = -((before + r) / chunks);
    return hi >= lo ? hi - lo + 1 : 0;
  }
  /// Whether some chunk enters a softmax more than once.
  bool repeats() const noexcept { return before + after + 1 > chunks; }
  /// Whether chunk ck is in chunk cq's band (when nothing repeats: cheaper than multiplicity).
  bool in_band(index cq, index ck) const noexcept {
    if (before + after + 1 >= chunks) return true;
    index r = ck - cq;
    if (r < 0) r += chunks;
    return r <= after || r >= chunks - before;
  }
};

/// Which original positions pq[i], i < n <= 64, a key at position pk is tested against.
enum class position_test { same, not_after };

/// Bit i (i < n <= 64) set where pq[i] == pk (same) or pk <= pq[i] (not_after). Causal LSH asks this for
/// every key of every block, so a loop per query cost more than the rest of the mask; simd.hpp compares
/// sixteen positions at once where it can.
template <position_test Test>
query_bits position_bits(const std::int32_t* pq, index n, std::int32_t pk) noexcept {
  return compare_bits<Test == position_test::same ? int_compare::equal : int_compare::at_least>(pq, n, pk);
}

/// Allowed (sorted query, sorted key) pairs: key in the query's chunk band, and either the same original
/// position (a copy of the query itself, always kept: its score is -1e5, see lsh_self_score) or a key that is
/// not padding, not in the future (causal) and, under bucket_pure, hashed to the query's bucket in the same
/// round. The per-row arrays hold, for head (b, h), `rows` entries at offset (b * heads + h) * rows.
struct lsh_chunk_mask {
  const std::int32_t* pos = nullptr;     // (batch, heads, rows): original position of each sorted row
  const std::int32_t* bucket = nullptr;  // (batch, heads, rows): bucket in its round; -1 for padding keys
  index heads = 1, rows = 0;
  lsh_band band;
  bool causal = false, bucket_pure = false;
  bool plain = false;  ///< no causal, no bucket purity, no padding: whole band blocks are full

  const std::int32_t* pos_of(const problem_shape& s) const noexcept { return pos + (s.batch * heads + s.head) * rows; }
  const std::int32_t* bucket_of(const problem_shape& s) const noexcept {
    return bucket + (s.batch * heads + s.head) * rows;
  }

  bool allows(index q, index k, const problem_shape& s) const noexcept {
    if (!band.in_band(q / band.chunk, k / band.chunk)) return false;
    const std::int32_t* p = pos_of(s);
    const std::int32_t* bk = bucket_of(s);
    if (p[q] == p[k]) return true;
    if (bk[k] < 0) return false;
    if (causal && p[k] > p[q]) return false;
    if (bucket_pure && (bk[q] != bk[k] || q / band.round_rows != k / band.round_rows)) return false;
    return true;
  }
  static constexpr bool is_always_full() { return false; }

  /// The queries q_begin + i (i < count <= 64) that may see key k: the queries are walked chunk by chunk, so
  /// the band test is made once per chunk and the per-query loops are branch-free.
  query_bits allowed_queries(index k, index q_begin, index count, const problem_shape& s) const noexcept {
    const std::int32_t* p = pos_of(s);
    const std::int32_t* bk = bucket_of(s);
    const std::int32_t pk = p[k], bkk = bk[k];
    const index ck = k / band.chunk, rk = k / band.round_rows;
    const std::int32_t* pq = p + q_begin;
    query_bits bits = 0;
    for (index i0 = 0; i0 < count;) {
      const index cq = (q_begin + i0) / band.chunk;
      const index i1 = std::min(count, (cq + 1) * band.chunk - q_begin);
      if (!band.in_band(cq, ck)) {
        // no query of this chunk sees the key
      } else if (bkk < 0) {
        bits |= position_bits<position_test::same>(pq + i0, i1 - i0, pk) << i0;
      } else if (bucket_pure) {
        for (index i = i0; i < i1; ++i) {
          const index q = q_begin + i;
          const bool same = bk[q] == bkk && q / band.round_rows == rk;
          bits |= query_bits{pq[i] == pk || (same && (!causal || pk <= pq[i]))} << i;
        }
      } else if (causal) {
        bits |= position_bits<position_test::not_after>(pq + i0, i1 - i0, pk) << i0;  // includes pq == pk
      } else {
        bits |= detail::bit_range(i0, i1);
      }
      i0 = i1;
    }
    return bits;
  }

  /// The key blocks of a tile: the union of its chunks' bands, at most two stretches of the cyclic chunk axis;
  /// blocks every query of the tile sees in full (the intersection of the bands) are full when nothing else
  /// masks pairs.
  void plan(const block_query& bq, block_plan& out) const noexcept {
    if (bq.q_begin >= bq.q_end) return;
    const index c = band.chunk, N = band.chunks;
    const index cq0 = bq.q_begin / c, cq1 = (bq.q_end - 1) / c;
    // Union: chunks cq0 - before ... cq1 + after (cyclic); intersection: cq1 - before ... cq0 + after.
    const index u_len = std::min(cq1 - cq0 + band.before + band.after + 1, N);
    index i_len = plain ? cq0 + band.after - (cq1 - band.before) + 1 : 0;
    i_len = std::clamp<index>(i_len, 0, N);
    struct piece {
      index first, last;
    };
    auto pieces = [N](index start, index len, piece* outp) {  // a cyclic stretch as sorted linear pieces
      start %= N;
      if (start < 0) start += N;
      if (len <= 0) return 0;
      if (len >= N) {
        outp[0] = {0, N};
        return 1;
      }
      if (start + len <= N) {
        outp[0] = {start, start + len};
        return 1;
      }
      outp[0] = {0, start + len - N};
      outp[1] = {start, N};
      return 2;
    };
    piece u[2], f[2];
    const int nu = pieces(u_len >= N ? 0 : cq0 - band.before, u_len, u);
    const int nf = pieces(cq1 - band.before, i_len, f);
    for (int a = 0; a < nu; ++a) {
      index at = u[a].first;
      for (int b = 0; b < nf; ++b) {  // full pieces lie inside the union; split the union piece around them
        const index f0 = std::max(f[b].first, u[a].first), f1 = std::min(f[b].last, u[a].last);
        if (f0 >= f1) continue;
        out.add_keys(bq, at * c, f0 * c, 0, 0);
        out.add_keys(bq, f0 * c, f1 * c, f0 * c, f1 * c);
        at = f1;
      }
      out.add_keys(bq, at * c, u[a].last * c, 0, 0);
    }
  }
};

/// Scores of LSH attention: the engine's scale * q_i.q_j times key j's inverse RMS length (the keys are the
/// queries normalised: one sorted copy serves as both, and the normalisation is applied here, a row of the
/// key-major tile at a time), then every copy of the query's own position gets
/// -1e5 (HuggingFace's self_mask_value_float32: a token attends to itself only when it has no other valid
/// key), and where the cyclic band reaches a chunk m > 1 times, log m is added (the m copies of each key
/// that HuggingFace's softmax holds, merged). The self test is a diagonal when the tile's queries and keys lie
/// in one round (a position appears once per round), a full comparison otherwise.
template <class T>
struct lsh_self_score {
  const std::int32_t* pos = nullptr;  // as lsh_chunk_mask::pos
  const T* key_scale = nullptr;       // (batch, heads, rows): 1 / RMS length of each sorted row's vector
  index heads = 1, rows = 0;
  lsh_band band;
  double scale = 1;

  static constexpr bool uses_dot_product() { return true; }
  static constexpr bool is_identity() { return false; }
  double dot_scale(index) const noexcept { return scale; }

  template <class U>
  void apply(const logit_tile<U>& t, const problem_shape& s) const noexcept {
    constexpr U self_value = U(-1e5);
    const std::int32_t* p = pos + (s.batch * heads + s.head) * rows;
    const T* f = key_scale + (s.batch * heads + s.head) * rows + t.k_begin;
    for (index j = 0; j < t.keys; ++j) {
      U* row = t.key_row(j);
      const U fj = static_cast<U>(f[j]);
      for (index i = 0; i < t.queries; ++i) row[i] *= fj;
    }
    const index R = band.round_rows;
    const bool one_round = t.q_begin / R == (t.q_begin + t.queries - 1) / R &&
                           t.k_begin / R == (t.k_begin + t.keys - 1) / R && t.q_begin / R == t.k_begin / R;
    if (one_round) {
      const index lo = std::max(t.q_begin, t.k_begin), hi = std::min(t.q_begin + t.queries, t.k_begin + t.keys);
      for (index k = lo; k < hi; ++k) t.at(k - t.q_begin, k - t.k_begin) = self_value;
    } else {
      const std::int32_t* pq = p + t.q_begin;
      for (index j = 0; j < t.keys; ++j) {
        const std::int32_t pk = p[t.k_begin + j];
        U* row = t.key_row(j);
        for (index i = 0; i < t.queries; ++i) row[i] = pq[i] == pk ? self_value : row[i];
      }
    }
    if (band.repeats()) {
      for (index j = 0; j < t.keys; ++j) {
        const index ck = (t.k_begin + j) / band.chunk;
        U* row = t.key_row(j);
        for (index i = 0; i < t.queries; ++i) {
          const index m = band.multiplicity((t.q_begin + i) / band.chunk, ck);
          if (m > 1) row[i] += static_cast<U>(std::log(static_cast<double>(m)));
        }
      }
    }
  }
};

}  // namespace salt::detail
