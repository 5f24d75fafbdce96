#pragma once
/// \file fixtures.hpp
/// Lists and reads the golden fixtures that tools/make_hf_fixtures.py and make_lsh_fixtures.py write under
/// tests/data/ (SALT_TEST_DATA_DIR): a '#' header line,
/// then records, each a line `name dim0 dim1 ...` (no dims: a scalar) followed by prod(dims) numbers in C
/// row-major order on the next lines; '#' lines are comments. Any problem throws std::runtime_error naming
/// the file and the record.

#include <salt/tensor.hpp>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <limits>
#include <map>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#ifndef SALT_TEST_DATA_DIR
#error "SALT_TEST_DATA_DIR must be the golden fixtures' directory as a string literal (tests/CMakeLists.txt sets it)"
#endif

namespace salt::test {

/// The fixtures of one kind (file names `prefix*.txt` in SALT_TEST_DATA_DIR), sorted; empty when the
/// directory is missing.
inline std::vector<std::string> fixtures_named(const std::string& prefix) {
  std::vector<std::string> files;
  std::error_code ec;
  for (const auto& entry : std::filesystem::directory_iterator(std::filesystem::path(SALT_TEST_DATA_DIR), ec)) {
    const std::string name = entry.path().filename().string();
    if (entry.is_regular_file() && name.rfind(prefix, 0) == 0 && entry.path().extension() == ".txt")
      files.push_back(entry.path().string());
  }
  std::sort(files.begin(), files.end());
  return files;
}

/// One record: its shape and its values, row-major.
struct fixture_array {
  std::vector<index> shape;
  std::vector<double> values;
};

class fixture_file {
 public:
  explicit fixture_file(std::string path) : path_(std::move(path)) {
    std::ifstream in(path_);
    if (!in) fail("", "cannot open the file");
    if (!std::getline(in, header_) || header_.rfind('#', 0) != 0) fail("", "the first line must be a '#' header");
    std::string line, name, token;
    std::size_t pending = 0;  // values the current record still needs
    for (int number = 2; std::getline(in, line); ++number) {
      if (!line.empty() && line.back() == '\r') line.pop_back();
      if (line.find_first_not_of(" \t") == std::string::npos || line[0] == '#') continue;
      std::istringstream tokens(line);
      const std::string where = "line " + std::to_string(number) + ": ";
      if (pending == 0) {  // a record header: name and dims
        tokens >> name;
        if (name.empty() || !(std::isalpha(static_cast<unsigned char>(name[0])) || name[0] == '_'))
          fail(name, where + "bad record name");
        if (arrays_.count(name)) fail(name, where + "record appears twice");
        fixture_array& a = arrays_[name];
        std::size_t count = 1;
        while (tokens >> token) a.shape.push_back(static_cast<index>(parse_count(token, name, where)));
        for (const index n : a.shape) count *= static_cast<std::size_t>(n);
        a.values.reserve(count);
        pending = count;
        continue;
      }
      while (tokens >> token) {
        if (pending == 0) fail(name, where + "more values than its shape holds");
        char* end = nullptr;
        const double x = std::strtod(token.c_str(), &end);
        if (end == token.c_str() || *end != '\0') fail(name, where + "'" + token + "' is not a number");
        arrays_[name].values.push_back(x);
        --pending;
      }
    }
    if (pending != 0) fail(name, "the file ends " + std::to_string(pending) + " values short");
  }

  const std::string& path() const noexcept { return path_; }
  const std::string& header() const noexcept { return header_; }
  bool has(const std::string& name) const { return arrays_.count(name) != 0; }

  const fixture_array& get(const std::string& name) const {
    const auto it = arrays_.find(name);
    if (it == arrays_.end()) fail(name, "no such record");
    return it->second;
  }
  /// A record of exactly one value.
  double scalar(const std::string& name) const {
    const fixture_array& a = get(name);
    if (a.values.size() != 1) fail(name, "expected one value, found " + std::to_string(a.values.size()));
    return a.values[0];
  }
  /// Every value of a record as an integer of type I (they must be integral and fit).
  template <class I = index>
  std::vector<I> integers(const std::string& name) const {
    std::vector<I> out;
    const double hi = std::ldexp(1.0, std::numeric_limits<I>::digits), lo = std::numeric_limits<I>::is_signed ? -hi : 0;
    for (const double x : get(name).values) {
      if (!(x == std::floor(x) && x >= lo && x < hi))
        fail(name, "value " + std::to_string(x) + " is not an integer of the wanted type");
      out.push_back(static_cast<I>(x));
    }
    return out;
  }
  /// Head `head` of a (heads, rows, cols) record, or the whole of a (rows, cols) record (head 0).
  template <class T>
  row_matrix<T> as_matrix(const std::string& name, index head = 0) const {
    const fixture_array& a = get(name);
    const std::size_t r = a.shape.size();
    if (r != 2 && r != 3) fail(name, "expected 2 or 3 dims, found " + std::to_string(r));
    const index heads = r == 3 ? a.shape[0] : 1, rows = a.shape[r - 2], cols = a.shape[r - 1];
    if (head < 0 || head >= heads)
      fail(name, "head " + std::to_string(head) + " outside [0, " + std::to_string(heads) + ")");
    row_matrix<T> m(rows, cols);
    const double* p = a.values.data() + head * rows * cols;
    for (index i = 0; i < rows * cols; ++i) m.data()[i] = static_cast<T>(p[i]);
    return m;
  }

 private:
  [[noreturn]] void fail(const std::string& name, const std::string& why) const {
    throw std::runtime_error(path_ + (name.empty() ? "" : ": record '" + name + "'") + ": " + why);
  }
  std::size_t parse_count(const std::string& token, const std::string& name, const std::string& where) const {
    char* end = nullptr;
    const long long n = std::strtoll(token.c_str(), &end, 10);
    if (end == token.c_str() || *end != '\0' || n < 0) fail(name, where + "dim '" + token + "' is not a count");
    return static_cast<std::size_t>(n);
  }

  std::string path_, header_;
  std::map<std::string, fixture_array> arrays_;
};

}  // namespace salt::test
