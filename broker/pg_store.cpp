#include "broker/pg_store.h"

#include <libpq-fe.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <random>
#include <utility>

#include "broker/log.h"

namespace zchat {
namespace {

// client_msg_id is a uint64 on the wire, BIGINT is signed: the bit pattern
// is stored as is (as in SQLite).
int64_t ToSql(uint64_t v) { return static_cast<int64_t>(v); }
uint64_t FromSql(int64_t v) { return static_cast<uint64_t>(v); }

PgStore::Param P(int64_t v) { return {std::to_string(v), false}; }
PgStore::Param P(std::string_view v) { return {std::string(v), false}; }
PgStore::Param Bin(std::string_view v) { return {std::string(v), true}; }

// Statement parameters as libpq takes them (pointers into `params`).
struct Packed {
  std::vector<const char*> values;
  std::vector<int> lengths;
  std::vector<int> formats;
  int count() const { return static_cast<int>(values.size()); }
};
Packed Pack(const std::vector<PgStore::Param>& params) {
  Packed out;
  for (const PgStore::Param& p : params) {
    out.values.push_back(p.value.c_str());
    out.lengths.push_back(static_cast<int>(p.value.size()));
    out.formats.push_back(p.binary ? 1 : 0);
  }
  return out;
}

int64_t Int(const PGresult* r, int row, int col) {
  return std::strtoll(PQgetvalue(r, row, col), nullptr, 10);
}
std::string Text(const PGresult* r, int row, int col) {
  return std::string(PQgetvalue(r, row, col), PQgetlength(r, row, col));
}
// A bytea column in the text result format: \x followed by hex digits.
std::string Bytes(const PGresult* r, int row, int col) {
  const char* p = PQgetvalue(r, row, col);
  const int n = PQgetlength(r, row, col);
  auto nibble = [](char c) -> int {
    return c <= '9' ? c - '0' : (c | 0x20) - 'a' + 10;
  };
  std::string out;
  if (n < 2 || p[0] != '\\' || p[1] != 'x') return out;
  out.reserve((n - 2) / 2);
  for (int i = 2; i + 1 < n; i += 2) {
    out.push_back(static_cast<char>(nibble(p[i]) << 4 | nibble(p[i + 1])));
  }
  return out;
}

// A queued message from a row of (id, sender_id, sender_name,
// recipient_name, client_msg_id, body, sent_at).
QueuedMessage QueuedFromRow(const PGresult* r, int row, int64_t recipient_id) {
  QueuedMessage m;
  m.id = Int(r, row, 0);
  m.sender_id = Int(r, row, 1);
  m.sender_name = Text(r, row, 2);
  m.recipient_id = recipient_id;
  m.recipient_name = Text(r, row, 3);
  m.client_msg_id = FromSql(Int(r, row, 4));
  m.body = Bytes(r, row, 5);
  m.sent_at_ms = Int(r, row, 6);
  return m;
}

// Version 1 of the schema. Bodies are bytea: a text column cannot hold the
// NUL character, which is valid UTF-8. name_key sorts bytewise (COLLATE
// "C"), as LIST_ACCOUNTS pages in byte order.
constexpr const char* kSchemaV1 = R"sql(
CREATE TABLE accounts(
  id BIGSERIAL PRIMARY KEY,
  name TEXT NOT NULL,
  name_key TEXT COLLATE "C" NOT NULL UNIQUE,
  password_hash TEXT NOT NULL,
  created_at BIGINT NOT NULL);
CREATE TABLE messages(
  id BIGSERIAL PRIMARY KEY,
  sender_id BIGINT NOT NULL,
  sender_name TEXT NOT NULL,
  recipient_id BIGINT NOT NULL,
  recipient_name TEXT NOT NULL,
  client_msg_id BIGINT NOT NULL,
  body BYTEA NOT NULL,
  sent_at BIGINT NOT NULL);
CREATE INDEX messages_by_recipient ON messages(recipient_id, id);
CREATE TABLE sends(
  sender_id BIGINT NOT NULL,
  client_msg_id BIGINT NOT NULL,
  message_id BIGINT NOT NULL,
  created_at BIGINT NOT NULL,
  PRIMARY KEY(sender_id, client_msg_id));
CREATE INDEX sends_by_age ON sends(created_at);
CREATE TABLE notices(
  account_id BIGINT NOT NULL,
  message_id BIGINT NOT NULL,
  kind INTEGER NOT NULL,
  peer_name TEXT NOT NULL,
  client_msg_id BIGINT NOT NULL,
  PRIMARY KEY(account_id, message_id));
CREATE TABLE tokens(
  hash BYTEA PRIMARY KEY,
  account_id BIGINT NOT NULL,
  created_at BIGINT NOT NULL);
CREATE INDEX tokens_by_account ON tokens(account_id);
)sql";

// Version 2: the brokers sharing the store, each with a lease, and which of
// them hold sessions of which accounts (presence). Rows of a broker whose
// lease ran out are ignored, then removed by the others.
constexpr const char* kSchemaV2 = R"sql(
CREATE TABLE brokers(
  id TEXT PRIMARY KEY,
  lease_until BIGINT NOT NULL);
CREATE TABLE presence(
  account_id BIGINT NOT NULL,
  broker_id TEXT NOT NULL,
  PRIMARY KEY(account_id, broker_id));
CREATE INDEX presence_by_broker ON presence(broker_id);
)sql";

// Version 3: each account's queue length, kept so that a send's queue_full
// check reads one row instead of counting the queue. A transaction adds its
// changes at commit, in account order (so that brokers committing at once
// wait for each other instead of deadlocking). No row: an empty queue.
// notice_counts, each account's stored notices, read by the trim to the
// cap, is kept the same way.
constexpr const char* kSchemaV3 = R"sql(
CREATE TABLE queue_lengths(
  account_id BIGINT PRIMARY KEY,
  queued BIGINT NOT NULL);
INSERT INTO queue_lengths(account_id, queued)
  SELECT recipient_id, count(*) FROM messages GROUP BY recipient_id;
CREATE TABLE notice_counts(
  account_id BIGINT PRIMARY KEY,
  notices BIGINT NOT NULL);
INSERT INTO notice_counts(account_id, notices)
  SELECT account_id, count(*) FROM notices GROUP BY account_id;
)sql";

// A PostgreSQL array literal of numbers / of strings (each quoted).
template <class T>
std::string NumberArray(const std::vector<T>& values) {
  std::string out = "{";
  for (const T& v : values) {
    if (out.size() > 1) out.push_back(',');
    out += std::to_string(v);
  }
  out.push_back('}');
  return out;
}
std::string TextArray(const std::vector<std::string>& values) {
  std::string out = "{";
  for (const std::string& v : values) {
    if (out.size() > 1) out.push_back(',');
    out.push_back('"');
    for (char c : v) {
      if (c == '"' || c == '\\') out.push_back('\\');
      out.push_back(c);
    }
    out.push_back('"');
  }
  out.push_back('}');
  return out;
}

