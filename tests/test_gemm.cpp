// detail::gemm, the register-blocked product under linear attention, Linformer, the Synthesizer and LSH
// hashing: every combination of transposes, partial packets and tiles, depths past one packed panel, the
// three updates of c (overwrite, chain, add: a sum from zero added to c) and strided outputs,
// against the fp64 reference with the accuracy criterion; entries outside the output left alone; and each
// entry's bits independent of the tile it falls in (a sub-product gives the same bits as the whole).
#include <salt/detail/gemm.hpp>

#include <vector>

#include "catch.hpp"
#include "reference.hpp"

using namespace salt::test;
using idx = salt::index;
template <class T>
using row_matrix = salt::row_matrix<T>;

namespace {

/// op(x)(r, k) for a stored row-major buffer with leading dimension ld (transposed: x[k * ld + r]).
template <class T>
T at(const std::vector<T>& x, idx ld, bool trans, idx r, idx k) {
  return trans ? x[static_cast<std::size_t>(k * ld + r)] : x[static_cast<std::size_t>(r * ld + k)];
}

using salt::detail::gemm_update;

/// c (rows, cols) = op(a) op(b), c0 + op(a) op(b) continuing from c0 (chain), or c0 + (op(a) op(b)) (add),
/// summed in order in U.
template <class U, class T>
row_matrix<U> product(const std::vector<T>& a, idx lda, bool ta, const std::vector<T>& b, idx ldb, bool tb,
                      const row_matrix<T>& c0, idx rows, idx cols, idx depth, gemm_update update) {
  row_matrix<U> c(rows, cols);
  for (idx r = 0; r < rows; ++r)
    for (idx j = 0; j < cols; ++j) {
      U s = update == gemm_update::chain ? static_cast<U>(c0(r, j)) : U(0);
      for (idx k = 0; k < depth; ++k) s += static_cast<U>(at(a, lda, ta, r, k)) * static_cast<U>(at(b, ldb, tb, k, j));
      c(r, j) = update == gemm_update::add ? static_cast<U>(c0(r, j)) + s : s;
    }
  return c;
}

template <class T, bool TA, bool TB>
void check_shape(random_source& rng, idx rows, idx cols, idx depth, gemm_update update) {
  using U = oracle_t<T>;
  // Leading dimensions with slack, so that strides differ from widths.
  const idx lda = (TA ? rows : depth) + 3, ldb = (TB ? depth : cols) + 5, ldc = cols + 2;
  const idx a_rows = TA ? depth : rows, b_rows = TB ? cols : depth;
  std::vector<T> a(static_cast<std::size_t>(std::max<idx>(a_rows, 1) * lda)), b(static_cast<std::size_t>(std::max<idx>(b_rows, 1) * ldb));
  for (auto& x : a) x = static_cast<T>(rng.uniform());
  for (auto& x : b) x = static_cast<T>(rng.uniform());
  const row_matrix<T> c0 = rng.matrix<T>(rows, cols);
  std::vector<T> c(static_cast<std::size_t>(rows * ldc));
  for (idx r = 0; r < rows; ++r) {
    for (idx j = 0; j < cols; ++j) c[static_cast<std::size_t>(r * ldc + j)] = c0(r, j);
    for (idx j = cols; j < ldc; ++j) c[static_cast<std::size_t>(r * ldc + j)] = T(7);  // outside: untouched
  }
  const std::vector<T> a_in = a, b_in = b;
  salt::detail::gemm<T, TA, TB>(rows, cols, depth, a.data(), lda, b.data(), ldb, c.data(), ldc, update);

  row_matrix<T> got(rows, cols);
  bool outside_kept = true;
  for (idx r = 0; r < rows; ++r) {
    for (idx j = 0; j < cols; ++j) got(r, j) = c[static_cast<std::size_t>(r * ldc + j)];
    for (idx j = cols; j < ldc; ++j) outside_kept = outside_kept && c[static_cast<std::size_t>(r * ldc + j)] == T(7);
  }
  const auto naive = product<T>(a, lda, TA, b, ldb, TB, c0, rows, cols, depth, update);
  const auto ref = product<U>(a, lda, TA, b, ldb, TB, c0, rows, cols, depth, update);
  const auto acc = judge<T>(got, naive, ref, static_cast<double>(depth + 1));
  CAPTURE(TA, TB, rows, cols, depth, static_cast<int>(update), acc.kernel_error, acc.naive_error, acc.floor);
  CHECK(acc.ok());
  CHECK(outside_kept);
  CHECK((a == a_in && b == b_in));

  // add is, bit for bit, the overwritten product added to c afterwards (what a blocked sum's partial sums need).
  if (update == gemm_update::add) {
    std::vector<T> fresh(static_cast<std::size_t>(rows * ldc), T(0));
    salt::detail::gemm<T, TA, TB>(rows, cols, depth, a.data(), lda, b.data(), ldb, fresh.data(), ldc,
                                  gemm_update::overwrite);
    bool same = true;
    for (idx r = 0; r < rows; ++r)
      for (idx j = 0; j < cols; ++j) same = same && got(r, j) == c0(r, j) + fresh[static_cast<std::size_t>(r * ldc + j)];
    CHECK(same);
  }

  // A sub-product (rows [r0, rows), columns [j0, cols)) gives the same bits as the whole product's entries.
  if (rows > 1 && cols > 1) {
    const idx r0 = rows / 2, j0 = cols / 3;
    std::vector<T> sub(static_cast<std::size_t>(rows * ldc), T(0));
    for (idx r = r0; r < rows; ++r)
      for (idx j = j0; j < cols; ++j) sub[static_cast<std::size_t>(r * ldc + j)] = c0(r, j);
    const T* ap = TA ? a.data() + r0 : a.data() + r0 * lda;
    const T* bp = TB ? b.data() + j0 * ldb : b.data() + j0;
    salt::detail::gemm<T, TA, TB>(rows - r0, cols - j0, depth, ap, lda, bp, ldb, sub.data() + r0 * ldc + j0, ldc,
                                  update);
    bool same = true;
    for (idx r = r0; r < rows; ++r)
      for (idx j = j0; j < cols; ++j) same = same && sub[static_cast<std::size_t>(r * ldc + j)] == got(r, j);
    CHECK(same);
  }
}

template <class T, bool TA, bool TB>
void check_all(random_source& rng) {
  using shape = salt::detail::gemm_shape<T>;
  const idx NC = shape::NC, N = shape::N, MR = shape::MR;
  // Rows around the tile height, columns around whole and partial packets and panels, depths past a packed
  // panel (KC); depth 0 clears or keeps c.
  for (const idx rows : {idx{1}, idx{2}, MR - 1, MR, MR + 1, 2 * MR + 3})
    for (const idx cols : {idx{1}, N - 1, N, N + 1, 3 * N, NC - 1, NC, NC + 1, 2 * NC + N + 3})
      for (const idx depth : {idx{0}, idx{1}, idx{7}, shape::KC + 9})
        for (const gemm_update update : {gemm_update::overwrite, gemm_update::chain, gemm_update::add})
          check_shape<T, TA, TB>(rng, rows, cols, depth, update);
}

}  // namespace

TEMPLATE_TEST_CASE("gemm matches the fp64 product for every transpose, tile edge and panel depth", "[gemm]", float,
                   double) {
  using T = TestType;
  random_source rng(5);
  check_all<T, false, false>(rng);
  check_all<T, true, false>(rng);
  check_all<T, false, true>(rng);
  check_all<T, true, true>(rng);
}
