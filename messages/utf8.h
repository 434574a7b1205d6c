// UTF-8 validation for text fields (RFC 3629: no overlongs, no surrogates,
// nothing above U+10FFFF).
#pragma once

#include <string_view>

namespace zchat {

bool IsValidUtf8(std::string_view text);

}  // namespace zchat
