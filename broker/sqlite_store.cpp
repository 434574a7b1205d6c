#include "broker/sqlite_store.h"

#include <algorithm>
#include <array>
#include <iterator>
#include <mutex>
#include <type_traits>
#include <utility>

namespace zchat {

// A prepared statement, owned: finalized when it goes away. Move-only (a
// moved-from Statement owns nothing). One that owns nothing (a failed
// prepare) fails every Step/Run with SQLITE_MISUSE, leaving sqlite3_errmsg
// with the reason the prepare failed.
class SqliteStore::Statement {
 public:
  Statement() = default;
  explicit Statement(sqlite3_stmt* stmt) : stmt_(stmt) {}
  ~Statement() { sqlite3_finalize(stmt_); }  // a no-op for nullptr
  Statement(Statement&& other) noexcept
      : stmt_(std::exchange(other.stmt_, nullptr)) {}
  Statement& operator=(Statement&& other) noexcept {
    if (this != &other) {
      sqlite3_finalize(stmt_);
      stmt_ = std::exchange(other.stmt_, nullptr);
    }
    return *this;
  }
  Statement(const Statement&) = delete;
  Statement& operator=(const Statement&) = delete;

  // Resets the statement and clears its bindings, for a fresh use.
  Statement& Start() {
    if (stmt_ != nullptr) {
      sqlite3_reset(stmt_);
      sqlite3_clear_bindings(stmt_);
    }
    return *this;
  }
  Statement& Bind(int index, int64_t value) {
    sqlite3_bind_int64(stmt_, index, value);
    return *this;
  }
  // Binds SQL NULL when `value` is empty.
  Statement& Bind(int index, std::optional<int64_t> value) {
    if (value) return Bind(index, *value);
    sqlite3_bind_null(stmt_, index);
    return *this;
  }
  Statement& Bind(int index, std::string_view text) {
    sqlite3_bind_text(stmt_, index, text.data(), static_cast<int>(text.size()),
                      SQLITE_TRANSIENT);
    return *this;
  }
  // Binds `text` without copying it: it must stay alive until the
  // statement's step or run that follows (Start clears the binding before
  // the statement's next use). For the hot path's row values.
  Statement& BindBorrowed(int index, std::string_view text) {
    sqlite3_bind_text(stmt_, index, text.data(), static_cast<int>(text.size()),
                      SQLITE_STATIC);
    return *this;
  }
  Statement& BindBlob(int index, std::string_view bytes) {
    sqlite3_bind_blob(stmt_, index, bytes.data(),
                      static_cast<int>(bytes.size()), SQLITE_TRANSIENT);
    return *this;
  }
  // Like BindBorrowed, for a blob.
  Statement& BindBorrowedBlob(int index, std::string_view bytes) {
    sqlite3_bind_blob(stmt_, index, bytes.data(),
                      static_cast<int>(bytes.size()), SQLITE_STATIC);
    return *this;
  }
  // SQLITE_ROW, SQLITE_DONE, or an error code.
  int Step() { return sqlite3_step(stmt_); }
  // Runs a statement that returns no rows; resets it.
  int Run() {
    int rc = sqlite3_step(stmt_);
    sqlite3_reset(stmt_);
    return rc == SQLITE_ROW ? SQLITE_DONE : rc;
  }
  int64_t Int(int col) const { return sqlite3_column_int64(stmt_, col); }
  std::string_view Text(int col) const {
    const auto* p =
        reinterpret_cast<const char*>(sqlite3_column_text(stmt_, col));
    return p ? std::string_view(p, sqlite3_column_bytes(stmt_, col))
             : std::string_view();
  }
  std::string_view Blob(int col) const {
    const auto* p = static_cast<const char*>(sqlite3_column_blob(stmt_, col));
    return p ? std::string_view(p, sqlite3_column_bytes(stmt_, col))
             : std::string_view();
  }
  void Reset() { sqlite3_reset(stmt_); }

 private:
  sqlite3_stmt* stmt_ = nullptr;
};

namespace {

constexpr const char* kSchemaV1 = R"sql(
CREATE TABLE accounts(
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  name TEXT NOT NULL,
  name_key TEXT NOT NULL UNIQUE,
  password_hash TEXT NOT NULL,
  created_at INTEGER NOT NULL);
CREATE TABLE messages(
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  sender_id INTEGER NOT NULL,
  sender_name TEXT NOT NULL,
  recipient_id INTEGER NOT NULL,
  recipient_name TEXT NOT NULL,
  client_msg_id INTEGER NOT NULL,
  body TEXT NOT NULL,
  sent_at INTEGER NOT NULL);
CREATE INDEX messages_by_recipient ON messages(recipient_id, id);
CREATE TABLE sends(
  sender_id INTEGER NOT NULL,
  client_msg_id INTEGER NOT NULL,
  message_id INTEGER NOT NULL,
  created_at INTEGER NOT NULL,
  PRIMARY KEY(sender_id, client_msg_id)) WITHOUT ROWID;
CREATE INDEX sends_by_age ON sends(created_at);
CREATE TABLE notices(
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  account_id INTEGER NOT NULL,
  kind INTEGER NOT NULL,
  message_id INTEGER NOT NULL,
  peer_name TEXT NOT NULL,
  client_msg_id INTEGER NOT NULL);
CREATE INDEX notices_by_account ON notices(account_id, id);
CREATE TABLE tokens(
  hash BLOB PRIMARY KEY,
  account_id INTEGER NOT NULL,
  created_at INTEGER NOT NULL) WITHOUT ROWID;
CREATE INDEX tokens_by_account ON tokens(account_id);
)sql";

// Notices are kept until the sender acknowledges them (NOTICE_RECEIPT), so
// the table is written twice per confirmed message: keyed by (account,
// message) in one b-tree, an insert and an acknowledgement touch one b-tree
// each, and an account's notices are a key range in message id order. A
// message has one sender and ends once (confirmed or purged), so it has at
// most one notice.
constexpr const char* kSchemaV2 = R"sql(
CREATE TABLE notices_v2(
  account_id INTEGER NOT NULL,
  message_id INTEGER NOT NULL,
  kind INTEGER NOT NULL,
  peer_name TEXT NOT NULL,
  client_msg_id INTEGER NOT NULL,
  PRIMARY KEY(account_id, message_id)) WITHOUT ROWID;
INSERT OR IGNORE INTO notices_v2(account_id, message_id, kind, peer_name,
                                 client_msg_id)
  SELECT account_id, message_id, kind, peer_name, client_msg_id
  FROM notices ORDER BY id;
DROP TABLE notices;
ALTER TABLE notices_v2 RENAME TO notices;
)sql";

// Message ids without AUTOINCREMENT, which reads and rewrites a row of
// sqlite_sequence with every insert: ids are handed out from blocks
// reserved in `meta` (one write per block), and `meta` keeps the highest id
// ever reserved, so no id is handed out twice, even after a rollback or a
// restart.
constexpr const char* kSchemaV3 = R"sql(
CREATE TABLE messages_v3(
  id INTEGER PRIMARY KEY,
  sender_id INTEGER NOT NULL,
  sender_name TEXT NOT NULL,
  recipient_id INTEGER NOT NULL,
  recipient_name TEXT NOT NULL,
  client_msg_id INTEGER NOT NULL,
  body TEXT NOT NULL,
  sent_at INTEGER NOT NULL);
INSERT INTO messages_v3(id, sender_id, sender_name, recipient_id,
                        recipient_name, client_msg_id, body, sent_at)
  SELECT id, sender_id, sender_name, recipient_id, recipient_name,
         client_msg_id, body, sent_at FROM messages;
CREATE TABLE meta(key TEXT PRIMARY KEY, value INTEGER NOT NULL) WITHOUT ROWID;
INSERT INTO meta(key, value) VALUES('message_ids', max(
  coalesce((SELECT seq FROM sqlite_sequence WHERE name = 'messages'), 0),
  coalesce((SELECT max(id) FROM messages), 0)));
DROP TABLE messages;
ALTER TABLE messages_v3 RENAME TO messages;
CREATE INDEX messages_by_recipient ON messages(recipient_id, id);
)sql";

// The dedup records lose their index by age, one more b-tree written with
// every send (a leaf page per batch, 5% of a chat message's instructions):
// Prune walks the primary key in stretches instead.
constexpr const char* kSchemaV4 = R"sql(
DROP INDEX sends_by_age;
)sql";

// New dedup records first go to sends_recent, keyed by message id: appended
// on its last page, then merged into `sends` many at a time (see the top of
// sqlite_store.h). Scattered over the senders' key ranges, the records of
// one batch had dirtied a page of `sends` per sender: 80% of the pages a
// batch of chat messages wrote to the WAL.
constexpr const char* kSchemaV5 = R"sql(
CREATE TABLE sends_recent(
  message_id INTEGER PRIMARY KEY,
  sender_id INTEGER NOT NULL,
  client_msg_id INTEGER NOT NULL,
  created_at INTEGER NOT NULL);
)sql";

// The dedup records become runs, a row per run of a sender's records, and
// wait for their merge in a row per commit (see the top of sqlite_store.h):
// a merge writes about a row per sender instead of a b-tree insert per
// record, and a commit one row instead of a row per record.
// MoveSendsIntoRuns moves the records of `sends` and sends_recent into runs
// and drops both tables.
constexpr const char* kSchemaV6 = R"sql(
CREATE TABLE send_runs(
  sender_id INTEGER NOT NULL,
  first_id INTEGER NOT NULL,
  last_id INTEGER NOT NULL,
  count INTEGER NOT NULL,
  oldest_at INTEGER NOT NULL,
  newest_at INTEGER NOT NULL,
  records BLOB NOT NULL,
  PRIMARY KEY(sender_id, first_id)) WITHOUT ROWID;
CREATE TABLE send_batches(
  id INTEGER PRIMARY KEY,
  records BLOB NOT NULL);
)sql";

// Notices added and acknowledged go to a log, a row per transaction, and
// reach `notices` only when they stay (see the top of sqlite_store.h). Each
// row counts the notices it adds and acknowledges, so that a count of
// stored notices reads no blob.
constexpr const char* kSchemaV7 = R"sql(
CREATE TABLE notice_log(
  id INTEGER PRIMARY KEY,
  adds INTEGER NOT NULL,
  acks INTEGER NOT NULL,
  records BLOB NOT NULL);
)sql";

// Messages for recipients who are online go to a log too, a row per
// transaction, and reach `messages` only when they stay (see the top of
// sqlite_store.h). Each row counts the messages it queues and removes.
constexpr const char* kSchemaV8 = R"sql(
CREATE TABLE message_log(
  id INTEGER PRIMARY KEY,
  adds INTEGER NOT NULL,
  removes INTEGER NOT NULL,
  records BLOB NOT NULL);
)sql";

// client_msg_id is a uint64 on the wire; SQLite integers are signed 64-bit.
// The bit pattern is stored as is.
int64_t ToSql(uint64_t v) { return static_cast<int64_t>(v); }
uint64_t FromSql(int64_t v) { return static_cast<uint64_t>(v); }

// `head`, then `item` `n` times separated by ", ": a statement with a list
// of placeholders, or of rows, built once for a fixed n.
std::string RepeatedSql(std::string_view head, std::string_view item, size_t n,
                        std::string_view tail = "") {
  std::string sql(head);
  for (size_t i = 0; i < n; ++i) {
    if (i > 0) sql += ", ";
    sql += item;
  }
  sql += tail;
  return sql;
}

