#pragma once
/// \file linear/attention.hpp
/// Kernelized linear attention (Katharopoulos et al. 2020; Performer, Choromanski et al. 2021): softmax(Q
/// K^T) is replaced by phi(Q) phi(K)^T for a feature map phi, so a head costs O(L m (d + dv)), not O(L^2 d).
///
///     salt::favor_plus<float> phi(salt::random_features<float>::orthogonal(256, 64, /*seed=*/7));
///     auto out = salt::linear_attention(q, k, v, phi);                       // one head, non-causal
///     auto dec = salt::linear_attention(q, k, v, phi, salt::causal{});       // causal (chunked)
///     salt::linear_attention(qv, kv, vv, outv, salt::elu_plus_one{}, salt::causal{} & salt::key_padding{lens});
///
/// Forms. Non-causal: out = phi(Q) (phi(K)^T V) / (phi(Q) . sum_j phi(k_j)). Causal: the same with the sums
/// over the keys each query may see, computed in chunks of C queries: the state S = sum phi(k) v^T, z = sum
/// phi(k) of all earlier chunks is read with one GEMM, the chunk's own keys through the masked C x C matrix
/// phi(Q_c) phi(K_c)^T (quadratic only inside the chunk), and the state is then advanced with phi(K_c)^T V_c.
/// Every step is a GEMM; there are no per-token rank-1 updates.
///
/// Masks. A state can follow a prefix of the keys or drop keys, not an arbitrary set of pairs, so the kernel
/// takes the masks that say they are prefix-shaped (salt::prefix_mask: `causal` with its alignment and
/// offset, as for exact attention, or a user's mask with last_key), key-only (salt::key_length_mask:
/// `key_padding`, `no_mask`, a user's mask with valid_keys), or both (`causal & key_padding`). A prefix mask
/// selects the chunked form. Key padding is applied after phi (elu(0) + 1 is not 0).
///
/// Stabilisation. Maps with a log scale (FAVOR+, trig) give phi(x) = exp(s(x)) f(x). A query's scale cancels
/// between numerator and denominator and is dropped. A key is weighted exp(s(k) - r) against a running
/// reference r, the log-offset of the state: r is raised, and S, z rescaled by exp(r_old - r_new), only when
/// a key's s exceeds r by more than a margin (2^40 in float, 2^320 in double), so weights stay below that
/// margin and nothing overflows. In the causal form a new reference starts a new pass over the chunk (same
/// GEMM shapes, the other keys zeroed), so a query's output depends only on the keys it may see: changing a
/// later token (by finite values) leaves earlier outputs unchanged, bit for bit. The non-causal form raises
/// the reference per block of keys.
///
/// Denominator guard: a row whose denominator is below the smallest normal number in magnitude (zero when
/// the row may see no key, or all its features underflow) outputs zeros; otherwise out = numerator /
/// denominator. With positive maps (FAVOR+, ReLU with epsilon, elu + 1) the output is then a convex
/// combination of the visible values. NaN passes through.
///
/// GQA: query head h reads K/V head h / (Hq / Hkv). Non-causal calls build each K/V head's state once and
/// share it across its query heads; causal calls run each query head independently. Threads run over
/// (batch, head) items, and a causal head of more than 1024 queries over blocks of its queries too (a scan
/// of the blocks' states: causal_scan); results are identical for every thread count.

#include <Eigen/Core>

#include <algorithm>
#include <cmath>
#include <limits>
#include <type_traits>

#include "../config.hpp"
#include "../detail/checks.hpp"
#include "../detail/gemm.hpp"
#include "../detail/one_head.hpp"
#include "../detail/parallel.hpp"
#include "../detail/simd.hpp"
#include "../detail/workspace.hpp"
#include "../error.hpp"
#include "../mask.hpp"
#include "../run_options.hpp"
#include "../tensor.hpp"
#include "feature_map.hpp"
#include "state.hpp"

