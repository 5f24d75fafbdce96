#pragma once
/// \file fuzz/score_params.hpp
/// The parameters of the score policies the engine's harnesses share (fuzz_engine, fuzz_backward), decoded the
/// same way in both: the dot product's scale, soft-capping's cap. Each harness makes its own tables (they live
/// in its context) and composes the policies; these are the leaves without storage.

#include <salt/score.hpp>

#include "byte_reader.hpp"

namespace salt::fuzz {

/// The dot product at its default scale, 0, a negative one, a range of positive ones, and 1e10 (float overflows).
inline salt::dot_product dot_product_from(byte_reader& in) {
  switch (in.choice(6)) {
    case 1: return {0.0};
    case 2: return {-0.5};
    case 3: return {static_cast<double>(in.integer(1, 64)) / 8};
    case 4: return {1e10};  // logits overflow in float
    default: return {};
  }
}

/// A cap: 50, 0.1 to 100, 1e30 (no capping in effect), 1, 5, or 0 (rejected).
inline double cap_from(byte_reader& in) {
  switch (in.choice(5)) {
    case 0: return 50;
    case 1: return 0.1 + static_cast<double>(in.integer(0, 1000)) / 10.0;
    case 2: return 1e30;
    case 3: return 1;
    default: return in.one_in(4) ? 0.0 : 5.0;  // 0 is rejected
  }
}

}  // namespace salt::fuzz
