// The blobs SqliteStore keeps records in: the dedup records (schema v6), the
// notice log (schema v7) and the message log (schema v8).
//
// Runs. A row of send_runs is a run of a sender's records in client_msg_id
// order, the run's first id in the row's key and its records in a blob. A
// record is (client_msg_id, message_id), both as SQLite stores them
// (signed 64-bit). The blob is the records in ascending client_msg_id
// order, each as two varints (7 bits a byte, low group first, high bit set
// on every byte but the last): the client_msg_id's distance from the
// previous record's (from the run's first id for the first record: 0), as
// an unsigned 64-bit difference, and the message_id's difference from the
// previous record's (from 0 for the first), zigzag-coded. Both wrap in
// unsigned 64-bit arithmetic, so every pair of ids is representable.
//
// Batches. A row of send_batches holds the records one transaction
// committed, waiting to be merged into runs: each record as four zigzag
// varints, the differences of its sender_id, client_msg_id, message_id and
// created_at from the previous record's (from 0 for the first).
//
// Notice log. A row of notice_log holds the notice operations one
// transaction made (or the notices a compaction carried over): each an
// operation byte (1: a notice added, 2: one acknowledged), the account id
// and message id as zigzag varints, and for an added notice its kind, its
// client_msg_id (varints) and its peer name (a varint length, then the
// bytes).
//
// Message log. A row of message_log holds the message operations of one
// transaction (or the messages a compaction carried over): each an
// operation byte (1: a message queued, 2: one removed, confirmed or
// purged) and the message id as a zigzag varint; a queued message then has
// its sender id and recipient id (zigzag varints), client_msg_id and
// sent-at time (a varint, a zigzag varint), and its sender name, recipient
// name and body (each a varint length, then the bytes).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "broker/store.h"

namespace zchat {

struct RunRecord {
  int64_t client_msg_id;
  int64_t message_id;
  bool operator==(const RunRecord&) const = default;
};

// Appends records to a run's blob, after the run's last record (or, for a
// new run, from its first id). Records must come in ascending
// client_msg_id order, each above the last.
class RunEncoder {
 public:
  // A new run whose first record will be `first_id`.
  explicit RunEncoder(int64_t first_id) : last_id_(first_id) {}
  // Continues a run whose last record is `last`.
  explicit RunEncoder(const RunRecord& last)
      : last_id_(last.client_msg_id), last_message_(last.message_id) {}

  // The bytes Add(record) would append.
  size_t SizeOf(const RunRecord& record) const;
  void Add(const RunRecord& record);

  // What was added since construction (or the last Take).
  std::string Take() { return std::exchange(bytes_, std::string()); }
  const std::string& bytes() const { return bytes_; }

 private:
  int64_t last_id_;
  int64_t last_message_ = 0;
  std::string bytes_;
};

// Reads a run's blob into `out` (replacing its contents). False if the blob
// is not a well-formed run (a varint cut short or longer than 10 bytes, or
// ids that do not ascend).
bool DecodeRun(int64_t first_id, std::string_view blob,
               std::vector<RunRecord>* out);

// A record as a batch holds it.
struct SendRecord {
  int64_t sender_id;
  int64_t client_msg_id;
  int64_t message_id;
  int64_t created_at;
  bool operator==(const SendRecord&) const = default;
};

// Writes a batch's blob, record by record, in any order.
class BatchEncoder {
 public:
  void Add(const SendRecord& record);
  const std::string& bytes() const { return bytes_; }

 private:
  SendRecord last_{0, 0, 0, 0};
  std::string bytes_;
};

// Reads a batch's blob, appending its records to `out`. False if the blob
// is not a well-formed batch (a varint cut short or too long, or a record
// cut short).
bool DecodeBatch(std::string_view blob, std::vector<SendRecord>* out);

// One operation of the notice log: a notice added for an account, or the
// account's notice for notice.message_id acknowledged (its other fields
// unused).
struct NoticeOp {
  bool add = true;
  int64_t account_id = 0;
  Notice notice;
};

void AppendNoticeOp(std::string& blob, const NoticeOp& op);
// The same, each kind of operation from its parts.
void AppendNoticeAdd(std::string& blob, int64_t account_id,
                     const Notice& notice);
void AppendNoticeAck(std::string& blob, int64_t account_id, int64_t message_id);

// Reads a notice log row's blob, appending its operations to `out`. False if
// the blob is not well formed.
bool DecodeNoticeOps(std::string_view blob, std::vector<NoticeOp>* out);

// Appends a queued message, or the removal of message `id`, to a message log
// row's blob.
void AppendMessageAdd(std::string& blob, const QueuedMessage& message);
void AppendMessageRemove(std::string& blob, int64_t id);

// One operation of the message log: `message` queued (add), or the message
// with message.id removed (its other fields unused).
struct MessageOp {
  bool add = true;
  QueuedMessage message;
};

// Reads a message log row's blob, appending its operations to `out`. False
// if the blob is not well formed.
bool DecodeMessageOps(std::string_view blob, std::vector<MessageOp>* out);

}  // namespace zchat