// A broker's notification channel: an identifier, so letters and digits.
std::string Channel(const std::string& broker_id) {
  return "zchat_" + broker_id;
}

std::string RandomBrokerId() {
  static constexpr char kHex[] = "0123456789abcdef";
  std::random_device rd;
  std::string id;
  for (int i = 0; i < 16; ++i) id.push_back(kHex[rd() & 15]);
  return id;
}

// CheckSend's statement: the earlier send, the recipient, its committed
// queue length, and an id for the new message (unused if there is none: ids
// may be skipped).
constexpr const char* kCheckSend =
    "SELECT (SELECT message_id FROM sends WHERE sender_id = $1 AND "
    "client_msg_id = $2), a.id, a.name, a.password_hash, "
    "COALESCE((SELECT queued FROM queue_lengths WHERE account_id = a.id), "
    "0), nextval('messages_id_seq') "
    "FROM (SELECT 1) AS one LEFT JOIN accounts a ON a.name_key = $3";

SendCheck SendCheckFromRow(const PGresult* row) {
  SendCheck check;
  if (!PQgetisnull(row, 0, 0)) {
    check.prior = Int(row, 0, 0);
    return check;
  }
  if (!PQgetisnull(row, 0, 1)) {
    check.recipient = Account{Int(row, 0, 1), Text(row, 0, 2), Text(row, 0, 3)};
    check.queued = Int(row, 0, 4);
  }
  check.reserved_id = Int(row, 0, 5);
  return check;
}

// A receipt's read ahead: the message (if it is there), its sender's
// account (if it is there), and the sequence's last value. The message's
// row is locked (FOR UPDATE) until the transaction ends, so the receipt's
// DELETE finds it. A session of the same recipient on another broker
// confirming it at the same moment holds that lock until it commits: the
// read waits, then finds the row gone (already confirmed), where it used to
// see the row, and the DELETE found none and failed the batch.
constexpr const char* kReadMessage =
    "SELECT m.recipient_id, m.sender_id, m.sender_name, m.recipient_name, "
    "m.client_msg_id, s.name, s.password_hash, (SELECT CASE WHEN is_called "
    "THEN last_value ELSE 0 END FROM messages_id_seq) FROM (SELECT 1) AS one "
    "LEFT JOIN (SELECT * FROM messages WHERE id = $1 FOR UPDATE) m ON true "
    "LEFT JOIN accounts s ON s.id = m.sender_id";

// Any number: it only has to be the same in every broker.
constexpr const char* kMigrationLock = "SELECT pg_advisory_xact_lock(7276829)";

}  // namespace

void PgStore::ClearResult::operator()(pg_result* r) const { PQclear(r); }

PgStore::PgStore(pg_conn* conn, std::string uri, const StoreOptions& options)
    : conn_(conn),
      uri_(std::move(uri)),
      options_(options),
      broker_id_(RandomBrokerId()) {}

PgStore::~PgStore() { PQfinish(conn_); }

Result<std::unique_ptr<PgStore>> PgStore::Open(const std::string& uri,
                                               const StoreOptions& options) {
  std::unique_ptr<PgStore> store(
      new PgStore(PQconnectdb(uri.c_str()), uri, options));
  if (!store->conn_ || PQstatus(store->conn_) != CONNECTION_OK) {
    return Status(ErrorCode::kStorage,
                  "connect to PostgreSQL: " +
                      std::string(store->conn_ ? PQerrorMessage(store->conn_)
                                               : "out of memory"));
  }
  if (Status s = store->Setup(); !s.ok()) return s;
  return store;
}

Status PgStore::Error(std::string_view what) const {
  std::string message = PQerrorMessage(conn_);
  while (!message.empty() &&
         (message.back() == '\n' || message.back() == ' ')) {
    message.pop_back();
  }
  return Status(ErrorCode::kStorage, std::string(what) + ": " + message);
}

Status PgStore::Setup() {
  prepared_.clear();  // a new connection has none
  // Quiet NOTICEs (they would go to stderr).
  PQsetNoticeProcessor(
      conn_, [](void*, const char*) {}, nullptr);
  std::string settings = "SET client_min_messages = warning;";
  settings += options_.sync == SyncMode::kFull
                  ? "SET synchronous_commit = on;"
                  : "SET synchronous_commit = off;";
  ResultPtr r(PQexec(conn_, settings.c_str()));
  if (PQresultStatus(r.get()) != PGRES_COMMAND_OK) return Error("settings");
  if (Status s = Migrate(); !s.ok()) return s;
  if (options_.read_only) {
    ResultPtr ro(PQexec(conn_, "SET default_transaction_read_only = on"));
    if (PQresultStatus(ro.get()) != PGRES_COMMAND_OK) return Error("settings");
    return Status::Ok();
  }
  // Notifications addressed to this broker (again after a reconnect).
  ResultPtr listen(PQexec(conn_, ("LISTEN " + Channel(broker_id_)).c_str()));
  if (PQresultStatus(listen.get()) != PGRES_COMMAND_OK) return Error("listen");
  return Status::Ok();
}

Status PgStore::Migrate() {
  auto exec = [this](const char* sql) {
    ResultPtr r(PQexec(conn_, sql));
    const ExecStatusType st = PQresultStatus(r.get());
    return st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK;
  };
  auto fail = [&](std::string_view what) {
    Status s = Error(what);
    exec("ROLLBACK");
    return s;
  };
  if (!exec("BEGIN")) return Error("migrate");
  if (!exec(kMigrationLock)) return fail("migrate: lock");
  if (!exec("CREATE TABLE IF NOT EXISTS zchat_meta("
            "key TEXT PRIMARY KEY, value BIGINT NOT NULL)")) {
    return fail("migrate: meta");
  }
  ResultPtr v(PQexec(
      conn_, "SELECT value FROM zchat_meta WHERE key = 'schema_version'"));
  if (PQresultStatus(v.get()) != PGRES_TUPLES_OK) return fail("migrate");
  const int64_t version = PQntuples(v.get()) ? Int(v.get(), 0, 0) : 0;
  if (version > kSchemaVersion) {
    exec("ROLLBACK");
    return Status(ErrorCode::kStorage,
                  "database schema version " + std::to_string(version) +
                      " is newer than this broker's schema version " +
                      std::to_string(kSchemaVersion));
  }
  if (version < 1) {
    if (!exec(kSchemaV1)) return fail("migrate to schema version 1");
    if (!exec(
            "INSERT INTO zchat_meta(key, value) VALUES('schema_version', 1)")) {
      return fail("migrate to schema version 1");
    }
  }
  if (version < 2) {
    if (!exec(kSchemaV2) ||
        !exec("UPDATE zchat_meta SET value = 2 WHERE key = 'schema_version'")) {
      return fail("migrate to schema version 2");
    }
  }
  if (version < 3) {
    if (!exec(kSchemaV3) ||
        !exec("UPDATE zchat_meta SET value = 3 WHERE key = 'schema_version'")) {
      return fail("migrate to schema version 3");
    }
  }
  if (!exec("COMMIT")) return fail("migrate: commit");
  return Status::Ok();
}

