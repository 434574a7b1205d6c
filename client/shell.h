// Shell: the terminal client's commands (/register, /login, /msg, ...), run
// against a Client and shown through a Printer. The interactive front end
// and script mode (stdin not a terminal) feed it the same lines.
#pragma once

#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "client/client.h"
#include "client/printer.h"

namespace zchat {

struct ShellIo {
  // A password, read without echo on a terminal (or from the environment or
  // a file); nullopt when none can be had.
  std::function<std::optional<std::string>(const std::string& prompt)>
      read_secret;
  // A yes/no question for a person at a terminal; empty when nobody is
  // there to answer (scripts): then commands do not ask.
  std::function<bool(const std::string& question)> confirm;
};

// Who is at the other end: what /register suggests or does next.
enum class ShellMode {
  kInteractive,  // a person at the prompt: /register logs in at once
  kScript,       // /commands from stdin
  kOneShot,      // `zchat register`: the next step is a shell command
};

// How a command ended, for exit codes: 0 ok, 1 refused, 2 usage, 3 no answer.
enum class Outcome { kOk = 0, kRefused = 1, kUsage = 2, kNoAnswer = 3 };

class Shell {
 public:
  Shell(Client& client, Printer& printer, ShellIo io,
        ShellMode mode = ShellMode::kScript);

  // Runs one line; false when it asks to quit.
  bool Execute(const std::string& line);
  // Prints the pushes the client holds (messages, notices), confirming
  // incoming messages as they are shown.
  void ShowEvents();
  // The worst outcome so far (for the exit status).
  Outcome worst() const { return worst_; }
  std::string Prompt() const;

  // Individual commands, also used by the one-shot subcommands.
  Outcome Register(const std::string& user);
  Outcome Login(const std::string& user);
  Outcome LoginWith(const std::string& user, const std::string& password);
  Outcome Logout();
  Outcome Users(const std::string& pattern);
  // `show_events`: print the pushes that arrived meanwhile (not when the
  // caller waits for this message's own notice).
  Outcome Send(const std::string& to, const std::string& body,
               std::optional<uint64_t>* sent_id = nullptr,
               bool show_events = true);
  // Each of `bodies` as a message of its own to `to`, in order, in as few
  // requests as the protocol's bounds allow (SEND_MESSAGE's batch form: up
  // to kMaxSendItems messages, all in one frame); each message's `pending`
  // is printed. Stops at the first refused request (printed as refused):
  // none of its messages, nor of the later ones, was sent.
  Outcome SendMany(const std::string& to,
                   const std::vector<std::string>& bodies);
  Outcome Fetch(std::optional<uint64_t> limit);
  Outcome Delete(bool force);

  static std::string Help(const std::string& command);
  static std::vector<std::string> CommandNames();

 private:
  Outcome Record(Outcome o);
  Outcome NoPassword();
  Outcome Refused(const Status& s);
  // Records the outcome of `s` (no answer for a timeout, else refused)
  // without printing it.
  Outcome Failed(const Status& s);

  Client& client_;
  Printer& printer_;
  ShellIo io_;
  ShellMode mode_;
  std::string default_to_;  // /to: where plain lines go
  Outcome worst_ = Outcome::kOk;
};

}  // namespace zchat
