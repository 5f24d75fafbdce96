#pragma once
/// \file checks.hpp
/// The assertions the test files share: one head through the engine against the oracle, under the
/// accuracy criterion, and the message of the salt::error a call throws.

#include <salt/attention.hpp>

#include <string>

#include "catch.hpp"
#include "reference.hpp"

namespace salt::test {

/// Runs one head through the engine and checks its output and LSE against the oracle (oracle_t<T>) with the
/// accuracy criterion, the naive computation in T setting the bar.
template <class T, class Mask, class Score = dot_product>
void check_head(const row_matrix<T>& q, const row_matrix<T>& k, const row_matrix<T>& v, const Mask& mask,
                const Score& score = {}) {
  const auto kernel = attention_with_lse(q, k, v, mask, score);
  const auto naive = naive_attention<T>(q, k, v, mask, score);
  const auto ref = naive_attention<oracle_t<T>>(q, k, v, mask, score);
  const auto out = judge<T>(kernel.out, naive.out, ref.out, finite_scale(v));
  CAPTURE(out.kernel_error, out.naive_error, out.floor);
  CHECK(out.ok());
  const auto lse = judge<T>(kernel.lse, naive.lse, ref.lse, finite_scale(ref.lse));
  CAPTURE(lse.kernel_error, lse.naive_error, lse.floor);
  CHECK(lse.ok());
}

/// The message of the salt::error that `f()` throws, or "" when it throws none.
template <class F>
std::string error_of(F&& f) {
  try {
    f();
  } catch (const error& e) {
    return e.what();
  }
  return "";
}

}  // namespace salt::test
