#include "broker/list_cursor.h"

#include <sodium.h>

#include "broker/usernames.h"

namespace zchat {
namespace {

// "L1": the format's version. Bump it when the layout changes; old cursors
// are then refused (a client starts the listing again).
constexpr std::string_view kVersion = "L1";
constexpr size_t kDigestBytes = 8;
constexpr std::string_view kDigestContext = "zchat list cursor v1";

std::string PatternDigest(std::string_view folded_pattern) {
  unsigned char out[kDigestBytes];
  crypto_generichash_state st;
  crypto_generichash_init(&st, nullptr, 0, sizeof out);
  crypto_generichash_update(
      &st, reinterpret_cast<const unsigned char*>(kDigestContext.data()),
      kDigestContext.size() + 1);  // with its NUL, as a separator
  crypto_generichash_update(
      &st, reinterpret_cast<const unsigned char*>(folded_pattern.data()),
      folded_pattern.size());
  crypto_generichash_final(&st, out, sizeof out);
  return std::string(reinterpret_cast<char*>(out), sizeof out);
}

std::string Hex(std::string_view bytes) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  out.reserve(bytes.size() * 2);
  for (unsigned char c : bytes) {
    out.push_back(kHex[c >> 4]);
    out.push_back(kHex[c & 15]);
  }
  return out;
}

int HexDigit(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  return -1;
}

bool Unhex(std::string_view hex, std::string& out) {
  if (hex.size() % 2 != 0) return false;
  out.clear();
  for (size_t i = 0; i < hex.size(); i += 2) {
    const int hi = HexDigit(hex[i]), lo = HexDigit(hex[i + 1]);
    if (hi < 0 || lo < 0) return false;
    out.push_back(static_cast<char>(hi << 4 | lo));
  }
  return true;
}

Status Refused(std::string_view why) {
  return Status(ErrorCode::kInvalidArgument,
                "field 'cursor' " + std::string(why) +
                    ": pass back the cursor of the previous ACCOUNT_LIST, "
                    "with the same pattern");
}

}  // namespace

std::string EncodeListCursor(std::string_view folded_pattern,
                             std::string_view key) {
  return std::string(kVersion) + Hex(PatternDigest(folded_pattern)) + Hex(key);
}

Result<std::string> DecodeListCursor(std::string_view folded_pattern,
                                     std::string_view cursor) {
  std::string bytes;
  if (cursor.substr(0, kVersion.size()) != kVersion ||
      !Unhex(cursor.substr(kVersion.size()), bytes) ||
      bytes.size() <= kDigestBytes ||
      bytes.size() > kDigestBytes + kMaxUsernameLength) {
    return Refused("is not a cursor this broker issued");
  }
  if (bytes.substr(0, kDigestBytes) != PatternDigest(folded_pattern)) {
    return Refused("belongs to another pattern");
  }
  return bytes.substr(kDigestBytes);
}

}  // namespace zchat
