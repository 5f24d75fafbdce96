#pragma once
/// \file mask/block_layout.hpp
/// Block-sparse attention from an explicit layout: tokens are cut into blocks of B, and a 0/1 table says
/// which query block may see which key block (DeepSpeed's and OpenAI's block-sparse layouts). Two views of
/// the same mask: `block_layout` over the dense (heads, nb, nb) table, and `block_layout_csr_view` over per-row
/// lists of key blocks, which plans in O(listed blocks); `block_layout_csr` owns such lists and builds them
/// from the dense table.

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <span>
#include <type_traits>
#include <utility>
#include <vector>

#include "../borrowed_span.hpp"
#include "../error.hpp"
#include "compose.hpp"
#include "concept.hpp"

namespace salt {
namespace detail {

/// Receives the key blocks (layout columns) of one layout row in increasing order and adds their keys to a
/// plan, joining consecutive columns into one key range first.
class layout_row_sink {
 public:
  layout_row_sink(block_plan& out, const block_query& bq, index block) noexcept : out_(out), bq_(bq), block_(block) {}
  /// Column c (strictly greater than the previous one).
  void operator()(index c) noexcept {
    if (c == end_) {
      ++end_;
      return;
    }
    flush();
    begin_ = c;
    end_ = c + 1;
  }
  /// Columns [c0, c1), above every column given so far.
  void run(index c0, index c1) noexcept {
    if (c0 >= c1) return;
    if (c0 != end_) {
      flush();
      begin_ = c0;
    }
    end_ = c1;
  }
  /// Adds the pending range; call once after the last column.
  void flush() noexcept {
    if (begin_ < end_) out_.add_keys(bq_, begin_ * block_, end_ * block_, begin_ * block_, end_ * block_);
    begin_ = end_ = -2;
  }

