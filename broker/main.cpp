// zchat-broker: parses flags and runs the Server until SIGINT/SIGTERM.
#include <signal.h>
#include <sodium.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>
#include <zmq.h>
#ifdef ZCHAT_JEMALLOC
#include <jemalloc/jemalloc.h>
#endif

#include <CLI/CLI.hpp>
#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>

#include "broker/log.h"
#include "broker/server.h"
#include "broker/store.h"

namespace {

zchat::Server* g_server = nullptr;

void OnSignal(int) {
  if (g_server) g_server->Stop();
}

volatile sig_atomic_t g_child = 0;
volatile sig_atomic_t g_stopping = 0;

void OnSupervisorSignal(int sig) {
  g_stopping = 1;
  if (g_child > 0) kill(g_child, sig);
}

// libzmq picks the first routing id its ROUTER assigns with rand(), which
// nothing seeds: unseeded, every broker's first id is 00 6b 8b 45 67 and the
// next ones follow, so an attacker knows which id to claim (see
// docs/security.md). Seeding from the system's randomness, before any
// socket exists, makes the sequence unguessable.
void SeedRoutingIds() {
  if (sodium_init() < 0) return;
  unsigned seed;
  randombytes_buf(&seed, sizeof seed);
  srand(seed);
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

// The store spec as logged: a PostgreSQL URI without its password.
std::string RedactedStore(const std::string& spec) {
  if (!zchat::IsPostgresSpec(spec)) return spec;
  const size_t scheme = spec.find("://") + 3;
  const size_t at = spec.find('@', scheme);
  const size_t colon = spec.find(':', scheme);
  if (at == std::string::npos || colon == std::string::npos || colon > at) {
    return spec;
  }
  return spec.substr(0, colon + 1) + "***" + spec.substr(at);
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

// What serves malloc in this process (CMake's ZCHAT_MALLOC), for --version.
std::string Allocator() {
#ifdef ZCHAT_JEMALLOC
  const char* version = nullptr;
  size_t size = sizeof(version);
  if (mallctl("version", &version, &size, nullptr, 0) != 0 || !version) {
    return "jemalloc (no version)";
  }
  // Linked is not serving: a preloaded allocator would take malloc from it.
  // This thread's count of bytes jemalloc handed out grows with a malloc
  // only if jemalloc served it.
  uint64_t before = 0, after = 0;
  size = sizeof(before);
  if (mallctl("thread.allocated", &before, &size, nullptr, 0) != 0) {
    return std::string("jemalloc ") + version + ", not serving malloc";
  }
  void* volatile block = std::malloc(4096);
  size = sizeof(after);
  mallctl("thread.allocated", &after, &size, nullptr, 0);
  std::free(block);
  if (after == before) {
    return std::string("jemalloc ") + version + ", not serving malloc";
  }
  return std::string("jemalloc ") + version;
#else
  return "the C library's malloc";
#endif
}

// Runs the broker in this process until SIGINT/SIGTERM.
int RunBroker(const zchat::ServerOptions& options,
              const std::string& endpoint_file) {
  SeedRoutingIds();  // in each process: a restarted broker gets new ids
  auto server = zchat::Server::Create(options);
  if (!server.ok()) {
    zchat::Log(zchat::LogLevel::kError, server.status().ToString());
    return 1;
  }
  zchat::Log(zchat::LogLevel::kInfo,
             "database " + RedactedStore(options.db_path));
  const std::string metrics_url = (*server)->metrics_url();
  if (!metrics_url.empty()) {
    zchat::Log(zchat::LogLevel::kInfo, "metrics at " + metrics_url);
  }
  if (!endpoint_file.empty()) {
    // Line 1: the chat endpoint; line 2, with --metrics-bind: the metrics URL.
    std::ofstream out(endpoint_file);
    out << (*server)->endpoint() << "\n";
    if (!metrics_url.empty()) out << metrics_url << "\n";
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

// Runs the broker in a child process, and starts it again, on the same
// endpoint and database, if it dies of a signal: libzmq 4.3.4 aborts the
// process when a peer's chosen routing id collides with the next one the
// ROUTER assigns (docs/security.md). Everything acknowledged is on disk and
// clients resume with their tokens, so a restart costs seconds. SIGINT and
// SIGTERM are passed on; a clean exit ends the supervisor with its status.
int Supervise(zchat::ServerOptions options, std::string endpoint_file) {
  if (endpoint_file.empty()) {
    endpoint_file = "/tmp/zchat-supervisor-" + std::to_string(getpid()) + ".ep";
  }
  struct sigaction sa {};
  sa.sa_handler = OnSupervisorSignal;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);
  std::vector<std::chrono::steady_clock::time_point> restarts;
  for (;;) {
    pid_t pid = fork();
    if (pid < 0) return 1;
    if (pid == 0) {
      signal(SIGINT, SIG_DFL);
      signal(SIGTERM, SIG_DFL);
      _exit(RunBroker(options, endpoint_file));
    }
    g_child = pid;
    int status = 0;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    g_child = 0;
    if (g_stopping || WIFEXITED(status)) {
      return WIFEXITED(status) ? WEXITSTATUS(status) : 0;
    }
    // Died of a signal: restart on the endpoint it had (a port chosen by
    // the system stays the same), unless it keeps dying.
    const auto now = std::chrono::steady_clock::now();
    std::erase_if(restarts,
                  [&](auto t) { return now - t > std::chrono::minutes(1); });
    if (restarts.size() >= 5) {
      zchat::Log(zchat::LogLevel::kError,
                 "supervisor: the broker died 5 times in a minute; giving up");
      return 1;
    }
    restarts.push_back(now);
    std::string endpoint;
    std::ifstream(endpoint_file) >> endpoint;
    if (!endpoint.empty()) options.bind = endpoint;
    zchat::Log(zchat::LogLevel::kWarn,
               "supervisor: the broker died of signal " +
                   std::to_string(WTERMSIG(status)) + "; restarting on " +
                   options.bind);
  }
}

}  // namespace

int main(int argc, char** argv) {
  zchat::ServerOptions options;
  options.db_path = DefaultDbPath();
  std::string log_level = "info";
  std::string sync = "full";
  std::string hash_cost = "interactive";
  std::string endpoint_file;
  int64_t session_timeout_s = options.broker.session_timeout_ms / 1000;
  int64_t db_cache_mib = options.store.cache_kib / 1024;

  CLI::App app{"zchat-broker: the zchat chat broker"};
  app.set_version_flag("--version", std::string("zchat-broker ") + "0.1.0" +
                                        " (allocator: " + Allocator() + ")");
  app.add_option("--bind", options.bind, "ZeroMQ endpoint to bind")
      ->capture_default_str();
  app.add_option("--db", options.db_path, "SQLite database file")
      ->capture_default_str();
  std::string store_spec;
  app.add_option("--store", store_spec,
                 "where the state lives: sqlite:PATH (the default, as --db), "
                 "or a PostgreSQL URI, postgresql://USER@HOST:PORT/DB (libpq "
                 "syntax; several brokers may share one)")
      ->excludes("--db");
  app.add_option("--log-level", log_level, "debug, info, warn, error, off")
      ->capture_default_str();
  app.add_option("--sync", sync,
                 "full (default): an fsync per commit, acknowledged messages "
                 "survive power loss; normal: no fsync, they survive a crash "
                 "of the broker but an OS crash or power loss may lose the "
                 "last commits")
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
  app.add_option("--io-threads", options.io_threads,
                 "libzmq I/O threads for the client connections (0: 2, or a "
                 "quarter of the cores up to 4)")
      ->check(CLI::Range(0, 64))
      ->capture_default_str();
  app.add_option("--partitions", options.store.partitions,
                 "SQLite: files a new database is spread over (P > 1: "
                 "<db>.p1 ... <db>.p<P-1> beside it); fixed when the database "
                 "is created (0: as it was created, one file for a new one)")
      ->check(CLI::Range(0, 64))
      ->capture_default_str();
  app.add_option("--db-cache-mib", db_cache_mib,
                 "SQLite: page cache of each database file, in MiB (each "
                 "partition's file has its own; 0: SQLite's default, 2 MiB)")
      ->check(CLI::Range(0, 65536))
      ->capture_default_str();
  app.add_option("--threads", options.threads,
                 "with partitions: threads that run sends and receipts, each "
                 "partition's on one of them (0: one per core, up to the "
                 "partitions)")
      ->check(CLI::Range(0, 64))
      ->capture_default_str();
  app.add_option("--pwhash-cost", hash_cost,
                 "argon2id cost: interactive, moderate, or min (tests only: "
                 "insecure)")
      ->check(CLI::IsMember({"interactive", "moderate", "min"}))
      ->capture_default_str();
  bool supervise = false;
  app.add_flag("--supervise", supervise,
               "run the broker in a child process and restart it if it dies "
               "of a signal");
  app.add_option("--endpoint-file", endpoint_file,
                 "write the bound endpoint to this file once listening (and "
                 "on a second line the metrics URL, with --metrics-bind)");
  app.add_option("--metrics-bind", options.metrics_bind,
                 "serve Prometheus metrics over HTTP at HOST:PORT/metrics "
                 "(e.g. 127.0.0.1:9464; port 0: any free port, see the log "
                 "or --endpoint-file); off by default");
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
  options.store.cache_kib = db_cache_mib * 1024;
  if (hash_cost == "moderate") {
    options.hash_cost = {3, 256u * 1024 * 1024};
  } else if (hash_cost == "min") {
    options.hash_cost = {1, 8192};
  }

  if (!store_spec.empty()) {
    if (store_spec.starts_with("sqlite:")) {
      options.db_path = store_spec.substr(7);
    } else if (zchat::IsPostgresSpec(store_spec)) {
      options.db_path = store_spec;
    } else {
      std::cerr << "--store: expected sqlite:PATH or postgresql://..., got '"
                << store_spec << "'\n";
      return 2;
    }
  }
  if (!zchat::IsPostgresSpec(options.db_path)) {
    std::error_code ec;
    std::filesystem::path db_dir =
        std::filesystem::path(options.db_path).parent_path();
    if (!db_dir.empty()) std::filesystem::create_directories(db_dir, ec);
  }

  if (supervise) return Supervise(options, endpoint_file);
  return RunBroker(options, endpoint_file);
}
