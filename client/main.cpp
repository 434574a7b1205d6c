// zchat: the terminal client. Interactive on a terminal, line-by-line
// commands when stdin is not one, and one-shot subcommands for scripts.
#include <unistd.h>
#include <zmq.h>

#include <CLI/CLI.hpp>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <optional>

#include "client/client.h"
#include "client/printer.h"
#include "client/shell.h"
#include "client/terminal.h"

namespace {

using zchat::Outcome;

struct Options {
  std::string endpoint = "tcp://127.0.0.1:5555";
  bool json = false;
  double timeout_s = 10;
  std::string user;
  std::string password_file;
};

// Password: --password-file, else $ZCHAT_PASSWORD, else the terminal.
std::optional<std::string> ReadSecret(const Options& o,
                                      const std::string& prompt) {
  if (!o.password_file.empty()) {
    std::ifstream in(o.password_file);
    std::string line;
    if (in && std::getline(in, line)) return line;
    return std::nullopt;
  }
  if (const char* env = std::getenv("ZCHAT_PASSWORD"); env && *env) {
    return std::string(env);
  }
  return zchat::ReadHiddenLine(prompt);
}

int Status(Outcome o) { return static_cast<int>(o); }

// A CurveZMQ public key: 40 Z85 characters.
bool IsCurveKey(const std::string& key) {
  uint8_t decoded[32];
  return key.size() == 40 && zmq_z85_decode(decoded, key.c_str()) != nullptr;
}

}  // namespace

