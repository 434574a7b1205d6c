#include "client/printer.h"

#include <chrono>
#include <ctime>
#include <nlohmann/json.hpp>

namespace zchat {
namespace {

using Json = nlohmann::json;

// Local wall-clock time "HH:MM:SS" of a Unix time in milliseconds.
std::string Clock(uint64_t unix_ms) {
  std::time_t secs = static_cast<std::time_t>(unix_ms / 1000);
  std::tm tm{};
  localtime_r(&secs, &tm);
  char buf[16];
  std::strftime(buf, sizeof buf, "%H:%M:%S", &tm);
  return buf;
}

std::string Now() {
  using namespace std::chrono;
  return Clock(static_cast<uint64_t>(
      duration_cast<milliseconds>(system_clock::now().time_since_epoch())
          .count()));
}

std::string Line(const Json& j) {
  return j.dump(-1, ' ', false, Json::error_handler_t::replace);
}

constexpr size_t kRememberedBodies = 1000;

}  // namespace

Printer::Printer(bool json, Sink out, Sink err)
    : json_(json), out_(std::move(out)), err_(std::move(err)) {}

std::string Printer::Reason(const Status& s) const {
  if (s.code() == ErrorCode::kTimeout && s.detail().rfind("no reply", 0) == 0) {
    return s.detail() + no_reply_hint_;
  }
  return s.detail();
}

void Printer::Incoming(const DistributeMessage& m) {
  if (json_) {
    return Emit(Line({{"event", "message"},
                      {"id", m.message_id},
                      {"from", m.sender},
                      {"body", m.body},
                      {"sent_at", m.sent_at_ms}}));
  }
  Emit("[" + Clock(m.sent_at_ms) + "] " + m.sender + ": " + m.body);
}

void Printer::Pending(const MessagePending& p, const std::string& to,
                      const std::string& body) {
  sent_bodies_[p.message_id] = body;
  if (sent_bodies_.size() > kRememberedBodies) {
    sent_bodies_.erase(sent_bodies_.begin());
  }
  if (json_) {
    return Emit(Line({{"event", "pending"},
                      {"id", p.message_id},
                      {"to", to},
                      {"body", body}}));
  }
  Emit("[" + Now() + "] -> " + to + ": " + body + "   (pending #" +
       std::to_string(p.message_id) + ")");
}

void Printer::SendFailed(const std::string& to, const Status& why) {
  if (json_) {
    return Emit(Line({{"event", "error"},
                      {"code", std::string(ErrorCodeName(why.code()))},
                      {"reason", Reason(why)},
                      {"to", to}}));
  }
  err_("[" + Now() + "] x to " + to + " failed: " + Reason(why) + " (" +
       std::string(ErrorCodeName(why.code())) + ")");
}

void Printer::Delivered(const MessageSuccess& s) {
  if (json_) {
    return Emit(Line(
        {{"event", "delivered"}, {"id", s.message_id}, {"to", s.recipient}}));
  }
  std::string what = "#" + std::to_string(s.message_id);
  if (auto it = sent_bodies_.find(s.message_id); it != sent_bodies_.end()) {
    what += " \"" + it->second + "\"";
    sent_bodies_.erase(it);
  }
  Emit("[" + Now() + "] ok " + s.recipient + " received " + what);
}

void Printer::Undeliverable(const MessageUndeliverable& u) {
  if (json_) {
    return Emit(Line({{"event", "undeliverable"},
                      {"id", u.message_id},
                      {"to", u.recipient},
                      {"code", std::string(ErrorCodeName(u.code))},
                      {"reason", u.reason}}));
  }
  Emit("[" + Now() + "] x #" + std::to_string(u.message_id) + " to " +
       u.recipient + " will never be delivered: " + u.reason);
}

void Printer::SessionEnd(const SessionEnded& e) {
  if (json_) {
    return Emit(Line({{"event", "session_ended"},
                      {"code", std::string(ErrorCodeName(e.code))},
                      {"reason", e.reason}}));
  }
  Emit("[" + Now() + "] * logged out by the broker: " + e.reason);
}

void Printer::Connection(const ConnectionEvent& e) {
  static constexpr const char* kNames[] = {
      "connection_lost", "connection_restored", "connection_restore_failed",
      "failover"};
  const char* name = kNames[static_cast<int>(e.kind)];
  if (json_) {
    return Emit(Line({{"event", name}, {"detail", e.detail}}));
  }
  switch (e.kind) {
    case ConnectionEvent::Kind::kLost:
      return Emit("[" + Now() + "] * connection lost; reconnecting...");
    case ConnectionEvent::Kind::kRestored:
      return Emit("[" + Now() + "] * reconnected");
    case ConnectionEvent::Kind::kRestoreFailed:
      return Emit("[" + Now() +
                  "] * reconnected, but not logged in: " + e.detail);
    case ConnectionEvent::Kind::kFailover:
      return Emit("[" + Now() + "] * broker unreachable; " + e.detail);
  }
}

void Printer::Event(const zchat::Event& e) {
  std::visit(
      [this](const auto& v) {
        using T = std::decay_t<decltype(v)>;
        if constexpr (std::is_same_v<T, DistributeMessage>) {
          Incoming(v);
        } else if constexpr (std::is_same_v<T, MessageSuccess>) {
          Delivered(v);
        } else if constexpr (std::is_same_v<T, MessageUndeliverable>) {
          Undeliverable(v);
        } else if constexpr (std::is_same_v<T, SessionEnded>) {
          SessionEnd(v);
        } else {
          Connection(v);
        }
      },
      e);
}

void Printer::Registered(const std::string& user, const std::string& next) {
  if (json_) return Emit(Line({{"event", "registered"}, {"user", user}}));
  Emit("* account " + user + " created; " + next);
}

void Printer::LoggedIn(const LoginSuccess& ok) {
  if (json_) {
    return Emit(Line({{"event", "logged_in"},
                      {"user", ok.username},
                      {"pending", ok.pending}}));
  }
  std::string line = "* logged in as " + ok.username;
  if (ok.pending > 0) {
    line += "; " + std::to_string(ok.pending) +
            " undelivered message(s) waiting: /fetch to read them";
  }
  Emit(line);
}

void Printer::LoggedOut() {
  if (json_) return Emit(Line({{"event", "logged_out"}}));
  Emit("* logged out");
}

void Printer::Users(const std::vector<std::string>& accounts) {
  if (json_) return Emit(Line({{"event", "users"}, {"accounts", accounts}}));
  if (accounts.empty()) return Emit("* no matching users");
  std::string line = "* " + std::to_string(accounts.size()) + " user(s):";
  for (const auto& a : accounts) line += " " + a;
  Emit(line);
}

void Printer::Fetched(const FetchResult& r) {
  if (json_) {
    return Emit(Line({{"event", "fetched"},
                      {"count", r.count},
                      {"remaining", r.remaining}}));
  }
  std::string line = "* fetched " + std::to_string(r.count) + " message(s)";
  if (r.remaining > 0) {
    line += "; " + std::to_string(r.remaining) + " more waiting";
  }
  Emit(line);
}

void Printer::Deleted(const DeletionSuccess& d) {
  if (json_) {
    return Emit(Line({{"event", "deleted"}, {"discarded", d.purged}}));
  }
  Emit("* account deleted (" + std::to_string(d.purged) +
       " undelivered message(s) discarded)");
}

void Printer::Error(const Status& s) {
  if (json_) {
    return Emit(Line({{"event", "error"},
                      {"code", std::string(ErrorCodeName(s.code()))},
                      {"reason", Reason(s)}}));
  }
  err_("! " + Reason(s) + " (" + std::string(ErrorCodeName(s.code())) + ")");
}

void Printer::Info(const std::string& text) {
  if (!json_) Emit(text);
}

}  // namespace zchat
