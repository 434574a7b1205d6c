#include "client/shell.h"

#include <sstream>

namespace zchat {
namespace {

struct CommandHelp {
  const char* name;
  const char* usage;
  const char* text;
};

constexpr CommandHelp kCommands[] = {
    {"register", "/register NAME",
     "create an account (asks for a password: 8-256 bytes); at the "
     "prompt, also logs in"},
    {"login", "/login NAME", "log in (asks for the password)"},
    {"logout", "/logout", "log out of this connection"},
    {"users", "/users [PATTERN]",
     "list accounts; * matches any run, ? one character (case-insensitive)"},
    {"msg", "/msg NAME TEXT", "send TEXT to NAME"},
    {"to", "/to [NAME]",
     "send plain lines to NAME from now on (no NAME: stop)"},
    {"fetch", "/fetch [N]", "show undelivered messages (all, or at most N)"},
    {"delete", "/delete [force]",
     "delete your account (asks first; force discards waiting messages)"},
    {"help", "/help [COMMAND]", "this list, or one command's help"},
    {"quit", "/quit", "log out and leave (Ctrl-D, or Ctrl-C on an empty line)"},
};

std::vector<std::string> Words(const std::string& line) {
  std::istringstream in(line);
  std::vector<std::string> words;
  for (std::string w; in >> w;) words.push_back(w);
  return words;
}

// The text after the first `skip` words, with its own spacing kept.
std::string Rest(const std::string& line, int skip) {
  size_t pos = 0;
  for (int i = 0; i < skip; ++i) {
    pos = line.find_first_not_of(" \t", pos);
    if (pos == std::string::npos) return "";
    pos = line.find_first_of(" \t", pos);
    if (pos == std::string::npos) return "";
  }
  pos = line.find_first_not_of(" \t", pos);
  return pos == std::string::npos ? "" : line.substr(pos);
}

}  // namespace

Shell::Shell(Client& client, Printer& printer, ShellIo io, ShellMode mode)
    : client_(client), printer_(printer), io_(std::move(io)), mode_(mode) {}

Outcome Shell::Record(Outcome o) {
  if (static_cast<int>(o) > static_cast<int>(worst_)) worst_ = o;
  return o;
}

Outcome Shell::Failed(const Status& s) {
  return Record(s.code() == ErrorCode::kTimeout ? Outcome::kNoAnswer
                                                : Outcome::kRefused);
}

Outcome Shell::Refused(const Status& s) {
  printer_.Error(s);
  return Failed(s);
}

std::string Shell::Prompt() const {
  std::string who = client_.logged_in() ? client_.username() : "zchat";
  if (!default_to_.empty()) who += " -> " + default_to_;
  return who + "> ";
}

std::vector<std::string> Shell::CommandNames() {
  std::vector<std::string> names;
  for (const auto& c : kCommands) names.push_back(c.name);
  return names;
}

std::string Shell::Help(const std::string& command) {
  std::string out;
  for (const auto& c : kCommands) {
    if (!command.empty() && command != c.name &&
        command != "/" + std::string(c.name)) {
      continue;
    }
    std::string usage = c.usage;
    usage.resize(std::max<size_t>(usage.size(), 20), ' ');
    out += "  " + usage + "  " + c.text + "\n";
  }
  if (out.empty()) return "no command " + command + "; /help lists them\n";
  if (command.empty()) {
    out += "  Lines not starting with / go to the /to recipient.\n";
  }
  return out;
}

void Shell::ShowEvents() {
  while (std::optional<Event> e =
             client_.NextEvent(std::chrono::milliseconds(0))) {
    printer_.Event(*e);
  }
}

bool Shell::Execute(const std::string& raw) {
  std::string line = raw;
  while (!line.empty() && (line.back() == '\r' || line.back() == '\n')) {
    line.pop_back();
  }
  if (line.find_first_not_of(" \t") == std::string::npos) return true;
  if (line[line.find_first_not_of(" \t")] != '/') {
    if (default_to_.empty()) {
      printer_.Error(Status(ErrorCode::kInvalidArgument,
                            "commands start with / (try /help); /to NAME "
                            "makes plain lines messages to NAME"));
      Record(Outcome::kUsage);
    } else {
      Send(default_to_, line);
    }
    return true;
  }
  std::vector<std::string> words = Words(line);
  const std::string cmd = words[0].substr(1);
  auto usage = [&] {
    printer_.Error(Status(ErrorCode::kInvalidArgument, "usage:\n" + Help(cmd)));
    Record(Outcome::kUsage);
    return true;
  };
  if (cmd == "quit" || cmd == "exit") return false;
  if (cmd == "help") {
    printer_.Info(Help(words.size() > 1 ? words[1] : ""));
  } else if (cmd == "register") {
    if (words.size() != 2) return usage();
    Register(words[1]);
  } else if (cmd == "login") {
    if (words.size() != 2) return usage();
    Login(words[1]);
  } else if (cmd == "logout") {
    Logout();
  } else if (cmd == "users" || cmd == "list") {
    if (words.size() > 2) return usage();
    Users(words.size() == 2 ? words[1] : "*");
  } else if (cmd == "msg") {
    if (words.size() < 3) return usage();
    Send(words[1], Rest(line, 2));
  } else if (cmd == "to") {
    if (words.size() > 2) return usage();
    default_to_ = words.size() == 2 ? words[1] : "";
    printer_.Info(default_to_.empty() ? "* plain lines are not sent"
                                      : "* plain lines go to " + default_to_);
  } else if (cmd == "fetch") {
    if (words.size() > 2) return usage();
    std::optional<uint64_t> limit;
    if (words.size() == 2) {
      try {
        limit = std::stoull(words[1]);
      } catch (const std::exception&) {
        return usage();
      }
      if (*limit == 0) return usage();
    }
    Fetch(limit);
  } else if (cmd == "delete") {
    if (words.size() > 2 || (words.size() == 2 && words[1] != "force")) {
      return usage();
    }
    Delete(words.size() == 2);
  } else {
    printer_.Error(Status(ErrorCode::kInvalidArgument,
                          "unknown command /" + cmd + "; /help lists them"));
    Record(Outcome::kUsage);
  }
  return true;
}

Outcome Shell::NoPassword() {
  printer_.Error(Status(ErrorCode::kInvalidArgument, "no password given"));
  return Record(Outcome::kUsage);
}

Outcome Shell::Register(const std::string& user) {
  std::optional<std::string> password =
      io_.read_secret("password for " + user + ": ");
  if (!password) return NoPassword();
  Result<CreateSuccess> ok = client_.CreateAccount(user, *password);
  if (!ok.ok()) return Refused(ok.status());
  if (mode_ == ShellMode::kOneShot) {
    printer_.Registered(ok->username,
                        "log in with: zchat --user " + ok->username);
    return Outcome::kOk;
  }
  // A person who just typed the password is not asked for it again.
  if (mode_ == ShellMode::kInteractive && !client_.logged_in()) {
    printer_.Registered(ok->username,
                        "logging in with the password just typed");
    return LoginWith(ok->username, *password);
  }
  printer_.Registered(ok->username, "/login " + ok->username + " to use it");
  return Outcome::kOk;
}

Outcome Shell::Login(const std::string& user) {
  if (client_.logged_in()) {
    if (Outcome o = Logout(); o != Outcome::kOk) return o;
  }
  std::optional<std::string> password =
      io_.read_secret("password for " + user + ": ");
  if (!password) return NoPassword();
  return LoginWith(user, *password);
}

Outcome Shell::LoginWith(const std::string& user, const std::string& password) {
  Result<LoginSuccess> ok = client_.Login(user, password);
  if (!ok.ok()) return Refused(ok.status());
  printer_.LoggedIn(*ok);
  ShowEvents();  // notices stored while we were away
  return Outcome::kOk;
}

Outcome Shell::Logout() {
  Status s = client_.Logout();
  if (!s.ok()) return Refused(s);
  printer_.LoggedOut();
  return Outcome::kOk;
}

Outcome Shell::Users(const std::string& pattern) {
  std::vector<std::string> all;
  std::optional<std::string> cursor;
  do {
    Result<AccountList> page = client_.ListAccounts(pattern, 1000, cursor);
    if (!page.ok()) return Refused(page.status());
    all.insert(all.end(), page->accounts.begin(), page->accounts.end());
    cursor = page->cursor;
  } while (!cursor->empty());
  printer_.Users(all);
  return Outcome::kOk;
}

Outcome Shell::Send(const std::string& to, const std::string& body,
                    std::optional<uint64_t>* sent_id, bool show_events) {
  Result<MessagePending> ok = client_.Send(to, body);
  if (!ok.ok()) {
    printer_.SendFailed(to, ok.status());
    return Failed(ok.status());
  }
  printer_.Pending(*ok, to, body);
  if (sent_id) *sent_id = ok->message_id;
  if (show_events) ShowEvents();
  return Outcome::kOk;
}

Outcome Shell::SendMany(const std::string& to,
                        const std::vector<std::string>& bodies) {
  // A request's frame holds its bodies and, for each, at most about 16
  // bytes of framing and client_msg_id; the rest of the frame is slack.
  constexpr size_t kPerMessage = 16;
  constexpr size_t kBudget = kMaxFrameBytes - 1024;
  for (size_t from = 0; from < bodies.size();) {
    size_t to_send = 0, bytes = 0;
    while (from + to_send < bodies.size() && to_send < kMaxSendItems &&
           (to_send == 0 ||
            bytes + bodies[from + to_send].size() + kPerMessage <= kBudget)) {
      bytes += bodies[from + to_send].size() + kPerMessage;
      ++to_send;
    }
    const std::vector<std::string> part(bodies.begin() + from,
                                        bodies.begin() + from + to_send);
    Result<MessagePending> ok = client_.SendMany(to, part);
    if (!ok.ok()) {
      printer_.SendFailed(to, ok.status());
      return Failed(ok.status());
    }
    ForEachPending(*ok, [&, i = size_t{0}](uint64_t id, uint64_t cmid) mutable {
      printer_.Pending(MessagePending{id, cmid}, to, part[i++]);
    });
    from += to_send;
  }
  ShowEvents();
  return Outcome::kOk;
}

Outcome Shell::Fetch(std::optional<uint64_t> limit) {
  // "All" is several fetches of up to kMaxFetchLimit each.
  uint64_t wanted = limit.value_or(UINT64_MAX);
  FetchResult total;
  do {
    Result<FetchResult> r =
        client_.Fetch(std::min<uint64_t>(wanted, kMaxFetchLimit));
    if (!r.ok()) return Refused(r.status());
    ShowEvents();
    total.count += r->count;
    total.remaining = r->remaining;
    wanted -= std::min(wanted, r->count);
    if (r->count == 0) break;
  } while (wanted > 0 && total.remaining > 0);
  printer_.Fetched(total);
  return Outcome::kOk;
}

Outcome Shell::Delete(bool force) {
  if (!client_.logged_in()) {
    return Refused(Status(ErrorCode::kNotLoggedIn, "log in first"));
  }
  // A person is asked first; a script's /delete is its own confirmation
  // (and, without force, is refused while messages wait).
  const bool ask = static_cast<bool>(io_.confirm);
  if (ask && !force &&
      !io_.confirm("Delete the account " + client_.username() +
                   "? This cannot be undone. [y/N] ")) {
    printer_.Info("* not deleted");
    return Outcome::kOk;
  }
  uint64_t pending = 0;
  Result<DeletionSuccess> ok = client_.DeleteAccount(force, &pending);
  if (!ok.ok() && ok.status().code() == ErrorCode::kHasPending && ask &&
      io_.confirm(std::to_string(pending) +
                  " undelivered message(s) would be lost. Delete anyway? "
                  "[y/N] ")) {
    ok = client_.DeleteAccount(true);
  }
  if (!ok.ok()) return Refused(ok.status());
  printer_.Deleted(*ok);
  return Outcome::kOk;
}

}  // namespace zchat