Result<PgStore::ResultPtr> PgStore::Run(const char* what, const char* sql,
                                        const std::vector<Param>& params) {
  ResultPtr r;
  if (in_transaction_) {
    if (!failure_.empty()) return Status(ErrorCode::kStorage, failure_);
    if (!SendPrepared(what, sql, params, {})) return Error(what);
    r = Drain();
    if (!r) return Status(ErrorCode::kStorage, failure_);
  } else {
    auto it = prepared_.find(sql);
    if (it == prepared_.end()) {
      const std::string name = "s" + std::to_string(prepared_.size());
      ResultPtr p(PQprepare(conn_, name.c_str(), sql,
                            static_cast<int>(params.size()), nullptr));
      if (PQresultStatus(p.get()) != PGRES_COMMAND_OK) return Error(what);
      it = prepared_.emplace(sql, name).first;
    }
    const Packed packed = Pack(params);
    r.reset(PQexecPrepared(conn_, it->second.c_str(), packed.count(),
                           packed.values.data(), packed.lengths.data(),
                           packed.formats.data(), 0));
    const ExecStatusType st = PQresultStatus(r.get());
    if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) return Error(what);
  }
  const char* tuples = PQcmdTuples(r.get());
  if (tuples && *tuples && std::strncmp(PQcmdStatus(r.get()), "SELECT", 6)) {
    changes_ += std::strtoll(tuples, nullptr, 10);
  }
  return r;
}

Status PgStore::Defer(const char* what, const char* sql,
                      const std::vector<Param>& params,
                      std::function<void(const pg_result*)> on_result) {
  if (Status s = RequireTransaction(); !s.ok()) return s;
  if (!SendPrepared(what, sql, params, std::move(on_result))) {
    return Status(ErrorCode::kStorage, failure_);
  }
  ++changes_;
  return Status::Ok();
}

bool PgStore::SendPrepared(const char* what, const char* sql,
                           const std::vector<Param>& params,
                           std::function<void(const pg_result*)> on_result) {
  auto it = prepared_.find(sql);
  if (it == prepared_.end()) {
    const std::string name = "s" + std::to_string(prepared_.size());
    if (PQsendPrepare(conn_, name.c_str(), sql, static_cast<int>(params.size()),
                      nullptr) != 1) {
      Fail(Error(what).detail());
      return false;
    }
    pending_.push_back(Pending{what, sql, false, {}});
    it = prepared_.emplace(sql, name).first;
  }
  const Packed packed = Pack(params);
  if (PQsendQueryPrepared(conn_, it->second.c_str(), packed.count(),
                          packed.values.data(), packed.lengths.data(),
                          packed.formats.data(), 0) != 1) {
    Fail(Error(what).detail());
    return false;
  }
  pending_.push_back(Pending{what, nullptr, false, std::move(on_result)});
  return true;
}

void PgStore::Fail(std::string message) {
  if (failure_.empty()) failure_ = std::move(message);
  if (failure_.empty()) failure_ = "the transaction failed";
}

PgStore::ResultPtr PgStore::Drain() {
  // Without a sync point at the end, the server holds results until asked.
  if (pending_.empty() || !pending_.back().sync) {
    if (PQsendFlushRequest(conn_) != 1) Fail(Error("flush").detail());
  }
  if (PQflush(conn_) != 0) Fail(Error("flush").detail());
  ResultPtr last;
  while (!pending_.empty()) {
    Pending p = std::move(pending_.front());
    pending_.pop_front();
    ResultPtr r(PQgetResult(conn_));
    if (!r) {  // the connection is gone
      Fail(Error(p.what ? p.what : "sync").detail());
      pending_.clear();
      return nullptr;
    }
    const ExecStatusType st = PQresultStatus(r.get());
    if (p.sync) continue;  // PGRES_PIPELINE_SYNC: no null follows
    // Each statement's results end with a null.
    while (PGresult* more = PQgetResult(conn_)) PQclear(more);
    if (st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK) {
      if (p.on_result) p.on_result(r.get());
      if (pending_.empty()) last = std::move(r);
      continue;
    }
    // The statement failed, or an earlier one did (PGRES_PIPELINE_ABORTED):
    // a statement whose PREPARE did not run is not prepared.
    if (p.prepared) prepared_.erase(p.prepared);
    if (st == PGRES_PIPELINE_ABORTED) {
      Fail(std::string(p.what) + ": an earlier statement failed");
    } else {
      std::string message = PQresultErrorMessage(r.get());
      while (!message.empty() &&
             (message.back() == '\n' || message.back() == ' ')) {
        message.pop_back();
      }
      Fail(std::string(p.what) + ": " + message);
    }
  }
  return failure_.empty() ? std::move(last) : nullptr;
}

void PgStore::EndPipeline() {
  if (PQpipelineStatus(conn_) == PQ_PIPELINE_OFF) return;
  if (PQpipelineSync(conn_) == 1) {
    pending_.push_back(Pending{"sync", nullptr, true, {}});
    Drain();
  }
  pending_.clear();
  PQexitPipelineMode(conn_);
}

Status PgStore::Begin() {
  if (in_transaction_) Rollback();
  if (PQstatus(conn_) != CONNECTION_OK ||
      PQpipelineStatus(conn_) != PQ_PIPELINE_OFF) {
    // The server went away (restart, network): connect again now.
    PQfinish(conn_);
    conn_ = PQconnectdb(uri_.c_str());
    if (PQstatus(conn_) != CONNECTION_OK) return Error("reconnect");
    if (Status s = Setup(); !s.ok()) return s;
    Log(LogLevel::kInfo, "PostgreSQL connection re-established");
  }
  if (PQtransactionStatus(conn_) != PQTRANS_IDLE) Rollback();
  if (PQenterPipelineMode(conn_) != 1) return Error("begin");
  in_transaction_ = true;
  failure_.clear();
  ForgetTransaction();
  if (PQsendQueryParams(conn_, "BEGIN", 0, nullptr, nullptr, nullptr, nullptr,
                        0) != 1) {
    Status s = Error("begin");
    Rollback();
    return s;
  }
  pending_.push_back(Pending{"begin", nullptr, false, {}});
  return Status::Ok();
}

