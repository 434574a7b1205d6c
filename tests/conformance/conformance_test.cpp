// Runs the conformance transcripts (tests/conformance/*.json; the format is
// in tests/conformance/README.md) against the real zchat-broker binary: one
// test per case file, each with a broker of its own. Requests are built from
// the JSON (nlohmann's MessagePack encoder, or raw hex), sent on RawClient
// connections, and every frame that comes back is decoded generically and
// matched against the case's expectations, in arrival order. Every wait has
// a deadline.
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "messages/messages.h"
#include "tests/support/broker_process.h"
#include "tests/support/raw_client.h"
#include "tests/support/test_util.h"

namespace zchat::testing {
namespace {

using json = nlohmann::json;
using Clock = std::chrono::steady_clock;

constexpr auto kExpectWait = std::chrono::seconds(10);
constexpr uint64_t kFinalPingReq = 999999999;

std::vector<std::string> CaseNames() {
  std::vector<std::string> names;
  for (const auto& entry :
       std::filesystem::directory_iterator(ZCHAT_CONFORMANCE_DIR)) {
    if (entry.path().extension() == ".json") {
      names.push_back(entry.path().stem().string());
    }
  }
  std::sort(names.begin(), names.end());
  return names;
}

// A failure in a case file or in what the broker sent; carries the text.
struct CaseFailure {
  std::string what;
};

std::optional<uint64_t> TypeNumber(std::string_view name) {
  for (uint64_t n = 1; n <= kMessageTypeCount; ++n) {
    if (MessageTypeName(static_cast<MessageType>(n)) == name) return n;
  }
  return std::nullopt;
}

std::optional<uint64_t> CodeNumber(std::string_view name) {
  for (uint64_t n = 0; n <= kMaxErrorCode; ++n) {
    if (ErrorCodeName(static_cast<ErrorCode>(n)) == name) return n;
  }
  return std::nullopt;
}

std::string Show(const json& v) {
  if (v.is_binary()) {
    static constexpr char kHex[] = "0123456789abcdef";
    std::string out = "bin:";
    for (uint8_t c : v.get_binary()) {
      out.push_back(kHex[c >> 4]);
      out.push_back(kHex[c & 15]);
    }
    return out;
  }
  if (v.is_object() || v.is_array()) {
    std::string out = v.is_object() ? "{" : "[";
    bool first = true;
    for (auto it = v.begin(); it != v.end(); ++it) {
      if (!first) out += ", ";
      first = false;
      if (v.is_object()) out += it.key() + ": ";
      out += Show(*it);
    }
    return out + (v.is_object() ? "}" : "]");
  }
  if (v.is_string() && v.get_ref<const std::string&>().size() > 80) {
    const std::string& s = v.get_ref<const std::string&>();
    size_t cut = 60;
    while (cut > 0 && (static_cast<unsigned char>(s[cut]) & 0xc0) == 0x80) {
      --cut;  // on a character boundary
    }
    return json(s.substr(0, cut)).dump() + "... (" + std::to_string(s.size()) +
           " bytes)";
  }
  return v.dump(-1, ' ', false, json::error_handler_t::replace);
}

class Runner {
 public:
  Runner(std::string endpoint, json case_json)
      : endpoint_(std::move(endpoint)), case_(std::move(case_json)) {
    // A fresh token per run: a letter, then 7 letters or digits.
    std::random_device rd;
    std::mt19937_64 rng(rd());
    static constexpr char kAlnum[] = "abcdefghijklmnopqrstuvwxyz0123456789";
    std::string uniq(1, kAlnum[rng() % 26]);
    for (int i = 0; i < 7; ++i) uniq.push_back(kAlnum[rng() % 36]);
    vars_["uniq"] = uniq;
  }