// Adds or replaces an entry of a bounded cache: a full cache is emptied
// first (cheap, and the misses that follow reload what is used).
template <class Map, class Key, class Value>
void CachePut(Map& map, size_t capacity, Key&& key, Value&& value) {
  if (map.size() >= capacity && map.find(key) == map.end()) map.clear();
  map.insert_or_assign(std::forward<Key>(key), std::forward<Value>(value));
}

// To `out`, up to `limit` rows read from a table in message id order, adds
// the logged entries of `owner` (an OwnedLog, or a map keyed by owner, then
// id) and keeps the first `limit` of both, in id order.
// What a logged message counts toward log_message_bytes_.
int64_t LoggedBytes(const QueuedMessage& m) {
  return static_cast<int64_t>(m.body.size() + m.sender_name.size() +
                              m.recipient_name.size());
}

template <class T>
void ForEachLogged(const OwnedLog<T>& logged, int64_t owner, auto&& f) {
  logged.ForEach(owner, f);
}
template <class T>
void ForEachLogged(const std::map<std::pair<int64_t, int64_t>, T>& logged,
                   int64_t owner, auto&& f) {
  for (auto it = logged.lower_bound({owner, INT64_MIN});
       it != logged.end() && it->first.first == owner && f(it->second); ++it) {
  }
}
template <class T, class Log, class IdOf>
void MergeLogged(std::vector<T>& out, const Log& logged, int64_t owner,
                 int64_t limit, IdOf id_of) {
  const size_t from_table = out.size();
  const size_t most = static_cast<size_t>(limit);
  ForEachLogged(logged, owner, [&](const T& entry) {
    if (out.size() >= from_table + most) return false;
    out.push_back(entry);
    return true;
  });
  if (out.size() == from_table) return;
  std::inplace_merge(
      out.begin(), out.begin() + static_cast<ptrdiff_t>(from_table), out.end(),
      [&](const T& a, const T& b) { return id_of(a) < id_of(b); });
  if (out.size() > most) out.resize(most);
}

}  // namespace

std::optional<int64_t> SqliteStore::IdFloor::Next() const {
  // `assigned` is at least the table's committed sqlite_sequence: it is an id
  // SQLite chose above it, or one given explicitly (which raises it), and
  // nothing else writes the database.
  if (behind && assigned > 0) return assigned + 1;
  return std::nullopt;
}

void SqliteStore::IdFloor::Assigned(int64_t id) {
  assigned = std::max(assigned, id);
  // sqlite_sequence is now >= id in this transaction; if the transaction is
  // lost, ForgetTransaction sets `behind` again.
  behind = false;
}

SqliteStore::SqliteStore(sqlite3* db) : db_(db) {}

SqliteStore::~SqliteStore() = default;

Status SqliteStore::Error(std::string_view what) {
  Status s(ErrorCode::kStorage,
           std::string(what) + ": " + sqlite3_errmsg(db()));
  NoticeLostTransaction();
  return s;
}

Status SqliteStore::Exec(const char* sql) {
  char* err = nullptr;
  if (sqlite3_exec(db(), sql, nullptr, nullptr, &err) != SQLITE_OK) {
    std::string message = err ? err : "unknown error";
    sqlite3_free(err);
    return Status(ErrorCode::kStorage, message);
  }
  return Status::Ok();
}

SqliteStore::Statement& SqliteStore::Prepare(const char* sql) {
  static_assert(!std::is_copy_constructible_v<Statement> &&
                !std::is_copy_assignable_v<Statement>);
  static_assert(std::is_nothrow_move_constructible_v<Statement> &&
                std::is_nothrow_move_assignable_v<Statement>);
  auto it = statements_.find(sql);
  if (it == statements_.end()) {
    sqlite3_stmt* stmt = nullptr;
    if (sqlite3_prepare_v3(db(), sql, -1, SQLITE_PREPARE_PERSISTENT, &stmt,
                           nullptr) != SQLITE_OK) {
      // The SQL is ours and fixed, so the database could not be read (locked,
      // damaged, out of memory). Not remembered: the next call tries again.
      static Statement unprepared;
      return unprepared;
    }
    it = statements_.emplace(sql, std::make_unique<Statement>(stmt)).first;
  }
  return it->second->Start();
}

Result<std::unique_ptr<SqliteStore>> SqliteStore::Open(
    const std::string& path, const StoreOptions& options) {
  // Process-wide, before SQLite's first use: no memory statistics, which
  // otherwise take a global mutex on every allocation SQLite makes. (If
  // SQLite was already in use, this is refused and changes nothing.)
  static std::once_flag configured;
  std::call_once(configured,
                 [] { (void)sqlite3_config(SQLITE_CONFIG_MEMSTATUS, 0); });
  sqlite3* raw = nullptr;
  const int mode = options.read_only
                       ? SQLITE_OPEN_READONLY
                       : SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE;
  const int rc =
      sqlite3_open_v2(path.c_str(), &raw, mode | SQLITE_OPEN_NOMUTEX, nullptr);
  // The handle is owned from here on, even when the open failed.
  std::unique_ptr<SqliteStore> store(new SqliteStore(raw));
  auto failed = [&path](std::string_view why) {
    return Status(ErrorCode::kStorage,
                  "open " + path + ": " + std::string(why));
  };
  if (rc != SQLITE_OK) {
    return failed(raw ? sqlite3_errmsg(raw) : "out of memory");
  }
  sqlite3_busy_timeout(raw, 5000);
  // Reading the version is the first read of the file: it tells a file that
  // is not a database (or is damaged) before anything is changed.
  Result<int64_t> version = store->SchemaVersion();
  if (!version.ok()) return failed(version.status().detail());
  if (Status s = CheckNotNewer(*version); !s.ok()) return failed(s.detail());
  if (options.read_only) {
    // The schema must already be there; nothing is changed.
    if (*version < kSchemaVersion) {
      return failed("database schema version " + std::to_string(*version) +
                    " needs migrating to version " +
                    std::to_string(kSchemaVersion) +
                    ", and the database is open read-only");
    }
    return store;
  }
  std::string pragmas = "PRAGMA journal_mode=WAL; PRAGMA foreign_keys=OFF;";
  // Deleted rows (confirmed messages, acknowledged notices) are zeroed on
  // the pages that keep other rows, which are written anyway; a page freed
  // whole keeps its bytes until it is reused (docs/semantics.md, "What
  // stays on disk"). Debian's SQLite zeroes freed pages too (it is built
  // with SECURE_DELETE), writing each one to the WAL once more: 9-11% of
  // the offline drain (docs/performance.md section 30).
  pragmas += "PRAGMA secure_delete=FAST;";
  pragmas += options.sync == SyncMode::kFull ? "PRAGMA synchronous=FULL;"
                                             : "PRAGMA synchronous=NORMAL;";
  // A checkpoint copies the WAL's pages into the database file; at SQLite's
  // default of 1,000 pages a drain's deletes, which come back to the same
  // pages over many commits, copied them again and again. With --sync
  // normal a checkpoint is also when the WAL is synced, so that mode keeps
  // SQLite's default and the window of loss docs/semantics.md states.
  if (options.sync == SyncMode::kFull) {
    pragmas +=
        "PRAGMA wal_autocheckpoint=" + std::to_string(kCheckpointPages) + ";";
  }
  if (options.cache_kib > 0) {
    pragmas += "PRAGMA cache_size=-" + std::to_string(options.cache_kib) + ";";
  }
  if (options.max_pages > 0) {
    pragmas +=
        "PRAGMA max_page_count=" + std::to_string(options.max_pages) + ";";
  }
  if (Status s = store->Exec(pragmas.c_str()); !s.ok()) {
    return failed(s.detail());
  }
  if (Status s = store->Migrate(); !s.ok()) return failed(s.detail());
  {
    // Ids up to the highest reserved may have been handed out.
    Statement& st =
        store->Prepare("SELECT value FROM meta WHERE key = 'message_ids'");
    if (st.Step() != SQLITE_ROW) {
      st.Reset();
      return failed(std::string("read meta: ") + sqlite3_errmsg(store->db()));
    }
    store->next_message_id_ = st.Int(0) + 1;
    st.Reset();
  }
  return store;
}

Result<int64_t> SqliteStore::SchemaVersion() {
  sqlite3_stmt* raw = nullptr;
  const int rc =
      sqlite3_prepare_v2(db(), "PRAGMA user_version", -1, &raw, nullptr);
  Statement st(raw);  // finalized on every path
  if (rc != SQLITE_OK) return Error("read schema version");
  if (st.Step() != SQLITE_ROW) return Error("read schema version");
  return st.Int(0);
}

Status SqliteStore::CheckNotNewer(int64_t version) {
  if (version <= kSchemaVersion) return Status::Ok();
  return Status(ErrorCode::kStorage,
                "database schema version " + std::to_string(version) +
                    " is newer than this broker's schema version " +
                    std::to_string(kSchemaVersion));
}

Status SqliteStore::Migrate() {
  // Each step takes the schema from version N to N+1 in one transaction,
  // reading N inside it (another broker may be migrating the same file).
  static const char* const kMigrations[] = {kSchemaV1, kSchemaV2, kSchemaV3,
                                            kSchemaV4, kSchemaV5, kSchemaV6,
                                            kSchemaV7, kSchemaV8};
  static_assert(std::size(kMigrations) == kSchemaVersion);
  for (;;) {
    if (Status s = Exec("BEGIN IMMEDIATE"); !s.ok()) return s;
    Result<int64_t> version = SchemaVersion();
    Status s = version.ok() ? CheckNotNewer(*version) : version.status();
    if (!s.ok() || *version == kSchemaVersion) {
      Exec("ROLLBACK").IgnoreError();  // already failing
      return s;
    }
    const int64_t next = *version + 1;
    s = Exec(kMigrations[*version]);
    if (s.ok() && next == 6) s = MoveSendsIntoRuns();
    if (s.ok()) {
      s = Exec(("PRAGMA user_version=" + std::to_string(next)).c_str());
    }
    if (!s.ok()) {
      Exec("ROLLBACK").IgnoreError();  // already failing
      return Status(ErrorCode::kStorage, "migration to schema version " +
                                             std::to_string(next) + ": " +
                                             s.detail());
    }
    if (Status c = Exec("COMMIT"); !c.ok()) {
      Exec("ROLLBACK").IgnoreError();  // already failing
      return c;
    }
  }
}

Status SqliteStore::RequireTransaction() {
  NoticeLostTransaction();
  // Writes outside a transaction would commit piecemeal: refuse them.
  if (InTransaction()) return Status::Ok();
  return Status(ErrorCode::kStorage, "the database is not writable now");
}

void SqliteStore::NoticeLostTransaction() {
  if (transaction_open_ && !InTransaction()) {
    transaction_open_ = false;
    ForgetTransaction();
  }
}

void SqliteStore::ForgetTransaction() {
  accounts_by_key_.clear();
  pending_counts_.clear();
  notice_counts_.clear();
  highest_sends_.clear();
  recent_sends_.clear();
  recent_highest_.clear();
  recent_loaded_ = false;
  batch_records_.clear();
  run_tails_.clear();
  log_notices_.clear();
  notice_log_loaded_ = false;
  notice_log_ops_ = 0;
  notice_ops_.clear();
  notice_op_adds_ = 0;
  notice_trims_.clear();
  insert_count_ = 0;
  ForgetMessageLog();
  message_log_loaded_ = false;
  message_log_ops_ = 0;
  message_ops_.clear();
  message_op_adds_ = message_op_removes_ = 0;
  deliveries_.clear();
  confirmed_rows_.clear();
  fetched_.clear();
  fetched_ids_ = 0;
  account_ids_.behind = true;
  // A block reserved in the lost transaction is no longer reserved.
  message_block_end_ = 0;
}

