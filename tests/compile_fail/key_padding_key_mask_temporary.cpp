// Must not compile: key_mask views its flags, so a mask made from a temporary vector would dangle as soon
// as the statement ends.
// expect: salt: a policy views this data .indices, ids, lengths, flags, slopes, layout tables., which must outlive the call: keep it in a variable, not a temporary
#include <salt/mask.hpp>

#include <cstdint>
#include <vector>

int main() {
  const auto mask = salt::key_mask{std::vector<std::uint8_t>{1, 0, 1}};
  return static_cast<int>(mask.valid.size());
}