  void Run() {
    const json& steps = case_.at("steps");
    for (size_t i = 0; i < steps.size(); ++i) {
      try {
        Step(steps[i]);
      } catch (const CaseFailure& f) {
        throw CaseFailure{"step " + std::to_string(i + 1) + " " +
                          Show(steps[i]).substr(0, 300) + ": " + f.what};
      } catch (const json::exception& e) {
        throw CaseFailure{"step " + std::to_string(i + 1) +
                          ": bad case file: " + e.what()};
      }
    }
    // Nothing unexpected is left: on every open connection, a PING is
    // answered by the next frame.
    for (auto& [name, conn] : conns_) {
      json ping = {{"v", 1}, {"type", 22}, {"req", kFinalPingReq}};
      const std::vector<uint8_t> bytes = json::to_msgpack(ping);
      conn->SendRaw(std::string(bytes.begin(), bytes.end()));
      json got = Receive(name);
      std::string why;
      if (!Match(json{{"type", 23}, {"req", kFinalPingReq}}, got, "", why)) {
        throw CaseFailure{"after the last step, connection '" + name +
                          "' got " + Show(got) +
                          " instead of the PONG to a final PING (" + why + ")"};
      }
    }
  }

 private:
  void Step(const json& step) {
    if (step.contains("disconnect")) {
      conns_.erase(step.at("disconnect").get<std::string>());
      return;
    }
    const std::string on = step.at("on").get<std::string>();
    if (step.contains("send")) {
      json frame = Build(step.at("send"));
      if (!frame.contains("v")) frame["v"] = 1;
      const std::vector<uint8_t> bytes = json::to_msgpack(frame);
      if (!Conn(on).SendRaw(std::string(bytes.begin(), bytes.end()))) {
        throw CaseFailure{"the socket did not take the frame"};
      }
    } else if (step.contains("send_hex")) {
      json parts = step.at("send_hex");
      if (!parts.is_array()) parts = json::array({parts});
      zmq::socket_t& s = Conn(on).socket();
      for (size_t i = 0; i < parts.size(); ++i) {
        const std::string frame = FromHex(parts[i].get<std::string>());
        const auto flags = i + 1 < parts.size() ? zmq::send_flags::sndmore
                                                : zmq::send_flags::none;
        if (!s.send(zmq::buffer(frame), flags)) {
          throw CaseFailure{"the socket did not take the frame"};
        }
      }
    } else if (step.contains("expect")) {
      json got = Receive(on);
      std::string why;
      if (!Match(step.at("expect"), got, "", why)) {
        throw CaseFailure{"got " + Show(got) + ": " + why};
      }
    } else if (step.contains("expect_any_order")) {
      std::vector<json> wants = step.at("expect_any_order");
      std::vector<json> got;
      for (size_t i = 0; i < wants.size(); ++i) got.push_back(Receive(on));
      // Every expectation takes one frame; small sets, so try each order.
      std::vector<size_t> order(wants.size());
      for (size_t i = 0; i < order.size(); ++i) order[i] = i;
      const auto saved = vars_;
      do {
        vars_ = saved;
        bool all = true;
        for (size_t i = 0; i < order.size() && all; ++i) {
          std::string why;
          all = Match(wants[order[i]], got[i], "", why);
        }
        if (all) return;
      } while (std::next_permutation(order.begin(), order.end()));
      vars_ = saved;
      throw CaseFailure{"got " + Show(json(got)) +
                        ", which does not match the expectations in any "
                        "order"};
    } else {
      throw CaseFailure{"bad case file: unknown step"};
    }
  }

  RawClient& Conn(const std::string& name) {
    auto it = conns_.find(name);
    if (it == conns_.end()) {
      it = conns_.emplace(name, std::make_unique<RawClient>(ctx_, endpoint_))
               .first;
    }
    return *it->second;
  }