Result<int64_t> SqliteStore::NextMessageId() {
  // The smallest id at or above `from` in this store's share of the ids.
  auto align = [this](int64_t from) {
    const int64_t r = from % id_count_;
    return from + (id_index_ - r + id_count_) % id_count_;
  };
  int64_t id = align(next_message_id_);
  if (id > message_block_end_) {
    // A block holds kMessageIdBlock ids of this store's share.
    const int64_t span = kMessageIdBlock * id_count_;
    Statement& st = Prepare(
        "UPDATE meta SET value = value + ? WHERE key = 'message_ids' "
        "RETURNING value");
    st.Bind(1, span);
    if (st.Step() != SQLITE_ROW) {
      st.Reset();
      return Error("reserve message ids");
    }
    const int64_t end = st.Int(0);
    const int rc = st.Step();
    st.Reset();
    if (rc != SQLITE_DONE) return Error("reserve message ids");
    message_block_end_ = end;
    next_message_id_ = std::max(next_message_id_, end - span + 1);
    id = align(next_message_id_);
  }
  next_message_id_ = id + 1;
  return id;
}

void SqliteStore::UseIdSpace(int index, int count) {
  id_index_ = index;
  id_count_ = count;
}

int64_t SqliteStore::CacheBytes() const {
  int current = 0, highest = 0;
  if (sqlite3_db_status(db(), SQLITE_DBSTATUS_CACHE_USED, &current, &highest,
                        /*resetFlg=*/0) != SQLITE_OK) {
    return 0;
  }
  return current;
}

Result<std::optional<int64_t>> SqliteStore::ReadMeta(const char* key) {
  Statement& st = Prepare("SELECT value FROM meta WHERE key = ?");
  st.Bind(1, std::string_view(key));
  const int rc = st.Step();
  if (rc == SQLITE_DONE) return std::optional<int64_t>();
  if (rc != SQLITE_ROW) return Error("read meta");
  const int64_t value = st.Int(0);
  st.Reset();
  return std::optional<int64_t>(value);
}

Status SqliteStore::WriteMeta(const char* key, int64_t value) {
  if (Status s = Begin(); !s.ok()) return s;
  Statement& st = Prepare(
      "INSERT INTO meta(key, value) VALUES(?, ?) "
      "ON CONFLICT(key) DO UPDATE SET value = excluded.value");
  st.Bind(1, std::string_view(key)).Bind(2, value);
  if (st.Run() != SQLITE_DONE) {
    Status s = Error("write meta");
    Rollback();
    return s;
  }
  return Commit();
}

Status SqliteStore::RunFixed(const char* sql) {
  if (Prepare(sql).Run() != SQLITE_DONE) {
    return Status(ErrorCode::kStorage, sqlite3_errmsg(db()));
  }
  return Status::Ok();
}

Status SqliteStore::Begin() {
  NoticeLostTransaction();
  batch_records_.clear();
  Status s = RunFixed("BEGIN IMMEDIATE");
  if (s.ok()) transaction_open_ = true;
  return s;
}

Status SqliteStore::Commit() {
  NoticeLostTransaction();
  Status s = DeleteConfirmed();
  if (s.ok()) s = TrimNotices();
  if (s.ok()) s = WriteBatchSends();
  if (s.ok()) s = WriteNoticeOps();
  if (s.ok()) s = WriteMessageOps();
  // (A compaction of the message log may have moved messages into the
  // table.)
  if (s.ok()) s = FlushInserts();
  if (s.ok()) s = RunFixed("COMMIT");
  if (s.ok()) {
    transaction_open_ = false;
  } else {
    Rollback();
  }
  return s;
}

void SqliteStore::Rollback() {
  // A failed ROLLBACK leaves nothing to undo: SQLite has ended the
  // transaction itself.
  if (InTransaction()) RunFixed("ROLLBACK").IgnoreError();
  transaction_open_ = false;
  ForgetTransaction();
}

bool SqliteStore::InTransaction() const {
  return !sqlite3_get_autocommit(db());
}

int64_t SqliteStore::TotalChanges() const {
  // A logged notice or message is a change too, written at the commit.
  return sqlite3_total_changes64(db()) + logged_changes_;
}

Result<int64_t> SqliteStore::CreateAccount(std::string_view name,
                                           std::string_view key,
                                           std::string_view password_hash,
                                           int64_t now_ms) {
  if (Status s = RequireTransaction(); !s.ok()) return s;
  Statement& st = Prepare(
      "INSERT INTO accounts(id, name, name_key, password_hash, created_at) "
      "VALUES(?, ?, ?, ?, ?)");
  st.Bind(1, account_ids_.Next())
      .Bind(2, name)
      .Bind(3, key)
      .Bind(4, password_hash)
      .Bind(5, now_ms);
  if (st.Run() != SQLITE_DONE) {
    if (sqlite3_extended_errcode(db()) == SQLITE_CONSTRAINT_UNIQUE) {
      return Status(ErrorCode::kUsernameTaken, "username is taken");
    }
    return Error("create account");
  }
  const int64_t id = sqlite3_last_insert_rowid(db());
  account_ids_.Assigned(id);
  CachePut(accounts_by_key_, kAccountCacheSize, std::string(key),
           Account{id, std::string(name), std::string(password_hash)});
  return id;
}

// A queued message from a row of (id, sender_id, sender_name,
// recipient_name, client_msg_id[, body, sent_at]).
QueuedMessage SqliteStore::ReadQueued(const Statement& st, int64_t recipient_id,
                                      bool with_body) {
  QueuedMessage m;
  m.id = st.Int(0);
  m.sender_id = st.Int(1);
  m.sender_name = st.Text(2);
  m.recipient_id = recipient_id;
  m.recipient_name = st.Text(3);
  m.client_msg_id = FromSql(st.Int(4));
  if (with_body) {
    m.body = st.Text(5);
    m.sent_at_ms = st.Int(6);
  }
  return m;
}

Result<std::optional<Account>> SqliteStore::ReadAccount(Statement& st) {
  int rc = st.Step();
  if (rc == SQLITE_DONE) return std::optional<Account>();
  if (rc != SQLITE_ROW) return Error("find account");
  Account a{st.Int(0), std::string(st.Text(1)), std::string(st.Text(2))};
  st.Reset();
  return std::optional<Account>(std::move(a));
}

Result<std::optional<Account>> SqliteStore::FindAccount(std::string_view key) {
  NoticeLostTransaction();
  if (auto it = accounts_by_key_.find(key); it != accounts_by_key_.end()) {
    return std::optional<Account>(it->second);
  }
  Result<std::optional<Account>> found = ReadAccount(
      Prepare("SELECT id, name, password_hash FROM accounts WHERE name_key = ?")
          .Bind(1, key));
  // Only accounts that exist are cached (an unknown key costs a lookup).
  if (found.ok() && found->has_value()) {
    CachePut(accounts_by_key_, kAccountCacheSize, std::string(key), **found);
  }
  return found;
}

Result<std::optional<int64_t>> SqliteStore::FindAccountId(
    std::string_view key) {
  NoticeLostTransaction();
  if (auto it = accounts_by_key_.find(key); it != accounts_by_key_.end()) {
    return std::optional<int64_t>(it->second.id);
  }
  return Store::FindAccountId(key);  // reads it, and caches it
}

Result<std::optional<Account>> SqliteStore::FindAccountById(int64_t id) {
  return ReadAccount(
      Prepare("SELECT id, name, password_hash FROM accounts WHERE id = ?")
          .Bind(1, id));
}

Result<std::vector<QueuedMessage>> SqliteStore::DeleteAccount(int64_t id) {
  if (Status s = RequireTransaction(); !s.ok()) return s;
  // The records waiting in batches join the runs, where the sender's are
  // deleted with one statement.
  if (Status s = MergeRecentSends(); !s.ok()) return s;
  // The account's logged notices go by acknowledgements in the log.
  if (Status s = LoadNoticeLog(); !s.ok()) return s;
  for (auto it = log_notices_.lower_bound({id, INT64_MIN});
       it != log_notices_.end() && it->first.first == id;) {
    LogNoticeOp(/*add=*/false, id, it->second);
    it = log_notices_.erase(it);
  }
  // Forgetting a cache entry is always safe (a miss reloads it), so the
  // account's count goes first, whatever happens below.
  pending_counts_.erase(id);
  notice_counts_.erase(id);
  notice_trims_.erase(id);
  // The account's queue goes below: what receipts knew of it goes now.
  std::erase_if(deliveries_, [id](const auto& entry) {
    return entry.second.recipient_id == id;
  });
  Unfetch(id);
  if (Status s = DeleteConfirmed(); !s.ok()) return s;
  std::vector<QueuedMessage> purged;
  {
    Statement& st = Prepare(
        "SELECT id, sender_id, sender_name, recipient_name, client_msg_id "
        "FROM messages WHERE recipient_id = ? ORDER BY id");
    st.Bind(1, id);
    int rc;
    while ((rc = st.Step()) == SQLITE_ROW) {
      purged.push_back(ReadQueued(st, id, /*with_body=*/false));
    }
    st.Reset();
    if (rc != SQLITE_DONE) return Error("delete account");
  }
  // And the logged ones, removed in the log, all in message id order.
  if (Status s = LoadMessageLog(); !s.ok()) return s;
  const size_t from_table = purged.size();
  log_messages_.RemoveAll(id, [&](QueuedMessage& m) {
    log_message_bytes_ -= LoggedBytes(m);
    LogRemoval(m.id);
    m.body.clear();
    purged.push_back(std::move(m));
  });
  std::inplace_merge(
      purged.begin(), purged.begin() + static_cast<ptrdiff_t>(from_table),
      purged.end(), [](const QueuedMessage& a, const QueuedMessage& b) {
        return a.id < b.id;
      });
  const char* const kDeletes[] = {
      "DELETE FROM messages WHERE recipient_id = ?",
      "DELETE FROM notices WHERE account_id = ?",
      "DELETE FROM tokens WHERE account_id = ?",
      "DELETE FROM send_runs WHERE sender_id = ?",
  };
  for (const char* sql : kDeletes) {
    if (Prepare(sql).Bind(1, id).Run() != SQLITE_DONE) {
      return Error("delete account");
    }
  }
  run_tails_.erase(id);
  Statement& del =
      Prepare("DELETE FROM accounts WHERE id = ? RETURNING name_key");
  del.Bind(1, id);
  int rc;
  while ((rc = del.Step()) == SQLITE_ROW) {
    if (auto it = accounts_by_key_.find(del.Text(0));
        it != accounts_by_key_.end()) {
      accounts_by_key_.erase(it);
    }
  }
  del.Reset();
  if (rc != SQLITE_DONE) return Error("delete account");
  return purged;
}

Result<std::string> SqliteStore::ScanAccounts(
    std::string_view prefix, std::string_view after, int64_t max_rows,
    const std::function<bool(std::string_view, std::string_view)>& visit) {
  // Keys are ASCII; `after` (the cursor) excludes itself, `prefix` includes.
  Statement& st = Prepare(
      "SELECT name_key, name FROM accounts WHERE name_key >= ? AND name_key > ?"
      " ORDER BY name_key LIMIT ?");
  st.Bind(1, prefix).Bind(2, after).Bind(3, max_rows);
  std::string last;
  int64_t examined = 0;
  bool stopped = false;  // by the visitor, or at the end of the prefix range
  int rc;
  while ((rc = st.Step()) == SQLITE_ROW) {
    std::string_view key = st.Text(0);
    if (key.substr(0, prefix.size()) != prefix) {
      rc = SQLITE_DONE;
      last.clear();  // past the prefix: nothing more can match
      stopped = true;
      break;
    }
    last.assign(key);
    ++examined;
    if (!visit(key, st.Text(1))) {
      stopped = true;
      break;
    }
  }
  st.Reset();
  if (rc != SQLITE_DONE && rc != SQLITE_ROW) return Error("list accounts");
  // Fewer rows than asked for and no stop: the table is exhausted.
  if (!stopped && examined < max_rows) last.clear();
  return last;
}

