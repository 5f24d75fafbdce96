// libFuzzer harness of the layout builders: block_layout over dense flags, block_layout_csr from a dense
// layout or from per-row lists, block_layout_csr_view, bigbird_table from entries and bigbird_random_table
// from a seed, and the bigbird mask of a table. Arguments are arbitrary and often invalid (negative, zero,
// mismatched, huge). Each call either throws salt::error whose message begins with "salt::", or gives an
// object that is well formed: its per-pair test says what the layout's definition says, its block plans
// agree with its per-pair test (plan_violation), the CSR form equals the dense one, and a drawn BigBird
// table keeps transformers' constraints (distinct blocks outside the window and the global blocks).
#include <salt/mask.hpp>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <limits>
#include <sstream>
#include <string>
#include <vector>

#include "../plan_violation.hpp"
#include "byte_reader.hpp"

namespace {

using idx = salt::index;
using salt::fuzz::byte_reader;
using salt::fuzz::fail;

/// A size argument: mostly small and valid, sometimes 0, negative, large, or huge (2^31 .. 2^63 - 1, which once
/// overflowed the size checks' products before they could reject them).
idx size_arg(byte_reader& in, idx lo, idx hi) {
  switch (in.choice(8)) {
    case 0: return 0;
    case 1: return -in.integer(1, 3);
    case 2: return in.integer(hi, 4 * hi + 4);
    case 3: return in.flag() ? std::numeric_limits<idx>::max() : idx{1} << in.integer(31, 62);
    default: return in.integer(lo, hi);
  }
}

/// Definition of a block layout's per-pair test: query q sits at key position p = q + lk - lq and sees key k
/// when p >= 0 and its layout row lists k's block.
template <class Listed>
bool layout_allows(idx q, idx k, idx lq, idx lk, idx block, const Listed& listed) {
  const idx p = q + lk - lq;
  return p >= 0 && listed(p / block, k / block);
}

/// The per-pair test of `mask` against `expected`, and its plans against its per-pair test, for a call of
/// (lq, lk) with `heads` query heads.
template <class Mask, class Expected>
void check_mask(const std::string& what, const Mask& mask, idx lq, idx lk, idx heads, const Expected& expected,
                byte_reader& in) {
  for (idx h = 0; h < heads; ++h) {
    const salt::problem_shape s{lq, lk, 0, h};
    for (idx q = 0; q < lq; ++q)
      for (idx k = 0; k < lk; ++k)
        if (mask.allows(q, k, s) != expected(h, q, k)) {
          std::ostringstream m;
          m << what << ": allows(" << q << ", " << k << ") at head " << h << " is " << mask.allows(q, k, s)
            << " but the layout says " << expected(h, q, k);
          fail(m.str());
        }
    const std::string v1 = salt::test::plan_violation(mask, lq, lk, in.integer(1, 64), in.integer(1, 80), false, h);
    if (!v1.empty()) fail(what + ": block plan: " + v1);
  }
}

/// Call sizes for a layout of `blocks` blocks of `block` tokens: lk covered by the layout, lq any.
void call_sizes(byte_reader& in, idx block, idx blocks, idx& lq, idx& lk) {
  const idx cover = blocks * block;  // the caller keeps these small
  lk = in.integer(0, std::min<idx>(cover, 160));
  lq = in.flag() ? lk : in.integer(0, 160);
}

void dense_and_csr(byte_reader& in, salt::random_generator& rng) {
  const idx block = size_arg(in, 1, 40), heads = size_arg(in, 1, 3), blocks = size_arg(in, 0, 40);
  // Flags: usually heads * blocks^2 of them, sometimes a few more or fewer.
  idx n = 0;
  if (heads >= 1 && heads <= 3 && blocks >= 0 && blocks <= 40) n = heads * blocks * blocks;
  n = std::max<idx>(n + (in.one_in(16) ? in.integer(-2, 2) : 0), 0);
  std::vector<std::uint8_t> flags(static_cast<std::size_t>(n));
  const double p = in.byte() / 255.0;
  for (auto& f : flags) f = rng.uniform() < p ? static_cast<std::uint8_t>(1 + rng.below(255)) : 0;
  const salt::block_layout dense{block, heads, blocks, flags};
  std::ostringstream w;
  w << "block_layout{block " << block << ", heads " << heads << ", blocks " << blocks << "} with " << n << " flags";
  dense.check_flags("salt::fuzz");  // throws salt::error unless the sizes agree
  const salt::block_layout_csr csr(dense);
  // The CSR form lists exactly the non-zero flags, row by row.
  idx nnz = 0;
  for (const auto f : flags) nnz += f != 0;
  if (csr.nonzeros() != nnz || csr.block() != block || csr.heads() != heads || csr.blocks() != blocks)
    fail(w.str() + ": block_layout_csr has different sizes or non-zeros");
  csr.mask().check_lists("salt::fuzz");  // must be well formed
  if (blocks == 0 || block > 400 || blocks > 400 / block) return;  // keep the per-pair sweep small
  idx lq = 0, lk = 0;
  call_sizes(in, block, blocks, lq, lk);
  const idx call_heads = heads == 1 ? in.integer(1, 3) : heads;
  const salt::problem_dims dims{1, call_heads, call_heads, lq, lk, 4, 4};
  dense.check(dims, "salt::fuzz");
  csr.mask().check(dims, "salt::fuzz");
  auto expected = [&](idx h, idx q, idx k) {
    return layout_allows(q, k, lq, lk, block, [&](idx r, idx c) {
      return flags[static_cast<std::size_t>(((heads == 1 ? 0 : h) * blocks + r) * blocks + c)] != 0;
    });
  };
  w << ", lq " << lq << ", lk " << lk;
  check_mask(w.str() + " (dense)", dense, lq, lk, call_heads, expected, in);
  check_mask(w.str() + " (csr)", csr.mask(), lq, lk, call_heads, expected, in);
}

void csr_lists(byte_reader& in, salt::random_generator& rng) {
  const idx block = size_arg(in, 1, 40), heads = size_arg(in, 1, 3), blocks = size_arg(in, 0, 40);
  const idx rows = heads >= 1 && heads <= 3 && blocks >= 0 && blocks <= 40 ? heads * blocks : in.integer(0, 4);
  std::vector<idx> offsets{0}, columns;
  const double p = in.byte() / 255.0;
  for (idx r = 0; r < rows; ++r) {
    for (idx c = 0; c < std::min<idx>(std::max<idx>(blocks, 0), 40); ++c)
      if (rng.uniform() < p) columns.push_back(c);
    offsets.push_back(static_cast<idx>(columns.size()));
  }
  // Damage now and then: a column out of range or repeated, offsets that decrease, run past or do not start at 0.
  switch (in.choice(12)) {
    case 0:
      if (!columns.empty()) columns[static_cast<std::size_t>(in.integer(0, static_cast<idx>(columns.size()) - 1))] = in.integer(-2, std::min<idx>(blocks, idx{1} << 40) + 2);
      break;
    case 1:
      if (offsets.size() > 2) offsets[static_cast<std::size_t>(in.integer(1, static_cast<idx>(offsets.size()) - 2))] += in.integer(-3, 3);
      break;
    case 2: offsets.back() += in.integer(-2, 2); break;
    case 3: offsets[0] = in.integer(-2, 2); break;
    case 4: if (in.flag()) offsets.pop_back(); else offsets.push_back(offsets.back()); break;
    default: break;
  }
  std::ostringstream w;
  w << "block_layout_csr{block " << block << ", heads " << heads << ", blocks " << blocks << "} from " << offsets.size()
    << " offsets and " << columns.size() << " columns";
  const std::vector<idx> offsets0 = offsets, columns0 = columns;
  const salt::block_layout_csr csr(block, heads, blocks, offsets, columns);
  if (!std::equal(csr.row_offsets().begin(), csr.row_offsets().end(), offsets0.begin(), offsets0.end()) ||
      !std::equal(csr.columns().begin(), csr.columns().end(), columns0.begin(), columns0.end()))
    fail(w.str() + ": the lists were not taken as they are");
  // Well formed: rows rise from 0 to columns.size(), columns strictly increase within [0, blocks).
  for (idx r = 0; r < heads * blocks; ++r) {
    const idx b0 = offsets0[static_cast<std::size_t>(r)], b1 = offsets0[static_cast<std::size_t>(r + 1)];
    if (b0 > b1 || b1 > static_cast<idx>(columns0.size())) fail(w.str() + ": accepted malformed offsets");
    for (idx j = b0; j < b1; ++j) {
      const idx c = columns0[static_cast<std::size_t>(j)];
      if (c < 0 || c >= blocks || (j > b0 && columns0[static_cast<std::size_t>(j - 1)] >= c))
        fail(w.str() + ": accepted a malformed column list");
    }
  }
  if (blocks == 0 || block > 400 || blocks > 400 / block) return;  // keep the per-pair sweep small
  idx lq = 0, lk = 0;
  call_sizes(in, block, blocks, lq, lk);
  const idx call_heads = heads == 1 ? in.integer(1, 3) : heads;
  csr.mask().check(salt::problem_dims{1, call_heads, call_heads, lq, lk, 4, 4}, "salt::fuzz");
  auto expected = [&](idx h, idx q, idx k) {
    return layout_allows(q, k, lq, lk, block, [&](idx r, idx c) {
      const idx row = (heads == 1 ? 0 : h) * blocks + r;
      const auto first = columns0.begin() + offsets0[static_cast<std::size_t>(row)];
      const auto last = columns0.begin() + offsets0[static_cast<std::size_t>(row + 1)];
      return std::find(first, last, c) != last;
    });
  };
  w << ", lq " << lq << ", lk " << lk;
  check_mask(w.str(), csr.mask(), lq, lk, call_heads, expected, in);
}

/// The BigBird definition: query block i sees key block j when either is global (0 or nb - 1), |i - j| <= 1,
/// or j is one of row i's random blocks.
void check_bigbird(const std::string& what, const salt::bigbird_table& table, idx block, idx L, byte_reader& in) {
  const salt::bigbird mask = table.mask(block);
  const idx nb = mask.blocks_for(L), heads = table.heads();
  const idx call_heads = heads == 1 ? in.integer(1, 3) : heads;
  mask.check(salt::problem_dims{1, call_heads, call_heads, L, L, 4, 4}, "salt::fuzz");
  auto expected = [&](idx h, idx q, idx k) {
    const idx i = q / block, j = k / block;
    if (i == 0 || i == nb - 1 || j == 0 || j == nb - 1 || (j >= i - 1 && j <= i + 1)) return true;
    for (idx t = 0; t < table.random(); ++t)
      if (table.at(heads == 1 ? 0 : h, i, t) == j) return true;
    return false;
  };
  check_mask(what + ", L " + std::to_string(L), mask, L, L, call_heads, expected, in);
}

void bigbird_entries(byte_reader& in, salt::random_generator& rng) {
  const idx heads = size_arg(in, 1, 3), blocks = size_arg(in, 0, 30), random = size_arg(in, 0, 4);
  idx n = 0;
  if (heads >= 1 && heads <= 3 && blocks >= 0 && blocks <= 30 && random >= 0 && random <= 4)
    n = heads * std::max<idx>(blocks - 2, 0) * random;
  n = std::max<idx>(n + (in.one_in(16) ? in.integer(-2, 2) : 0), 0);
  std::vector<std::int32_t> entries(static_cast<std::size_t>(n));
  const idx top = std::clamp<idx>(blocks, 0, 30);
  for (auto& e : entries) e = static_cast<std::int32_t>(static_cast<idx>(rng.below(static_cast<std::uint64_t>(top + 1))) - 1);
  if (!entries.empty() && in.one_in(12)) entries[0] = static_cast<std::int32_t>(in.integer(-3, top + 2));
  std::ostringstream w;
  w << "bigbird_table{heads " << heads << ", blocks " << blocks << ", random " << random << "} from " << n << " entries";
  const salt::bigbird_table table(heads, blocks, random, entries);
  for (const auto e : table.entries())
    if (e < -1 || e >= blocks) fail(w.str() + ": accepted an entry outside [-1, blocks)");
  const idx block = in.integer(1, 12);
  if (blocks == 0 || blocks > 30) return;  // keep the per-pair sweep small
  const idx L = in.integer((blocks - 1) * block + 1, blocks * block);  // the lengths this table fits
  check_bigbird(w.str() + ", block " + std::to_string(block), table, block, L, in);
}

void bigbird_drawn(byte_reader& in) {
  const idx heads = size_arg(in, 1, 3), blocks = size_arg(in, 0, 30), random = size_arg(in, 0, 6);
  const std::uint64_t seed = in.seed();
  std::ostringstream w;
  w << "bigbird_random_table(" << heads << ", " << blocks << ", " << random << ", " << seed << ")";
  // Sizes that pass the checks but would allocate without bound are not drawn: the harness tests the
  // builder's checks and its tables, not the allocator.
  const bool valid = heads >= 1 && blocks >= 0 && blocks <= std::numeric_limits<std::int32_t>::max() && random >= 0;
  if (valid && (heads > 3 || blocks > 30 || random > 6)) return;
  const salt::bigbird_table table = salt::bigbird_random_table(heads, blocks, random, seed);
  // Reproducible: the same seed gives the same table.
  const salt::bigbird_table again = salt::bigbird_random_table(heads, blocks, random, seed);
  if (!std::equal(table.entries().begin(), table.entries().end(), again.entries().begin(), again.entries().end()))
    fail(w.str() + ": not reproducible");
  // transformers' constraints: each row's blocks distinct, among 1 .. nb - 2, outside {i - 1, i, i + 1}; a row
  // with no more candidates than `random` takes them all in increasing order and fills the rest with -1.
  for (idx h = 0; h < heads; ++h)
    for (idx i = 1; i <= blocks - 2; ++i) {
      const idx candidates = std::max<idx>(i - 2, 0) + std::max<idx>(blocks - 3 - i, 0);
      std::vector<idx> seen;
      for (idx t = 0; t < random; ++t) {
        const idx e = table.at(h, i, t);
        if (t < std::min(candidates, random)) {
          if (e < 1 || e > blocks - 2 || (e >= i - 1 && e <= i + 1) || std::find(seen.begin(), seen.end(), e) != seen.end())
            fail(w.str() + ": row " + std::to_string(i) + " of head " + std::to_string(h) + " holds block " +
                 std::to_string(e));
          if (candidates <= random && !seen.empty() && seen.back() >= e)
            fail(w.str() + ": a row that takes every candidate is not in increasing order");
          seen.push_back(e);
        } else if (e != -1) {
          fail(w.str() + ": row " + std::to_string(i) + " has more blocks than candidates");
        }
      }
    }
  if (blocks == 0) return;
  const idx block = in.integer(1, 12);
  const idx L = in.integer((blocks - 1) * block + 1, blocks * block);
  check_bigbird(w.str() + ", block " + std::to_string(block), table, block, L, in);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  byte_reader in(data, size);
  salt::random_generator rng(in.seed());
  const int which = in.choice(4);
  try {
    switch (which) {
      case 0: dense_and_csr(in, rng); break;
      case 1: csr_lists(in, rng); break;
      case 2: bigbird_entries(in, rng); break;
      default: bigbird_drawn(in);
    }
    if (salt::fuzz::verbose()) std::fprintf(stderr, "case %d: valid\n", which);
  } catch (const salt::error& e) {
    if (salt::fuzz::verbose()) std::fprintf(stderr, "case %d: rejected: %s\n", which, e.what());
    salt::fuzz::check_error_message(e.what());
  }
  return 0;
}
