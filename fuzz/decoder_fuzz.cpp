// libFuzzer target: any byte string must decode to a message or a clean error,
// and whatever decodes must re-encode to bytes that decode to the same bytes.
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "messages/codec.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view frame(reinterpret_cast<const char*>(data), size);
  zchat::Result<zchat::Message> decoded = zchat::Decode(frame);
  if (!decoded.ok()) return 0;
  const std::string once = zchat::Encode(*decoded);
  zchat::Result<zchat::Message> again = zchat::Decode(once);
  if (!again.ok() || zchat::Encode(*again) != once) abort();
  return 0;
}