Result<std::optional<int64_t>> SqliteStore::FindSend(int64_t sender_id,
                                                     uint64_t client_msg_id) {
  NoticeLostTransaction();
  if (Status s = LoadRecentSends(); !s.ok()) return s;
  auto highest = highest_sends_.find(sender_id);
  if (highest == highest_sends_.end()) {
    // The runs' ranges do not overlap: the last run holds the highest.
    Result<std::optional<RunTail>> last = LastRun(sender_id);
    if (!last.ok()) return last.status();
    int64_t top = *last ? (*last)->last.client_msg_id : INT64_MIN;
    if (auto it = recent_highest_.find(sender_id);
        it != recent_highest_.end()) {
      top = std::max(top, it->second);
    }
    CachePut(highest_sends_, kHighestSendCacheSize, sender_id, top);
    highest = highest_sends_.find(sender_id);
  }
  // Above every id this sender has a record of: not a retry. (INT64_MIN
  // itself, for a sender with no record, is looked up like any other.)
  if (ToSql(client_msg_id) > highest->second) return std::optional<int64_t>();
  const SendKey key{sender_id, ToSql(client_msg_id)};
  if (auto it = recent_sends_.find(key); it != recent_sends_.end()) {
    return std::optional<int64_t>(it->second.message_id);
  }
  // Above the sender's last run (cached), no run holds it: a client that
  // sends to several recipients at once, each recipient's ids in a request
  // of its own, sends ids below its highest that are new.
  Result<std::optional<RunTail>> last = LastRun(sender_id);
  if (!last.ok()) return last.status();
  if (!*last || key.client_msg_id > (*last)->last.client_msg_id) {
    return std::optional<int64_t>();
  }
  // The only run that can hold the id: the last one starting at or below it.
  Statement& st = Prepare(
      "SELECT first_id, last_id, records FROM send_runs "
      "WHERE sender_id = ? AND first_id <= ? ORDER BY first_id DESC LIMIT 1");
  st.Bind(1, sender_id).Bind(2, key.client_msg_id);
  const int rc = st.Step();
  if (rc == SQLITE_DONE) return std::optional<int64_t>();
  if (rc != SQLITE_ROW) return Error("find send");
  std::optional<int64_t> found;
  if (key.client_msg_id <= st.Int(1)) {
    if (!DecodeRun(st.Int(0), st.Blob(2), &run_scratch_)) {
      st.Reset();
      return Status(ErrorCode::kStorage, "find send: a damaged dedup run");
    }
    auto it = std::lower_bound(
        run_scratch_.begin(), run_scratch_.end(), key.client_msg_id,
        [](const RunRecord& r, int64_t id) { return r.client_msg_id < id; });
    if (it != run_scratch_.end() && it->client_msg_id == key.client_msg_id) {
      found = it->message_id;
    }
  }
  st.Reset();
  return found;
}

Status SqliteStore::ForEachBlob(
    const char* sql, std::string_view what,
    const std::function<bool(std::string_view)>& take) {
  Statement& st = Prepare(sql);
  int rc;
  while ((rc = st.Step()) == SQLITE_ROW) {
    if (!take(st.Blob(0))) {
      st.Reset();
      return Status(ErrorCode::kStorage, std::string(what) + ": a damaged row");
    }
  }
  st.Reset();
  if (rc != SQLITE_DONE) return Error(what);
  return Status::Ok();
}

Status SqliteStore::LoadRecentSends() {
  if (recent_loaded_) return Status::Ok();
  recent_sends_.clear();
  recent_highest_.clear();
  std::vector<SendRecord> records;
  Status s =
      ForEachBlob("SELECT records FROM send_batches ORDER BY id",
                  "read recent sends", [&](std::string_view blob) {
                    records.clear();
                    if (!DecodeBatch(blob, &records)) return false;
                    for (const SendRecord& r : records) {
                      RememberRecent(SendKey{r.sender_id, r.client_msg_id},
                                     RecentSend{r.message_id, r.created_at});
                    }
                    return true;
                  });
  if (!s.ok()) {
    recent_sends_.clear();
    recent_highest_.clear();
    return s;
  }
  recent_loaded_ = true;
  return Status::Ok();
}

void SqliteStore::RememberRecent(const SendKey& key, const RecentSend& send) {
  recent_sends_.insert_or_assign(key, send);
  if (auto [it, added] =
          recent_highest_.try_emplace(key.sender_id, key.client_msg_id);
      !added) {
    it->second = std::max(it->second, key.client_msg_id);
  }
}

Status SqliteStore::MergeRecentSends() {
  if (Status s = LoadRecentSends(); !s.ok()) return s;
  if (recent_sends_.empty()) return Status::Ok();
  // Sender by sender, each one's records in id order.
  std::vector<SendRow> rows(recent_sends_.begin(), recent_sends_.end());
  std::sort(rows.begin(), rows.end(), [](const SendRow& a, const SendRow& b) {
    return std::pair(a.first.sender_id, a.first.client_msg_id) <
           std::pair(b.first.sender_id, b.first.client_msg_id);
  });
  for (size_t i = 0; i < rows.size();) {
    size_t j = i + 1;
    while (j < rows.size() &&
           rows[j].first.sender_id == rows[i].first.sender_id) {
      ++j;
    }
    if (Status s = AddToRuns(rows[i].first.sender_id, &rows[i], j - i);
        !s.ok()) {
      return s;
    }
    i = j;
  }
  if (Prepare("DELETE FROM send_batches").Run() != SQLITE_DONE) {
    return Error("merge recent sends");
  }
  // The open transaction's records were in the mirror: they are in runs
  // now, and no row of send_batches is written for them.
  batch_records_.clear();
  recent_sends_.clear();
  recent_highest_.clear();
  return Status::Ok();
}

Result<std::optional<SqliteStore::RunTail>> SqliteStore::LastRun(
    int64_t sender_id) {
  if (auto it = run_tails_.find(sender_id); it != run_tails_.end()) {
    return it->second;
  }
  Statement& st = Prepare(
      "SELECT first_id, count, oldest_at, records FROM send_runs "
      "WHERE sender_id = ? ORDER BY first_id DESC LIMIT 1");
  st.Bind(1, sender_id);
  const int rc = st.Step();
  std::optional<RunTail> tail;
  if (rc == SQLITE_ROW) {
    const std::string_view blob = st.Blob(3);
    if (!DecodeRun(st.Int(0), blob, &run_scratch_) || run_scratch_.empty()) {
      st.Reset();
      return Status(ErrorCode::kStorage, "read dedup runs: a damaged run");
    }
    tail = RunTail{st.Int(0), run_scratch_.back(), st.Int(1),
                   static_cast<int64_t>(blob.size()), st.Int(2)};
  }
  st.Reset();
  if (rc != SQLITE_ROW && rc != SQLITE_DONE) return Error("read dedup runs");
  CachePut(run_tails_, kRunTailCacheSize, sender_id, tail);
  return tail;
}

Status SqliteStore::AddToRuns(int64_t sender_id, const SendRow* rows,
                              size_t count) {
  Result<std::optional<RunTail>> last = LastRun(sender_id);
  if (!last.ok()) return last.status();
  // Records at or below the last run's last id (a client that does not
  // count its ids up) go into the runs one by one; the rest are above
  // every run and are appended.
  size_t above = 0;
  if (*last) {
    while (above < count &&
           rows[above].first.client_msg_id <= (*last)->last.client_msg_id) {
      ++above;
    }
  }
  if (above > 0) {
    if (Status s = InsertIntoRuns(sender_id, rows, above); !s.ok()) return s;
    run_tails_.erase(sender_id);
    last = LastRun(sender_id);
    if (!last.ok()) return last.status();
  }
  std::optional<RunTail> open = *last;  // the run being added to
  bool stored = open.has_value();       // ... and whether it is in the table
  RunEncoder encoder = open ? RunEncoder(open->last) : RunEncoder(0);
  int64_t added = 0;
  int64_t newest = INT64_MIN;
  auto flush = [&]() -> Status {
    if (added == 0) return Status::Ok();
    if (stored) {
      Statement& st = Prepare(
          "UPDATE send_runs SET last_id = ?, count = count + ?, "
          "newest_at = max(newest_at, ?), records = records || ? "
          "WHERE sender_id = ? AND first_id = ?");
      st.Bind(1, open->last.client_msg_id)
          .Bind(2, added)
          .Bind(3, newest)
          .BindBorrowedBlob(4, encoder.bytes())
          .Bind(5, sender_id)
          .Bind(6, open->first_id);
      if (st.Run() != SQLITE_DONE) return Error("merge dedup records");
      if (sqlite3_changes(db()) != 1) {
        run_tails_.erase(sender_id);
        return Status(ErrorCode::kStorage,
                      "merge dedup records: a sender's last run is gone");
      }
    } else {
      Statement& st = Prepare(
          "INSERT INTO send_runs(sender_id, first_id, last_id, count, "
          "oldest_at, newest_at, records) VALUES(?, ?, ?, ?, ?, ?, ?)");
      st.Bind(1, sender_id)
          .Bind(2, open->first_id)
          .Bind(3, open->last.client_msg_id)
          .Bind(4, open->count)
          .Bind(5, open->oldest_at)
          .Bind(6, newest)
          .BindBorrowedBlob(7, encoder.bytes());
      if (st.Run() != SQLITE_DONE) return Error("merge dedup records");
      ++runs_since_prune_;
    }
    return Status::Ok();
  };
  for (size_t i = above; i < count; ++i) {
    const RunRecord record{rows[i].first.client_msg_id,
                           rows[i].second.message_id};
    const int64_t at = rows[i].second.created_at;
    const bool fits =
        open && open->count < kRunRecordsMax &&
        open->bytes + static_cast<int64_t>(encoder.SizeOf(record)) <=
            kRunBytesMax &&
        at - open->oldest_at <= kRunSpanMs;
    if (!fits) {
      if (Status s = flush(); !s.ok()) return s;
      open = RunTail{record.client_msg_id, record, 0, 0, at};
      stored = false;
      encoder = RunEncoder(record.client_msg_id);
      added = 0;
      newest = INT64_MIN;
    }
    open->bytes += static_cast<int64_t>(encoder.SizeOf(record));
    encoder.Add(record);
    open->last = record;
    ++open->count;
    open->oldest_at = std::min(open->oldest_at, at);
    newest = std::max(newest, at);
    ++added;
  }
  if (Status s = flush(); !s.ok()) return s;
  CachePut(run_tails_, kRunTailCacheSize, sender_id, open);
  return Status::Ok();
}

