// libFuzzer target for the dispatcher: arbitrary frames from four peers go
// through decode + dispatch + handlers against a scratch in-memory database.
// Two of the peers start logged in (alice, bob), so the logged-in handlers
// are reached. Whatever comes in, every frame the broker sends must decode.
//
// Input: records of [peer (1 byte)][length (2 bytes, little endian)][frame].
#include <sodium.h>

#include <cstdint>
#include <cstdlib>
#include <string>

#include "broker/broker_core.h"
#include "messages/codec.h"

namespace {

using namespace zchat;

std::string TokenFor(char who) { return std::string(kTokenBytes, who); }

std::string HashOf(const std::string& token) {
  unsigned char out[32];
  crypto_generichash(out, sizeof out,
                     reinterpret_cast<const unsigned char*>(token.data()),
                     token.size(), nullptr, 0);
  return std::string(reinterpret_cast<char*>(out), sizeof out);
}

void CheckOutbox(const std::vector<OutFrame>& frames) {
  for (const OutFrame& f : frames) {
    if (f.frame.size() > kMaxFrameBytes || !Decode(f.frame).ok()) abort();
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static HashPool* pool = new HashPool(0, 64, HashCost{1, 8192});
  auto store = Store::Open(":memory:", StoreOptions{});
  if (!store.ok()) abort();
  int64_t now = 1'800'000'000'000;
  BrokerCore core(**store, *pool, BrokerConfig{}, [&] { return now; });

  // alice and bob exist and are logged in on peers "a" and "b".
  if (!(*store)->Begin().ok()) abort();
  for (char who : {'a', 'b'}) {
    const std::string name = who == 'a' ? "alice" : "bob";
    auto id = (*store)->CreateAccount(name, name, "$argon2id$x", now);
    if (!id.ok()) abort();
    if (!(*store)->AddToken(HashOf(TokenFor(who)), *id, now).ok()) abort();
  }
  if (!(*store)->Commit().ok()) abort();
  core.BeginBatch();
  core.OnFrame("a",
               Encode({1, LoginRequest{"alice", std::nullopt, TokenFor('a')}}));
  core.OnFrame("b",
               Encode({1, LoginRequest{"bob", std::nullopt, TokenFor('b')}}));
  CheckOutbox(core.EndBatch());

  static const char* const kPeers[] = {"a", "b", "c", "d"};
  size_t pos = 0;
  while (pos + 3 <= size) {
    const char* peer = kPeers[data[pos] % 4];
    size_t len = data[pos + 1] | (static_cast<size_t>(data[pos + 2]) << 8);
    pos += 3;
    len = std::min(len, size - pos);
    core.BeginBatch();
    core.OnFrame(
        peer, std::string_view(reinterpret_cast<const char*>(data + pos), len));
    if (data[pos - 3] & 0x80) {
      now += 61'000;  // sometimes let time pass: sessions expire
      core.OnTick();
    }
    CheckOutbox(core.EndBatch());
    pos += len;
  }
  return 0;
}