 private:
  block_plan& out_;
  const block_query& bq_;
  index block_;
  index begin_ = -2, end_ = -2;  // pending columns [begin_, end_); -2 never equals a column
};

/// Kind of a block for a tile made of two groups of rows: visited when either group visits it, full only
/// when both see all of it.
constexpr block_kind rows_kind(block_kind x, block_kind y) noexcept {
  if (x == block_kind::none && y == block_kind::none) return block_kind::none;
  return x == block_kind::full && y == block_kind::full ? block_kind::full : block_kind::partial;
}

/// Plans a query tile of a mask defined on layout blocks of `block` tokens: query q sits at key position
/// p = q + Lk - Lq (bottom-right, like `causal`) and lies in layout row p / block; `columns(r, sink)` feeds
/// row r's key blocks to `sink` in increasing order. Each row the tile overlaps is planned on its own, then
/// the rows are merged (visited by any, full when full for all): O(rows x (columns + visited blocks)).
/// Uses three spare plans of `out`.
template <class Columns>
void plan_layout_rows(const block_query& bq, index block, block_plan& out, const Columns& columns) noexcept {
  const index shift = bq.shape.lk - bq.shape.lq;
  const index p_begin = bq.q_begin + shift, p_end = bq.q_end + shift;
  const index p0 = std::max<index>(p_begin, 0);
  if (p0 >= p_end) return;
  const index r0 = p0 / block, r1 = (p_end - 1) / block;
  const bool blind_rows = p_begin < 0;  // queries before key position 0 see nothing, so no block is full
  if (r0 == r1 && !blind_rows) {
    layout_row_sink sink(out, bq, block);
    columns(r0, sink);
    sink.flush();
    return;
  }
  block_plan acc = out.spare(0), row = out.spare(1), merged = out.spare(2);
  for (index r = r0; r <= r1; ++r) {
    block_plan& target = r == r0 ? acc : row;
    target.clear();
    layout_row_sink sink(target, bq, block);
    columns(r, sink);
    sink.flush();
    if (r == r0) continue;
    merged.clear();
    merge_plans(acc, row, rows_kind, merged);
    std::swap(acc, merged);
  }
  for (const block_run& run : acc.runs()) out.add(run.first, run.last, run.full && !blind_rows);
}

/// The sizes every layout form must have: positive block size and heads, a block count of 0 or more.
inline void check_layout_sizes(const char* api, const char* name, index block, index heads, index blocks) {
  require(block > 0, api, ": ", name, " block size must be positive, got ", block);
  require(heads >= 1, api, ": ", name, " heads must be positive, got ", heads);
  require(blocks >= 0, api, ": ", name, " block count must be >= 0, got ", blocks);
  // The sizes multiply (heads * blocks * blocks flags, blocks * block tokens): keep every product below 2^62.
  constexpr index limit = index{1} << 62;
  require(blocks < (index{1} << 31), api, ": ", name, " block count must be below 2^31, got ", blocks);
  require(heads < (index{1} << 31), api, ": ", name, " heads must be below 2^31, got ", heads);
  const index cells = std::max<index>(blocks * blocks, 1);
  require(heads <= limit / cells, api, ": ", name, " has too many heads * blocks^2 (", heads, " * ", blocks, "^2)");
  require(block <= limit / std::max<index>(blocks, 1), api, ": ", name, " covers too many tokens (", blocks,
          " blocks of ", block, ")");
}

/// Checks a well-formed layout against a call: its heads, and that it covers every key.
inline void check_layout_shape(const char* api, const char* name, index block, index heads, index blocks,
                               const problem_dims& dims) {
  require(heads == 1 || heads == dims.q_heads, api, ": ", name, " has ", heads, " heads, neither 1 nor the ",
          dims.q_heads, " query heads");
  require(blocks * block >= dims.lk, api, ": ", name, " covers ", blocks * block, " tokens but Lk is ", dims.lk);
}

}  // namespace detail

/// Block-sparse mask from a dense 0/1 layout of shape (heads, nb, nb), row-major, as DeepSpeed's
/// SparsityConfig.make_layout builds it: query q may see key k when layout[h][q / B][k / B] is non-zero.
/// `heads` = 1 shares one layout among all heads; otherwise there is one per query head (head h of the
/// call reads layout h). The last block of a sequence that is not a multiple of B is simply shorter.
/// When Lq != Lk, query i sits at key position i + Lk - Lq (bottom-right, like `causal`), so a decoding step
/// reads the layout row of its own position; queries before key position 0 see nothing. The layout may
/// cover more tokens than Lk (a layout built for the longest sequence serves shorter ones); it must cover Lk.
/// The flags are not copied: they must outlive the call (a temporary container is a compile error).
///
///     std::vector<std::uint8_t> flags(heads * nb * nb);  // 1 where query block i sees key block j
///     salt::attention(qv, kv, vv, outv, salt::block_layout{.block = 64, .heads = heads, .blocks = nb, .layout = flags});
///
/// Planning scans whole layout rows, O(nb) per layout row a tile touches; for long sequences take the CSR
/// form (`block_layout_csr`), whose plans cost only the listed blocks.
struct block_layout {
  index block = 0;   ///< B: tokens per layout block
  index heads = 1;   ///< layouts in `layout`: 1 (shared) or the number of query heads
  index blocks = 0;  ///< nb: layout blocks per side
  borrowed_span<const std::uint8_t> layout = {};  ///< (heads, nb, nb): non-zero where a query block sees a key block

  /// Layout row r of query head h.
  const std::uint8_t* row(index h, index r) const noexcept {
    return layout.data() + ((heads == 1 ? 0 : h) * blocks + r) * blocks;
  }

  /// mask_policy: the flag of the query's layout row and the key's block.
  bool allows(index q, index k, const problem_shape& s) const noexcept {
    const index p = q + s.lk - s.lq;
    return p >= 0 && row(s.head, p / block)[k / block] != 0;
  }
  /// mask_policy: false.
  static constexpr bool is_always_full() { return false; }
  static constexpr index plan_lists() { return 4; }  ///< the plan and three spares

  /// planned_mask: the flagged key blocks of the layout rows the tile overlaps; O(nb) per such row.
  void plan(const block_query& bq, block_plan& out) const noexcept {
    const index columns = std::min(blocks, (bq.shape.lk + block - 1) / block);
    detail::plan_layout_rows(bq, block, out, [&](index r, detail::layout_row_sink& sink) {
      const std::uint8_t* flags = row(bq.shape.head, r);
      for (index c = 0; c < columns; ++c)
        if (flags[c] != 0) sink(c);
    });
  }

