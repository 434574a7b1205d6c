// UTF-8 validation for text fields (RFC 3629: no overlongs, no surrogates,
// nothing above U+10FFFF).
#pragma once

#include <string>
#include <string_view>

namespace zchat {

bool IsValidUtf8(std::string_view text);

// Cuts valid UTF-8 `text` to at most `max_bytes` without splitting a
// character.
void TruncateUtf8(std::string& text, size_t max_bytes);

}  // namespace zchat