Status SqliteStore::InsertIntoRuns(int64_t sender_id, const SendRow* rows,
                                   size_t count) {
  for (size_t i = 0; i < count;) {
    const int64_t id = rows[i].first.client_msg_id;
    Statement& st = Prepare(
        "SELECT first_id, last_id, oldest_at, newest_at, records FROM "
        "send_runs WHERE sender_id = ? AND first_id <= ? ORDER BY first_id "
        "DESC LIMIT 1");
    st.Bind(1, sender_id).Bind(2, id);
    const int rc = st.Step();
    if (rc != SQLITE_ROW && rc != SQLITE_DONE) return Error("merge dedup runs");
    if (rc == SQLITE_DONE || id > st.Int(1)) {
      // Between runs, or below the first: the records up to the next run
      // become runs of their own.
      st.Reset();
      Statement& next = Prepare(
          "SELECT first_id FROM send_runs WHERE sender_id = ? AND first_id > "
          "? ORDER BY first_id LIMIT 1");
      next.Bind(1, sender_id).Bind(2, id);
      const int next_rc = next.Step();
      if (next_rc != SQLITE_ROW && next_rc != SQLITE_DONE) {
        return Error("merge dedup runs");
      }
      const int64_t next_first =
          next_rc == SQLITE_ROW ? next.Int(0) : INT64_MAX;
      next.Reset();
      std::vector<RunRecord> records;
      int64_t oldest = INT64_MAX;
      int64_t newest = INT64_MIN;
      for (; i < count && rows[i].first.client_msg_id < next_first; ++i) {
        records.push_back(
            {rows[i].first.client_msg_id, rows[i].second.message_id});
        oldest = std::min(oldest, rows[i].second.created_at);
        newest = std::max(newest, rows[i].second.created_at);
      }
      if (Status s = WriteRuns(sender_id, records, oldest, newest,
                               /*replaces_run=*/false);
          !s.ok()) {
        return s;
      }
      continue;
    }
    // Into the run whose range holds them: every record up to its last id.
    std::vector<RunRecord> stored;
    const bool decoded = DecodeRun(st.Int(0), st.Blob(4), &stored);
    const int64_t last_id = st.Int(1);
    int64_t oldest = st.Int(2);
    int64_t newest = st.Int(3);
    st.Reset();
    if (!decoded || stored.empty()) {
      return Status(ErrorCode::kStorage, "merge dedup runs: a damaged run");
    }
    std::vector<RunRecord> records;
    records.reserve(stored.size() + 16);
    size_t k = 0;
    for (; i < count && rows[i].first.client_msg_id <= last_id; ++i) {
      const RunRecord record{rows[i].first.client_msg_id,
                             rows[i].second.message_id};
      while (k < stored.size() &&
             stored[k].client_msg_id < record.client_msg_id) {
        records.push_back(stored[k++]);
      }
      // An id stored already cannot be (FindSend saw none); the newer
      // record wins.
      if (k < stored.size() &&
          stored[k].client_msg_id == record.client_msg_id) {
        ++k;
      }
      records.push_back(record);
      oldest = std::min(oldest, rows[i].second.created_at);
      newest = std::max(newest, rows[i].second.created_at);
    }
    records.insert(records.end(), stored.begin() + static_cast<ptrdiff_t>(k),
                   stored.end());
    if (Status s = WriteRuns(sender_id, records, oldest, newest,
                             /*replaces_run=*/true);
        !s.ok()) {
      return s;
    }
  }
  return Status::Ok();
}

Status SqliteStore::WriteRuns(int64_t sender_id,
                              const std::vector<RunRecord>& records,
                              int64_t oldest_at, int64_t newest_at,
                              bool replaces_run) {
  // As few parts of equal size as keep each within kRunRecordsMax records
  // and kRunBytesMax bytes; the first keeps the key of a run it replaces.
  auto fits = [](std::span<const RunRecord> part) {
    if (static_cast<int64_t>(part.size()) > kRunRecordsMax) return false;
    RunEncoder encoder(part.front().client_msg_id);
    for (const RunRecord& r : part) encoder.Add(r);
    return static_cast<int64_t>(encoder.bytes().size()) <= kRunBytesMax;
  };
  const std::span<const RunRecord> all(records);
  size_t parts = std::max<size_t>(
      1, (records.size() + static_cast<size_t>(kRunRecordsMax) - 1) /
             static_cast<size_t>(kRunRecordsMax));
  for (;; ++parts) {
    bool all_fit = true;
    for (size_t p = 0; p < parts && all_fit; ++p) {
      const size_t from = records.size() * p / parts;
      const size_t to = records.size() * (p + 1) / parts;
      all_fit = fits(all.subspan(from, to - from));
    }
    if (all_fit) break;
  }
  for (size_t p = 0; p < parts; ++p) {
    const size_t from = records.size() * p / parts;
    const size_t to = records.size() * (p + 1) / parts;
    if (Status s =
            WriteRun(sender_id, {records.begin() + from, records.begin() + to},
                     oldest_at, newest_at);
        !s.ok()) {
      return s;
    }
  }
  runs_since_prune_ += static_cast<int64_t>(parts) - (replaces_run ? 1 : 0);
  return Status::Ok();
}

Status SqliteStore::WriteRun(int64_t sender_id,
                             const std::vector<RunRecord>& records,
                             int64_t oldest_at, int64_t newest_at) {
  RunEncoder encoder(records.front().client_msg_id);
  for (const RunRecord& r : records) encoder.Add(r);
  if (Prepare("INSERT OR REPLACE INTO send_runs(sender_id, first_id, "
              "last_id, count, oldest_at, newest_at, records) "
              "VALUES(?, ?, ?, ?, ?, ?, ?)")
          .Bind(1, sender_id)
          .Bind(2, records.front().client_msg_id)
          .Bind(3, records.back().client_msg_id)
          .Bind(4, static_cast<int64_t>(records.size()))
          .Bind(5, oldest_at)
          .Bind(6, newest_at)
          .BindBorrowedBlob(7, encoder.bytes())
          .Run() != SQLITE_DONE) {
    return Error("merge dedup runs");
  }
  return Status::Ok();
}

Status SqliteStore::MoveSendsIntoRuns() {
  // In the migration's transaction: each sender's records, in key order,
  // appended to runs as a merge appends them. (A key in both tables cannot
  // be; if one were, the newer record, sends_recent's, would be kept, as
  // the merge into `sends` kept it.)
  sqlite3_stmt* raw = nullptr;
  const int prepared = sqlite3_prepare_v2(
      db(),
      "SELECT sender_id, client_msg_id, message_id, created_at, 0 FROM sends "
      "UNION ALL SELECT sender_id, client_msg_id, message_id, created_at, 1 "
      "FROM sends_recent ORDER BY 1, 2, 5",
      -1, &raw, nullptr);
  {
    Statement st(raw);  // finalized before the tables are dropped
    if (prepared != SQLITE_OK) return Error("read dedup records");
    std::vector<SendRow> rows;
    auto flush = [&]() -> Status {
      if (rows.empty()) return Status::Ok();
      Status s =
          AddToRuns(rows.front().first.sender_id, rows.data(), rows.size());
      rows.clear();
      return s;
    };
    int rc;
    while ((rc = st.Step()) == SQLITE_ROW) {
      const SendKey key{st.Int(0), st.Int(1)};
      const RecentSend send{st.Int(2), st.Int(3)};
      if (!rows.empty() && rows.back().first == key) {
        rows.back().second = send;
        continue;
      }
      if (!rows.empty() && rows.front().first.sender_id != key.sender_id) {
        if (Status s = flush(); !s.ok()) return s;
      }
      rows.emplace_back(key, send);
    }
    if (rc != SQLITE_DONE) return Error("read dedup records");
    if (Status s = flush(); !s.ok()) return s;
  }
  run_tails_.clear();
  runs_since_prune_ = 0;
  return Exec("DROP TABLE sends; DROP TABLE sends_recent");
}

Result<int64_t> SqliteStore::Enqueue(const QueuedMessage& m) {
  if (Status s = RequireTransaction(); !s.ok()) return s;
  // One dedup record per send: no table refuses a second by its key (the
  // runs and batches hold blobs), so the store looks first.
  // (The send's FindSend has just filled the caches this reads, so the usual
  // answer costs no lookup.)
  Result<std::optional<int64_t>> prior = FindSend(m.sender_id, m.client_msg_id);
  if (!prior.ok()) return prior.status();
  if (*prior) {
    return Status(ErrorCode::kStorage,
                  "enqueue: the send already has a dedup record (message " +
                      std::to_string(**prior) + ")");
  }
  Result<int64_t> id = NextMessageId();
  if (!id.ok()) return id.status();
  if (Status s = LoadMessageLog(); !s.ok()) return s;
  if (m.recipient_online) {
    AppendMessageAdd(message_ops_, KeepLogged(m, *id));
    ++message_op_adds_;
    ++message_log_ops_;
    ++logged_changes_;
  } else {
    // (Not remembered for its receipt: a recipient who is away confirms
    // what it fetched, and FetchPending remembers what it hands out.)
    if (Status s = InsertMessage(*id, m); !s.ok()) return s;
  }
  // The row is in: the count follows it at once (even if the dedup insert
  // below fails, the row stays in the transaction until it rolls back).
  if (auto it = pending_counts_.find(m.recipient_id);
      it != pending_counts_.end()) {
    ++it->second;
  }
  // The dedup record: in the mirror at once (FindSend has loaded it), and
  // written by Commit (WriteBatchSends). Ids grow, so the transaction's
  // records are in message id order.
  const SendKey key{m.sender_id, ToSql(m.client_msg_id)};
  RememberRecent(key, RecentSend{*id, m.sent_at_ms});
  batch_records_.push_back(
      SendRecord{key.sender_id, key.client_msg_id, *id, m.sent_at_ms});
  if (auto it = highest_sends_.find(m.sender_id); it != highest_sends_.end()) {
    it->second = std::max(it->second, key.client_msg_id);
  }
  return *id;
}

Status SqliteStore::WriteBatchSends() {
  if (batch_records_.empty()) return Status::Ok();
  // One row for the transaction's records, in message id order (small
  // differences, short varints). The mirror has them since Enqueue.
  BatchEncoder encoder;
  for (const SendRecord& r : batch_records_) encoder.Add(r);
  if (Prepare("INSERT INTO send_batches(records) VALUES(?)")
          .BindBorrowedBlob(1, encoder.bytes())
          .Run() != SQLITE_DONE) {
    return Error("store dedup records");
  }
  batch_records_.clear();
  if (recent_sends_.size() >= kRecentSendsMax) return MergeRecentSends();
  return Status::Ok();
}

Result<int64_t> SqliteStore::CountPending(int64_t recipient_id) {
  NoticeLostTransaction();
  if (Status s = LoadMessageLog(); !s.ok()) return s;
  if (auto it = pending_counts_.find(recipient_id);
      it != pending_counts_.end()) {
    return it->second;
  }
  if (Status s = DeleteConfirmed(); !s.ok()) return s;
  Statement& st =
      Prepare("SELECT count(*) FROM messages WHERE recipient_id = ?");
  st.Bind(1, recipient_id);
  if (st.Step() != SQLITE_ROW) return Error("count pending");
  int64_t n = st.Int(0);
  n += log_messages_.Count(recipient_id);
  st.Reset();
  CachePut(pending_counts_, kPendingCacheSize, recipient_id, n);
  return n;
}

Result<StoreTotals> SqliteStore::Totals() {
  if (Status s = DeleteConfirmed(); !s.ok()) return s;
  // One statement, so the three counts come from one snapshot.
  Statement& st = Prepare(
      "SELECT (SELECT count(*) FROM accounts), (SELECT count(*) FROM "
      "messages) + (SELECT coalesce(sum(adds - removes), 0) FROM "
      "message_log), (SELECT count(*) FROM notices) + (SELECT "
      "coalesce(sum(adds - acks), 0) FROM notice_log)");
  if (st.Step() != SQLITE_ROW) return Error("count totals");
  StoreTotals t{st.Int(0), st.Int(1), st.Int(2)};
  st.Reset();
  return t;
}