namespace salt {

/// The masks linear attention takes: prefix-shaped, key-only, or both (mask/capabilities.hpp).
template <class M>
concept linear_attention_mask = prefix_mask<M> || key_length_mask<M>;

namespace detail {

template <class Mask>
constexpr void check_linear_mask() {
  static_assert(linear_attention_mask<Mask>,
                "salt::linear_attention takes masks that are prefix-shaped or key-only, or both (salt::prefix_mask, "
                "salt::key_length_mask: causal, key_padding, causal & key_padding, no_mask): kernelized attention "
                "sums over keys through a state, which can follow a prefix (causal) or drop keys (padding) but not "
                "an arbitrary set of (query, key) pairs.");
}

/// Query chunk of the causal form: each chunk pays C^2 (m + dv) for its own keys and C m dv to read the
/// state. BM_causal_chunk (salt_linear_bench) measures the choice: at d = dv = 64, m = 256, float, chunks of
/// 32 to 64 cost about the same per token and 128 or 256 cost more; 64 keeps the products' shapes larger,
/// which other instruction sets and double need more.
inline constexpr index linear_default_chunk = 64;

/// One thread's buffers for one call, allocated once, and the state of the head it is working on.
///
/// The state and a chunk's keys share one row-major buffer `state` (m, width), width = dv + chunk: columns
/// [0, dv) hold S = sum phi(k) v^T, columns dv on the chunk's (weighted) key features phi(K_c)^T. So one
/// product phi(Q_c) [S | phi(K_c)^T] gives the numerators and the chunk's scores [num | A] at once, in
/// `reads` (C, width), and the state update S += phi(K_c)^T V_c reads the keys where they lie; every product
/// reads its right-hand side's rows in place. z = sum phi(k) and the denominators are vectors beside them.
template <class T>
struct linear_workspace {
  index chunk, m, dv, width;  // width = dv + chunk: columns of `state` and `reads`
  aligned_buffer<T> phi_q, phi_k, cq, ck, weights, state, z, reads, dens;
  state_reference<T> ref;  // log-offset of S and z

  linear_workspace(index chunk_, index m_, index dv_)
      : chunk(chunk_), m(m_), dv(dv_), width(dv_ + chunk_), phi_q(chunk_ * m_), phi_k(chunk_ * m_), cq(chunk_),
        ck(chunk_), weights(chunk_), state(m_ * width), z(m_), reads(chunk_ * width), dens(chunk_) {}

  T* keys() noexcept { return state.data() + dv; }               // (m, chunk), stride width: phi(K_c)^T, weighted
  T* num(index i) noexcept { return reads.data() + i * width; }  // (dv) of row i
  T* scores(index i) noexcept { return reads.data() + i * width + dv; }  // (chunk) of row i

