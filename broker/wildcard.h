// Wildcard patterns for LIST_ACCOUNTS: '*' matches any run, '?' one
// character, '\' makes the next character literal. Patterns are matched
// against case-folded keys (see usernames.h). Pure functions.
#pragma once

#include <string>
#include <string_view>

namespace zchat {

// Whether `key` matches `pattern` as a whole. O(|pattern| * |key|).
bool WildcardMatch(std::string_view pattern, std::string_view key);
// The literal text before the pattern's first wildcard, unescaped: every
// matching key starts with it, so a sorted scan can start there.
std::string WildcardPrefix(std::string_view pattern);

}  // namespace zchat
