#pragma once
/// \file borrowed_span.hpp
/// `borrowed_span`: the member type of the policies that view user data, a std::span that refuses
/// temporaries.

#include <concepts>
#include <ranges>
#include <span>
#include <type_traits>

namespace salt {

/// A std::span that binds only to data that outlives the expression: an lvalue (a vector, a std::array, a C
/// array) or a borrowed range (an explicit std::span), never a temporary container. Policies are trivially
/// copyable views that do not copy their data (global_tokens' indices, segments' ids, key_padding's and
/// query_padding's lengths, key_mask's flags, alibi's slopes, the block layouts' tables), so a policy made
/// from a temporary and kept in `auto` would view freed storage; with this member that is a compile error.
/// The policies stay aggregates, so designated initialisers keep working:
///
///     const std::vector<salt::index> lengths{700, 1024};
///     const auto mask = salt::key_padding{.lengths = lengths};   // salt::key_padding{lengths} alike
///
/// Ranges of another element type are refused by the constraint (std::span<T> must be constructible from
/// them), as std::span refuses them.
template <class T>
class borrowed_span : public std::span<T> {
 public:
  /// An empty span.
  borrowed_span() = default;
  /// Views `data` (an lvalue range or a borrowed range of T) without copying it; O(1). A temporary container
  /// is a compile error.
  template <class R>
    requires(!std::same_as<std::remove_cvref_t<R>, borrowed_span>) && std::constructible_from<std::span<T>, R&>
  constexpr borrowed_span(R&& data)  // NOLINT: converts like a span
      noexcept(std::is_nothrow_constructible_v<std::span<T>, R&>)
      : std::span<T>(data) {
    static_assert(std::is_lvalue_reference_v<R> || std::ranges::borrowed_range<R>,
                  "salt: a policy views this data (indices, ids, lengths, flags, slopes, layout tables), which must "
                  "outlive the call: keep it in a variable, not a temporary.");
  }
};

}  // namespace salt

// A borrowed_span is a view: iterators taken from a temporary one stay valid, like std::span's.
// (Hidden from the reference: a specialisation in namespace std, not a name of salt.)
/// \cond
template <class T>
inline constexpr bool std::ranges::enable_borrowed_range<salt::borrowed_span<T>> = true;
/// \endcond
