// Counting a table's rows in an SQLite file directly, not through a store:
// for tests that check where a store put what it wrote.
#pragma once

#include <gtest/gtest.h>
#include <sqlite3.h>

#include <cstdint>
#include <string>
#include <vector>

#include "broker/record_blobs.h"

namespace zchat::testing {

// The one integer `sql` selects, read from the SQLite file at `path` directly
// (-1 if it cannot be read).
inline int64_t RawValue(const std::string& path, const std::string& sql) {
  sqlite3* db = nullptr;
  EXPECT_EQ(sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READONLY, nullptr),
            SQLITE_OK);
  sqlite3_stmt* st = nullptr;
  EXPECT_EQ(sqlite3_prepare_v2(db, sql.c_str(), -1, &st, nullptr), SQLITE_OK)
      << sql;
  int64_t n = -1;
  if (sqlite3_step(st) == SQLITE_ROW) n = sqlite3_column_int64(st, 0);
  sqlite3_finalize(st);
  sqlite3_close(db);
  return n;
}

// Rows of `table` in the SQLite file at `path` (-1 if it cannot be read).
inline int64_t RawCount(const std::string& path, const std::string& table) {
  return RawValue(path, "SELECT count(*) FROM " + table);
}

// The dedup records of the SQLite file at `path` in its runs (schema v6:
// one row per run, each row counting its records).
inline int64_t RawRunRecords(const std::string& path) {
  return RawValue(path, "SELECT coalesce(sum(count), 0) FROM send_runs");
}

// The notices stored in the SQLite file at `path`: in `notices` and live in
// the notice log (schema v7: each row counts what it adds and acknowledges).
inline int64_t RawStoredNotices(const std::string& path) {
  return RawValue(path,
                  "SELECT (SELECT count(*) FROM notices) + (SELECT "
                  "coalesce(sum(adds - acks), 0) FROM notice_log)");
}

// The dedup records of the SQLite file at `path` waiting in its batches
// (schema v6: one row per commit, a blob of records), decoded.
inline std::vector<SendRecord> RawBatchRecords(const std::string& path) {
  sqlite3* db = nullptr;
  EXPECT_EQ(sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READONLY, nullptr),
            SQLITE_OK);
  sqlite3_stmt* st = nullptr;
  EXPECT_EQ(sqlite3_prepare_v2(db, "SELECT records FROM send_batches", -1, &st,
                               nullptr),
            SQLITE_OK);
  std::vector<SendRecord> records;
  while (sqlite3_step(st) == SQLITE_ROW) {
    const auto* p = static_cast<const char*>(sqlite3_column_blob(st, 0));
    EXPECT_TRUE(DecodeBatch(
        std::string_view(p ? p : "", sqlite3_column_bytes(st, 0)), &records));
  }
  sqlite3_finalize(st);
  sqlite3_close(db);
  return records;
}

}  // namespace zchat::testing
