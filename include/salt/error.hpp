#pragma once
/// \file error.hpp
/// salt::error, the one exception the library throws, and the helper that formats its messages.

#include <sstream>
#include <stdexcept>
#include <string>
#include <utility>

namespace salt {

/// Thrown for bad shapes and parameters. The message names the public function and the sizes involved,
/// e.g. "salt::attention: k has 96 rows but v has 95". Nothing is modified when it is thrown.
class error : public std::invalid_argument {
 public:
  using std::invalid_argument::invalid_argument;
};

namespace detail {

/// Throws salt::error with the streamed concatenation of `parts` when `ok` is false.
template <class... Parts>
void require(bool ok, const Parts&... parts) {
  if (ok) return;
  std::ostringstream message;
  (message << ... << parts);
  throw error(message.str());
}

}  // namespace detail
}  // namespace salt