  /// Throws salt::error naming `api` when the sizes disagree (check_flags), `heads` is not 1 or Hq, or the
  /// layout covers fewer than Lk tokens.
  void check(const problem_dims& dims, const char* api) const {
    check_flags(api);
    detail::check_layout_shape(api, "block_layout", block, heads, blocks, dims);
  }
  /// The checks that do not depend on a call: sizes agree with each other.
  void check_flags(const char* api) const {
    detail::check_layout_sizes(api, "block_layout", block, heads, blocks);
    detail::require(static_cast<index>(layout.size()) == heads * blocks * blocks, api, ": block_layout has ",
                    layout.size(), " flags but heads * blocks * blocks = ", heads, " * ", blocks, " * ", blocks, " = ",
                    heads * blocks * blocks);
  }
};

/// The same mask as `block_layout`, from per-row lists of key blocks (CSR): layout row r of head h lists
/// its key blocks in `columns[row_offsets[h * nb + r], row_offsets[h * nb + r + 1])`, strictly increasing.
/// Planning a tile costs O(listed blocks of its rows), however long the sequence. Non-owning: take it from
/// a `block_layout_csr` kept in a variable, or point it at lists of your own that outlive the call.
struct block_layout_csr_view {
  index block = 0;   ///< B: tokens per layout block
  index heads = 1;   ///< layouts: 1 (shared) or the number of query heads
  index blocks = 0;  ///< nb: layout blocks per side
  borrowed_span<const index> row_offsets = {};  ///< (heads * nb + 1): where each row's list starts; ends at columns.size()
  borrowed_span<const index> columns = {};      ///< (nnz): key blocks of each row, strictly increasing within a row

  /// The key blocks of layout row r of query head h.
  std::span<const index> row(index h, index r) const noexcept {
    const index* offsets = row_offsets.data() + (heads == 1 ? 0 : h) * blocks + r;
    return {columns.data() + offsets[0], static_cast<std::size_t>(offsets[1] - offsets[0])};
  }

  /// mask_policy: whether the query's layout row lists the key's block; O(log row length).
  bool allows(index q, index k, const problem_shape& s) const noexcept {
    const index p = q + s.lk - s.lq;
    if (p < 0) return false;
    const std::span<const index> list = row(s.head, p / block);
    return std::binary_search(list.begin(), list.end(), k / block);
  }
  /// mask_policy: false.
  static constexpr bool is_always_full() { return false; }
  static constexpr index plan_lists() { return 4; }  ///< the plan and three spares

  /// planned_mask: the listed key blocks of the layout rows the tile overlaps; O(listed blocks).
  void plan(const block_query& bq, block_plan& out) const noexcept {
    const index columns_in_lk = (bq.shape.lk + block - 1) / block;
    detail::plan_layout_rows(bq, block, out, [&](index r, detail::layout_row_sink& sink) {
      for (const index c : row(bq.shape.head, r)) {
        if (c >= columns_in_lk) break;
        sink(c);
      }
    });
  }

