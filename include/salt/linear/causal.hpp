#pragma once
/// \file linear/causal.hpp
/// The causal form of linear attention: chunks of queries read the state of earlier chunks with one GEMM and
/// their own keys through the masked in-chunk scores, in passes that keep a row's arithmetic independent of
/// the keys it cannot see; a long head runs as a two-level scan over blocks of chunks. Internal:
/// linear/attention.hpp drives it.

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "../config.hpp"
#include "../detail/gemm.hpp"
#include "../detail/parallel.hpp"
#include "../detail/simd.hpp"
#include "../detail/workspace.hpp"
#include "../run_options.hpp"
#include "../tensor.hpp"
#include "workspace.hpp"

namespace salt::detail {

/// One query chunk of the causal form and its own keys: queries [i0, i0 + rows) and keys [a, a + nk); query
/// i0 + i sees them up to local key i + diag. The values vc (nk rows, stride ldv) are read in place.
template <class T>
struct causal_chunk {
  index i0, rows, a, nk, diag;
  const T* vc;
  index ldv;
  bool values_finite;  // no NaN or +-Inf in vc: A V may then run as one product
};

/// Where the pass over the chunk's keys that starts at key pa ends: at the next key whose scale passes the
/// reference by the margin (maps with a log scale), having raised the reference for key pa if it passes.
/// Pass shapes never change, so a row's arithmetic depends only on the keys it sees.
template <class T, class Map>
index pass_end(linear_workspace<T>& ws, index nk, index pa) noexcept {
  if constexpr (Map::log_scaled()) {
    if (nk == 0) return nk;
    if (ws.ref.passed_by(ws.ck[pa])) ws.raise_ref(ws.ck[pa]);
    index pb = pa + 1;
    while (pb < nk && !ws.ref.passed_by(ws.ck[pb])) ++pb;
    return pb;
  } else {
    (void)ws, (void)pa;
    return nk;
  }
}

/// The in-chunk scores A (rows, nk) in ws.reads, after read_state: the causal mask inside the chunk, the
/// visible scores joining each row's denominator, and num += A V over the visible keys.
template <class T>
void add_chunk_scores(linear_workspace<T>& ws, const causal_chunk<T>& ch) noexcept {
  const index dv = ws.dv;
  for (index i = 0; i < ch.rows; ++i) {
    T* ai = ws.scores(i);
    const index seen = std::clamp<index>(i + ch.diag + 1, 0, ch.nk);
    std::fill(ai + seen, ai + ch.nk, T(0));
    T den = ws.dens[i];
    for (index j = 0; j < seen; ++j) den += ai[j];
    ws.dens[i] = den;
  }
  if (ch.values_finite) {
    gemm<T, false, false>(ch.rows, dv, ch.nk, ws.scores(0), ws.width, ch.vc, ch.ldv, ws.num(0), ws.width,
                          gemm_update::chain);
    return;
  }
  // 0 * inf would leak a later value into earlier rows: sum only the visible keys.
  for (index i = 0; i < ch.rows; ++i)
    for (index j = 0, seen = std::clamp<index>(i + ch.diag + 1, 0, ch.nk); j < seen; ++j)
      for (index c = 0; c < dv; ++c) ws.num(i)[c] += ws.scores(i)[j] * ch.vc[j * ch.ldv + c];
}

/// Output rows [r0, r1) of the chunk from ws.reads: zeros for a row that sees no key at all.
template <class T>
void write_chunk_rows(linear_workspace<T>& ws, const causal_chunk<T>& ch, index r0, index r1,
                      const head_view<T>& out) noexcept {
  for (index i = r0; i < r1; ++i) {
    if (i + ch.diag < 0) std::fill_n(out.row(ch.i0 + i), ws.dv, T(0));
    else write_row(ws.num(i), ws.dens[i], ws.dv, out.row(ch.i0 + i));
  }
}

/// One pass over the chunk's keys [pa, pb) (the others weigh 0): answers the rows whose last visible key
/// lies in the pass, then adds the pass's keys to the state.
template <class T, class Map>
void causal_pass(linear_workspace<T>& ws, const causal_chunk<T>& ch, index pa, index pb, const head_view<T>& out) {
  stage_keys<T, Map>(ws, ch.nk, pa, pb);
  // Rows this pass answers: last visible key in [pa, pb); the first pass also takes rows that see no key of
  // the chunk, the last one rows past the chunk's keys.
  const index r0 = pa == 0 ? 0 : std::clamp<index>(pa - ch.diag, 0, ch.rows);
  const index r1 = pb == ch.nk ? ch.rows : std::clamp<index>(pb - ch.diag, 0, ch.rows);
  if (r0 < r1) {
    read_state(ws, ch.rows, ch.nk);
    if (ch.nk > 0) add_chunk_scores(ws, ch);
    write_chunk_rows(ws, ch, r0, r1, out);
  }
  if (ch.nk == 0) return;
  // Keys outside this pass weigh 0, but 0 * inf would still carry a non-finite value of a later pass's key
  // into the state that this chunk's next passes read for rows that do not see that key: such chunks add
  // only this pass's keys.
  if (ch.values_finite) update_state(ws, ch.vc, ch.ldv, ch.nk);
  else update_state(ws, ch.vc, ch.ldv, pb - pa, pa);
}

/// Keys [j0, j1) of a head added to the state in ws, a chunk at a time.
template <class T, class Map>
void absorb_range(const Map& map, linear_workspace<T>& ws, const head_view<const T>& k, const head_view<const T>& v,
                  index j0, index j1) {
  for (index j = j0; j < j1; j += ws.chunk) absorb_keys(map, ws, k, v, j, std::min(ws.chunk, j1 - j));
}

/// Causal queries [q0, q1) of one head (q0 a multiple of the chunk), in chunks, from the state in ws, which
/// holds the keys before the first chunk's own: query i sees keys j <= i + shift, j < len.
template <class T, class Map>
void causal_queries(const Map& map, linear_workspace<T>& ws, const head_view<const T>& q, const head_view<const T>& k,
                    const head_view<const T>& v, const head_view<T>& out, index shift, index len, index q0, index q1) {
  const index m = ws.m, dv = ws.dv, C = ws.chunk;
  for (index i0 = q0; i0 < q1; i0 += C) {
    const index rows = std::min(C, q1 - i0);
    const index a = std::clamp<index>(i0 + shift, 0, len), b = std::clamp<index>(i0 + rows + shift, 0, len);
    const index nk = b - a;
    map_rows(map, q, i0, rows, m, ws.phi_q.data(), ws.cq.data());
    if (nk > 0) map_rows(map, k, a, nk, m, ws.phi_k.data(), ws.ck.data());
    const T* vc = nk > 0 ? v.row(a) : nullptr;
    const causal_chunk<T> ch{i0, rows, a, nk, i0 + shift - a, vc, v.row_stride,
                             nk == 0 || all_finite(vc, nk, dv, v.row_stride)};
    // Passes over the chunk's keys: one, unless a key's scale jumps past the reference margin; a pass starts
    // at that key, with the reference raised to its scale.
    index pa = 0;
    do {
      const index pb = pass_end<T, Map>(ws, nk, pa);
      causal_pass<T, Map>(ws, ch, pa, pb, out);
      pa = pb;
    } while (pa < nk);
  }
}

/// One query head, causal, as one work item: query i sees keys j <= i + shift, j < len.
template <class T, class Map>
void causal_head(const Map& map, linear_workspace<T>& ws, const head_view<const T>& q, const head_view<const T>& k,
                 const head_view<const T>& v, const head_view<T>& out, index shift, index len) {
  ws.reset_state();
  absorb_range(map, ws, k, v, 0, std::clamp<index>(shift, 0, len));  // keys every query sees before the diagonal
  causal_queries(map, ws, q, k, v, out, shift, len, 0, q.rows);
}

/// A causal head longer than one block runs as a two-level scan, so that one long head spreads over threads:
/// its queries are cut into blocks of whole chunks; the keys of each block (and those before the first
/// block's diagonal) are summed into a local state, in parallel; the local states are added up in a fixed
/// order (an inclusive scan, per head); then each block's queries run from the state of the keys before
/// it, in parallel. Blocks depend on the length only, never on the thread count, so results do not either.
/// A head of at most linear_scan_min_chunks chunks is one block and runs as one item (causal_head); at most
/// linear_scan_max_blocks blocks bound the states held, heads * blocks * (m (dv + 1) + 1) elements.
inline constexpr index linear_scan_min_chunks = 16, linear_scan_max_blocks = 32;

/// Queries per scan block of a causal head of `rows` queries: whole chunks.
inline index linear_scan_block(index rows, index chunk) noexcept {
  const index chunks = (rows + chunk - 1) / chunk;
  return chunk * std::max(linear_scan_min_chunks, (chunks + linear_scan_max_blocks - 1) / linear_scan_max_blocks);
}

/// A state saved for the scan: S (m, dv), z (m), then its reference: m (dv + 1) + 1 elements.
template <class T>
void save_scan_state(const linear_workspace<T>& ws, T* to) noexcept {
  ws.save_state(to);
  to[ws.m * (ws.dv + 1)] = ws.ref.ref;
}
template <class T>
void load_scan_state(linear_workspace<T>& ws, const T* from) noexcept {
  ws.load_state(from);
  ws.ref.ref = from[ws.m * (ws.dv + 1)];
}

/// into += from, two saved states, at the larger of their references (each rescaled to it, so weights stay
/// below the margin). A state without a reference is added as it is: it holds zeros, or the plain sums of a
/// map without a log scale.
template <class T>
void add_scan_state(T* into, const T* from, index m, index dv) noexcept {
  const index n = m * (dv + 1);
  state_reference<T> r{into[n]};
  T f = 1;
  if (from[n] != -std::numeric_limits<T>::infinity()) {
    if (from[n] > r.ref) r.raise(from[n], into, m, dv, dv, into + m * dv);
    f = std::exp(from[n] - r.ref);
  }
  for (index i = 0; i < n; ++i) into[i] += from[i] * f;
  into[n] = r.ref;
}

/// The query, key, value and output views of one causal head.
template <class T>
struct causal_head_views {
  head_view<const T> q, k, v;
  head_view<T> out;
  index len;  // valid keys
};

/// Causal heads of more than one block (see linear_scan_min_chunks): local states, scan, queries. head_of(h)
/// gives head h's views, for h < heads; every head has `rows` queries.
template <class T, class Map, class HeadOf, class Make>
void causal_scan(const Map& map, index heads, index rows, index block, index shift, index m, index dv,
                 const HeadOf& head_of, const Make& make_workspace, const run_options& opts) {
  const index blocks = (rows + block - 1) / block, per = m * (dv + 1) + 1, items = heads * blocks;
  aligned_buffer<T> states(items * per);  // (heads, blocks): the state of the keys before each block's own
  parallel_for(items, thread_count(opts.threads, items), make_workspace, [&](index it, linear_workspace<T>& ws) {
    // Segment s of a head: the keys before block 0's diagonal (s = 0), else block s - 1's own keys.
    const index seg = it % blocks;
    const causal_head_views<T> h = head_of(it / blocks);
    auto keys_before = [&](index blk) { return std::clamp<index>(blk * block + shift, 0, h.len); };
    ws.reset_state();
    absorb_range(map, ws, h.k, h.v, seg == 0 ? 0 : keys_before(seg - 1), keys_before(seg));
    save_scan_state(ws, states.data() + it * per);
  });
  parallel_for(heads, thread_count(opts.threads, heads), [] { return no_workspace{}; }, [&](index hd, no_workspace&) {
    T* first = states.data() + hd * blocks * per;
    for (index seg = 1; seg < blocks; ++seg) add_scan_state(first + seg * per, first + (seg - 1) * per, m, dv);
  });
  parallel_for(items, thread_count(opts.threads, items), make_workspace, [&](index it, linear_workspace<T>& ws) {
    const index blk = it % blocks;
    const causal_head_views<T> h = head_of(it / blocks);
    load_scan_state(ws, states.data() + it * per);
    causal_queries(map, ws, h.q, h.k, h.v, h.out, shift, h.len, blk * block, std::min(rows, (blk + 1) * block));
  });
}

}  // namespace salt::detail