  void reset_state() noexcept {
    for (index l = 0; l < m; ++l) std::fill_n(state.data() + l * width, dv, T(0));
    std::fill_n(z.data(), m, T(0));
    ref = state_reference<T>{};
  }
  /// S then z into to ((dv + 1) m), and back.
  void save_state(T* to) const noexcept {
    for (index l = 0; l < m; ++l) std::copy_n(state.data() + l * width, dv, to + l * dv);
    std::copy_n(z.data(), m, to + m * dv);
  }
  void load_state(const T* from) noexcept {
    for (index l = 0; l < m; ++l) std::copy_n(from + l * dv, dv, state.data() + l * width);
    std::copy_n(from + m * dv, m, z.data());
  }
  /// Moves the reference to r (> ref), rescaling the state.
  void raise_ref(T r) noexcept { ref.raise(r, state.data(), m, dv, width, z.data()); }
};

/// phi of rows [r0, r0 + n) of a head into buf (n, m), log scales into scale.
template <class T, class Map>
void map_rows(const Map& map, const head_view<const T>& x, index r0, index n, index m, T* buf, T* scale) {
  const feature_input<T> in(x.row(r0), n, x.cols, Eigen::OuterStride<>(x.row_stride));
  map.map(in, feature_output<T>(buf, n, m, Eigen::OuterStride<>(m)), Map::log_scaled() ? scale : nullptr);
}

/// ws.keys() = the n features in ws.phi_k, transposed, weighted against the reference for log-scaled maps:
/// keys outside [pa, pb) weigh 0 (a later pass takes them).
template <class T, class Map>
void stage_keys(linear_workspace<T>& ws, index n, index pa, index pb) {
  const index m = ws.m, width = ws.width;
  T* w = ws.weights.data();
  for (index j = 0; j < n; ++j) {
    if constexpr (Map::log_scaled()) w[j] = j >= pa && j < pb ? ws.ref.weight(ws.ck[j]) : T(0);
    else w[j] = T(1);
  }
  // Blocks of 16 x 16: the reads and the strided writes both stay within a few cache lines. A key of weight 0
  // is written as zeros, not as 0 * phi: the features of a key whose scale overflowed to -inf may be NaN.
  constexpr index B = 16;
  for (index l0 = 0; l0 < m; l0 += B)
    for (index j0 = 0; j0 < n; j0 += B)
      for (index j = j0, je = std::min(n, j0 + B); j < je; ++j)
        for (index l = l0, le = std::min(m, l0 + B); l < le; ++l)
          ws.keys()[l * width + j] = w[j] == T(0) ? T(0) : ws.phi_k[j * m + l] * w[j];
}

/// S += phi(K)^T V and z += phi(K)^T 1 for the n staged keys from j0 on, values rows v from j0 on (row stride ldv).
template <class T>
void update_state(linear_workspace<T>& ws, const T* v, index ldv, index n, index j0 = 0) {
  gemm<T, false, false>(ws.m, ws.dv, n, ws.keys() + j0, ws.width, v + j0 * ldv, ldv, ws.state.data(), ws.width,
                        gemm_update::chain);
  for (index l = 0; l < ws.m; ++l) {
    const T* row = ws.keys() + l * ws.width + j0;
    T sum = ws.z[l];
    for (index j = 0; j < n; ++j) sum += row[j];
    ws.z[l] = sum;
  }
}

/// Raises the reference past the largest key of the n in ws.ck when it passes the margin.
template <class T>
void raise_for(linear_workspace<T>& ws, index n) {
  T top = -std::numeric_limits<T>::infinity();
  for (index j = 0; j < n; ++j) top = ws.ck[j] > top ? ws.ck[j] : top;
  if (ws.ref.passed_by(top)) ws.raise_ref(top);
}

/// Adds keys [j0, j0 + n) of a head to the state, in any order (no output reads the state in between).
template <class T, class Map>
void absorb_keys(const Map& map, linear_workspace<T>& ws, const head_view<const T>& k, const head_view<const T>& v,
                 index j0, index n) {
  map_rows(map, k, j0, n, ws.m, ws.phi_k.data(), ws.ck.data());
  if constexpr (Map::log_scaled()) raise_for(ws, n);
  stage_keys<T, Map>(ws, n, 0, n);
  update_state(ws, v.row(j0), v.row_stride, n);
}

/// Output row = num / den under the guard (zeros where |den| is below the smallest normal).
template <class T>
void write_row(const T* num, T den, index dv, T* out) noexcept {
  if (std::abs(den) < std::numeric_limits<T>::min()) {
    std::fill_n(out, dv, T(0));
    return;
  }
  for (index c = 0; c < dv; ++c) out[c] = num[c] / den;
}

/// [num | A] (n, dv + nk) = phi_q (n, m) [S | keys (m, nk)], and dens = phi_q z, for the n rows in ws.phi_q.
template <class T>
void read_state(linear_workspace<T>& ws, index n, index nk) {
  gemm<T, false, false>(n, ws.dv + nk, ws.m, ws.phi_q.data(), ws.m, ws.state.data(), ws.width, ws.reads.data(),
                        ws.width, gemm_update::overwrite);
  using vec = Eigen::Matrix<T, Eigen::Dynamic, 1>;
  Eigen::Map<vec>(ws.dens.data(), n).noalias() =
      Eigen::Map<const row_matrix<T>>(ws.phi_q.data(), n, ws.m) * Eigen::Map<const vec>(ws.z.data(), ws.m);
}

/// Non-causal queries of one head against the finished state in ws.
template <class T, class Map>
void noncausal_queries(const Map& map, linear_workspace<T>& ws, const head_view<const T>& q, const head_view<T>& out) {
  for (index i0 = 0; i0 < q.rows; i0 += ws.chunk) {
    const index n = std::min(ws.chunk, q.rows - i0);
    map_rows(map, q, i0, n, ws.m, ws.phi_q.data(), ws.cq.data());
    read_state(ws, n, 0);
    for (index i = 0; i < n; ++i) write_row(ws.num(i), ws.dens[i], ws.dv, out.row(i0 + i));
  }
}

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

template <class T, class Mask, class Map>
void linear_attention_impl(const tensor_view<const T>& q, const tensor_view<const T>& k,
                           const tensor_view<const T>& v, const tensor_view<T>& out, const Map& map, const Mask& mask,
                           const run_options& opts, index chunk) {
  const index B = q.batch, Hq = q.heads, Hkv = k.heads, dv = v.features;
  if (B == 0 || Hq == 0 || q.tokens == 0 || dv == 0) return;
  const index m = map.features(q.features), group = Hq / Hkv;
  auto length = [&](index b) { return valid_keys_of(mask, problem_shape{q.tokens, k.tokens, b, 0}); };
  auto make_workspace = [&] { return linear_workspace<T>(chunk, m, dv); };

  if constexpr (prefix_mask<Mask>) {
    const index shift = mask.last_key(0, problem_shape{q.tokens, k.tokens, 0, 0});
    const index heads = B * Hq, block = linear_scan_block(q.tokens, chunk);
    auto head_of = [&](index it) {
      const index b = it / Hq, h = it % Hq;
      return causal_head_views<T>{q.head(b, h), k.head(b, h / group), v.head(b, h / group), out.head(b, h), length(b)};
    };
    if (q.tokens > block) {
      causal_scan<T>(map, heads, q.tokens, block, shift, m, dv, head_of, make_workspace, opts);
      return;
    }
    parallel_for(heads, thread_count(opts.threads, heads), make_workspace, [&](index it, linear_workspace<T>& ws) {
      const causal_head_views<T> h = head_of(it);
      causal_head(map, ws, h.q, h.k, h.v, h.out, shift, h.len);
    });
  } else {
    // The state of every (batch item, K/V head): S (m, dv) then z (m).
    const index per = (dv + 1) * m, states_count = B * Hkv, items = B * Hq;
    aligned_buffer<T> states(states_count * per);
    parallel_for(states_count, thread_count(opts.threads, states_count), make_workspace,
                 [&](index it, linear_workspace<T>& ws) {
                   const index b = it / Hkv, h = it % Hkv;
                   ws.reset_state();
                   for (index j0 = 0, len = length(b); j0 < len; j0 += chunk)
                     absorb_keys(map, ws, k.head(b, h), v.head(b, h), j0, std::min(chunk, len - j0));
                   ws.save_state(states.data() + it * per);
                 });
    parallel_for(items, thread_count(opts.threads, items), make_workspace, [&](index it, linear_workspace<T>& ws) {
      const index b = it / Hq, h = it % Hq;
      ws.load_state(states.data() + (b * Hkv + h / group) * per);
      noncausal_queries(map, ws, q.head(b, h), out.head(b, h));
    });
  }
}

}  // namespace detail

/// Multi-head linear attention over strided (batch, heads, tokens, features) views, written into `out`.
/// `mask` is prefix-shaped, key-only or both (linear_attention_mask): no_mask, key_padding, causal (any
/// alignment and offset), causal & key_padding, or a user's mask offering last_key and/or valid_keys; a
/// prefix mask selects the chunked form. The map's features are computed in the inputs' type T.
template <class T, class Map, class Mask = no_mask>
  requires feature_map<Map, T>
void linear_attention(const std::type_identity_t<tensor_view<const T>>& q,
                      const std::type_identity_t<tensor_view<const T>>& k,
                      const std::type_identity_t<tensor_view<const T>>& v, const tensor_view<T>& out, const Map& map,
                      const Mask& mask = {}, const run_options& opts = {}) {
  static_assert(std::is_same_v<T, float> || std::is_same_v<T, double>,
                "salt::linear_attention computes in float or double.");
  detail::check_linear_mask<Mask>();
  constexpr const char* api = "salt::linear_attention";
  detail::check_qkv(q, k, v, out, opts, api, "linear attention");
  detail::check_policies(detail::dims_of(q, k, v), api, mask);
  detail::check_valid_keys(mask, k.batch, q.tokens, k.tokens, api);
  detail::check_feature_map(map, q.features, api);
  detail::linear_attention_impl<T>(q, k, v, out, map, mask, opts, detail::linear_default_chunk);
}

/// One head: q (Lq, d), k (Lk, d), v (Lk, dv) -> (Lq, dv). Row-major inputs are read in place; a
/// column-major one is copied once. `mask` as for the multi-head form (key_padding with one length).
template <class DQ, class DK, class DV, class Map, class Mask = no_mask>
  requires feature_map<Map, typename DQ::Scalar>
row_matrix<typename DQ::Scalar> linear_attention(const Eigen::MatrixBase<DQ>& q, const Eigen::MatrixBase<DK>& k,
                                                 const Eigen::MatrixBase<DV>& v, const Map& map, const Mask& mask = {},
                                                 const run_options& opts = {}) {
  using T = typename DQ::Scalar;
  static_assert(std::is_same_v<T, typename DK::Scalar> && std::is_same_v<T, typename DV::Scalar>,
                "salt::linear_attention: q, k and v must have the same scalar type.");
  detail::check_linear_mask<Mask>();
  return detail::one_head<T>(
      [&](const auto& qv, const auto& kv, const auto& vv, const auto& outv) {
        linear_attention<T>(qv, kv, vv, outv, map, mask, opts);
      },
      q, k, v);
}

}  // namespace salt
