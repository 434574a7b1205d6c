// zchat-broker: parses flags and runs the Server until SIGINT/SIGTERM.
#include <signal.h>
#include <sys/resource.h>
#include <zmq.h>

#include <CLI/CLI.hpp>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>

#include "broker/log.h"
#include "broker/server.h"

namespace {

zchat::Server* g_server = nullptr;

void OnSignal(int) {
  if (g_server) g_server->Stop();
}

std::string DefaultDbPath() {
  namespace fs = std::filesystem;
  fs::path base;
  if (const char* xdg = std::getenv("XDG_DATA_HOME"); xdg && *xdg) {
    base = xdg;
  } else if (const char* home = std::getenv("HOME"); home && *home) {
    base = fs::path(home) / ".local/share";
  } else {
    base = ".";
  }
  return (base / "zchat" / "zchat.db").string();
}

// Writes a new CurveZMQ key pair: FILE (secret, 0600) and FILE.pub.
int GenerateKeys(const std::string& file) {
  char public_key[41];
  char secret_key[41];
  if (zmq_curve_keypair(public_key, secret_key) != 0) {
    std::cerr << "keygen: this libzmq has no CurveZMQ support\n";
    return 1;
  }
  {
    std::ofstream out(file, std::ios::trunc);
    if (!out) {
      std::cerr << "keygen: cannot write " << file << "\n";
      return 1;
    }
    std::filesystem::permissions(file, std::filesystem::perms::owner_read |
                                           std::filesystem::perms::owner_write);
    out << secret_key << "\n";
  }
  std::ofstream(file + ".pub") << public_key << "\n";
  std::cout << public_key << std::endl;
  return 0;
}

void RaiseDescriptorLimit() {
  // One descriptor per client connection: use all the system allows.
  rlimit lim{};
  if (getrlimit(RLIMIT_NOFILE, &lim) == 0 && lim.rlim_cur < lim.rlim_max) {
    lim.rlim_cur = lim.rlim_max;
    setrlimit(RLIMIT_NOFILE, &lim);
  }
}

}  // namespace

int main(int argc, char** argv) {
  zchat::ServerOptions options;
  options.db_path = DefaultDbPath();
  std::string log_level = "info";
  std::string sync = "normal";
  std::string hash_cost = "interactive";
  std::string endpoint_file;
  int64_t session_timeout_s = options.broker.session_timeout_ms / 1000;

  CLI::App app{"zchat-broker: the zchat chat broker"};
  app.set_version_flag("--version", std::string("zchat-broker ") + "0.1.0");
  app.add_option("--bind", options.bind, "ZeroMQ endpoint to bind")
      ->capture_default_str();
  app.add_option("--db", options.db_path, "SQLite database file")
      ->capture_default_str();
  app.add_option("--log-level", log_level, "debug, info, warn, error, off")
      ->capture_default_str();
  app.add_option("--sync", sync,
                 "full: commits survive power loss; normal: survive a crash "
                 "of the broker only, faster")
      ->check(CLI::IsMember({"full", "normal"}))
      ->capture_default_str();
  app.add_option("--session-timeout", session_timeout_s,
                 "seconds of silence after which a session ends")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  app.add_option("--queue-limit", options.broker.max_queue_per_user,
                 "undelivered messages one user may hold")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  app.add_option("--hash-threads", options.hash_threads,
                 "password hashing threads")
      ->check(CLI::Range(1, 64))
      ->capture_default_str();
  app.add_option("--pwhash-cost", hash_cost,
                 "argon2id cost: interactive, moderate, or min (tests only: "
                 "insecure)")
      ->check(CLI::IsMember({"interactive", "moderate", "min"}))
      ->capture_default_str();
  app.add_option("--endpoint-file", endpoint_file,
                 "write the bound endpoint to this file once listening");
  app.add_option("--max-connections", options.max_connections,
                 "client connections admitted at once (0: the descriptor "
                 "limit less a reserve); past it new peers are refused")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  std::string curve_secret_file;
  app.add_option("--curve-secret", curve_secret_file,
                 "encrypt with CurveZMQ using the secret key in this file "
                 "(made by 'zchat-broker keygen')");
  std::string keygen_file;
  auto* keygen = app.add_subcommand(
      "keygen",
      "make a CurveZMQ key pair: the secret key goes to FILE (mode 0600), "
      "the public key to FILE.pub and to stdout, for clients' --server-key");
  keygen->add_option("file", keygen_file, "where to write the secret key")
      ->required();
  CLI11_PARSE(app, argc, argv);

  if (*keygen) return GenerateKeys(keygen_file);
  if (!curve_secret_file.empty()) {
    std::ifstream in(curve_secret_file);
    if (!(in >> options.curve_secret_key)) {
      std::cerr << "--curve-secret: cannot read a key from "
                << curve_secret_file << "\n";
      return 2;
    }
  }

  zchat::LogLevel level;
  if (!zchat::ParseLogLevel(log_level, &level)) {
    std::cerr << "--log-level: unknown level '" << log_level << "'\n";
    return 2;
  }
  zchat::SetLogLevel(level);
  RaiseDescriptorLimit();
  options.broker.session_timeout_ms = session_timeout_s * 1000;
  options.store.sync =
      sync == "full" ? zchat::SyncMode::kFull : zchat::SyncMode::kNormal;
  if (hash_cost == "moderate") {
    options.hash_cost = {3, 256u * 1024 * 1024};
  } else if (hash_cost == "min") {
    options.hash_cost = {1, 8192};
  }

  std::error_code ec;
  std::filesystem::path db_dir =
      std::filesystem::path(options.db_path).parent_path();
  if (!db_dir.empty()) std::filesystem::create_directories(db_dir, ec);

  auto server = zchat::Server::Create(options);
  if (!server.ok()) {
    zchat::Log(zchat::LogLevel::kError, server.status().ToString());
    return 1;
  }
  zchat::Log(zchat::LogLevel::kInfo, "database " + options.db_path);
  if (!endpoint_file.empty()) {
    std::ofstream(endpoint_file) << (*server)->endpoint() << "\n";
  }
  g_server = server->get();
  struct sigaction sa {};
  sa.sa_handler = OnSignal;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);
  (*server)->Run();
  g_server = nullptr;
  return 0;
}
