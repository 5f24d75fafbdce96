#pragma once
/// \file mask/concept.hpp
/// What a mask policy is: a small value that says which (query, key) pairs may attend, and which key
/// blocks a block of queries must visit, each marked full (no per-pair test) or partial.

#include <algorithm>
#include <concepts>
#include <cstdint>
#include <span>
#include <type_traits>

#include "../config.hpp"

namespace salt {

/// Where a mask is being asked: sequence lengths and which batch item and query head.
struct problem_shape {
  index lq = 0;     ///< query tokens
  index lk = 0;     ///< key tokens
  index batch = 0;  ///< batch item of the pair
  index head = 0;   ///< query head of the pair
};

/// Sizes of a whole call, for masks and score policies that check their parameters before a kernel runs.
struct problem_dims {
  /// In order: batch items B, query heads Hq, K/V heads Hkv, query tokens Lq, key tokens Lk, the width d of
  /// queries and keys, the width dv of values.
  /// @{
  index batch = 1, q_heads = 1, kv_heads = 1, lq = 0, lk = 0, d = 0, dv = 0;
  /// @}
};

/// A query tile asking for its key blocks: queries [q_begin, q_end), key blocks of `block` keys
/// (block b covers keys [b * block, (b + 1) * block) clipped to lk).
struct block_query {
  /// The tile's queries: [q_begin, q_end).
  /// @{
  index q_begin = 0, q_end = 0;
  /// @}
  index block = 1;      ///< keys per key block
  problem_shape shape;  ///< lengths, batch item and query head of the tile

  /// Key blocks covering lk keys: ceil(lk / block).
  index key_blocks() const noexcept { return (shape.lk + block - 1) / block; }
};

/// A run of consecutive key blocks [first, last) that are all full or all partial.
struct block_run {
  /// The key blocks of the run: [first, last).
  /// @{
  index first = 0, last = 0;
  /// @}
  bool full = false;  ///< true: every pair of these blocks is allowed for the whole query tile (no per-pair test)
};

/// The key blocks one query tile visits: sorted, disjoint runs in caller-provided storage.
/// Composite masks build their parts' plans in `spare()` storage that lies after this plan.
class block_plan {
 public:
  /// `storage` holds `lists` plans of `capacity` runs each; this plan takes the first.
  block_plan(block_run* storage, index capacity, index lists) noexcept
      : runs_(storage), capacity_(capacity), lists_after_(lists - 1) {}

  /// Appends key blocks [first, last), merging with the previous run when they touch and agree.
  /// Runs must arrive in increasing order; empty ranges are ignored.
  void add(index first, index last, bool full) noexcept {
    if (first >= last) return;
    SALT_ASSERT((size_ == 0 || runs_[size_ - 1].last <= first) && "block runs must arrive sorted and disjoint");
    if (size_ > 0 && runs_[size_ - 1].last == first && runs_[size_ - 1].full == full) {
      runs_[size_ - 1].last = last;
      return;
    }
    SALT_ASSERT(size_ < capacity_ && "a block plan holds at most one run per key block");
    runs_[size_++] = block_run{first, last, full};
  }
  /// Empties the plan (its storage stays).
  void clear() noexcept { size_ = 0; }

  /// Adds the blocks of `bq` that overlap keys [k_begin, k_end), where [full_begin, full_end) is the part
  /// of that range in which every pair is allowed for the whole query tile (empty: none is known to be).
  /// The building block of interval-shaped masks (causal, padding, windows, layout rows); ranges are
  /// clipped to [0, lk) and must come in increasing order. A block an earlier range already planned
  /// stays as planned.
  void add_keys(const block_query& bq, index k_begin, index k_end, index full_begin, index full_end) noexcept {
    k_begin = std::max<index>(k_begin, 0);
    k_end = std::min(k_end, bq.shape.lk);
    if (k_begin >= k_end) return;
    const index B = bq.block;
    const index planned = size_ > 0 ? runs_[size_ - 1].last : 0;
    const index first = std::max(k_begin / B, planned), last = (k_end + B - 1) / B;
    full_begin = std::max(full_begin, k_begin);
    full_end = std::min(full_end, k_end);
    // A block is full when all of its keys lie in [full_begin, full_end); the last block is clipped to lk.
    const index f_first = std::max((full_begin + B - 1) / B, first);
    const index f_last = full_end == bq.shape.lk ? (full_end + B - 1) / B : full_end / B;
    if (full_begin >= full_end || f_first >= f_last) {
      add(first, last, false);
      return;
    }
    add(first, f_first, false);
    add(f_first, f_last, true);
    add(f_last, last, false);
  }