Status PgStore::Commit() {
  if (!in_transaction_ || !failure_.empty()) {
    Status s(ErrorCode::kStorage, failure_.empty() ? "commit: no transaction"
                                                   : "commit: " + failure_);
    Rollback();
    return s;
  }
  SendNoticeWrites();
  SendQueueLengths();
  SendNotifications();
  // COMMIT of a transaction that failed reports success with "ROLLBACK".
  if (failure_.empty() &&
      PQsendQueryParams(conn_, "COMMIT", 0, nullptr, nullptr, nullptr, nullptr,
                        0) == 1) {
    pending_.push_back(Pending{
        "commit", nullptr, false, [this](const PGresult* r) {
          if (std::strcmp(PQcmdStatus(const_cast<PGresult*>(r)), "COMMIT")) {
            Fail("commit: the transaction was rolled back");
          }
        }});
  } else {
    Fail(Error("commit").detail());
  }
  if (PQpipelineSync(conn_) == 1) {
    pending_.push_back(Pending{"sync", nullptr, true, {}});
  } else {
    Fail(Error("commit").detail());
  }
  Drain();
  pending_.clear();
  PQexitPipelineMode(conn_);
  in_transaction_ = false;
  ForgetTransaction();
  if (!failure_.empty()) {
    Status s(ErrorCode::kStorage, failure_);
    Rollback();
    return s;
  }
  return Status::Ok();
}

void PgStore::Rollback() {
  outgoing_.clear();
  ForgetTransaction();
  if (PQstatus(conn_) == CONNECTION_OK) EndPipeline();
  in_transaction_ = false;
  if (PQstatus(conn_) != CONNECTION_OK ||
      PQpipelineStatus(conn_) != PQ_PIPELINE_OFF) {
    return;  // Begin() connects again
  }
  const PGTransactionStatusType st = PQtransactionStatus(conn_);
  if (st == PQTRANS_INTRANS || st == PQTRANS_INERROR) {
    ResultPtr r(PQexec(conn_, "ROLLBACK"));
  }
}

bool PgStore::InTransaction() const {
  return in_transaction_ && failure_.empty() &&
         PQstatus(conn_) == CONNECTION_OK;
}

Status PgStore::RequireTransaction() {
  if (InTransaction()) return Status::Ok();
  return Status(ErrorCode::kStorage, "the database is not writable now");
}

Result<int64_t> PgStore::CreateAccount(std::string_view name,
                                       std::string_view key,
                                       std::string_view password_hash,
                                       int64_t now_ms) {
  if (Status s = RequireTransaction(); !s.ok()) return s;
  ForgetAhead();  // a send read ahead may name this account
  // Two brokers creating one name at once: the second waits for the first
  // to commit, then inserts nothing.
  auto r =
      Run("create account",
          "INSERT INTO accounts(name, name_key, password_hash, created_at) "
          "VALUES($1, $2, $3, $4) ON CONFLICT (name_key) DO NOTHING "
          "RETURNING id",
          {P(name), P(key), P(password_hash), P(now_ms)});
  if (!r.ok()) return r.status();
  if (PQntuples(r->get()) == 0) {
    return Status(ErrorCode::kUsernameTaken, "username is taken");
  }
  return Int(r->get(), 0, 0);
}

Result<std::optional<Account>> PgStore::FindAccount(std::string_view key) {
  auto r =
      Run("find account",
          "SELECT id, name, password_hash FROM accounts WHERE name_key = $1",
          {P(key)});
  if (!r.ok()) return r.status();
  if (PQntuples(r->get()) == 0) return std::optional<Account>();
  return std::optional<Account>(
      Account{Int(r->get(), 0, 0), Text(r->get(), 0, 1), Text(r->get(), 0, 2)});
}

Result<std::optional<Account>> PgStore::FindAccountById(int64_t id) {
  if (auto a = accounts_ahead_.find(id); a != accounts_ahead_.end()) {
    return std::optional<Account>(a->second);
  }
  auto r = Run("find account",
               "SELECT id, name, password_hash FROM accounts WHERE id = $1",
               {P(id)});
  if (!r.ok()) return r.status();
  if (PQntuples(r->get()) == 0) return std::optional<Account>();
  return std::optional<Account>(
      Account{Int(r->get(), 0, 0), Text(r->get(), 0, 1), Text(r->get(), 0, 2)});
}

Result<std::vector<QueuedMessage>> PgStore::DeleteAccount(int64_t id) {
  if (Status s = RequireTransaction(); !s.ok()) return s;
  // What was read ahead or stored in this transaction for the account goes
  // with it.
  ForgetAhead();
  std::erase_if(enqueued_in_tx_,
                [id](const auto& e) { return e.second.recipient_id == id; });
  std::erase_if(sent_in_tx_,
                [id](const auto& e) { return e.first.first == id; });
  // Its counter rows go at commit, in the order commits lock them (a row
  // locked here would be held while the commit locks other accounts').
  queue_delta_.erase(id);
  deleted_in_tx_.insert(id);
  notice_writes_[id] = NoticeWrites{.deleted = true};
  auto r = Run("delete account",
               "DELETE FROM messages WHERE recipient_id = $1 RETURNING id, "
               "sender_id, sender_name, recipient_name, client_msg_id",
               {P(id)});
  if (!r.ok()) return r.status();
  std::vector<QueuedMessage> purged;
  for (int i = 0; i < PQntuples(r->get()); ++i) {
    QueuedMessage m;
    m.id = Int(r->get(), i, 0);
    m.sender_id = Int(r->get(), i, 1);
    m.sender_name = Text(r->get(), i, 2);
    m.recipient_id = id;
    m.recipient_name = Text(r->get(), i, 3);
    m.client_msg_id = FromSql(Int(r->get(), i, 4));
    purged.push_back(std::move(m));
  }
  std::sort(purged.begin(), purged.end(),
            [](const QueuedMessage& a, const QueuedMessage& b) {
              return a.id < b.id;
            });
  const char* const kDeletes[] = {
      "DELETE FROM notices WHERE account_id = $1",
      "DELETE FROM tokens WHERE account_id = $1",
      "DELETE FROM sends WHERE sender_id = $1",
      "DELETE FROM accounts WHERE id = $1",
  };
  for (const char* sql : kDeletes) {
    if (Status s = Defer("delete account", sql, {P(id)}); !s.ok()) return s;
  }
  return purged;
}

Result<std::string> PgStore::ScanAccounts(
    std::string_view prefix, std::string_view after, int64_t max_rows,
    const std::function<bool(std::string_view, std::string_view)>& visit) {
  auto r = Run("list accounts",
               "SELECT name_key, name FROM accounts WHERE name_key >= $1 AND "
               "name_key > $2 ORDER BY name_key LIMIT $3",
               {P(prefix), P(after), P(max_rows)});
  if (!r.ok()) return r.status();
  std::string last;
  int64_t examined = 0;
  bool stopped = false;
  for (int i = 0; i < PQntuples(r->get()); ++i) {
    const std::string key = Text(r->get(), i, 0);
    if (key.compare(0, prefix.size(), prefix) != 0) {
      last.clear();  // past the prefix: nothing more can match
      stopped = true;
      break;
    }
    last = key;
    ++examined;
    if (!visit(key, Text(r->get(), i, 1))) {
      stopped = true;
      break;
    }
  }
  if (!stopped && examined < max_rows) last.clear();
  return last;
}

