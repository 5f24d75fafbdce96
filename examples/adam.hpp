#pragma once
// Adam (Kingma and Ba), the optimiser of the training examples (train_linformer.cpp, train_synthesizer.cpp):
// first and second moments of one parameter matrix, bias-corrected, the rate scaled by `decay` at each step.
// Written here, a few lines, because salt computes gradients and leaves the optimiser to its user.

#include <salt/tensor.hpp>

#include <cmath>

namespace salt_examples {

struct adam {
  using matrix = salt::row_matrix<float>;
  float rate, beta1 = 0.9f, beta2 = 0.999f, epsilon = 1e-8f;
  matrix m, v;
  int t = 0;
  adam(float rate_, salt::index rows, salt::index cols)
      : rate(rate_), m(matrix::Zero(rows, cols)), v(matrix::Zero(rows, cols)) {}
  template <class Param>
  void step(Param&& p, const matrix& g, float decay) {
    ++t;
    m = beta1 * m + (1 - beta1) * g;
    v = beta2 * v + (1 - beta2) * g.cwiseProduct(g);
    const float c1 = 1 - std::pow(beta1, static_cast<float>(t)), c2 = 1 - std::pow(beta2, static_cast<float>(t));
    p.array() -= decay * rate * (m.array() / c1) / ((v.array() / c2).sqrt() + epsilon);
  }
};

}  // namespace salt_examples
