#include "tests/support/test_postgres.h"

#include <libpq-fe.h>
#include <pwd.h>
#include <stdlib.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <memory>

namespace zchat::testing {
namespace {

namespace fs = std::filesystem;

// The newest installed PostgreSQL's bin directory (Debian keeps initdb off
// PATH, under /usr/lib/postgresql/VERSION/bin).
std::string FindBin() {
  std::string best;
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator("/usr/lib/postgresql", ec)) {
    const fs::path bin = entry.path() / "bin";
    if (fs::exists(bin / "initdb") && bin.string() > best) best = bin.string();
  }
  return best;
}

}  // namespace

TestPostgres::TestPostgres() {
  bin_ = FindBin();
  if (bin_.empty()) {
    error_ =
        "no PostgreSQL server programs under /usr/lib/postgresql (install "
        "postgresql-15: script/bootstrap)";
    return;
  }
  std::string tmpl = (fs::temp_directory_path() / "zchat-pg-XXXXXX").string();
  if (!mkdtemp(tmpl.data())) {
    error_ = "cannot make a temporary directory";
    return;
  }
  root_ = tmpl;
  fs::create_directories(root_ + "/sock");
  if (geteuid() == 0) {
    const passwd* pw = getpwnam("postgres");
    if (!pw) {
      error_ =
          "running as root, and there is no 'postgres' user to own the "
          "cluster";
      return;
    }
    for (const auto& p : {fs::path(root_), fs::path(root_ + "/sock")}) {
      if (chown(p.c_str(), pw->pw_uid, pw->pw_gid) != 0) {
        error_ = "cannot give " + p.string() + " to 'postgres'";
        return;
      }
    }
  }
  if (!MakeCluster()) {
    error_ = "initdb, or copying the build's kept cluster, failed (see " +
             root_ + "/initdb.log)";
    return;
  }
  if (!Start()) error_ = "the server did not start (see " + root_ + "/log)";
}

TestPostgres::~TestPostgres() {
  if (root_.empty()) return;
  Stop();
  std::error_code ec;
  fs::remove_all(root_, ec);
}

bool TestPostgres::RunAsOwner(const std::string& program,
                              const std::string& args) {
  const std::string cmd = bin_ + "/" + program + " " + args;
  const std::string line =
      geteuid() == 0 ? "runuser -u postgres -- sh -c '" + cmd + "'" : cmd;
  return std::system(line.c_str()) == 0;
}

bool TestPostgres::MakeCluster() {
  const std::string data = root_ + "/data";
  const std::string options = "-A trust -U zchat -E UTF8 --no-locale";
  // The build's kept cluster for this major version and these options:
  // every fresh cluster of the two is the same.
  std::string kept;
#ifdef ZCHAT_TEST_PG_CACHE
  char options_hash[17];
  std::snprintf(options_hash, sizeof options_hash, "%016zx",
                std::hash<std::string>{}(options));
  kept = std::string(ZCHAT_TEST_PG_CACHE) + "/" +
         fs::path(bin_).parent_path().filename().string() + "-" + options_hash;
#endif
  std::error_code ec;
  if (!kept.empty() && fs::exists(kept + "/PG_VERSION", ec)) {
    // cp -a keeps the files' owner (`postgres` under root) and modes, which
    // the server checks.
    return std::system(("cp -a '" + kept + "' '" + data + "'").c_str()) == 0;
  }
  if (!RunAsOwner("initdb", "-D " + data + " " + options + " --no-sync >" +
                                root_ + "/initdb.log 2>&1")) {
    return false;
  }
  if (!kept.empty()) {
    // Kept for the next servers: copied aside, then renamed into place in
    // one step, so that a server never copies half a cluster. Of two
    // servers that raced here, the second's rename fails and its copy goes.
    fs::create_directories(fs::path(kept).parent_path(), ec);
    const std::string aside = kept + ".new" + std::to_string(getpid());
    if (std::system(("cp -a '" + data + "' '" + aside + "'").c_str()) != 0 ||
        std::rename(aside.c_str(), kept.c_str()) != 0) {
      fs::remove_all(aside, ec);
    }
  }
  return true;
}

bool TestPostgres::Start() {
  // fsync off: these servers hold test data only, and tests that kill them
  // check what the broker does, not PostgreSQL's own durability.
  return RunAsOwner(
      "pg_ctl", "-D " + root_ + "/data -l " + root_ + "/log -w -t 60 -o \"-k " +
                    root_ +
                    "/sock -c listen_addresses= -p 5432 -c fsync=off\" "
                    "start >/dev/null 2>&1");
}

int TestPostgres::ServerPid() const {
  std::ifstream pidfile(root_ + "/data/postmaster.pid");
  int pid = -1;
  if (!(pidfile >> pid)) return -1;
  return pid;
}

bool TestPostgres::Stop() {
  return RunAsOwner(
      "pg_ctl", "-D " + root_ + "/data -m immediate -w stop >/dev/null 2>&1");
}

std::string TestPostgres::Uri(const std::string& name) const {
  return "postgresql:///" + name + "?host=" + root_ +
         "/sock&port=5432&user=zchat";
}

std::string TestPostgres::NewDatabase() {
  if (!error_.empty()) return "";
  const std::string name = "t" + std::to_string(++databases_);
  std::unique_ptr<PGconn, void (*)(PGconn*)> conn(
      PQconnectdb(Uri("postgres").c_str()), PQfinish);
  if (PQstatus(conn.get()) != CONNECTION_OK) {
    error_ = std::string("connect: ") + PQerrorMessage(conn.get());
    return "";
  }
  PGresult* r = PQexec(conn.get(), ("CREATE DATABASE " + name).c_str());
  const bool ok = PQresultStatus(r) == PGRES_COMMAND_OK;
  PQclear(r);
  if (!ok) {
    error_ = std::string("create database: ") + PQerrorMessage(conn.get());
    return "";
  }
  return Uri(name);
}

TestPostgres& SharedPostgres() {
  static TestPostgres server;
  return server;
}

}  // namespace zchat::testing