Result<std::vector<QueuedMessage>> SqliteStore::FetchPending(
    int64_t recipient_id, int64_t limit) {
  NoticeLostTransaction();
  if (Status s = LoadMessageLog(); !s.ok()) return s;
  if (Status s = DeleteConfirmed(); !s.ok()) return s;
  Statement& st = Prepare(
      "SELECT id, sender_id, sender_name, recipient_name, client_msg_id, "
      "body, sent_at FROM messages WHERE recipient_id = ? ORDER BY id "
      "LIMIT ?");
  st.Bind(1, recipient_id).Bind(2, limit);
  std::vector<QueuedMessage> out;
  int rc;
  while ((rc = st.Step()) == SQLITE_ROW) {
    out.push_back(ReadQueued(st, recipient_id, /*with_body=*/true));
    ExpectReceipt(out.back().id, out.back());
  }
  st.Reset();
  Unfetch(recipient_id);
  if (rc != SQLITE_DONE) return Error("fetch");
  if (!out.empty()) {
    // The partitions of one database share the bound.
    const size_t most = kFetchedIdsMax / static_cast<size_t>(id_count_);
    if (fetched_ids_ + out.size() > most) {
      fetched_.clear();
      fetched_ids_ = 0;
    }
    if (out.size() <= most) {
      std::vector<int64_t>& ids = fetched_[recipient_id];
      for (const QueuedMessage& m : out) ids.push_back(m.id);
      fetched_ids_ += ids.size();
    }
  }
  // And the logged ones, in message id order with the others.
  MergeLogged(out, log_messages_, recipient_id, limit,
              [](const QueuedMessage& m) { return m.id; });
  return out;
}

void SqliteStore::Confirmed(int64_t recipient_id) {
  if (auto it = pending_counts_.find(recipient_id);
      it != pending_counts_.end()) {
    --it->second;
  }
}

void SqliteStore::ExpectReceipt(int64_t id, const QueuedMessage& m) {
  // What ConfirmDelivery reads of the row: the message less its body and
  // time. The partitions of one database share the bound.
  QueuedMessage known;
  known.id = id;
  known.sender_id = m.sender_id;
  known.sender_name = m.sender_name;
  known.recipient_id = m.recipient_id;
  known.recipient_name = m.recipient_name;
  known.client_msg_id = m.client_msg_id;
  CachePut(deliveries_, kDeliveryCacheSize / static_cast<size_t>(id_count_), id,
           std::move(known));
}

Result<ReceiptResult> SqliteStore::ConfirmDelivery(int64_t recipient_id,
                                                   int64_t message_id) {
  ReceiptResult result;
  if (Status s = RequireTransaction(); !s.ok()) return s;
  if (Status s = LoadMessageLog(); !s.ok()) return s;
  // A logged message: its removal is an operation of the log. (Its body
  // stays in the log's memory, for the next.)
  if (QueuedMessage* m = DropLogged(recipient_id, message_id)) {
    result.message.id = message_id;
    result.message.sender_id = m->sender_id;
    result.message.sender_name = std::move(m->sender_name);
    result.message.recipient_id = recipient_id;
    result.message.recipient_name = std::move(m->recipient_name);
    result.message.client_msg_id = m->client_msg_id;
    result.message.sent_at_ms = m->sent_at_ms;
    LogRemoval(message_id);
    Confirmed(recipient_id);
    result.outcome = ReceiptOutcome::kConfirmed;
    return result;
  }
  if (LoggedRecipient(message_id)) {
    result.outcome = ReceiptOutcome::kNotYours;
    return result;
  }
  // A message this store queued or handed out to this recipient: its row
  // is in `messages` (see deliveries_) and goes with the transaction's
  // other confirmed rows, unread. (Another recipient's receipt takes the
  // long way below, which tells "not yours" from "no such message".)
  if (auto it = deliveries_.find(message_id);
      it != deliveries_.end() && it->second.recipient_id == recipient_id) {
    result.message = std::move(it->second);
    deliveries_.erase(it);
    confirmed_rows_.push_back({recipient_id, message_id});
    ++logged_changes_;
    if (confirmed_rows_.size() == kConfirmedMax) {
      if (Status s = DeleteConfirmed(); !s.ok()) return s;
    }
    Confirmed(recipient_id);
    result.outcome = ReceiptOutcome::kConfirmed;
    return result;
  }
  // The rows confirmed so far go first: this one may be among them.
  if (Status s = DeleteConfirmed(); !s.ok()) return s;
  // Read the row by its key, then delete it by its key. (One DELETE ...
  // RETURNING costs more: SQLite materializes RETURNING rows in a
  // temporary b-tree, opened and zeroed for every statement.)
  Statement& row = Prepare(
      "SELECT recipient_id, sender_id, sender_name, recipient_name, "
      "client_msg_id FROM messages WHERE id = ?");
  row.Bind(1, message_id);
  int rc = row.Step();
  if (rc == SQLITE_ROW) {
    if (row.Int(0) != recipient_id) {
      row.Reset();
      result.outcome = ReceiptOutcome::kNotYours;
      return result;
    }
    result.message.id = message_id;
    result.message.recipient_id = recipient_id;
    result.message.sender_id = row.Int(1);
    result.message.sender_name = row.Text(2);
    result.message.recipient_name = row.Text(3);
    result.message.client_msg_id = FromSql(row.Int(4));
    row.Reset();
    Statement& del = Prepare("DELETE FROM messages WHERE id = ?");
    del.Bind(1, message_id);
    if (del.Run() != SQLITE_DONE) return Error("confirm delivery");
    Confirmed(recipient_id);
    result.outcome = ReceiptOutcome::kConfirmed;
    return result;
  }
  row.Reset();
  if (rc != SQLITE_DONE) return Error("confirm delivery");
  // No such row: already confirmed (or purged), or never handed out. Ids
  // are handed out in increasing order and never twice, so ids below the
  // next one were (or were skipped, after a rollback or a restart, and read
  // as confirmed too).
  result.outcome = message_id < next_message_id_
                       ? ReceiptOutcome::kAlreadyConfirmed
                       : ReceiptOutcome::kUnknown;
  return result;
}

Status SqliteStore::DeleteConfirmed() {
  // The rows waiting to be inserted first: they may be among those
  // confirmed, and whatever reads `messages` next expects them there.
  if (Status s = FlushInserts(); !s.ok()) return s;
  if (confirmed_rows_.empty()) return Status::Ok();
  std::sort(confirmed_rows_.begin(), confirmed_rows_.end());
  std::vector<std::pair<size_t, size_t>> runs;
  std::vector<int64_t> singles;
  Statement& range = Prepare(
      "DELETE FROM messages WHERE recipient_id = ? AND id BETWEEN ? AND ?");
  const std::span<const ConfirmedRow> all(confirmed_rows_);
  for (size_t from = 0; from < all.size();) {
    size_t to = from + 1;
    while (to < all.size() && all[to].recipient_id == all[from].recipient_id) {
      ++to;
    }
    const std::span<const ConfirmedRow> rows = all.subspan(from, to - from);
    runs.clear();
    if (Status s = ConfirmedRuns(rows, runs, singles); !s.ok()) return s;
    for (const auto& [first, last] : runs) {
      range.Bind(1, rows[first].recipient_id)
          .Bind(2, rows[first].id)
          .Bind(3, rows[last].id);
      if (range.Run() != SQLITE_DONE) return Error("confirm delivery");
      const int64_t expected = static_cast<int64_t>(last - first + 1);
      if (sqlite3_changes64(db()) != expected) {
        // The run was read just now, in this transaction.
        return Status(ErrorCode::kStorage,
                      "confirm delivery: deleted " +
                          std::to_string(sqlite3_changes64(db())) +
                          " queued messages for " + std::to_string(expected));
      }
    }
    from = to;
  }
  if (Status s = DeleteSingles(singles); !s.ok()) return s;
  // Now SQLite counts them.
  logged_changes_ -= static_cast<int64_t>(confirmed_rows_.size());
  confirmed_rows_.clear();
  return Status::Ok();
}

Status SqliteStore::ConfirmedRuns(std::span<const ConfirmedRow> rows,
                                  std::vector<std::pair<size_t, size_t>>& runs,
                                  std::vector<int64_t>& singles) {
  constexpr size_t kNone = SIZE_MAX;
  size_t run = kNone;  // where the run being read started in `rows`
  size_t next = 0;     // the first of `rows` not yet met in the queue
  auto end_run = [&] {
    if (run == kNone) return;
    if (next - run >= 2) {
      runs.emplace_back(run, next - 1);
    } else {
      singles.push_back(rows[run].id);
    }
    run = kNone;
  };
  if (rows.size() >= 2) {
    if (auto f = fetched_.find(rows.front().recipient_id);
        f != fetched_.end() && RunsOfFetched(rows, f->second, runs, singles)) {
      return Status::Ok();
    }
    Statement& queue = Prepare(
        "SELECT id FROM messages WHERE recipient_id = ? AND id BETWEEN ? AND "
        "? ORDER BY id LIMIT ?");
    queue.Bind(1, rows.front().recipient_id)
        .Bind(2, rows.front().id)
        .Bind(3, rows.back().id)
        .Bind(4, static_cast<int64_t>(2 * rows.size()));
    int rc;
    while ((rc = queue.Step()) == SQLITE_ROW) {
      const int64_t id = queue.Int(0);
      // A row of `rows` not in the queue (deliveries_ was wrong): alone,
      // so that its delete finds it missing.
      while (next < rows.size() && rows[next].id < id) {
        end_run();
        singles.push_back(rows[next++].id);
      }
      if (next < rows.size() && rows[next].id == id) {
        if (run == kNone) run = next;
        ++next;
      } else {
        end_run();  // an unconfirmed message between two confirmed ones
      }
    }
    queue.Reset();
    if (rc != SQLITE_DONE) return Error("confirm delivery");
    end_run();
  }
  for (; next < rows.size(); ++next) singles.push_back(rows[next].id);
  return Status::Ok();
}

void SqliteStore::Unfetch(int64_t recipient_id) {
  if (auto f = fetched_.find(recipient_id); f != fetched_.end()) {
    fetched_ids_ -= f->second.size();
    fetched_.erase(f);
  }
}

bool SqliteStore::RunsOfFetched(std::span<const ConfirmedRow> rows,
                                std::span<const int64_t> fetched,
                                std::vector<std::pair<size_t, size_t>>& runs,
                                std::vector<int64_t>& singles) const {
  // Where each row is in `fetched` (both in id order), all found first.
  std::vector<size_t> at(rows.size());
  size_t k = 0;
  for (size_t i = 0; i < rows.size(); ++i) {
    while (k < fetched.size() && fetched[k] < rows[i].id) ++k;
    if (k == fetched.size() || fetched[k] != rows[i].id) return false;
    at[i] = k;
  }
  // A run: rows at neighbouring places of `fetched`.
  for (size_t from = 0; from < rows.size();) {
    size_t to = from;
    while (to + 1 < rows.size() && at[to + 1] == at[to] + 1) ++to;
    if (to > from) {
      runs.emplace_back(from, to);
    } else {
      singles.push_back(rows[from].id);
    }
    from = to + 1;
  }
  return true;
}

Status SqliteStore::DeleteSingles(std::span<const int64_t> ids) {
  // "DELETE FROM messages WHERE id IN (?, ?, ...)" for chunks of
  // kDeleteChunk ids, and of 8; the rest one by one.
  static const std::string kChunk =
      RepeatedSql("DELETE FROM messages WHERE id IN (", "?", kDeleteChunk, ")");
  const char* const kEight =
      "DELETE FROM messages WHERE id IN (?, ?, ?, ?, ?, ?, ?, ?)";
  for (size_t at = 0; at < ids.size();) {
    const size_t left = ids.size() - at;
    const size_t n = left >= kDeleteChunk ? kDeleteChunk : left >= 8 ? 8 : 1;
    Statement& st = Prepare(n == kDeleteChunk ? kChunk.c_str()
                            : n == 8          ? kEight
                                     : "DELETE FROM messages WHERE id = ?");
    for (size_t i = 0; i < n; ++i)
      st.Bind(static_cast<int>(i + 1), ids[at + i]);
    if (st.Run() != SQLITE_DONE) return Error("confirm delivery");
    if (sqlite3_changes64(db()) != static_cast<int64_t>(n)) {
      // deliveries_ said every row was there; the batch is undone.
      return Status(
          ErrorCode::kStorage,
          "confirm delivery: " +
              std::to_string(n - static_cast<size_t>(sqlite3_changes64(db()))) +
              " confirmed messages were missing from the queue");
    }
    at += n;
  }
  return Status::Ok();
}

