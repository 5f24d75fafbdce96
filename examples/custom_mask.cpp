// A user-written mask: several documents packed into one sequence, each token attending only within its
// own document. Composed with salt::causal{} it gives the block-diagonal causal mask of packed training.
//
//   g++ -std=c++20 -O2 -march=native -fopenmp -I include -isystem /usr/include/eigen3 examples/custom_mask.cpp

#include <salt/salt.hpp>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <span>
#include <vector>

/// Token t belongs to the document that starts at the last `starts` entry <= t (starts[0] == 0, sorted).
/// A mask is a small trivially copyable value: the span is a view, the starts must outlive the call.
struct same_document {
  std::span<const salt::index> starts;

  salt::index document(salt::index t) const noexcept {
    return std::upper_bound(starts.begin(), starts.end(), t) - starts.begin() - 1;
  }
  salt::index document_end(salt::index t, salt::index length) const noexcept {
    const auto next = std::upper_bound(starts.begin(), starts.end(), t);
    return next == starts.end() ? length : *next;
  }

  // The two members every mask needs: the per-pair truth, and whether it never masks anything.
  bool allows(salt::index q, salt::index k, const salt::problem_shape&) const noexcept {
    return document(q) == document(k);
  }
  static constexpr bool is_always_full() { return false; }

  // Optional: the key blocks a tile of queries must visit. Without it the engine visits every block and
  // tests every pair; with it, blocks of other documents are skipped. Marking them all partial (per-pair
  // tests) is always correct; a finer plan could mark blocks inside one document full.
  void plan(const salt::block_query& bq, salt::block_plan& out) const noexcept {
    const salt::index k_begin = starts[document(bq.q_begin)];
    const salt::index k_end = document_end(bq.q_end - 1, bq.shape.lk);
    out.add(k_begin / bq.block, (k_end + bq.block - 1) / bq.block, false);
  }
};
static_assert(salt::mask_policy<same_document>, "same_document must satisfy salt::mask_policy");
static_assert(salt::planned_mask<same_document>, "same_document::plan must match salt::planned_mask");

int main() {
  constexpr salt::index L = 1000, d = 64;
  const std::vector<salt::index> starts = {0, 300, 333, 700};  // four documents: 300, 33, 367 and 300 tokens
  const salt::row_matrix<float> q = salt::row_matrix<float>::Random(L, d);  // (L, d)
  const salt::row_matrix<float> k = salt::row_matrix<float>::Random(L, d);  // (L, d)
  const salt::row_matrix<float> v = salt::row_matrix<float>::Random(L, d);  // (L, d)

  const auto mask = salt::causal{} & same_document{starts};
  const salt::row_matrix<float> out = salt::attention(q, k, v, mask);  // (L, d)

  // Check rows at and around the document edges against a naive softmax in double, written from scratch.
  std::vector<int> doc(static_cast<std::size_t>(L));  // (L) document number of each token
  for (std::size_t n = 0; n < starts.size(); ++n) std::fill(doc.begin() + starts[n], doc.end(), static_cast<int>(n));
  double max_diff = 0;
  for (salt::index i : {0, 1, 299, 300, 301, 332, 333, 500, 699, 700, 999}) {
    Eigen::VectorXd s = Eigen::VectorXd::Constant(L, -INFINITY);  // (L) logits of row i, -inf where masked
    for (salt::index j = 0; j <= i; ++j)
      if (doc[j] == doc[i]) s[j] = q.row(i).cast<double>().dot(k.row(j).cast<double>()) / std::sqrt(double(d));
    const Eigen::VectorXd p = (s.array() - s.maxCoeff()).exp();  // (L) unnormalised probabilities
    const Eigen::RowVectorXd o = p.transpose() * v.cast<double>() / p.sum();  // (d)
    max_diff = std::max(max_diff, (o - out.row(i).cast<double>()).cwiseAbs().maxCoeff());
  }
  std::printf("causal & same_document, L=%td d=%td, %zu documents: max |salt - naive| over 11 rows = %.3g\n", L, d,
              starts.size(), max_diff);
  return max_diff < 1e-5 ? 0 : 1;
}
