-- A zchat broker database at schema version 5, as the broker of that version
-- writes it (its dedup records in `sends` and sends_recent). Regenerate
-- with: sqlite3 schema_v5.sqlite < schema_v5.sql
-- (rollback journal mode, so that the single file is the whole database).
PRAGMA journal_mode=DELETE;
BEGIN;
CREATE TABLE accounts(
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  name TEXT NOT NULL,
  name_key TEXT NOT NULL UNIQUE,
  password_hash TEXT NOT NULL,
  created_at INTEGER NOT NULL);
CREATE TABLE sends(
  sender_id INTEGER NOT NULL,
  client_msg_id INTEGER NOT NULL,
  message_id INTEGER NOT NULL,
  created_at INTEGER NOT NULL,
  PRIMARY KEY(sender_id, client_msg_id)) WITHOUT ROWID;
CREATE TABLE tokens(
  hash BLOB PRIMARY KEY,
  account_id INTEGER NOT NULL,
  created_at INTEGER NOT NULL) WITHOUT ROWID;
CREATE INDEX tokens_by_account ON tokens(account_id);
CREATE TABLE IF NOT EXISTS "notices"(
  account_id INTEGER NOT NULL,
  message_id INTEGER NOT NULL,
  kind INTEGER NOT NULL,
  peer_name TEXT NOT NULL,
  client_msg_id INTEGER NOT NULL,
  PRIMARY KEY(account_id, message_id)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS "messages"(
  id INTEGER PRIMARY KEY,
  sender_id INTEGER NOT NULL,
  sender_name TEXT NOT NULL,
  recipient_id INTEGER NOT NULL,
  recipient_name TEXT NOT NULL,
  client_msg_id INTEGER NOT NULL,
  body TEXT NOT NULL,
  sent_at INTEGER NOT NULL);
CREATE TABLE meta(key TEXT PRIMARY KEY, value INTEGER NOT NULL) WITHOUT ROWID;
CREATE INDEX messages_by_recipient ON messages(recipient_id, id);
CREATE TABLE sends_recent(
  message_id INTEGER PRIMARY KEY,
  sender_id INTEGER NOT NULL,
  client_msg_id INTEGER NOT NULL,
  created_at INTEGER NOT NULL);
-- Zoë (1) and bob (2).
INSERT INTO accounts VALUES(1, 'Zoë', 'zoë', 'hash-of-zoë', 1700000000000);
INSERT INTO accounts VALUES(2, 'bob', 'bob', 'hash-of-bob', 1700000001000);
-- Messages 1-3 (Zoë -> bob) were confirmed; 4 (Zoë) and 5 (bob) wait.
INSERT INTO messages VALUES(4, 1, 'Zoë', 2, 'bob', 10, 'ça va? 你好 👋 שלום', 1700000006000);
INSERT INTO messages VALUES(5, 2, 'bob', 1, 'Zoë', 3, 'oui', 1700000007000);
INSERT INTO meta VALUES('message_ids', 4096);
-- Zoë's records 7-9 were merged into `sends` (and 2^63, the largest id
-- as SQLite stores it: negative); 10 and bob's 3 wait in sends_recent.
INSERT INTO sends VALUES(1, 7, 1, 1700000003000);
INSERT INTO sends VALUES(1, 8, 2, 1700000004000);
INSERT INTO sends VALUES(1, 9, 3, 1700000005000);
INSERT INTO sends VALUES(1, -9223372036854775808, 6, 1700000005000);
INSERT INTO sends_recent VALUES(4, 1, 10, 1700000006000);
INSERT INTO sends_recent VALUES(5, 2, 3, 1700000007000);
PRAGMA user_version=5;
COMMIT;
VACUUM;
