#pragma once
/// \file lsh/workspace.hpp
/// The buffers of an LSH attention call: every head's hashes, sorted order and sorted copies of its rows,
/// which the engine then reads as an ordinary (batch, heads, rows, features) problem. They are kept per
/// calling thread between calls (grown, never shrunk; released at thread exit), because touching fresh pages
/// for the sorted copies cost more than the attention itself at long lengths.

#include <algorithm>
#include <cstdint>

#include "../config.hpp"
#include "../detail/workspace.hpp"
#include "../tensor.hpp"
#include "options.hpp"

namespace salt::detail {

/// The sizes of one call. Each head's sorted sequence is `rounds` rounds of Lp rows: n_hashes rounds of L
/// rounded up to a multiple of chunk_length, or, when L <= chunk_length (not hashed), one round of L rows
/// that is one chunk.
struct lsh_shape {
  index batch = 0, heads = 0, L = 0, d = 0, dv = 0;
  bool hashed = false;
  index rounds = 1, Lp = 0, chunk = 0;
  index rows = 0;  ///< rounds * Lp: sorted rows per head

  template <class T>
  static lsh_shape of(const tensor_view<const T>& qk, index dv, const lsh_options& opt) noexcept {
    lsh_shape s{qk.batch, qk.heads, qk.tokens, qk.features, dv};
    const index c = opt.chunk_length;
    s.hashed = s.L > c;
    s.rounds = s.hashed ? opt.n_hashes : 1;
    s.Lp = s.hashed ? (s.L + c - 1) / c * c : s.L;
    s.chunk = s.hashed ? c : s.L;
    s.rows = s.rounds * s.Lp;
    return s;
  }
  index all_heads() const noexcept { return batch * heads; }
};

/// One call's buffers, sized for `rows` sorted rows in all heads together (rows = batch * heads * rounds *
/// padded length) of d and dv features. Every entry a call reads it writes first.
template <class T>
struct lsh_workspace {
  aligned_buffer<T> q;          // (heads, rows, d): sorted qk rows, the queries and (scaled) the keys
  aligned_buffer<T> key_scale;  // (heads, rows): 1 / RMS length of each sorted row
  aligned_buffer<T> v, o;       // (heads, rows, dv): sorted values; the engine's outputs
  aligned_buffer<T> lse;        // (heads, rows): the engine's log-sum-exp of each sorted row
  aligned_buffer<std::int32_t> pos, bucket;  // (heads, rows): original position, bucket (-1: padding key)
  aligned_buffer<std::int32_t> hashes;       // (heads, rounds, L) <= rows: bucket of each position
  aligned_buffer<index> where;               // (heads, rounds, L) <= rows: sorted row of each position
  aligned_buffer<T> inv_rms;                 // (heads, L) <= rows: 1 / RMS length of each position
  index rows = 0, d = 0, dv = 0;

  /// Grows the buffers to hold at least (rows, d, dv); keeps them when they are large enough.
  void reserve(index rows_needed, index d_needed, index dv_needed) {
    if (rows_needed <= rows && d_needed <= d && dv_needed <= dv) return;
    rows = std::max(rows, rows_needed);
    d = std::max(d, d_needed);
    dv = std::max(dv, dv_needed);
    const index n = std::max<index>(rows, 1);
    grow(q, n * std::max<index>(d, 1));
    grow(key_scale, n);
    grow(v, n * std::max<index>(dv, 1));
    grow(o, n * std::max<index>(dv, 1));
    grow(lse, n);
    grow(pos, n);
    grow(bucket, n);
    grow(hashes, n);
    grow(where, n);
    grow(inv_rms, n);
  }

  /// The workspace of the calling thread.
  static lsh_workspace& for_this_thread() {
    thread_local lsh_workspace ws;
    return ws;
  }

 private:
  template <class U>
  static void grow(aligned_buffer<U>& buffer, index size) {
    if (buffer.size() >= size) return;
    buffer = aligned_buffer<U>();  // release before allocating the larger buffer
    buffer = aligned_buffer<U>(size);
  }
};

}  // namespace salt::detail
