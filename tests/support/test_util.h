// Helpers for codec tests: hex conversion and hand-built raw frames.
#pragma once

#include <functional>
#include <msgpack.hpp>
#include <string>
#include <string_view>

namespace zchat::testing {

inline std::string FromHex(std::string_view hex) {
  std::string out;
  auto nibble = [](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
  };
  int hi = -1;
  for (char c : hex) {
    int n = nibble(c);
    if (n < 0) continue;  // spaces and newlines are layout
    if (hi < 0) {
      hi = n;
    } else {
      out.push_back(static_cast<char>(hi * 16 + n));
      hi = -1;
    }
  }
  return out;
}

inline std::string ToHex(std::string_view bytes) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string out;
  for (unsigned char c : bytes) {
    if (!out.empty()) out.push_back(' ');
    out.push_back(kDigits[c >> 4]);
    out.push_back(kDigits[c & 15]);
  }
  return out;
}

using RawPacker = msgpack::packer<msgpack::sbuffer>;

// Builds a frame by hand: the callback packs whatever it likes.
inline std::string RawFrame(const std::function<void(RawPacker&)>& fill) {
  msgpack::sbuffer buffer;
  RawPacker pk(buffer);
  fill(pk);
  return std::string(buffer.data(), buffer.size());
}

}  // namespace zchat::testing
