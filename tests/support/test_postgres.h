// TestPostgres: a throwaway PostgreSQL server for tests. initdb makes a
// cluster in a temporary directory (the first time in a build; later
// servers copy the cluster it made, kept in the build tree: 0.07 s instead
// of initdb's 0.9), pg_ctl starts it listening only on a
// Unix socket in that directory (no TCP port to fight over), and the
// destructor stops it and removes everything. PostgreSQL refuses to run as
// root, so under root (as in CI) the cluster belongs to Debian's `postgres`
// user and its programs run through runuser. Debian's postgresql-15
// (script/bootstrap) provides the programs; without them the test fails,
// saying so.
#pragma once

#include <string>

namespace zchat::testing {

class TestPostgres {
 public:
  TestPostgres();
  ~TestPostgres();
  TestPostgres(const TestPostgres&) = delete;
  TestPostgres& operator=(const TestPostgres&) = delete;

  // Empty if the server is up; else what went wrong.
  const std::string& error() const { return error_; }
  // A new, empty database; returns its connection URI ("" on failure, with
  // error() saying why).
  std::string NewDatabase();
  // The URI of database `name`.
  std::string Uri(const std::string& name) const;
  // Stops the server at once (as a crash would) / starts it again, on the
  // same socket and data.
  bool Stop();
  bool Start();
  // The server's main process (postmaster.pid), -1 if it is not running.
  int ServerPid() const;

 private:
  // data/ in root_: a copy of the build's kept fresh cluster, or initdb's
  // (then kept, when the build keeps one: ZCHAT_TEST_PG_CACHE).
  bool MakeCluster();
  // Runs a PostgreSQL program (as `postgres` under root); true on exit 0.
  bool RunAsOwner(const std::string& program, const std::string& args);

  std::string bin_;   // directory of initdb, pg_ctl
  std::string root_;  // the temporary directory: data/, sock/, log
  std::string error_;
  int databases_ = 0;
};

// One server for the whole test program, started on first use and stopped
// (its directory removed) at exit.
TestPostgres& SharedPostgres();

}  // namespace zchat::testing