Status SqliteStore::AddNotice(int64_t account_id, const Notice& n,
                              int64_t cap) {
  if (Status s = RequireTransaction(); !s.ok()) return s;
  Result<int64_t> count = CountStoredNotices(account_id);
  if (!count.ok()) return count.status();
  // (CountStoredNotices loaded the log.) A notice already logged stays as it
  // is, as `notices` ignores a second insert of one it holds.
  if (!log_notices_.try_emplace(NoticeKey{account_id, n.message_id}, n)
           .second) {
    return Status::Ok();
  }
  LogNoticeOp(/*add=*/true, account_id, n);
  notice_counts_[account_id] = *count + 1;
  // Over the cap, the notices of the oldest messages go, all of a
  // transaction's together (TrimNotices): one range deleted from `notices`
  // per account and commit, not an insert and a delete per notice.
  if (*count >= cap) notice_trims_.insert_or_assign(account_id, cap);
  return Status::Ok();
}

Status SqliteStore::TrimNotices() {
  if (notice_trims_.empty()) return Status::Ok();
  for (const auto& [account_id, cap] : notice_trims_) {
    Result<int64_t> count = CountStoredNotices(account_id);
    if (!count.ok()) return count.status();
    const int64_t excess = *count - cap;
    if (excess <= 0) continue;
    // The account's oldest `excess`, from the table and the log merged by
    // message id: the logged ones leave the log, the table's go as one
    // range.
    Statement& oldest = Prepare(
        "SELECT message_id FROM notices WHERE account_id = ? "
        "ORDER BY message_id LIMIT ?");
    oldest.Bind(1, account_id).Bind(2, excess);
    auto logged = log_notices_.lower_bound({account_id, INT64_MIN});
    int64_t dropped = 0, from_table = 0, table_upto = 0;
    int rc = oldest.Step();
    while (dropped < excess) {
      const bool in_table = rc == SQLITE_ROW;
      const bool in_log =
          logged != log_notices_.end() && logged->first.first == account_id;
      if (!in_table && !in_log) break;
      if (in_table && (!in_log || oldest.Int(0) < logged->first.second)) {
        table_upto = oldest.Int(0);
        ++from_table;
        rc = oldest.Step();
      } else {
        LogNoticeOp(/*add=*/false, account_id, logged->second);
        logged = log_notices_.erase(logged);
      }
      ++dropped;
    }
    oldest.Reset();
    if (rc != SQLITE_ROW && rc != SQLITE_DONE) return Error("drop notices");
    if (from_table > 0 &&
        Prepare("DELETE FROM notices WHERE account_id = ? AND message_id <= ?")
                .Bind(1, account_id)
                .Bind(2, table_upto)
                .Run() != SQLITE_DONE) {
      return Error("drop notices");
    }
    notice_counts_[account_id] = *count - dropped;
    LogDroppedNotices(account_id, cap, dropped);
  }
  notice_trims_.clear();
  return Status::Ok();
}

Result<int64_t> SqliteStore::CountNotices(int64_t account_id) {
  NoticeLostTransaction();
  if (Status s = TrimNotices(); !s.ok()) return s;
  return CountStoredNotices(account_id);
}

Result<int64_t> SqliteStore::CountStoredNotices(int64_t account_id) {
  if (Status s = LoadNoticeLog(); !s.ok()) return s;
  if (auto it = notice_counts_.find(account_id); it != notice_counts_.end()) {
    return it->second;
  }
  Statement& st = Prepare("SELECT count(*) FROM notices WHERE account_id = ?");
  st.Bind(1, account_id);
  if (st.Step() != SQLITE_ROW) return Error("count notices");
  const int64_t n = st.Int(0) + LoggedNotices(account_id);
  st.Reset();
  CachePut(notice_counts_, kNoticeCountCacheSize, account_id, n);
  return n;
}

Result<std::vector<Notice>> SqliteStore::ListNotices(int64_t account_id,
                                                     int64_t limit) {
  NoticeLostTransaction();
  if (Status s = TrimNotices(); !s.ok()) return s;
  if (Status s = LoadNoticeLog(); !s.ok()) return s;
  Statement& st = Prepare(
      "SELECT kind, message_id, peer_name, client_msg_id FROM notices "
      "WHERE account_id = ? ORDER BY message_id LIMIT ?");
  st.Bind(1, account_id).Bind(2, limit);
  std::vector<Notice> out;
  int rc;
  while ((rc = st.Step()) == SQLITE_ROW) {
    out.push_back(Notice{static_cast<NoticeKind>(st.Int(0)), st.Int(1),
                         std::string(st.Text(2)), FromSql(st.Int(3))});
  }
  st.Reset();
  if (rc != SQLITE_DONE) return Error("list notices");
  // And the logged ones, in message id order with the others.
  MergeLogged(out, log_notices_, account_id, limit,
              [](const Notice& n) { return n.message_id; });
  return out;
}

Status SqliteStore::AckNotice(int64_t account_id, int64_t message_id) {
  if (Status s = RequireTransaction(); !s.ok()) return s;
  if (Status s = LoadNoticeLog(); !s.ok()) return s;
  if (auto it = log_notices_.find({account_id, message_id});
      it != log_notices_.end()) {
    LogNoticeOp(/*add=*/false, account_id, it->second);
    log_notices_.erase(it);
    if (auto c = notice_counts_.find(account_id); c != notice_counts_.end()) {
      --c->second;
    }
    return Status::Ok();
  }
  if (Prepare("DELETE FROM notices WHERE account_id = ? AND message_id = ?")
          .Bind(1, account_id)
          .Bind(2, message_id)
          .Run() != SQLITE_DONE) {
    return Error("acknowledge notice");
  }
  if (sqlite3_changes(db()) > 0) {
    if (auto it = notice_counts_.find(account_id); it != notice_counts_.end()) {
      --it->second;
    }
  }
  return Status::Ok();
}

Status SqliteStore::LoadNoticeLog() {
  if (notice_log_loaded_) return Status::Ok();
  log_notices_.clear();
  notice_ops_.clear();
  notice_op_adds_ = notice_op_count_ = 0;
  notice_log_ops_ = 0;
  std::vector<NoticeOp> ops;
  Status s = ForEachBlob(
      "SELECT records FROM notice_log ORDER BY id", "read notices",
      [&](std::string_view blob) {
        ops.clear();
        if (!DecodeNoticeOps(blob, &ops)) return false;
        for (NoticeOp& op : ops) {
          const NoticeKey key{op.account_id, op.notice.message_id};
          if (op.add) {
            log_notices_.insert_or_assign(key, std::move(op.notice));
          } else {
            log_notices_.erase(key);
          }
        }
        notice_log_ops_ += static_cast<int64_t>(ops.size());
        return true;
      });
  if (!s.ok()) {
    log_notices_.clear();
    notice_log_ops_ = 0;
    return s;
  }
  notice_log_loaded_ = true;
  return Status::Ok();
}

void SqliteStore::LogNoticeOp(bool add, int64_t account_id,
                              const Notice& notice) {
  if (add) {
    AppendNoticeAdd(notice_ops_, account_id, notice);
    ++notice_op_adds_;
  } else {
    AppendNoticeAck(notice_ops_, account_id, notice.message_id);
  }
  ++notice_op_count_;
  ++notice_log_ops_;
  ++logged_changes_;
}

Status SqliteStore::WriteNoticeOps() {
  if (notice_ops_.empty()) return Status::Ok();
  if (Prepare("INSERT INTO notice_log(adds, acks, records) VALUES(?, ?, ?)")
          .Bind(1, notice_op_adds_)
          .Bind(2, notice_op_count_ - notice_op_adds_)
          .BindBorrowedBlob(3, notice_ops_)
          .Run() != SQLITE_DONE) {
    return Error("store notices");
  }
  notice_ops_.clear();
  notice_op_adds_ = notice_op_count_ = 0;
  // Rewriting the live notices costs their number: done when the log holds
  // at least twice as many operations, so that each operation pays for a
  // bounded share of it (a sender that lags behind many recipients' receipts
  // keeps thousands live), or when too many are live to carry.
  const auto live = static_cast<int64_t>(log_notices_.size());
  if (notice_log_ops_ >= kNoticeLogMax &&
      (notice_log_ops_ >= 2 * live || live > kNoticeCarryMax)) {
    return CompactNoticeLog();
  }
  return Status::Ok();
}

Status SqliteStore::CompactNoticeLog() {
  if (Status s = LoadNoticeLog(); !s.ok()) return s;
  if (Prepare("DELETE FROM notice_log").Run() != SQLITE_DONE) {
    return Error("compact notices");
  }
  // What the transaction logged so far is in log_notices_, written below.
  notice_ops_.clear();
  notice_op_adds_ = notice_op_count_ = 0;
  notice_log_ops_ = 0;
  if (log_notices_.empty()) return Status::Ok();
  if (static_cast<int64_t>(log_notices_.size()) > kNoticeCarryMax) {
    Statement& st = Prepare(
        "INSERT OR IGNORE INTO notices(account_id, message_id, kind, "
        "peer_name, client_msg_id) VALUES(?, ?, ?, ?, ?)");
    for (const auto& [key, n] : log_notices_) {
      st.Start()
          .Bind(1, key.first)
          .Bind(2, key.second)
          .Bind(3, static_cast<int64_t>(n.kind))
          .BindBorrowed(4, n.peer_name)
          .Bind(5, ToSql(n.client_msg_id));
      if (st.Run() != SQLITE_DONE) return Error("compact notices");
    }
    log_notices_.clear();
    return Status::Ok();
  }
  std::string blob;
  for (const auto& [key, n] : log_notices_) {
    AppendNoticeAdd(blob, key.first, n);
  }
  if (Prepare("INSERT INTO notice_log(adds, acks, records) VALUES(?, 0, ?)")
          .Bind(1, static_cast<int64_t>(log_notices_.size()))
          .BindBorrowedBlob(2, blob)
          .Run() != SQLITE_DONE) {
    return Error("compact notices");
  }
  notice_log_ops_ = static_cast<int64_t>(log_notices_.size());
  return Status::Ok();
}

int64_t SqliteStore::LoggedNotices(int64_t account_id) const {
  int64_t n = 0;
  for (auto it = log_notices_.lower_bound({account_id, INT64_MIN});
       it != log_notices_.end() && it->first.first == account_id; ++it) {
    ++n;
  }
  return n;
}

Status SqliteStore::InsertMessage(int64_t id, const QueuedMessage& m) {
  if (insert_count_ == insert_rows_.size()) insert_rows_.emplace_back();
  // (Assigning reuses the strings' buffers.)
  QueuedMessage& row = insert_rows_[insert_count_++];
  row = m;
  row.id = id;
  ++logged_changes_;  // a change now, written below or by FlushInserts
  if (insert_count_ == kInsertChunk) return FlushInserts();
  return Status::Ok();
}

