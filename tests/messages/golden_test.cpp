// Golden frames: tests/data/golden/<TYPE>.hex holds the encoding of each
// sample message. A change to the encoding fails here. Set
// ZCHAT_UPDATE_GOLDEN=1 to rewrite the files after a deliberate change.
// docs/protocol.md quotes some of them; that is checked here too.
#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "messages/codec.h"
#include "tests/support/samples.h"
#include "tests/support/test_util.h"

namespace zchat {
namespace {

namespace fs = std::filesystem;

fs::path GoldenDir() {
  return fs::path(ZCHAT_SOURCE_DIR) / "tests/data/golden";
}

std::string ReadFile(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

TEST(GoldenTest, FramesMatchFilesByteForByte) {
  const bool update = std::getenv("ZCHAT_UPDATE_GOLDEN") != nullptr;
  if (update) fs::create_directories(GoldenDir());
  for (const Message& m : testing::SampleMessages()) {
    const std::string name(MessageTypeName(TypeOf(m.body)));
    const fs::path path = GoldenDir() / (name + ".hex");
    const std::string encoded = Encode(m);
    if (update) {
      std::ofstream(path) << testing::ToHex(encoded) << "\n";
    }
    ASSERT_TRUE(fs::exists(path)) << path;
    const std::string golden = testing::FromHex(ReadFile(path));
    EXPECT_EQ(testing::ToHex(encoded), testing::ToHex(golden)) << name;
    Result<Message> decoded = Decode(golden);
    ASSERT_TRUE(decoded.ok()) << name << ": " << decoded.status().ToString();
    EXPECT_EQ(Encode(*decoded), golden) << name;
  }
}

// docs/protocol.md marks quoted frames with "<!-- golden:TYPE -->" followed
// by a fenced block of hex. Each must equal the golden file.
TEST(GoldenTest, ProtocolDocQuotesGoldenFrames) {
  const std::string doc =
      ReadFile(fs::path(ZCHAT_SOURCE_DIR) / "docs/protocol.md");
  ASSERT_FALSE(doc.empty());
  const std::string marker = "<!-- golden:";
  size_t quoted = 0;
  for (size_t pos = doc.find(marker); pos != std::string::npos;
       pos = doc.find(marker, pos + 1)) {
    size_t name_start = pos + marker.size();
    size_t name_end = doc.find(" -->", name_start);
    ASSERT_NE(name_end, std::string::npos);
    const std::string name = doc.substr(name_start, name_end - name_start);
    size_t fence = doc.find("```", name_end);
    size_t body = doc.find('\n', fence) + 1;
    size_t close = doc.find("```", body);
    ASSERT_NE(close, std::string::npos) << name;
    const std::string hex = doc.substr(body, close - body);
    const fs::path path = GoldenDir() / (name + ".hex");
    ASSERT_TRUE(fs::exists(path)) << "doc quotes unknown frame " << name;
    EXPECT_EQ(testing::ToHex(testing::FromHex(hex)),
              testing::ToHex(testing::FromHex(ReadFile(path))))
        << "docs/protocol.md is stale for " << name;
    ++quoted;
  }
  EXPECT_GE(quoted, 3u) << "docs/protocol.md should quote real frames";
}

}  // namespace
}  // namespace zchat
