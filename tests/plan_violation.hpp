#pragma once
/// \file plan_violation.hpp
/// Checks a mask's block plans against its own per-pair test, for every query tile of a problem: runs
/// sorted and disjoint, every allowed pair inside a planned block, blocks marked full truly full, and (for
/// `tight` masks) no planned block without an allowed pair; and the column form (`allowed_queries`) says what the
/// per-pair test says. Returns the first violation as text (empty when there is none), so that sweeps of
/// millions of blocks stay fast, under sanitizers too. Free of Catch2: the fuzzers use it as well as the tests.

#include <salt/mask.hpp>

#include <algorithm>
#include <cstdint>
#include <sstream>
#include <string>
#include <vector>

namespace salt::test {

/// Empty when the plans of `mask` agree with `mask.allows`, asked at (batch item, head); otherwise what is
/// wrong, where.
template <class Mask>
std::string plan_violation(const Mask& mask, index lq, index lk, index query_tile, index block, bool tight,
                           index head = 0, index batch = 0) {
  const index lists = plan_lists_v<Mask>;
  const index capacity = (lk + block - 1) / block + 1;
  std::vector<block_run> storage(static_cast<std::size_t>(lists * capacity));
  std::vector<int> kind;
  for (index q0 = 0; q0 < lq; q0 += query_tile) {
    const index q1 = std::min(lq, q0 + query_tile);
    const block_query bq{q0, q1, block, problem_shape{lq, lk, batch, head}};
    block_plan plan(storage.data(), capacity, lists);
    detail::plan_blocks(mask, bq, plan);
    // The text is made only for a violation: building it for every tile cost most of a clean sweep's time.
    auto where = [&] {
      std::ostringstream text;
      text << "query tile [" << q0 << ", " << q1 << ") of lq " << lq << ", lk " << lk << ", block " << block << ", batch item "
           << batch << ", head " << head << ": ";
      return text.str();
    };
    kind.assign(static_cast<std::size_t>(bq.key_blocks()), 0);  // 0 none, 1 partial, 2 full
    index previous_end = 0;
    for (const block_run& run : plan.runs()) {
      if (run.first < previous_end || run.first >= run.last || run.last > bq.key_blocks())
        return where() + "runs are not sorted, disjoint and inside [0, key blocks)";
      previous_end = run.last;
      for (index b = run.first; b < run.last; ++b) kind[static_cast<std::size_t>(b)] = run.full ? 2 : 1;
    }
    // The column form agrees with the per-pair test, for every key and this tile's queries.
    for (index k = 0; k < lk; ++k) {
      query_bits column = 0;
      for (index q = q0; q < q1; ++q) {
        const index i = (q - q0) % query_bits_width;
        if (i == 0) {
          const index count = std::min(query_bits_width, q1 - q);
          column = detail::allowed_queries(mask, k, q, count, bq.shape);
          if ((column & ~detail::bit_range(0, count)) != 0)
            return where() + "allowed_queries sets bits past its count for key " + std::to_string(k);
        }
        if (((column >> i) & 1) != query_bits{mask.allows(q, k, bq.shape)}) {
          std::ostringstream pair;
          pair << "allowed_queries and allows disagree on query " << q << ", key " << k;
          return where() + pair.str();
        }
      }
    }
    for (index b = 0; b < bq.key_blocks(); ++b) {
      index allowed = 0, pairs = 0;
      for (index q = q0; q < q1; ++q)
        for (index k = b * block; k < std::min(lk, (b + 1) * block); ++k, ++pairs) allowed += mask.allows(q, k, bq.shape);
      const int k = kind[static_cast<std::size_t>(b)];
      auto block_info = [&] {
        std::ostringstream text;
        text << "key block " << b << " (" << allowed << " of " << pairs << " pairs allowed, planned as "
             << (k == 0 ? "not visited" : k == 1 ? "partial" : "full") << ")";
        return text.str();
      };
      if (allowed > 0 && k == 0) return where() + block_info() + " is missing";
      if (k == 2 && allowed != pairs) return where() + block_info() + " is not full";
      if (tight && k != 0 && allowed == 0) return where() + block_info() + " need not be visited";
    }
  }
  return "";
}

}  // namespace salt::test