Result<std::optional<int64_t>> PgStore::FindSend(int64_t sender_id,
                                                 uint64_t client_msg_id) {
  auto r = Run("find send",
               "SELECT message_id FROM sends WHERE sender_id = $1 AND "
               "client_msg_id = $2",
               {P(sender_id), P(ToSql(client_msg_id))});
  if (!r.ok()) return r.status();
  if (PQntuples(r->get()) == 0) return std::optional<int64_t>();
  return std::optional<int64_t>(Int(r->get(), 0, 0));
}

void PgStore::Prefetch(const std::vector<Lookahead>& reads) {
  if (!InTransaction() || reads.empty()) return;
  std::vector<int64_t> receipts;
  for (const Lookahead& read : reads) {
    if (read.kind == Lookahead::Kind::kReceipt) {
      receipts.push_back(static_cast<int64_t>(read.id));
      continue;
    }
    auto key = std::make_tuple(read.account_id, read.id, read.recipient_key);
    if (!SendPrepared(
            "check send", kCheckSend,
            {P(read.account_id), P(ToSql(read.id)), P(read.recipient_key)},
            [this, key](const PGresult* row) {
              SendAhead ahead{SendCheckFromRow(row), 0};
              ahead.queued_base = ahead.check.queued;  // committed
              send_ahead_[key].push_back(std::move(ahead));
            })) {
      return;
    }
  }
  // In message id order: their rows are locked in that order, the same in
  // every broker.
  std::sort(receipts.begin(), receipts.end());
  receipts.erase(std::unique(receipts.begin(), receipts.end()), receipts.end());
  for (const int64_t id : receipts) {
    if (!SendPrepared("confirm delivery", kReadMessage, {P(id)},
                      [this, id](const PGresult* row) {
                        ReceiptAhead& ahead = receipt_ahead_[id];
                        ahead.last_id = Int(row, 0, 7);
                        ahead.found = !PQgetisnull(row, 0, 0);
                        if (!ahead.found) return;
                        QueuedMessage& m = ahead.message;
                        m.id = id;
                        m.recipient_id = Int(row, 0, 0);
                        m.sender_id = Int(row, 0, 1);
                        m.sender_name = Text(row, 0, 2);
                        m.recipient_name = Text(row, 0, 3);
                        m.client_msg_id = FromSql(Int(row, 0, 4));
                        if (!PQgetisnull(row, 0, 5)) {
                          accounts_ahead_[m.sender_id] = Account{
                              m.sender_id, Text(row, 0, 5), Text(row, 0, 6)};
                        }
                      })) {
      return;
    }
  }
  Drain();  // one round trip; the callbacks keep the answers
}

void PgStore::ForgetAhead() {
  send_ahead_.clear();
  receipt_ahead_.clear();
  accounts_ahead_.clear();
}

void PgStore::ForgetTransaction() {
  ForgetAhead();
  sent_in_tx_.clear();
  enqueued_in_tx_.clear();
  confirmed_in_tx_.clear();
  queue_delta_.clear();
  notice_writes_.clear();
  deleted_in_tx_.clear();
  sessions_prepared_.clear();
}

Result<SendCheck> PgStore::CheckSendTo(int64_t sender_id,
                                       uint64_t client_msg_id,
                                       std::string_view recipient_key,
                                       const Account& /*recipient*/) {
  return CheckSend(sender_id, client_msg_id, recipient_key);
}

Result<SendCheck> PgStore::CheckSend(int64_t sender_id, uint64_t client_msg_id,
                                     std::string_view recipient_key) {
  auto ahead = send_ahead_.find(
      std::make_tuple(sender_id, client_msg_id, std::string(recipient_key)));
  if (ahead != send_ahead_.end() && !ahead->second.empty()) {
    SendAhead a = std::move(ahead->second.front());
    ahead->second.pop_front();
    SendCheck check = std::move(a.check);
    // Stored by this transaction since the read: a retry now.
    if (auto sent = sent_in_tx_.find({sender_id, client_msg_id});
        sent != sent_in_tx_.end()) {
      check.prior = sent->second;
      check.recipient.reset();
      return check;
    }
    if (!check.prior && check.recipient) {
      check.queued = a.queued_base + queue_delta_[check.recipient->id];
    }
    return check;
  }
  // Not read ahead: one round trip.
  auto r = Run("check send", kCheckSend,
               {P(sender_id), P(ToSql(client_msg_id)), P(recipient_key)});
  if (!r.ok()) return r.status();
  SendCheck check = SendCheckFromRow(r->get());
  // The committed length, and this transaction's changes to it.
  if (!check.prior && check.recipient) {
    check.queued += queue_delta_[check.recipient->id];
  }
  return check;
}

Result<int64_t> PgStore::Enqueue(const QueuedMessage& m) {
  if (Status s = RequireTransaction(); !s.ok()) return s;
  int64_t id = m.id;
  if (id == 0) {
    auto r = Run("enqueue", "SELECT nextval('messages_id_seq')", {});
    if (!r.ok()) return r.status();
    id = Int(r->get(), 0, 0);
  }
  if (Status s =
          Defer("enqueue",
                "INSERT INTO messages(id, sender_id, sender_name, "
                "recipient_id, recipient_name, client_msg_id, body, "
                "sent_at) VALUES($1, $2, $3, $4, $5, $6, $7, $8)",
                {P(id), P(m.sender_id), P(m.sender_name), P(m.recipient_id),
                 P(m.recipient_name), P(ToSql(m.client_msg_id)), Bin(m.body),
                 P(m.sent_at_ms)});
      !s.ok()) {
    return s;
  }
  // The same send retried on another broker at the same moment: this insert
  // waits for the other's commit, then fails the transaction; the client's
  // retry finds the other's message id.
  if (Status s = Defer(
          "enqueue",
          "INSERT INTO sends(sender_id, client_msg_id, "
          "message_id, created_at) VALUES($1, $2, $3, $4)",
          {P(m.sender_id), P(ToSql(m.client_msg_id)), P(id), P(m.sent_at_ms)});
      !s.ok()) {
    return s;
  }
  sent_in_tx_[{m.sender_id, m.client_msg_id}] = id;
  enqueued_in_tx_[id] =
      MessageSummary{m.sender_id, m.sender_name, m.recipient_id,
                     m.recipient_name, m.client_msg_id};
  ++queue_delta_[m.recipient_id];
  return id;
}

Result<int64_t> PgStore::CountPending(int64_t recipient_id) {
  auto r = Run("count pending",
               "SELECT count(*) FROM messages WHERE recipient_id = $1",
               {P(recipient_id)});
  if (!r.ok()) return r.status();
  return Int(r->get(), 0, 0);
}

Result<std::vector<QueuedMessage>> PgStore::FetchPending(int64_t recipient_id,
                                                         int64_t limit) {
  auto r = Run("fetch",
               "SELECT id, sender_id, sender_name, recipient_name, "
               "client_msg_id, body, sent_at FROM messages WHERE "
               "recipient_id = $1 ORDER BY id LIMIT $2",
               {P(recipient_id), P(limit)});
  if (!r.ok()) return r.status();
  std::vector<QueuedMessage> out;
  for (int i = 0; i < PQntuples(r->get()); ++i) {
    out.push_back(QueuedFromRow(r->get(), i, recipient_id));
  }
  return out;
}

