// Must not compile: key_padding views its lengths, so a mask made from a temporary vector would dangle as
// soon as the statement ends (`auto m = salt::key_padding{std::vector<salt::index>{3, 4}};`).
// expect: salt: a policy views this data .indices, ids, lengths, flags, slopes, layout tables., which must outlive the call: keep it in a variable, not a temporary
#include <salt/mask.hpp>

#include <vector>

int main() {
  const auto mask = salt::key_padding{std::vector<salt::index>{3, 4}};
  return static_cast<int>(mask.lengths.size());
}
