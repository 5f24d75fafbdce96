#pragma once
/// \file plan_check.hpp
/// Checks a mask's block plans against its own per-pair test (plan_violation.hpp) and reports the first
/// violation through one assertion per call, so that sweeps of millions of blocks stay fast, under
/// sanitizers too.

#include <salt/mask.hpp>

#include <string>

#include "catch.hpp"
#include "plan_violation.hpp"

namespace salt::test {

/// One assertion: the plans of `mask` agree with its per-pair test.
template <class Mask>
void check_plan(const std::string& name, const Mask& mask, index lq, index lk, index query_tile, index block,
                bool tight, index head = 0) {
  const std::string violation = plan_violation(mask, lq, lk, query_tile, block, tight, head);
  CAPTURE(name, violation);
  CHECK(violation.empty());
}

}  // namespace salt::test