Result<ReceiptResult> PgStore::ConfirmDelivery(int64_t recipient_id,
                                               int64_t message_id) {
  ReceiptResult result;
  if (Status s = RequireTransaction(); !s.ok()) return s;
  if (confirmed_in_tx_.contains(message_id)) {
    result.outcome = ReceiptOutcome::kAlreadyConfirmed;
    return result;
  }
  // Known without a round trip: stored by this transaction, or read ahead.
  std::optional<MessageSummary> known;
  if (auto e = enqueued_in_tx_.find(message_id); e != enqueued_in_tx_.end()) {
    known = e->second;
  } else if (auto a = receipt_ahead_.find(message_id);
             a != receipt_ahead_.end()) {
    const ReceiptAhead& ahead = a->second;
    if (!ahead.found) {
      result.outcome = message_id <= ahead.last_id
                           ? ReceiptOutcome::kAlreadyConfirmed
                           : ReceiptOutcome::kUnknown;
      return result;
    }
    const QueuedMessage& m = ahead.message;
    known = MessageSummary{m.sender_id, m.sender_name, m.recipient_id,
                           m.recipient_name, m.client_msg_id};
  }
  if (known) {
    if (known->recipient_id != recipient_id) {
      result.outcome = ReceiptOutcome::kNotYours;
      return result;
    }
    // The row must still be there when the delete runs: another broker's
    // session of this recipient may have confirmed it since the read.
    if (Status s = Defer(
            "confirm delivery",
            "DELETE FROM messages WHERE id = $1 AND recipient_id = $2",
            {P(message_id), P(recipient_id)},
            [this, message_id](const PGresult* r) {
              if (std::strcmp(PQcmdTuples(const_cast<PGresult*>(r)), "0") ==
                  0) {
                Fail("confirm delivery: message " + std::to_string(message_id) +
                     " was confirmed meanwhile by another session");
              }
            });
        !s.ok()) {
      return s;
    }
    confirmed_in_tx_.insert(message_id);
    --queue_delta_[recipient_id];
    result.message.id = message_id;
    result.message.recipient_id = recipient_id;
    result.message.sender_id = known->sender_id;
    result.message.sender_name = known->sender_name;
    result.message.recipient_name = known->recipient_name;
    result.message.client_msg_id = known->client_msg_id;
    result.outcome = ReceiptOutcome::kConfirmed;
    return result;
  }
  // One round trip: the delete, whether the message is someone else's, and
  // the sequence's last value (the sequence hands out each id once,
  // committed or not: at or below it, the id was handed out). A message of
  // this recipient that the delete did not find was confirmed meanwhile.
  auto r = Run("confirm delivery",
               "WITH d AS (DELETE FROM messages WHERE id = $1 AND "
               "recipient_id = $2 RETURNING sender_id, sender_name, "
               "recipient_name, client_msg_id) "
               "SELECT d.sender_id, d.sender_name, d.recipient_name, "
               "d.client_msg_id, EXISTS(SELECT 1 FROM messages WHERE id = $1 "
               "AND recipient_id <> $2), (SELECT CASE WHEN is_called THEN "
               "last_value ELSE 0 END FROM messages_id_seq) "
               "FROM (SELECT 1) AS one LEFT JOIN d ON true",
               {P(message_id), P(recipient_id)});
  if (!r.ok()) return r.status();
  const PGresult* row = r->get();
  if (!PQgetisnull(row, 0, 0)) {
    ++changes_;
    confirmed_in_tx_.insert(message_id);
    --queue_delta_[recipient_id];
    result.message.id = message_id;
    result.message.recipient_id = recipient_id;
    result.message.sender_id = Int(row, 0, 0);
    result.message.sender_name = Text(row, 0, 1);
    result.message.recipient_name = Text(row, 0, 2);
    result.message.client_msg_id = FromSql(Int(row, 0, 3));
    result.outcome = ReceiptOutcome::kConfirmed;
  } else if (std::strcmp(PQgetvalue(row, 0, 4), "t") == 0) {
    result.outcome = ReceiptOutcome::kNotYours;
  } else {
    result.outcome = message_id <= Int(row, 0, 5)
                         ? ReceiptOutcome::kAlreadyConfirmed
                         : ReceiptOutcome::kUnknown;
  }
  return result;
}

Status PgStore::AddNotice(int64_t account_id, const Notice& n, int64_t cap) {
  if (Status s = RequireTransaction(); !s.ok()) return s;
  NoticeWrites& w = notice_writes_[account_id];
  if (w.deleted) return Status::Ok();  // deleted in this transaction
  w.added.push_back(n);
  w.cap = cap;
  ++changes_;
  return Status::Ok();
}

void PgStore::SendNoticeWrites(int64_t account) {
  for (auto it = account < 0 ? notice_writes_.begin()
                             : notice_writes_.find(account);
       it != notice_writes_.end() && failure_.empty();) {
    const int64_t id = it->first;
    const NoticeWrites& w = it->second;
    if (w.deleted) {
      Defer("notices", "DELETE FROM notice_counts WHERE account_id = $1",
            {P(id)})
          .IgnoreError();  // a failure fails the commit
      it = notice_writes_.erase(it);
      if (account >= 0) break;
      continue;
    }
    std::vector<int64_t> messages, kinds, cmids;
    std::vector<std::string> peers;
    for (const Notice& n : w.added) {
      messages.push_back(n.message_id);
      kinds.push_back(static_cast<int64_t>(n.kind));
      peers.push_back(n.peer_name);
      cmids.push_back(ToSql(n.client_msg_id));
    }
    // The deletions and insertions, and the count by what they changed.
    Defer("notices",
          "WITH del AS (DELETE FROM notices WHERE account_id = $1 AND "
          "message_id = ANY($2::bigint[]) RETURNING 1), ins AS (INSERT INTO "
          "notices(account_id, message_id, kind, peer_name, client_msg_id) "
          "SELECT $1, m, k, p, c FROM unnest($3::bigint[], $4::int[], "
          "$5::text[], $6::bigint[]) AS x(m, k, p, c) ON CONFLICT DO NOTHING "
          "RETURNING 1) INSERT INTO notice_counts(account_id, notices) "
          "VALUES($1, (SELECT count(*) FROM ins) - (SELECT count(*) FROM del)) "
          "ON CONFLICT (account_id) DO UPDATE SET notices = "
          "notice_counts.notices + EXCLUDED.notices",
          {P(id), P(NumberArray(w.acknowledged)), P(NumberArray(messages)),
           P(NumberArray(kinds)), P(TextArray(peers)), P(NumberArray(cmids))})
        .IgnoreError();  // a failure fails the commit
    if (!w.added.empty()) {
      // Over the cap: the notices of the oldest messages go (a LIMIT of 0,
      // the usual case, reads nothing).
      const int64_t cap = w.cap;
      Defer("notices",
            "WITH t AS (DELETE FROM notices WHERE account_id = $1 AND "
            "message_id IN (SELECT message_id FROM notices WHERE account_id "
            "= $1 ORDER BY message_id LIMIT GREATEST(0, (SELECT notices FROM "
            "notice_counts WHERE account_id = $1) - $2)) RETURNING 1) UPDATE "
            "notice_counts SET notices = notices - (SELECT count(*) FROM t) "
            "WHERE account_id = $1 AND EXISTS (SELECT 1 FROM t) RETURNING "
            "(SELECT count(*) FROM t)",
            {P(id), P(cap)},
            [id, cap](const PGresult* r) {
              if (PQntuples(r) == 1) LogDroppedNotices(id, cap, Int(r, 0, 0));
            })
          .IgnoreError();  // a failure fails the commit
    }
    it = notice_writes_.erase(it);
    if (account >= 0) break;
  }
}

