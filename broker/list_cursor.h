// The LIST_ACCOUNTS cursor: opaque to clients, bound to the pattern it was
// issued for. It carries a version, a digest of the case-folded pattern and
// the scan position (the last key examined). A cursor whose version or
// digest does not fit the request is refused; a forged position with the
// right digest only starts the scan elsewhere, which reveals nothing a
// listing would not. Pure functions.
#pragma once

#include <string>
#include <string_view>

#include "messages/status.h"

namespace zchat {

// The cursor that resumes a scan for `folded_pattern` after `key`.
std::string EncodeListCursor(std::string_view folded_pattern,
                             std::string_view key);
// The key to resume after, or invalid_argument when `cursor` was not issued
// for `folded_pattern` (another pattern, another version, made up).
Result<std::string> DecodeListCursor(std::string_view folded_pattern,
                                     std::string_view cursor);

}  // namespace zchat
