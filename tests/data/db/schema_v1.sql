-- A zchat broker database at schema version 1, as the broker of that version
-- writes it. Regenerate with: sqlite3 schema_v1.sqlite < schema_v1.sql
-- (rollback journal mode, so that the single file is the whole database).
PRAGMA journal_mode=DELETE;
BEGIN;
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
-- alice (1) and bob (2); carol (3) was deleted.
INSERT INTO accounts VALUES(1, 'Alice', 'alice', 'hash-of-alice', 1700000000000);
INSERT INTO accounts VALUES(2, 'bob', 'bob', 'hash-of-bob', 1700000001000);
INSERT INTO accounts VALUES(3, 'carol', 'carol', 'hash-of-carol', 1700000002000);
DELETE FROM accounts WHERE id = 3;
-- Message 1 (alice -> bob) was confirmed; message 2 waits for bob.
INSERT INTO messages VALUES(1, 1, 'Alice', 2, 'bob', 7, 'first', 1700000003000);
INSERT INTO messages VALUES(2, 1, 'Alice', 2, 'bob', 8, 'hello bob', 1700000004000);
DELETE FROM messages WHERE id = 1;
INSERT INTO sends VALUES(1, 7, 1, 1700000003000);
INSERT INTO sends VALUES(1, 8, 2, 1700000004000);
-- alice was offline when bob confirmed message 1.
INSERT INTO notices(account_id, kind, message_id, peer_name, client_msg_id)
  VALUES(1, 1, 1, 'bob', 7);
-- bob's session token (its hash).
INSERT INTO tokens VALUES(X'00112233445566778899aabbccddeeff', 2, 1700000005000);
PRAGMA user_version=1;
COMMIT;
VACUUM;
