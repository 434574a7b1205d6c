// zchat-queue-layouts: SQLite alone, the offline queue's work in four table
// layouts, so that a layout can be judged before the store is changed
// (docs/performance.md section 20). Each layout queues `--messages`
// messages to `--recipients` recipients in turn (a commit per 1,024), then
// drains them as the broker does: each recipient in turn reads its next
// `--fetch` messages in id order and confirms them, a commit per 1,024
// confirmed. Prints the CPU time per message of each phase (getrusage),
// the layouts alternated over `--rounds` rounds, and their medians.
//
// Layouts:
//   ids        the schema since v3 (rowid = message id, an index on
//              (recipient_id, id)), confirmed rows deleted 64 ids a
//              statement (the store before section 20)
//   ranges     the same schema, a recipient's confirmed rows that are next
//              to each other read back from its index and deleted as one
//              range (the store since section 20)
//   clustered  WITHOUT ROWID, keyed by (recipient_id, id), with an index on
//              id (which a receipt for another's message needs to answer
//              not_yours), confirmed rows deleted by key
//   keyed      the same without the index on id
#include <sqlite3.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <map>
#include <stdexcept>
#include <string>
#include <vector>

#include "bench/cpu_time.h"
#include "tests/support/temp_dir.h"

namespace {

using zchat::bench::CpuSeconds;

class Db {
 public:
  explicit Db(const std::string& path) {
    if (sqlite3_open(path.c_str(), &db_) != SQLITE_OK) Fail("open");
  }
  ~Db() {
    for (sqlite3_stmt* st : statements_) sqlite3_finalize(st);
    sqlite3_close(db_);
  }
  Db(const Db&) = delete;
  Db& operator=(const Db&) = delete;

  void Exec(const std::string& sql) {
    if (sqlite3_exec(db_, sql.c_str(), nullptr, nullptr, nullptr) !=
        SQLITE_OK) {
      Fail(sql);
    }
  }
  sqlite3_stmt* Prepare(const std::string& sql) {
    sqlite3_stmt* st = nullptr;
    if (sqlite3_prepare_v3(db_, sql.c_str(), -1, SQLITE_PREPARE_PERSISTENT, &st,
                           nullptr) != SQLITE_OK) {
      Fail(sql);
    }
    statements_.push_back(st);
    return st;
  }
  // Steps a statement that returns no rows; `rows` is how many it must
  // change (-1: any).
  void Run(sqlite3_stmt* st, int64_t rows = -1) {
    if (sqlite3_step(st) != SQLITE_DONE) Fail(sqlite3_sql(st));
    sqlite3_reset(st);
    if (rows >= 0 && sqlite3_changes64(db_) != rows) {
      Fail(std::string("changed other than ") + std::to_string(rows) +
           " rows: " + sqlite3_sql(st));
    }
  }
  [[noreturn]] void Fail(const std::string& what) {
    throw std::runtime_error(what + ": " + sqlite3_errmsg(db_));
  }