  // The next frame on `name`, decoded; a failure after the deadline.
  json Receive(const std::string& name) {
    RawClient& c = Conn(name);
    const auto deadline = Clock::now() + kExpectWait;
    zmq::message_t msg;
    for (;;) {
      if (c.socket().recv(msg, zmq::recv_flags::dontwait)) break;
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
          deadline - Clock::now());
      if (left.count() <= 0 || !c.WaitReadable(left)) {
        if (Clock::now() >= deadline) {
          throw CaseFailure{"nothing arrived on '" + name + "' within " +
                            std::to_string(kExpectWait.count()) + " s"};
        }
      }
    }
    if (msg.more()) throw CaseFailure{"the broker sent a multi-part message"};
    try {
      return json::from_msgpack(msg.to_string_view());
    } catch (const json::exception& e) {
      throw CaseFailure{std::string("the broker sent a frame that is not "
                                    "MessagePack: ") +
                        e.what()};
    }
  }

  // A value of a request, with references and constructors resolved.
  json Build(const json& v, std::string_view key = {}) {
    if (v.is_object()) {
      if (v.contains("$bin")) {
        const std::string bytes = FromHex(v.at("$bin").get<std::string>());
        return json::binary(std::vector<uint8_t>(bytes.begin(), bytes.end()));
      }
      if (v.contains("$repeat")) {
        std::string out;
        const std::string unit =
            Interpolate(v.at("$repeat").get<std::string>());
        for (uint64_t i = 0, n = v.at("times").get<uint64_t>(); i < n; ++i) {
          out += unit;
        }
        return out;
      }
      json out = json::object();
      for (auto it = v.begin(); it != v.end(); ++it) {
        out[it.key()] = Build(it.value(), it.key());
      }
      return out;
    }
    if (v.is_array()) {
      json out = json::array();
      for (const auto& e : v) out.push_back(Build(e));
      return out;
    }
    if (v.is_string()) {
      const std::string s = v.get<std::string>();
      if (key == "type" || key == "code") {
        auto n = key == "type" ? TypeNumber(s) : CodeNumber(s);
        if (!n)
          throw CaseFailure{"bad case file: no " + std::string(key) +
                            " named '" + s + "'"};
        return *n;
      }
      if (s.size() > 3 && s.starts_with("${") && s.ends_with("}") &&
          s.find("${", 2) == std::string::npos) {
        return Var(s.substr(2, s.size() - 3));
      }
      return Interpolate(s);
    }
    return v;
  }

  const json& Var(const std::string& name) {
    auto it = vars_.find(name);
    if (it == vars_.end()) {
      throw CaseFailure{"bad case file: '" + name + "' is not captured yet"};
    }
    return it->second;
  }

  std::string Interpolate(const std::string& s) {
    std::string out;
    size_t pos = 0;
    for (size_t at; (at = s.find("${", pos)) != std::string::npos;) {
      const size_t end = s.find('}', at);
      if (end == std::string::npos) break;
      out += s.substr(pos, at - pos);
      const json& value = Var(s.substr(at + 2, end - at - 2));
      out += value.is_string() ? value.get<std::string>() : value.dump();
      pos = end + 1;
    }
    return out + s.substr(pos);
  }

