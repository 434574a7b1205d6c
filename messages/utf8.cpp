#include "messages/utf8.h"

#include <cstdint>
#include <cstring>

namespace zchat {
namespace {

constexpr uint64_t kHighBits = 0x8080808080808080ULL;

bool IsContinuation(uint8_t c) { return (c & 0xC0) == 0x80; }

}  // namespace

bool IsValidUtf8(std::string_view text) {
  const auto* p = reinterpret_cast<const uint8_t*>(text.data());
  const auto* end = p + text.size();
  while (p < end) {
    // Most text is mostly ASCII: eight bytes at a time while it lasts.
    if (end - p >= 8) {
      uint64_t word;
      std::memcpy(&word, p, sizeof word);
      if ((word & kHighBits) == 0) {
        p += 8;
        continue;
      }
    }
    const uint8_t c = *p;
    if (c < 0x80) {
      ++p;
      continue;
    }
    // The well-formed sequences of the Unicode standard (table 3-7): the
    // lead byte fixes the length and the range of the second byte, which
    // excludes overlongs, surrogates and anything above U+10FFFF.
    int extra;
    uint8_t lo = 0x80, hi = 0xBF;  // the second byte's range
    if (c >= 0xC2 && c <= 0xDF) {
      extra = 1;
    } else if (c >= 0xE0 && c <= 0xEF) {
      extra = 2;
      if (c == 0xE0) lo = 0xA0;
      if (c == 0xED) hi = 0x9F;
    } else if (c >= 0xF0 && c <= 0xF4) {
      extra = 3;
      if (c == 0xF0) lo = 0x90;
      if (c == 0xF4) hi = 0x8F;
    } else {
      return false;  // a continuation byte, C0/C1, or F5..FF as a lead
    }
    if (end - p <= extra) return false;
    if (p[1] < lo || p[1] > hi) return false;
    for (int i = 2; i <= extra; ++i) {
      if (!IsContinuation(p[i])) return false;
    }
    p += extra + 1;
  }
  return true;
}

void TruncateUtf8(std::string& text, size_t max_bytes) {
  if (text.size() <= max_bytes) return;
  size_t cut = max_bytes;
  // Step back over continuation bytes to the start of the character.
  while (cut > 0 && IsContinuation(static_cast<uint8_t>(text[cut]))) --cut;
  text.resize(cut);
}

}  // namespace zchat