Status SqliteStore::FlushInserts() {
  if (insert_count_ == 0) return Status::Ok();
  // One row, and kInsertChunk rows: the same statement with more VALUES.
  constexpr std::string_view kHead =
      "INSERT INTO messages(id, sender_id, sender_name, recipient_id, "
      "recipient_name, client_msg_id, body, sent_at) VALUES";
  constexpr std::string_view kRow = "(?, ?, ?, ?, ?, ?, ?, ?)";
  static const std::string kOne = RepeatedSql(kHead, kRow, 1);
  static const std::string kChunk = RepeatedSql(kHead, kRow, kInsertChunk);
  const size_t count = insert_count_;
  insert_count_ = 0;  // whatever happens below: a failure fails the batch
  for (size_t at = 0; at < count;) {
    const size_t n = count - at >= kInsertChunk ? kInsertChunk : 1;
    Statement& st = Prepare(n == kInsertChunk ? kChunk.c_str() : kOne.c_str());
    for (size_t i = 0; i < n; ++i) {
      const QueuedMessage& m = insert_rows_[at + i];
      if (!fetched_.empty()) {
        // A row inside a fetched stretch of the queue ends what it says.
        if (auto f = fetched_.find(m.recipient_id);
            f != fetched_.end() && m.id < f->second.back()) {
          Unfetch(m.recipient_id);
        }
      }
      const int p = static_cast<int>(8 * i);
      st.Bind(p + 1, m.id)
          .Bind(p + 2, m.sender_id)
          .BindBorrowed(p + 3, m.sender_name)
          .Bind(p + 4, m.recipient_id)
          .BindBorrowed(p + 5, m.recipient_name)
          .Bind(p + 6, ToSql(m.client_msg_id))
          .BindBorrowed(p + 7, m.body)
          .Bind(p + 8, m.sent_at_ms);
    }
    if (st.Run() != SQLITE_DONE) return Error("enqueue");
    at += n;
  }
  return Status::Ok();
}

Status SqliteStore::LoadMessageLog() {
  if (message_log_loaded_) return Status::Ok();
  ForgetMessageLog();
  message_ops_.clear();
  message_op_adds_ = message_op_removes_ = 0;
  message_log_ops_ = 0;
  std::vector<MessageOp> ops;
  // Each live id's recipient, to check the log: an id added twice, or
  // removed while not there, is a corrupt log.
  std::unordered_map<int64_t, int64_t> live;
  Status s =
      ForEachBlob("SELECT records FROM message_log ORDER BY id",
                  "read messages", [&](std::string_view blob) {
                    ops.clear();
                    if (!DecodeMessageOps(blob, &ops)) return false;
                    for (MessageOp& op : ops) {
                      const int64_t id = op.message.id;
                      if (op.add) {
                        if (!live.emplace(id, op.message.recipient_id).second) {
                          return false;
                        }
                        KeepLogged(op.message, id);
                      } else {
                        auto it = live.find(id);
                        if (it == live.end()) return false;
                        DropLogged(it->second, id);
                        live.erase(it);
                      }
                    }
                    message_log_ops_ += static_cast<int64_t>(ops.size());
                    return true;
                  });
  if (!s.ok()) {
    ForgetMessageLog();
    message_log_ops_ = 0;
    return s;
  }
  IndexLoggedMessages();
  message_log_loaded_ = true;
  return Status::Ok();
}

void SqliteStore::ForgetMessageLog() {
  log_messages_.Clear();
  log_message_index_.clear();
  log_message_bytes_ = 0;
}

const QueuedMessage& SqliteStore::KeepLogged(const QueuedMessage& m,
                                             int64_t id) {
  // Enqueue's ids grow, so the index stays in id order as it grows at its
  // end. (LoadMessageLog, which replays rows of any order, indexes anew.)
  log_message_index_.emplace_back(id, m.recipient_id);
  log_message_bytes_ += LoggedBytes(m);
  QueuedMessage& kept = log_messages_.Add(m.recipient_id, id);
  kept = m;
  kept.id = id;
  kept.recipient_online = false;
  return kept;
}

QueuedMessage* SqliteStore::DropLogged(int64_t recipient_id, int64_t id) {
  QueuedMessage* m = log_messages_.Remove(recipient_id, id);
  if (!m) return nullptr;
  log_message_bytes_ -= LoggedBytes(*m);
  if (m->body.capacity() > kKeptBodyBytes) std::string().swap(m->body);
  return m;
}

std::optional<int64_t> SqliteStore::LoggedRecipient(int64_t id) const {
  auto it =
      std::lower_bound(log_message_index_.begin(), log_message_index_.end(),
                       std::pair<int64_t, int64_t>{id, INT64_MIN});
  if (it == log_message_index_.end() || it->first != id) return std::nullopt;
  if (!log_messages_.Find(it->second, id)) return std::nullopt;
  return it->second;
}

void SqliteStore::IndexLoggedMessages() {
  log_message_index_.clear();
  log_messages_.ForAll([&](int64_t recipient_id, const QueuedMessage& m) {
    log_message_index_.emplace_back(m.id, recipient_id);
  });
  std::sort(log_message_index_.begin(), log_message_index_.end());
}

void SqliteStore::LogRemoval(int64_t id) {
  AppendMessageRemove(message_ops_, id);
  ++message_op_removes_;
  ++message_log_ops_;
  ++logged_changes_;
}

Status SqliteStore::WriteMessageOps() {
  if (message_ops_.empty()) return Status::Ok();
  if (Prepare("INSERT INTO message_log(adds, removes, records) "
              "VALUES(?, ?, ?)")
          .Bind(1, message_op_adds_)
          .Bind(2, message_op_removes_)
          .BindBorrowedBlob(3, message_ops_)
          .Run() != SQLITE_DONE) {
    return Error("store messages");
  }
  message_ops_.clear();
  message_op_adds_ = message_op_removes_ = 0;
  if (message_log_ops_ >= kMessageLogMax ||
      log_message_bytes_ > kMessageLogBytesMax) {
    return CompactMessageLog();
  }
  return Status::Ok();
}

Status SqliteStore::CompactMessageLog() {
  if (Status s = LoadMessageLog(); !s.ok()) return s;
  if (Prepare("DELETE FROM message_log").Run() != SQLITE_DONE) {
    return Error("compact messages");
  }
  // What the transaction logged so far is in log_messages_, written below.
  message_ops_.clear();
  message_op_adds_ = message_op_removes_ = 0;
  message_log_ops_ = 0;
  if (log_messages_.empty()) {
    ForgetMessageLog();
    return Status::Ok();
  }
  // The live messages in id order.
  std::vector<const QueuedMessage*> rows;
  rows.reserve(log_messages_.size());
  log_messages_.ForAll(
      [&](int64_t, const QueuedMessage& m) { rows.push_back(&m); });
  std::sort(rows.begin(), rows.end(),
            [](const QueuedMessage* a, const QueuedMessage* b) {
              return a->id < b->id;
            });
  if (log_messages_.size() > kMessageCarryMax ||
      log_message_bytes_ > kMessageCarryBytes) {
    // Recipients away: their messages join `messages`.
    for (const QueuedMessage* m : rows) {
      if (Status s = InsertMessage(m->id, *m); !s.ok()) return s;
      ExpectReceipt(m->id, *m);
    }
    ForgetMessageLog();
    return Status::Ok();
  }
  std::string blob;
  for (const QueuedMessage* m : rows) AppendMessageAdd(blob, *m);
  if (Prepare("INSERT INTO message_log(adds, removes, records) "
              "VALUES(?, 0, ?)")
          .Bind(1, static_cast<int64_t>(rows.size()))
          .BindBorrowedBlob(2, blob)
          .Run() != SQLITE_DONE) {
    return Error("compact messages");
  }
  message_log_ops_ = static_cast<int64_t>(rows.size());
  // The memory follows: no removed ids, no slots beyond the live messages.
  log_message_index_.clear();
  for (const QueuedMessage* m : rows) {
    log_message_index_.emplace_back(m->id, m->recipient_id);
  }
  log_messages_.Compact();
  return Status::Ok();
}

Status SqliteStore::AddToken(std::string_view token_hash, int64_t account_id,
                             int64_t now_ms) {
  if (Status s = RequireTransaction(); !s.ok()) return s;
  Statement& st = Prepare(
      "INSERT INTO tokens(hash, account_id, created_at) VALUES(?, ?, ?)");
  st.BindBlob(1, token_hash).Bind(2, account_id).Bind(3, now_ms);
  if (st.Run() != SQLITE_DONE) return Error("add token");
  return Status::Ok();
}

Result<std::optional<int64_t>> SqliteStore::FindToken(
    std::string_view token_hash, int64_t not_before_ms) {
  Statement& st = Prepare(
      "SELECT account_id FROM tokens WHERE hash = ? AND created_at >= ?");
  st.BindBlob(1, token_hash).Bind(2, not_before_ms);
  int rc = st.Step();
  if (rc == SQLITE_DONE) return std::optional<int64_t>();
  if (rc != SQLITE_ROW) return Error("find token");
  int64_t id = st.Int(0);
  st.Reset();
  return std::optional<int64_t>(id);
}

Status SqliteStore::RevokeToken(std::string_view token_hash) {
  if (Status s = RequireTransaction(); !s.ok()) return s;
  if (Prepare("DELETE FROM tokens WHERE hash = ?")
          .BindBlob(1, token_hash)
          .Run() != SQLITE_DONE) {
    return Error("revoke token");
  }
  return Status::Ok();
}

Status SqliteStore::Prune(int64_t sends_before_ms, int64_t tokens_before_ms) {
  if (Status s = RequireTransaction(); !s.ok()) return s;
  // The records since the last merge join the others first: the walk below
  // sees every record, and a quiet store's mirror empties.
  if (Status s = MergeRecentSends(); !s.ok()) return s;
  // The runs have no index by age: each call walks the next stretch of
  // their primary key, at least kPruneStep runs and kPruneAhead times the
  // runs written since the last call, so the walk outpaces the writes and
  // comes round again; past the last run it starts over from the first. A
  // run goes when its newest record is older than the cut-off.
  const int64_t step =
      std::max(kPruneStep, kPruneAhead * std::exchange(runs_since_prune_, 0));
  Statement& end = Prepare(
      "SELECT sender_id, first_id FROM send_runs "
      "WHERE (sender_id, first_id) > (?, ?) "
      "ORDER BY sender_id, first_id LIMIT 1 OFFSET ?");
  end.Bind(1, prune_from_.first).Bind(2, prune_from_.second).Bind(3, step - 1);
  std::pair<int64_t, int64_t> to = kPruneLast;
  const int rc = end.Step();
  if (rc == SQLITE_ROW) to = {end.Int(0), end.Int(1)};
  end.Reset();
  if (rc != SQLITE_ROW && rc != SQLITE_DONE) return Error("prune");
  if (Prepare("DELETE FROM send_runs WHERE (sender_id, first_id) > (?, ?) "
              "AND (sender_id, first_id) <= (?, ?) AND newest_at < ?")
          .Bind(1, prune_from_.first)
          .Bind(2, prune_from_.second)
          .Bind(3, to.first)
          .Bind(4, to.second)
          .Bind(5, sends_before_ms)
          .Run() != SQLITE_DONE) {
    return Error("prune");
  }
  // A sender's last run may be gone.
  if (sqlite3_changes(db()) > 0) run_tails_.clear();
  if (Prepare("DELETE FROM tokens WHERE created_at < ?")
          .Bind(1, tokens_before_ms)
          .Run() != SQLITE_DONE) {
    return Error("prune");
  }
  // (A rollback undoes the deletes but not the walk: those records wait
  // for the next round.)
  prune_from_ = to == kPruneLast ? kPruneFirst : to;
  return Status::Ok();
}

}  // namespace zchat
