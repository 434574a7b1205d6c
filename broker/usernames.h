// Username rules and the case-folded key under which a name is unique.
// Pure functions; no state.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

namespace zchat {

inline constexpr size_t kMinUsernameLength = 1;
inline constexpr size_t kMaxUsernameLength = 32;
inline constexpr size_t kMinPasswordBytes = 8;
inline constexpr size_t kMaxPasswordLength = 256;

// kMin..kMaxUsernameLength characters from [A-Za-z0-9_.-], starting with a
// letter or digit.
bool IsValidUsername(std::string_view name);
// The case-folded key under which a username is unique ("Alice" -> "alice").
std::string UsernameKey(std::string_view name);

}  // namespace zchat