Result<int64_t> PgStore::CountNotices(int64_t account_id) {
  if (in_transaction_) SendNoticeWrites(account_id);  // read what was written
  auto r =
      Run("count notices", "SELECT count(*) FROM notices WHERE account_id = $1",
          {P(account_id)});
  if (!r.ok()) return r.status();
  return Int(r->get(), 0, 0);
}

Result<std::vector<Notice>> PgStore::ListNotices(int64_t account_id,
                                                 int64_t limit) {
  if (in_transaction_) SendNoticeWrites(account_id);  // read what was written
  auto r = Run("list notices",
               "SELECT kind, message_id, peer_name, client_msg_id FROM notices "
               "WHERE account_id = $1 ORDER BY message_id LIMIT $2",
               {P(account_id), P(limit)});
  if (!r.ok()) return r.status();
  std::vector<Notice> out;
  for (int i = 0; i < PQntuples(r->get()); ++i) {
    out.push_back(Notice{static_cast<NoticeKind>(Int(r->get(), i, 0)),
                         Int(r->get(), i, 1), Text(r->get(), i, 2),
                         FromSql(Int(r->get(), i, 3))});
  }
  return out;
}

Status PgStore::AckNotice(int64_t account_id, int64_t message_id) {
  if (Status s = RequireTransaction(); !s.ok()) return s;
  NoticeWrites& w = notice_writes_[account_id];
  // A notice added in this transaction and acknowledged: never stored.
  std::erase_if(w.added, [message_id](const Notice& n) {
    return n.message_id == message_id;
  });
  w.acknowledged.push_back(message_id);
  ++changes_;
  return Status::Ok();
}

Status PgStore::AddToken(std::string_view token_hash, int64_t account_id,
                         int64_t now_ms) {
  return Defer("add token",
               "INSERT INTO tokens(hash, account_id, created_at) "
               "VALUES($1, $2, $3)",
               {Bin(token_hash), P(account_id), P(now_ms)});
}

Result<std::optional<int64_t>> PgStore::FindToken(std::string_view token_hash,
                                                  int64_t not_before_ms) {
  auto r = Run("find token",
               "SELECT account_id FROM tokens WHERE hash = $1 AND "
               "created_at >= $2",
               {Bin(token_hash), P(not_before_ms)});
  if (!r.ok()) return r.status();
  if (PQntuples(r->get()) == 0) return std::optional<int64_t>();
  return std::optional<int64_t>(Int(r->get(), 0, 0));
}

Status PgStore::RevokeToken(std::string_view token_hash) {
  return Defer("revoke token", "DELETE FROM tokens WHERE hash = $1",
               {Bin(token_hash)});
}

Result<StoreTotals> PgStore::Totals() {
  auto r = Run("count totals",
               "SELECT (SELECT count(*) FROM accounts), (SELECT count(*) FROM "
               "messages), (SELECT count(*) FROM notices)",
               {});
  if (!r.ok()) return r.status();
  return StoreTotals{Int(r->get(), 0, 0), Int(r->get(), 0, 1),
                     Int(r->get(), 0, 2)};
}

Status PgStore::Prune(int64_t sends_before_ms, int64_t tokens_before_ms) {
  ForgetAhead();
  if (Status s = Defer("prune", "DELETE FROM sends WHERE created_at < $1",
                       {P(sends_before_ms)});
      !s.ok()) {
    return s;
  }
  return Defer("prune", "DELETE FROM tokens WHERE created_at < $1",
               {P(tokens_before_ms)});
}

Status PgStore::RenewLease(int64_t now_ms, int64_t lease_ms) {
  if (Status s = Defer("renew lease",
                       "INSERT INTO brokers(id, lease_until) VALUES($1, $2) "
                       "ON CONFLICT (id) DO UPDATE SET lease_until = $2",
                       {P(broker_id_), P(now_ms + lease_ms)});
      !s.ok()) {
    return s;
  }
  // Brokers gone silent: their sessions are over (their clients fail over
  // and log in elsewhere).
  if (Status s = Defer("renew lease",
                       "DELETE FROM presence WHERE broker_id IN (SELECT id "
                       "FROM brokers WHERE lease_until < $1)",
                       {P(now_ms)});
      !s.ok()) {
    return s;
  }
  return Defer("renew lease", "DELETE FROM brokers WHERE lease_until < $1",
               {P(now_ms)});
}

Status PgStore::SetPresence(int64_t account_id, bool present) {
  if (options_.read_only) return Status::Ok();  // not taking part
  if (!present) {
    return Defer(
        "presence",
        "DELETE FROM presence WHERE account_id = $1 AND broker_id = $2",
        {P(account_id), P(broker_id_)});
  }
  return Defer("presence",
               "INSERT INTO presence(account_id, broker_id) "
               "VALUES($1, $2) ON CONFLICT DO NOTHING",
               {P(account_id), P(broker_id_)});
}

Status PgStore::BeginSession(int64_t account_id) {
  if (options_.read_only) return Status::Ok();  // not taking part
  if (Status s = SetPresence(account_id, true); !s.ok()) return s;
  if (sessions_prepared_.contains(account_id)) return Status::Ok();
  // A login racing another broker's commit of a message or notice for this
  // account: that commit changes the account's counter rows before it looks
  // presence up. Taking the rows here orders the two: either the commit
  // comes first, and this transaction's later reads (the login's pending
  // count, its notices) see what it stored; or this transaction does, and
  // the commit, waiting for the rows, then sees this presence and notifies.
  // In the commits' order (notice counts, then queue lengths), and in a
  // transaction that holds no other row (the login runs alone): a
  // transaction holding these rows while it waits for another account's
  // would deadlock with a commit that holds that one and waits for these.
  if (Status s = Defer("presence",
                       "INSERT INTO notice_counts(account_id, notices) "
                       "VALUES($1, 0) ON CONFLICT (account_id) DO UPDATE SET "
                       "notices = notice_counts.notices",
                       {P(account_id)});
      !s.ok()) {
    return s;
  }
  return Defer("presence",
               "INSERT INTO queue_lengths(account_id, queued) VALUES($1, 0) "
               "ON CONFLICT (account_id) DO UPDATE SET queued = "
               "queue_lengths.queued",
               {P(account_id)});
}