  // Whether `got` matches `want` (README.md: maps match on the keys listed,
  // "?kind[=name]" matchers, captures, references).
  bool Match(const json& want, const json& got, const std::string& path,
             std::string& why) {
    auto fail = [&](const std::string& what) {
      why = (path.empty() ? std::string("frame") : path) + ": " + what;
      return false;
    };
    if (want.is_object() && !want.contains("$bin") &&
        !want.contains("$repeat")) {
      if (!got.is_object()) return fail("expected a map, got " + Show(got));
      for (auto it = want.begin(); it != want.end(); ++it) {
        const std::string sub = path.empty() ? it.key() : path + "." + it.key();
        if (it.value() == "?absent") {
          if (got.contains(it.key())) return fail("'" + it.key() + "' present");
          continue;
        }
        if (!got.contains(it.key())) return fail("'" + it.key() + "' missing");
        json w = it.value();
        if ((it.key() == "type" || it.key() == "code") && w.is_string() &&
            !w.get<std::string>().starts_with("?")) {
          w = Build(w, it.key());
        }
        if (!Match(w, got.at(it.key()), sub, why)) return false;
      }
      return true;
    }
    if (want.is_array()) {
      if (!got.is_array() || got.size() != want.size()) {
        return fail("expected " + Show(want) + ", got " + Show(got));
      }
      for (size_t i = 0; i < want.size(); ++i) {
        if (!Match(want[i], got[i], path + "[" + std::to_string(i) + "]",
                   why)) {
          return false;
        }
      }
      return true;
    }
    if (want.is_string()) {
      const std::string s = want.get<std::string>();
      if (s.starts_with("?") && !s.starts_with("??")) {
        const size_t eq = s.find('=');
        const std::string kind =
            s.substr(1, eq == std::string::npos ? std::string::npos : eq - 1);
        bool ok = false;
        if (kind == "any") ok = true;
        if (kind == "uint") ok = got.is_number_unsigned();
        if (kind == "uint+") ok = got.is_number_unsigned() && got > 0;
        if (kind == "str") ok = got.is_string();
        if (kind == "str+") ok = got.is_string() && !got.empty();
        if (kind == "bin") ok = got.is_binary();
        if (kind == "bool") ok = got.is_boolean();
        if (kind == "array") ok = got.is_array();
        if (!ok) return fail("expected " + s + ", got " + Show(got));
        if (eq != std::string::npos) {
          const std::string name = s.substr(eq + 1);
          auto it = vars_.find(name);
          if (it == vars_.end()) {
            vars_[name] = got;
          } else if (it->second != got) {
            return fail("expected " + name + " = " + Show(it->second) +
                        ", got " + Show(got));
          }
        }
        return true;
      }
    }
    const json w = want.is_string() && want.get<std::string>().starts_with("??")
                       ? json(want.get<std::string>().substr(1))
                       : Build(want);
    // Integers compare by value, whatever their signedness in JSON.
    if (w.is_number_integer() && got.is_number_integer()) {
      if (w.get<int64_t>() == got.get<int64_t>() ||
          (w.is_number_unsigned() && got.is_number_unsigned() &&
           w.get<uint64_t>() == got.get<uint64_t>())) {
        return true;
      }
      return fail("expected " + Show(w) + ", got " + Show(got));
    }
    if (w != got) return fail("expected " + Show(w) + ", got " + Show(got));
    return true;
  }

  std::string endpoint_;
  json case_;
  zmq::context_t ctx_;
  std::map<std::string, json> vars_;
  std::map<std::string, std::unique_ptr<RawClient>> conns_;
};

class ConformanceTest : public ::testing::TestWithParam<std::string> {};

TEST_P(ConformanceTest, Transcript) {
  const std::string path =
      std::string(ZCHAT_CONFORMANCE_DIR) + "/" + GetParam() + ".json";
  std::ifstream in(path);
  ASSERT_TRUE(in) << "cannot read " << path;
  json c;
  try {
    c = json::parse(in);
  } catch (const json::exception& e) {
    FAIL() << path << ": " << e.what();
  }
  std::vector<std::string> flags;
  if (c.contains("broker_args")) flags = c.at("broker_args");
  BrokerProcess broker(flags);
  const std::string endpoint = broker.Start();
  ASSERT_FALSE(endpoint.empty()) << "the broker did not start";
  try {
    Runner(endpoint, c).Run();
  } catch (const CaseFailure& f) {
    FAIL() << path << "\n" << f.what;
  }
  EXPECT_EQ(broker.Stop(), 0);
}

INSTANTIATE_TEST_SUITE_P(Cases, ConformanceTest,
                         ::testing::ValuesIn(CaseNames()),
                         [](const ::testing::TestParamInfo<std::string>& i) {
                           std::string name = i.param;
                           for (char& ch : name) {
                             if (!std::isalnum(static_cast<unsigned char>(ch)))
                               ch = '_';
                           }
                           return name;
                         });

}  // namespace
}  // namespace zchat::testing
