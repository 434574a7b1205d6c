#include "broker/wildcard.h"

namespace zchat {

bool WildcardMatch(std::string_view pattern, std::string_view key) {
  // Iterative matcher with single-star backtracking.
  size_t p = 0, k = 0, star = std::string_view::npos, star_k = 0;
  while (k < key.size()) {
    if (p < pattern.size() && pattern[p] == '*') {
      star = p++;
      star_k = k;
    } else if (p < pattern.size() && pattern[p] == '?') {
      ++p, ++k;
    } else if (p < pattern.size() &&
               (pattern[p] == '\\'
                    ? p + 1 < pattern.size() && pattern[p + 1] == key[k]
                    : pattern[p] == key[k])) {
      p += pattern[p] == '\\' ? 2 : 1;
      ++k;
    } else if (star != std::string_view::npos) {
      p = star + 1;
      k = ++star_k;
    } else {
      return false;
    }
  }
  while (p < pattern.size() && pattern[p] == '*') ++p;
  return p == pattern.size();
}

std::string WildcardPrefix(std::string_view pattern) {
  std::string prefix;
  for (size_t i = 0; i < pattern.size(); ++i) {
    if (pattern[i] == '*' || pattern[i] == '?') break;
    if (pattern[i] == '\\') {
      if (++i == pattern.size()) break;
    }
    prefix.push_back(pattern[i]);
  }
  return prefix;
}

}  // namespace zchat