Status PgStore::PrepareSessions(const std::vector<std::string>& keys) {
  if (options_.read_only || keys.empty()) return Status::Ok();
  // Rows are locked in the order the SELECT yields them: by account.
  if (Status s = Defer("presence",
                       "INSERT INTO notice_counts(account_id, notices) SELECT "
                       "id, 0 FROM accounts WHERE name_key = ANY($1::text[]) "
                       "ORDER BY id ON CONFLICT (account_id) DO UPDATE SET "
                       "notices = notice_counts.notices",
                       {P(TextArray(keys))});
      !s.ok()) {
    return s;
  }
  // The accounts whose rows are now held: their BeginSession need not take
  // them again (known by the login's first read, which drains this).
  return Defer("presence",
               "INSERT INTO queue_lengths(account_id, queued) SELECT id, 0 "
               "FROM accounts WHERE name_key = ANY($1::text[]) ORDER BY id ON "
               "CONFLICT (account_id) DO UPDATE SET queued = "
               "queue_lengths.queued RETURNING account_id",
               {P(TextArray(keys))}, [this](const PGresult* r) {
                 for (int i = 0; i < PQntuples(r); ++i) {
                   sessions_prepared_.insert(Int(r, i, 0));
                 }
               });
}

void PgStore::NotifyBrokersOf(int64_t account_id, const std::string& item,
                              int64_t now_ms) {
  if (!Shared()) return;
  outgoing_.emplace_back(account_id, item);
  outgoing_now_ms_ = now_ms;
}

void PgStore::SendNotifications() {
  // One statement per chunk of items: it finds the live brokers holding
  // sessions of each item's account and sends each one notification with
  // its items, one per line, in order. A chunk's items stay below
  // PostgreSQL's 8000-byte payload limit.
  constexpr size_t kMaxPayload = 7000;
  size_t next = 0;
  while (next < outgoing_.size() && failure_.empty()) {
    std::vector<int64_t> accounts;
    std::vector<std::string> items;
    size_t bytes = 0;
    for (; next < outgoing_.size(); ++next) {
      const auto& [account, item] = outgoing_[next];
      if (bytes > 0 && bytes + item.size() + 1 > kMaxPayload) break;
      bytes += item.size() + 1;
      accounts.push_back(account);
      items.push_back(item);
    }
    Defer("notify",
          "SELECT pg_notify('zchat_' || t.broker_id, string_agg(t.item, "
          "E'\\n' ORDER BY t.n)) FROM (SELECT p.broker_id, i.item, i.n FROM "
          "unnest($1::bigint[], $2::text[]) WITH ORDINALITY AS i(account_id, "
          "item, n) JOIN presence p ON p.account_id = i.account_id JOIN "
          "brokers b ON b.id = p.broker_id WHERE p.broker_id <> $3 AND "
          "b.lease_until >= $4) AS t GROUP BY t.broker_id",
          {P(NumberArray(accounts)), P(TextArray(items)), P(broker_id_),
           P(outgoing_now_ms_)})
        .IgnoreError();  // a failure fails the commit
  }
  outgoing_.clear();
}

void PgStore::SendQueueLengths() {
  std::vector<std::pair<int64_t, int64_t>> changes;
  for (const auto& [account, delta] : queue_delta_) {
    if (delta != 0 && !deleted_in_tx_.count(account)) {
      changes.emplace_back(account, delta);
    }
  }
  if ((changes.empty() && deleted_in_tx_.empty()) || !failure_.empty()) return;
  std::sort(changes.begin(), changes.end());
  std::vector<int64_t> accounts, deltas;
  // Rows are locked in the order the SELECT yields them: by account.
  const auto send_changes = [&] {
    if (accounts.empty()) return;
    Defer("queue lengths",
          "INSERT INTO queue_lengths(account_id, queued) SELECT a, d FROM "
          "unnest($1::bigint[], $2::bigint[]) AS c(a, d) ORDER BY a ON "
          "CONFLICT (account_id) DO UPDATE SET queued = queue_lengths.queued "
          "+ EXCLUDED.queued",
          {P(NumberArray(accounts)), P(NumberArray(deltas))})
        .IgnoreError();  // a failure fails the commit
    accounts.clear();
    deltas.clear();
  };
  // A deleted account's row goes in its place in that order.
  auto gone = deleted_in_tx_.begin();
  const auto send_deletions_before = [&](int64_t account) {
    for (; gone != deleted_in_tx_.end() && *gone < account; ++gone) {
      send_changes();
      Defer("queue lengths", "DELETE FROM queue_lengths WHERE account_id = $1",
            {P(*gone)})
          .IgnoreError();  // a failure fails the commit
    }
  };
  for (const auto& [account, delta] : changes) {
    send_deletions_before(account);
    accounts.push_back(account);
    deltas.push_back(delta);
  }
  send_deletions_before(std::numeric_limits<int64_t>::max());
  send_changes();
}

int PgStore::NotificationFd() const { return PQsocket(conn_); }

void PgStore::CollectNotifications() {
  while (PGnotify* n = PQnotifies(conn_)) {
    std::string_view payload(n->extra);
    size_t start = 0;
    for (;;) {
      const size_t end = payload.find('\n', start);
      const std::string_view item = payload.substr(
          start,
          end == std::string_view::npos ? std::string_view::npos : end - start);
      if (!item.empty()) incoming_.emplace_back(item);
      if (end == std::string_view::npos) break;
      start = end + 1;
    }
    PQfreemem(n);
  }
}

bool PgStore::HasNotifications() {
  CollectNotifications();  // what libpq read and has not handed out
  return !incoming_.empty();
}

std::vector<std::string> PgStore::TakeNotifications() {
  // Also in a transaction: what arrived since the last read is parsed, and
  // the socket is not left readable.
  PQconsumeInput(conn_);
  CollectNotifications();
  return std::exchange(incoming_, {});
}

Result<std::vector<QueuedMessage>> PgStore::FindMessages(
    const std::vector<int64_t>& ids) {
  std::vector<QueuedMessage> out;
  if (ids.empty()) return out;
  auto r = Run("find messages",
               "SELECT id, sender_id, sender_name, recipient_name, "
               "client_msg_id, body, sent_at, recipient_id FROM messages "
               "WHERE id = ANY($1::bigint[]) ORDER BY id",
               {P(NumberArray(ids))});
  if (!r.ok()) return r.status();
  for (int i = 0; i < PQntuples(r->get()); ++i) {
    out.push_back(QueuedFromRow(r->get(), i, Int(r->get(), i, 7)));
  }
  return out;
}

}  // namespace zchat
