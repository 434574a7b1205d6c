// The blob format of the dedup runs (broker/record_blobs.h).
#include "broker/record_blobs.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <limits>
#include <string>
#include <vector>

namespace zchat {
namespace {

constexpr int64_t kMin = std::numeric_limits<int64_t>::min();
constexpr int64_t kMax = std::numeric_limits<int64_t>::max();

std::string Encode(const std::vector<RunRecord>& records) {
  RunEncoder encoder(records.front().client_msg_id);
  for (const RunRecord& r : records) {
    const size_t before = encoder.bytes().size();
    const size_t predicted = encoder.SizeOf(r);
    encoder.Add(r);
    EXPECT_EQ(encoder.bytes().size() - before, predicted);
  }
  return encoder.Take();
}

TEST(SendRunsTest, RecordsRoundTrip) {
  const std::vector<std::vector<RunRecord>> cases = {
      {{5, 100}},
      {{1, 10}, {2, 11}, {3, 9}, {1000, 5}},
      // The whole signed range of ids, and message ids that go down.
      {{kMin, kMax}, {-1, 0}, {0, kMin}, {1, -1}, {kMax, 7}},
      {{kMax, kMin}},
  };
  for (const auto& records : cases) {
    const std::string blob = Encode(records);
    std::vector<RunRecord> decoded;
    ASSERT_TRUE(DecodeRun(records.front().client_msg_id, blob, &decoded));
    EXPECT_EQ(decoded, records);
  }
}

TEST(SendRunsTest, AppendingContinuesTheRun) {
  // A run written in two pieces, the second after the first's last record,
  // reads as one.
  std::string blob = Encode({{10, 500}, {11, 640}});
  RunEncoder more(RunRecord{11, 640});
  more.Add({12, 641});
  more.Add({400, 3});
  blob += more.Take();
  std::vector<RunRecord> decoded;
  ASSERT_TRUE(DecodeRun(10, blob, &decoded));
  EXPECT_EQ(decoded, (std::vector<RunRecord>{
                         {10, 500}, {11, 640}, {12, 641}, {400, 3}}));
}

TEST(SendRunsTest, SmallStepsTakeFewBytes) {
  // Ids counted up, message ids close together: two bytes a record.
  std::vector<RunRecord> records;
  for (int i = 0; i < 128; ++i) records.push_back({1000 + i, 90000 + 40 * i});
  EXPECT_LE(Encode(records).size() - Encode({records.front()}).size(),
            127u * 2);
}

TEST(SendRunsTest, MalformedBlobsAreRefused) {
  std::vector<RunRecord> decoded;
  const std::string good = Encode({{1, 10}, {2, 11}});
  for (size_t cut = 1; cut < good.size(); ++cut) {
    // Cut inside a record: a varint or a record's second half missing.
    const std::string part = good.substr(0, cut);
    if (cut == 2) continue;  // a whole first record is a valid run
    EXPECT_FALSE(DecodeRun(1, part, &decoded)) << cut;
  }
  EXPECT_FALSE(DecodeRun(1, std::string("\xff", 1), &decoded));
  EXPECT_FALSE(
      DecodeRun(1, std::string(11, '\x80') + '\x01' + '\x00', &decoded))
      << "a varint longer than 64 bits";
  EXPECT_FALSE(DecodeRun(1, std::string("\x01\x00", 2), &decoded))
      << "the first record is not the run's first id";
  EXPECT_FALSE(DecodeRun(1, std::string("\x00\x00\x00\x00", 4), &decoded))
      << "an id twice";
  // A step that wraps past the largest id.
  RunEncoder wrap(RunRecord{kMax, 0});
  wrap.Add({kMin, 0});  // the encoder trusts its caller
  EXPECT_FALSE(
      DecodeRun(kMax, std::string("\x00\x00", 2) + wrap.Take(), &decoded));
  EXPECT_TRUE(DecodeRun(1, "", &decoded)) << "no records";
  EXPECT_TRUE(decoded.empty());
}

TEST(SendBatchesTest, RecordsRoundTrip) {
  const std::vector<SendRecord> records = {
      {7, 1, 100, 1'700'000'000'000},
      {3, kMax, 101, 1'700'000'000'000},
      {kMax, kMin, 99, 0},
      {kMin, -1, kMin, -5},
      {7, 2, kMax, kMax},
  };
  BatchEncoder encoder;
  for (const SendRecord& r : records) encoder.Add(r);
  std::vector<SendRecord> decoded = {{1, 1, 1, 1}};
  ASSERT_TRUE(DecodeBatch(encoder.bytes(), &decoded));
  ASSERT_EQ(decoded.size(), records.size() + 1) << "appended";
  EXPECT_EQ(std::vector<SendRecord>(decoded.begin() + 1, decoded.end()),
            records);
}

TEST(SendBatchesTest, MalformedBlobsAreRefused) {
  BatchEncoder encoder;
  encoder.Add({1, 2, 3, 4});
  encoder.Add({5, 6, 7, 8});
  const std::string good = encoder.bytes();
  ASSERT_EQ(good.size(), 8u) << "a byte a field here";
  std::vector<SendRecord> decoded;
  for (size_t cut = 1; cut < good.size(); ++cut) {
    if (cut == 4) continue;  // one whole record
    decoded.clear();
    EXPECT_FALSE(DecodeBatch(good.substr(0, cut), &decoded)) << cut;
  }
  decoded.clear();
  EXPECT_FALSE(DecodeBatch(std::string(12, '\x80'), &decoded));
  decoded.clear();
  EXPECT_TRUE(DecodeBatch("", &decoded));
  EXPECT_TRUE(decoded.empty());
}

TEST(NoticeOpsTest, OperationsRoundTrip) {
  const std::vector<NoticeOp> ops = {
      {true, 7, Notice{NoticeKind::kDelivered, 42, "Zoë 你好 🌍 שלום", 9}},
      {false, 7, Notice{NoticeKind::kDelivered, 42, "", 0}},
      {true, kMax, Notice{NoticeKind::kUndeliverable, kMin, "", UINT64_MAX}},
  };
  std::string blob;
  for (const NoticeOp& op : ops) AppendNoticeOp(blob, op);
  std::vector<NoticeOp> decoded;
  ASSERT_TRUE(DecodeNoticeOps(blob, &decoded));
  ASSERT_EQ(decoded.size(), ops.size());
  for (size_t i = 0; i < ops.size(); ++i) {
    EXPECT_EQ(decoded[i].add, ops[i].add) << i;
    EXPECT_EQ(decoded[i].account_id, ops[i].account_id) << i;
    EXPECT_EQ(decoded[i].notice.message_id, ops[i].notice.message_id) << i;
    if (!ops[i].add) continue;
    EXPECT_EQ(decoded[i].notice.kind, ops[i].notice.kind) << i;
    EXPECT_EQ(decoded[i].notice.peer_name, ops[i].notice.peer_name) << i;
    EXPECT_EQ(decoded[i].notice.client_msg_id, ops[i].notice.client_msg_id)
        << i;
  }
}

TEST(NoticeOpsTest, MalformedBlobsAreRefused) {
  std::string good;
  AppendNoticeOp(good, {true, 1, Notice{NoticeKind::kDelivered, 2, "bob", 3}});
  std::vector<NoticeOp> decoded;
  for (size_t cut = 1; cut < good.size(); ++cut) {
    EXPECT_FALSE(DecodeNoticeOps(good.substr(0, cut), &decoded)) << cut;
  }
  EXPECT_FALSE(DecodeNoticeOps("\x03\x02\x04", &decoded)) << "no such op";
  EXPECT_FALSE(
      DecodeNoticeOps(std::string("\x01\x02\x04\x07\x00\x00", 6), &decoded))
      << "no such kind";
  EXPECT_FALSE(
      DecodeNoticeOps(std::string("\x01\x02\x04\x01\x00\x7f", 6), &decoded))
      << "a name longer than the blob";
}

TEST(MessageOpsTest, OperationsRoundTrip) {
  QueuedMessage m;
  m.id = 77;
  m.sender_id = kMax;
  m.sender_name = "Zoë";
  m.recipient_id = 3;
  m.recipient_name = "محمد";
  m.client_msg_id = UINT64_MAX;
  m.body = std::string("ça va? 你好 👋 \0 end", 22);
  m.sent_at_ms = -5;
  std::string blob;
  AppendMessageAdd(blob, m);
  const size_t first = blob.size();
  AppendMessageRemove(blob, kMin);
  std::vector<MessageOp> decoded;
  ASSERT_TRUE(DecodeMessageOps(blob, &decoded));
  ASSERT_EQ(decoded.size(), 2u);
  EXPECT_TRUE(decoded[0].add);
  EXPECT_EQ(decoded[0].message.id, m.id);
  EXPECT_EQ(decoded[0].message.sender_id, m.sender_id);
  EXPECT_EQ(decoded[0].message.sender_name, m.sender_name);
  EXPECT_EQ(decoded[0].message.recipient_id, m.recipient_id);
  EXPECT_EQ(decoded[0].message.recipient_name, m.recipient_name);
  EXPECT_EQ(decoded[0].message.client_msg_id, m.client_msg_id);
  EXPECT_EQ(decoded[0].message.body, m.body);
  EXPECT_EQ(decoded[0].message.sent_at_ms, m.sent_at_ms);
  EXPECT_FALSE(decoded[1].add);
  EXPECT_EQ(decoded[1].message.id, kMin);
  // Cut anywhere inside, the blob is refused.
  for (size_t cut = 1; cut < blob.size(); ++cut) {
    if (cut == first) continue;  // the first operation whole
    std::vector<MessageOp> part;
    EXPECT_FALSE(DecodeMessageOps(blob.substr(0, cut), &part)) << cut;
  }
}

}  // namespace
}  // namespace zchat
