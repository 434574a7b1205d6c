// Printer: how the terminal client shows what happens, as text for people
// or as one JSON object per line (--json) for programs. Every line goes to a
// sink, so the interactive front end can print above the prompt.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "client/client.h"

namespace zchat {

class Printer {
 public:
  using Sink = std::function<void(const std::string& line)>;
  Printer(bool json, Sink out, Sink err);

  bool json() const { return json_; }

  void Incoming(const DistributeMessage& m);
  void Pending(const MessagePending& p, const std::string& to,
               const std::string& body);
  void SendFailed(const std::string& to, const Status& why);
  void Delivered(const MessageSuccess& s);
  void Undeliverable(const MessageUndeliverable& u);
  void SessionEnd(const SessionEnded& e);
  void Connection(const ConnectionEvent& e);
  void Event(const zchat::Event& e);  // dispatches to the above

  // `next`: what to do now, after "; " (text only), e.g. "/login NAME to
  // use it".
  void Registered(const std::string& user, const std::string& next);
  void LoggedIn(const LoginSuccess& ok);
  void LoggedOut();
  void Users(const std::vector<std::string>& accounts);
  void Fetched(const FetchResult& r);
  void Deleted(const DeletionSuccess& d);
  void Error(const Status& s);
  void Info(const std::string& text);  // people only; silent in JSON mode
  // Appended to the reason of a "no reply from ..." timeout (e.g. a hint
  // that the broker may require --server-key).
  void set_no_reply_hint(std::string hint) { no_reply_hint_ = std::move(hint); }

 private:
  void Emit(const std::string& line) { out_(line); }
  std::string Reason(const Status& s) const;

  bool json_;
  Sink out_;
  Sink err_;
  std::string no_reply_hint_;
  std::map<uint64_t, std::string> sent_bodies_;  // to show with "delivered"
};

}  // namespace zchat