int main(int argc, char** argv) {
  zchat::SetUpLocale();
  Options o;
  if (const char* env = std::getenv("ZCHAT_ENDPOINT")) o.endpoint = env;

  CLI::App app{
      "zchat: a terminal client for the zchat broker.\n"
      "Without a subcommand: an interactive prompt on a terminal, or the\n"
      "same /commands read line by line from stdin. Passwords come from\n"
      "--password-file, $ZCHAT_PASSWORD, or the terminal (no echo).\n"
      "Exit status: 0 ok, 1 refused by the broker, 2 usage, 3 no answer."};
  app.set_version_flag("--version", std::string("zchat 0.1.0"));
  app.add_option("--connect", o.endpoint,
                 "broker endpoint, or several separated by commas (brokers "
                 "sharing one store: the client moves to the next when its "
                 "broker is unreachable) ($ZCHAT_ENDPOINT)")
      ->capture_default_str();
  app.add_flag("--json", o.json, "print one JSON object per event");
  app.add_option("--timeout", o.timeout_s, "seconds to wait for a reply")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  app.add_option("--password-file", o.password_file,
                 "read the password from this file's first line");
  app.add_option("--user", o.user,
                 "log in as this user (before or after a subcommand)");
  std::string server_key;
  app.add_option("--server-key", server_key,
                 "encrypt with CurveZMQ: the broker's public key, or a file "
                 "holding it (from 'zchat-broker keygen')");

  std::string to, pattern = "*";
  std::vector<std::string> words;
  bool wait = false, force = false;
  uint64_t limit = 0;
  double listen_s = 0;
  // The subcommands take --user after their name too: either position
  // works (the same option), and one of them is required.
  std::string sub_user;
  auto* reg = app.add_subcommand("register", "create an account");
  reg->add_option("--user", sub_user, "the new username (required)");
  bool lines = false;
  auto* send = app.add_subcommand("send", "send one message");
  send->add_option("--user", sub_user, "log in as (required)");
  send->add_option("recipient", to, "who gets it")->required();
  auto* text_option = send->add_option("text", words, "the message");
  auto* lines_flag = send->add_flag(
      "--lines", lines,
      "instead of TEXT, send each line of standard input as a message of its "
      "own (empty lines skipped), up to 1000 a request");
  auto* wait_flag = send->add_flag(
      "--wait", wait,
      "wait until the recipient confirms it (exit 3 on timeout)");
  lines_flag->excludes(text_option);
  lines_flag->excludes(wait_flag);
  auto* fetch =
      app.add_subcommand("fetch", "print and confirm waiting messages");
  fetch->add_option("--user", sub_user, "log in as (required)");
  fetch->add_option("--limit", limit, "at most this many (default all)");
  auto* users = app.add_subcommand("users", "list accounts");
  users->add_option("--user", sub_user, "log in as (required)");
  users->add_option("pattern", pattern, "wildcard: * any run, ? one char")
      ->capture_default_str();
  auto* del = app.add_subcommand("delete", "delete your account");
  del->add_option("--user", sub_user, "the account (required)");
  del->add_flag("--force", force, "even if messages wait (they are lost)");
  auto* listen = app.add_subcommand("listen", "print incoming messages");
  listen->add_option("--user", sub_user, "log in as (required)");
  listen->add_option("--for", listen_s, "stop after this many seconds");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    // --help and --version exit 0; any other flag or argument error is a
    // usage error, exit status 2.
    return app.exit(e) == 0 ? 0 : 2;
  }
  const bool one_shot = !app.get_subcommands().empty();
  if (one_shot) {
    const std::string sub = app.get_subcommands()[0]->get_name();
    if (!sub_user.empty() && !o.user.empty() && sub_user != o.user) {
      std::cerr << "--user given twice (" << o.user << ", " << sub_user
                << "): give it once\nRun with --help for more information.\n";
      return 2;
    }
    if (!sub_user.empty()) o.user = sub_user;
    if (*send && words.empty() && !lines) {
      std::cerr << "send: TEXT or --lines is required\nRun with --help for "
                   "more information.\n";
      return 2;
    }
    if (o.user.empty()) {
      std::cerr << sub << ": --user NAME is required (zchat --user NAME " << sub
                << " ... or zchat " << sub
                << " --user NAME ...)\nRun with --help for more information.\n";
      return 2;
    }
  }

  const bool interactive =
      app.get_subcommands().empty() && isatty(STDIN_FILENO);
  zchat::Printer printer(
      o.json,
      [&](const std::string& line) {
        if (interactive) {
          zchat::PrintAbovePrompt(line, false);
        } else {
          std::cout << line << std::endl;
        }
      },
      [&](const std::string& line) {
        if (interactive) {
          zchat::PrintAbovePrompt(line, true);
        } else {
          std::cerr << line << std::endl;
        }
      });
  auto usage_error = [&](const std::string& what) {
    printer.Error(zchat::Status(zchat::ErrorCode::kInvalidArgument, what));
    return 2;
  };
  zchat::ClientOptions copts;
  copts.endpoint = o.endpoint;
  if (zchat::Status s = zchat::Client::CheckEndpoints(o.endpoint); !s.ok()) {
    const bool from_env = app.count("--connect") == 0;
    return usage_error(
        std::string(from_env ? "$ZCHAT_ENDPOINT " : "--connect ") + s.detail() +
        "; for example tcp://127.0.0.1:5555");
  }
  if (!server_key.empty()) {
    std::ifstream in(server_key);
    std::string from_file;
    copts.server_key = (in >> from_file) ? from_file : server_key;
    if (!IsCurveKey(copts.server_key)) {
      return usage_error(
          "--server-key " + server_key +
          ": neither a CurveZMQ public key (40 Z85 characters, from "
          "'zchat-broker keygen') nor a file holding one");
    }
    // Encryption was asked for: without a key pair of its own the client
    // does not connect at all, never in plain text.
    char public_key[41], secret_key[41];
    if (!zmq_has("curve") || zmq_curve_keypair(public_key, secret_key) != 0) {
      return usage_error(
          "--server-key: this libzmq cannot make CurveZMQ keys (" +
          std::string(zmq_strerror(zmq_errno())) +
          "); not connecting without encryption");
    }
  } else {
    printer.set_no_reply_hint(
        " (if that broker requires encryption, give its public key with "
        "--server-key)");
  }
  copts.request_timeout =
      std::chrono::milliseconds(static_cast<int64_t>(o.timeout_s * 1000));
  std::optional<zchat::Client> client_holder;
  try {
    client_holder.emplace(copts);
  } catch (const zmq::error_t& e) {
    const bool from_env = app.count("--connect") == 0;
    return usage_error(
        std::string(from_env ? "$ZCHAT_ENDPOINT " : "--connect ") + o.endpoint +
        ": not a usable ZeroMQ endpoint (" + e.what() +
        "); for example tcp://127.0.0.1:5555");
  }
  zchat::Client& client = *client_holder;
  zchat::ShellIo io{
      [&](const std::string& prompt) { return ReadSecret(o, prompt); },
      nullptr};
  if (interactive)
    io.confirm = [](const std::string& q) { return zchat::AskYesNo(q); };
  zchat::Shell shell(client, printer, io,
                     one_shot      ? zchat::ShellMode::kOneShot
                     : interactive ? zchat::ShellMode::kInteractive
                                   : zchat::ShellMode::kScript);

  if (*reg) return Status(shell.Register(o.user));
  if (one_shot) {
    // Quietly: a one-shot command prints only its own result.
    std::optional<std::string> password = ReadSecret(o, "password: ");
    if (!password) {
      printer.Error(zchat::Status(zchat::ErrorCode::kInvalidArgument,
                                  "no password given"));
      return 2;
    }
    zchat::Result<zchat::LoginSuccess> ok = client.Login(o.user, *password);
    if (!ok.ok()) {
      printer.Error(ok.status());
      return ok.status().code() == zchat::ErrorCode::kTimeout ? 3 : 1;
    }
  } else if (!o.user.empty()) {
    if (Outcome r = shell.Login(o.user); r != Outcome::kOk) return Status(r);
  }
  // Notices pushed at login (MESSAGE_SUCCESS, MESSAGE_UNDELIVERABLE stored
  // while this user was away) are printed too, never dropped.
  // A one-shot command ends its session: LOGOUT (answered after every
  // receipt sent before it) makes the broker keep later notices for the
  // next login instead of pushing them to a connection about to close.
  // Its reply also says that every receipt sent before it was processed; a
  // command that cannot tell fails (no answer: exit 3).
  auto settle = [&](bool logout) {
    zchat::Status s =
        logout && client.logged_in() ? client.Logout() : client.Ping();
    if (s.ok()) return Outcome::kOk;
    printer.Error(s);
    return s.code() == zchat::ErrorCode::kTimeout ? Outcome::kNoAnswer
                                                  : Outcome::kRefused;
  };
  auto finish = [&](Outcome r) {
    shell.ShowEvents();  // shown, so acknowledged, before the LOGOUT
    const Outcome settled = settle(/*logout=*/true);
    shell.ShowEvents();
    return Status(r != Outcome::kOk ? r : settled);
  };
  if (*send && lines) {
    std::vector<std::string> bodies;
    for (std::string line; std::getline(std::cin, line);) {
      if (!line.empty() && line.back() == '\r') line.pop_back();
      if (!line.empty()) bodies.push_back(std::move(line));
    }
    if (bodies.empty()) return finish(Outcome::kOk);
    return finish(shell.SendMany(to, bodies));
  }
  if (*send) {
    std::string text;
    for (const auto& w : words) text += (text.empty() ? "" : " ") + w;
    std::optional<uint64_t> id;
    if (Outcome r = shell.Send(to, text, &id, /*show_events=*/!wait);
        r != Outcome::kOk || !wait) {
      return finish(r);
    }
    const auto deadline =
        std::chrono::steady_clock::now() + copts.request_timeout;
    while (std::chrono::steady_clock::now() < deadline) {
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
          deadline - std::chrono::steady_clock::now());
      std::optional<zchat::Event> e = client.NextEvent(left);
      if (!e) break;
      printer.Event(*e);
      if (auto* s = std::get_if<zchat::MessageSuccess>(&*e);
          s && s->message_id == *id) {
        return finish(Outcome::kOk);
      }
      if (auto* u = std::get_if<zchat::MessageUndeliverable>(&*e);
          u && u->message_id == *id) {
        return finish(Outcome::kRefused);
      }
    }
    printer.Error(zchat::Status(zchat::ErrorCode::kTimeout,
                                "not confirmed by the recipient in time"));
    return finish(Outcome::kNoAnswer);
  }
  if (*fetch) {
    Outcome r =
        shell.Fetch(limit ? std::optional<uint64_t>(limit) : std::nullopt);
    return finish(r);
  }
  if (*users) return finish(shell.Users(pattern));
  if (*del) return finish(shell.Delete(force));
  if (*listen) {
    const auto end = std::chrono::steady_clock::now() +
                     std::chrono::milliseconds(static_cast<int64_t>(
                         (listen_s > 0 ? listen_s : 1e9) * 1000));
    while (std::chrono::steady_clock::now() < end) {
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
          end - std::chrono::steady_clock::now());
      if (auto e = client.NextEvent(
              std::min(left, std::chrono::milliseconds(1000)))) {
        printer.Event(*e);
      }
    }
    return finish(Outcome::kOk);
  }

  if (interactive) return zchat::RunInteractive(client, shell, printer);
  // Script mode: the same commands, one per line.
  for (std::string line; std::getline(std::cin, line);) {
    if (!shell.Execute(line)) break;
    shell.ShowEvents();
  }
  // Script mode ends with a PING: receipts sent before it are processed.
  const Outcome settled = settle(/*logout=*/false);
  shell.ShowEvents();
  return Status(shell.worst() != Outcome::kOk ? shell.worst() : settled);
}
