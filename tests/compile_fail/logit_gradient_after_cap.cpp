// Must not compile: the logit gradient is dS, the gradient by the logits as the score adds them, so a table
// added after a soft cap (softcap{} + table) would get the cap's slope, which is not its own; attention_backward
// says so with a static_assert. Capping the whole sum (softcap over dot_product{} + table) compiles.
// expect: the logit gradient is dS, the gradient by the logits as the score adds them
#include <salt/attention.hpp>
#include <salt/attention_backward.hpp>
#include <salt/synthesizer.hpp>

int main() {
  const salt::row_matrix<float> x = salt::row_matrix<float>::Zero(8, 4), table = salt::row_matrix<float>::Zero(8, 8);
  salt::row_matrix<float> dtable = salt::row_matrix<float>::Zero(8, 8);
  const auto synth = salt::synthesizer_random<float>::shared(table);
  const auto score = salt::softcap{30.0} + synth;
  const auto fwd = salt::attention_with_lse(x, x, x, salt::no_mask{}, score);
  const auto g = salt::attention_backward(x, x, x, fwd, x, salt::no_mask{}, score, {}, synth.gradient_into(dtable.data()));
  return static_cast<int>(g.dq(0, 0));
}