  /// The runs added so far, sorted and disjoint; a view of the plan's storage.
  std::span<const block_run> runs() const noexcept { return {runs_, static_cast<std::size_t>(size_)}; }
  /// Number of key blocks in the plan.
  index blocks() const noexcept {
    index n = 0;
    for (const block_run& r : runs()) n += r.last - r.first;
    return n;
  }

  /// An empty plan in the storage after this one (and everything it leaves to its own spares).
  /// `skip` lists are left for plans built earlier at this level.
  block_plan spare(index skip = 0) const noexcept {
    return block_plan(runs_ + (1 + skip) * capacity_, capacity_, lists_after_ - skip);
  }

 private:
  block_run* runs_;
  index capacity_;
  index size_ = 0;
  index lists_after_;
};

/// A mask policy: which (query, key) pairs may attend. `allows` is the per-pair truth; `is_always_full`
/// says no pair is ever masked (then the engine removes all masking code).
template <class M>
concept mask_policy = std::is_trivially_copyable_v<M> &&
    requires(const M& m, index q, index k, const problem_shape& s) {
  { m.allows(q, k, s) } noexcept -> std::same_as<bool>;
  { M::is_always_full() } -> std::same_as<bool>;
  typename std::bool_constant<M::is_always_full()>;  // must be a constant expression
};

/// How many block_plan lists a mask uses while it plans one query tile, its own plan included: 1 unless
/// the mask declares `static constexpr index plan_lists()`. A mask that builds plans of its parts (or of
/// pieces of itself) in `out.spare(...)` before merging them declares one plus the lists those take, e.g.
/// `1 + salt::plan_lists_v<A> + salt::plan_lists_v<B>` for a composite of A and B; the engine then gives
/// every tile that much storage, so planning never allocates.
template <class M>
inline constexpr index plan_lists_v = [] {
  if constexpr (requires { { M::plan_lists() } -> std::convertible_to<index>; }) return index{M::plan_lists()};
  else return index{1};
}();

/// A mask that enumerates its own key blocks. Masks without `plan` are treated as "every block partial",
/// which is correct but visits and tests every pair.
template <class M>
concept planned_mask = mask_policy<M> && requires(const M& m, const block_query& bq, block_plan& out) {
  { m.plan(bq, out) } noexcept;
};

/// Which of up to 64 consecutive queries may see a key: bit i stands for query q_begin + i.
using query_bits = std::uint64_t;
/// The most queries one query_bits answers for (the engine's query tiles are at most this long).
inline constexpr index query_bits_width = 64;

/// A mask that answers for one key and a run of up to 64 queries at once (much faster than a call of
/// `allows` per pair): bit i of `allowed_queries(k, q_begin, count, s)` is `allows(q_begin + i, k, s)`, for
/// i < count <= 64, and the bits from count up are 0. Interval-shaped masks answer with a few shifts, and
/// compositions with one `|` or `&`; the engine then masks a key row of its key-major logit tile with
/// the bits, a packet at a time.
template <class M>
concept column_mask = mask_policy<M> && requires(const M& m, index k, index q, index count, const problem_shape& s) {
  { m.allowed_queries(k, q, count, s) } noexcept -> std::same_as<query_bits>;
};

namespace detail {

/// Bits [lo, hi) of a query_bits set, for 0 <= lo and hi <= 64 (empty when lo >= hi).
constexpr query_bits bit_range(index lo, index hi) noexcept {
  if (lo >= hi) return 0;
  const query_bits ones = hi - lo >= query_bits_width ? ~query_bits{0} : (query_bits{1} << (hi - lo)) - 1;
  return ones << lo;
}

/// The queries of one key, through `allowed_queries` where the mask has it, else `allows` per query.
template <mask_policy M>
query_bits allowed_queries(const M& mask, index k, index q_begin, index count, const problem_shape& s) noexcept {
  SALT_ASSERT(count >= 0 && count <= query_bits_width && "allowed_queries answers for at most 64 queries");
  if constexpr (column_mask<M>) {
    return mask.allowed_queries(k, q_begin, count, s);
  } else {
    query_bits bits = 0;
    for (index i = 0; i < count; ++i) bits |= query_bits{mask.allows(q_begin + i, k, s)} << i;
    return bits;
  }
}

/// Bit i set when position begin + i lies in [first, last], for i < count <= 64.
constexpr query_bits allow_interval(index begin, index count, index first, index last) noexcept {
  return bit_range(std::max<index>(first - begin, 0), std::min<index>(last - begin + 1, count));
}

/// Plans the key blocks of one query tile, whatever the mask offers.
template <mask_policy M>
void plan_blocks(const M& mask, const block_query& bq, block_plan& out) noexcept {
  out.clear();
  if constexpr (planned_mask<M>) {
    mask.plan(bq, out);
  } else {
    out.add(0, bq.key_blocks(), M::is_always_full());
  }
}

}  // namespace detail
}  // namespace salt