  /// Throws salt::error naming `api` when the lists are malformed (check_lists), `heads` is not 1 or Hq, or
  /// the layout covers fewer than Lk tokens.
  void check(const problem_dims& dims, const char* api) const {
    check_lists(api);
    detail::check_layout_shape(api, "block_layout_csr", block, heads, blocks, dims);
  }
  /// The checks that do not depend on a call: offsets and columns are well formed. O(heads * nb + nnz).
  void check_lists(const char* api) const {
    detail::check_layout_sizes(api, "block_layout_csr", block, heads, blocks);
    const index rows = heads * blocks;
    detail::require(static_cast<index>(row_offsets.size()) == rows + 1, api, ": block_layout_csr has ",
                    row_offsets.size(), " row offsets but heads * blocks + 1 = ", rows + 1);
    detail::require(row_offsets[0] == 0, api, ": block_layout_csr row offsets must start at 0, got ", row_offsets[0]);
    for (index i = 0; i < rows; ++i)
      detail::require(row_offsets[static_cast<std::size_t>(i)] <= row_offsets[static_cast<std::size_t>(i) + 1], api,
                      ": block_layout_csr row offsets decrease at row ", i % blocks, " of head ", i / blocks);
    detail::require(row_offsets[static_cast<std::size_t>(rows)] == static_cast<index>(columns.size()), api,
                    ": block_layout_csr row offsets end at ", row_offsets[static_cast<std::size_t>(rows)], " but there are ",
                    columns.size(), " columns");
    // Offsets now rise from 0 to columns.size(): every row's list lies inside `columns`.
    for (index i = 0; i < rows; ++i) {
      const index begin = row_offsets[static_cast<std::size_t>(i)], end = row_offsets[static_cast<std::size_t>(i) + 1];
      for (index j = begin; j < end; ++j) {
        const index c = columns[static_cast<std::size_t>(j)];
        detail::require(c >= 0 && c < blocks, api, ": block_layout_csr column ", c, " in row ", i % blocks, " of head ",
                        i / blocks, " is outside [0, ", blocks, ")");
        detail::require(j == begin || columns[static_cast<std::size_t>(j) - 1] < c, api,
                        ": block_layout_csr columns of row ", i % blocks, " of head ", i / blocks,
                        " are not strictly increasing");
      }
    }
  }
};

/// Owns a block layout in CSR form; `mask()` is the non-owning mask to pass to attention.
///
///     const salt::block_layout_csr csr(salt::block_layout{.block = 64, .blocks = nb, .layout = flags});
///     salt::attention(q, k, v, csr.mask() & salt::causal{});
class block_layout_csr {
 public:
  /// Builds the lists from a dense layout. Throws salt::error when its sizes disagree.
  explicit block_layout_csr(const block_layout& dense) : block_(dense.block), heads_(dense.heads), blocks_(dense.blocks) {
    dense.check_flags("salt::block_layout_csr");
    offsets_.reserve(static_cast<std::size_t>(heads_ * blocks_ + 1));
    offsets_.push_back(0);
    for (index h = 0; h < heads_; ++h) {
      for (index r = 0; r < blocks_; ++r) {
        const std::uint8_t* flags = dense.row(h, r);
        for (index c = 0; c < blocks_; ++c)
          if (flags[c] != 0) columns_.push_back(c);
        offsets_.push_back(static_cast<index>(columns_.size()));
      }
    }
  }
  /// Takes lists as they are. Throws salt::error unless they are well formed (see block_layout_csr_view).
  block_layout_csr(index block, index heads, index blocks, std::vector<index> row_offsets, std::vector<index> columns)
      : block_(block), heads_(heads), blocks_(blocks), offsets_(std::move(row_offsets)), columns_(std::move(columns)) {
    mask().check_lists("salt::block_layout_csr");
  }

  /// The mask: a view of these lists, valid while this object lives and is not moved from.
  block_layout_csr_view mask() const& noexcept { return {block_, heads_, blocks_, offsets_, columns_}; }
  /// A temporary's lists die with it, before the mask could be used: a compile error (a template, so only a call
  /// fails).
  template <class Unused = void>
  block_layout_csr_view mask() const&& noexcept {
    static_assert(!std::is_same_v<Unused, Unused>,
                  "salt::block_layout_csr::mask() returns a view of the lists, which must outlive the call: "
                  "keep the block_layout_csr in a variable, not a temporary.");
    return {};
  }

  /// B: tokens per layout block.
  index block() const noexcept { return block_; }
  /// Layouts: 1 (shared) or one per query head.
  index heads() const noexcept { return heads_; }
  /// nb: layout blocks per side.
  index blocks() const noexcept { return blocks_; }
  /// Number of (query block, key block) pairs listed, over all heads.
  index nonzeros() const noexcept { return static_cast<index>(columns_.size()); }
  /// (heads * nb + 1): where each row's list starts in columns(); a view of this object's storage.
  std::span<const index> row_offsets() const& noexcept { return offsets_; }
  /// (nnz): every row's key blocks, one row after another; a view of this object's storage.
  std::span<const index> columns() const& noexcept { return columns_; }
  std::span<const index> row_offsets() const&& = delete;  ///< deleted: it would view a temporary's lists
  std::span<const index> columns() const&& = delete;      ///< deleted: it would view a temporary's lists

 private:
  index block_, heads_, blocks_;
  std::vector<index> offsets_;  // (heads * nb + 1)
  std::vector<index> columns_;  // (nnz)
};

}  // namespace salt