 private:
  sqlite3* db_ = nullptr;
  std::vector<sqlite3_stmt*> statements_;
};

struct Options {
  int64_t messages = 300'000;
  int recipients = 10;
  int fetch = 100;
  int rounds = 3;
  int cache_mib = 16;
};

struct Figures {
  double enqueue_us = 0;
  double drain_us = 0;
};

Figures RunLayout(const std::string& layout, const Options& o,
                  const std::string& path) {
  Db db(path);
  db.Exec("PRAGMA journal_mode=WAL");
  db.Exec("PRAGMA synchronous=FULL");
  db.Exec("PRAGMA cache_size=-" + std::to_string(o.cache_mib * 1024));
  db.Exec("PRAGMA wal_autocheckpoint=10000");
  const std::string columns =
      "sender_id INTEGER NOT NULL, sender_name TEXT NOT NULL, recipient_id "
      "INTEGER NOT NULL, recipient_name TEXT NOT NULL, client_msg_id INTEGER "
      "NOT NULL, body TEXT NOT NULL, sent_at INTEGER NOT NULL";
  const bool rowid = layout == "ids" || layout == "ranges";
  if (rowid) {
    db.Exec("CREATE TABLE messages(id INTEGER PRIMARY KEY, " + columns + ")");
    db.Exec("CREATE INDEX messages_by_recipient ON messages(recipient_id, id)");
  } else {
    db.Exec("CREATE TABLE messages(id INTEGER NOT NULL, " + columns +
            ", PRIMARY KEY(recipient_id, id)) WITHOUT ROWID");
    if (layout == "clustered") {
      db.Exec("CREATE INDEX messages_by_id ON messages(id)");
    }
  }
  sqlite3_stmt* insert = db.Prepare(
      "INSERT INTO messages(id, sender_id, sender_name, recipient_id, "
      "recipient_name, client_msg_id, body, sent_at) VALUES(?, ?, ?, ?, ?, ?, "
      "?, ?)");
  sqlite3_stmt* fetch = db.Prepare(
      "SELECT id, sender_id, sender_name, recipient_name, client_msg_id, body, "
      "sent_at FROM messages WHERE recipient_id = ? ORDER BY id LIMIT ?");
  sqlite3_stmt* by_key =
      db.Prepare("DELETE FROM messages WHERE recipient_id = ? AND id = ?");
  sqlite3_stmt* range = db.Prepare(
      "DELETE FROM messages WHERE recipient_id = ? AND id BETWEEN ? AND ?");
  sqlite3_stmt* queue = db.Prepare(
      "SELECT id FROM messages WHERE recipient_id = ? AND id BETWEEN ? AND ? "
      "ORDER BY id LIMIT ?");
  std::string in_list = "DELETE FROM messages WHERE id IN (?";
  for (int i = 1; i < 64; ++i) in_list += ", ?";
  sqlite3_stmt* chunk = db.Prepare(in_list + ")");
  sqlite3_stmt* one = db.Prepare("DELETE FROM messages WHERE id = ?");

  const std::string body(64, 'q');
  std::vector<std::string> names;
  for (int r = 1; r <= o.recipients; ++r)
    names.push_back("r" + std::to_string(r));
  Figures f;
  double start = CpuSeconds();
  db.Exec("BEGIN");
  for (int64_t id = 1; id <= o.messages; ++id) {
    const int r = static_cast<int>(id % o.recipients) + 1;
    sqlite3_bind_int64(insert, 1, id);
    sqlite3_bind_int64(insert, 2, 1000);
    sqlite3_bind_text(insert, 3, "sender", -1, SQLITE_STATIC);
    sqlite3_bind_int64(insert, 4, r);
    sqlite3_bind_text(insert, 5, names[r - 1].c_str(), -1, SQLITE_STATIC);
    sqlite3_bind_int64(insert, 6, id);
    sqlite3_bind_text(insert, 7, body.data(), static_cast<int>(body.size()),
                      SQLITE_STATIC);
    sqlite3_bind_int64(insert, 8, 1'700'000'000'000);
    db.Run(insert, 1);
    if (id % 1024 == 0) db.Exec("COMMIT; BEGIN");
  }
  db.Exec("COMMIT");
  f.enqueue_us = (CpuSeconds() - start) / static_cast<double>(o.messages) * 1e6;

  start = CpuSeconds();
  int64_t drained = 0, since_commit = 0;
  std::vector<int64_t> ids;
  db.Exec("BEGIN");
  for (bool more = true; more;) {
    more = false;
    for (int r = 1; r <= o.recipients; ++r) {
      ids.clear();
      sqlite3_bind_int64(fetch, 1, r);
      sqlite3_bind_int64(fetch, 2, o.fetch);
      while (sqlite3_step(fetch) == SQLITE_ROW) {
        ids.push_back(sqlite3_column_int64(fetch, 0));
        // What the broker reads of each row.
        for (int col : {2, 3, 5}) sqlite3_column_text(fetch, col);
      }
      sqlite3_reset(fetch);
      if (ids.empty()) continue;
      more = true;
      if (layout == "ranges") {
        // The fetched rows are next to each other in the queue: checked
        // as the store checks them, then one range.
        sqlite3_bind_int64(queue, 1, r);
        sqlite3_bind_int64(queue, 2, ids.front());
        sqlite3_bind_int64(queue, 3, ids.back());
        sqlite3_bind_int64(queue, 4, static_cast<int64_t>(2 * ids.size()));
        size_t seen = 0;
        while (sqlite3_step(queue) == SQLITE_ROW) {
          seen += sqlite3_column_int64(queue, 0) == ids[seen];
        }
        sqlite3_reset(queue);
        if (seen != ids.size()) db.Fail("the queue has gaps");
        sqlite3_bind_int64(range, 1, r);
        sqlite3_bind_int64(range, 2, ids.front());
        sqlite3_bind_int64(range, 3, ids.back());
        db.Run(range, static_cast<int64_t>(ids.size()));
      } else if (layout == "ids") {
        size_t at = 0;
        for (; at + 64 <= ids.size(); at += 64) {
          for (int i = 0; i < 64; ++i)
            sqlite3_bind_int64(chunk, i + 1, ids[at + i]);
          db.Run(chunk, 64);
        }
        for (; at < ids.size(); ++at) {
          sqlite3_bind_int64(one, 1, ids[at]);
          db.Run(one, 1);
        }
      } else {
        for (int64_t id : ids) {
          sqlite3_bind_int64(by_key, 1, r);
          sqlite3_bind_int64(by_key, 2, id);
          db.Run(by_key, 1);
        }
      }
      drained += static_cast<int64_t>(ids.size());
      since_commit += static_cast<int64_t>(ids.size());
      if (since_commit >= 1024) {
        db.Exec("COMMIT; BEGIN");
        since_commit = 0;
      }
    }
  }
  db.Exec("COMMIT");
  if (drained != o.messages) db.Fail("drained " + std::to_string(drained));
  f.drain_us = (CpuSeconds() - start) / static_cast<double>(drained) * 1e6;
  return f;
}

double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.size() % 2 ? v[v.size() / 2]
                      : (v[v.size() / 2 - 1] + v[v.size() / 2]) / 2;
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  std::vector<std::string> layouts = {"ids", "ranges", "clustered", "keyed"};
  CLI::App app{"SQLite alone: the offline queue's work in four table layouts"};
  app.add_option("--messages", o.messages, "messages queued, then drained")
      ->check(CLI::Range(int64_t{1}, int64_t{100'000'000}))
      ->capture_default_str();
  app.add_option("--recipients", o.recipients, "recipients, in turn")
      ->check(CLI::Range(1, 100'000))
      ->capture_default_str();
  app.add_option("--fetch", o.fetch, "messages a recipient reads at a time")
      ->check(CLI::Range(1, 100'000))
      ->capture_default_str();
  app.add_option("--rounds", o.rounds, "rounds, the layouts alternated")
      ->check(CLI::Range(1, 100))
      ->capture_default_str();
  app.add_option("--cache-mib", o.cache_mib, "SQLite's page cache")
      ->check(CLI::Range(1, 65536))
      ->capture_default_str();
  app.add_option("--layouts", layouts, "which of ids, ranges, clustered, keyed")
      ->check(CLI::IsMember({"ids", "ranges", "clustered", "keyed"}));
  CLI11_PARSE(app, argc, argv);

  zchat::testing::TempDir dir;
  std::map<std::string, std::vector<Figures>> runs;
  try {
    for (int round = 0; round < o.rounds; ++round) {
      for (size_t i = 0; i < layouts.size(); ++i) {
        const std::string& layout = layouts[(i + round) % layouts.size()];
        const std::string path =
            dir.File(layout + "-" + std::to_string(round) + ".db");
        runs[layout].push_back(RunLayout(layout, o, path));
        for (const char* suffix : {"", "-wal", "-shm"}) {
          std::filesystem::remove(path + suffix);
        }
      }
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "zchat-queue-layouts: %s\n", e.what());
    return 1;
  }
  std::printf(
      "%lld messages to %d recipients, read %d at a time; CPU us per "
      "message, median of %d\n",
      static_cast<long long>(o.messages), o.recipients, o.fetch, o.rounds);
  std::printf("%-10s %8s %8s\n", "layout", "enqueue", "drain");
  for (const std::string& layout : layouts) {
    std::vector<double> enqueue, drain;
    for (const Figures& f : runs[layout]) {
      enqueue.push_back(f.enqueue_us);
      drain.push_back(f.drain_us);
    }
    std::printf("%-10s %8.2f %8.2f\n", layout.c_str(), Median(enqueue),
                Median(drain));
  }
  return 0;
}
