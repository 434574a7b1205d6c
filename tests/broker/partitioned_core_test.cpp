// The broker over a database in 3 partitions, its sends and receipts run on
// 3 threads (BrokerCore::RunInPartitions): what running a batch partition
// by partition must keep (each connection's requests in order, replies in
// order, each pair's messages in order, the queue limit) and what it
// changes (a failed commit fails only its partition's requests). The other
// handler tests run this way too (broker_test_partitioned).
#include "tests/support/core_fixture.h"
#include "tests/support/full_disk.h"

namespace zchat {
namespace {

using testing::As;

class PartitionedCoreTest : public testing::CoreTest {
 protected:
  PartitionedCoreTest() { partitions_ = 3; }

  // Accounts 1..n ("u1"...) on connections "c1"..., logged in: account i
  // is in partition AccountPartition(i, 3) (1..6: 2, 1, 0, 1, 2, 2).
  void JoinAll(int n) {
    for (int i = 1; i <= n; ++i) {
      Join("c" + std::to_string(i), "u" + std::to_string(i));
    }
  }
};

TEST_F(PartitionedCoreTest, ABatchOfSendsAndReceiptsOverPartitionsKeepsOrder) {
  constexpr int kUsers = 6, kEach = 4;
  JoinAll(kUsers);
  const std::vector<std::string> bodies = {"héllo", "مرحبا", "日本語 🎉",
                                           "שלום"};
  // Every user sends kEach messages to the next one, all in one batch.
  Batch([&] {
    for (int k = 0; k < kEach; ++k) {
      for (int i = 1; i <= kUsers; ++i) {
        const std::string to = "u" + std::to_string(i % kUsers + 1);
        core_->OnFrame("c" + std::to_string(i),
                       Encode({static_cast<uint64_t>(100 + k),
                               SendMessage{to, bodies[static_cast<size_t>(k)],
                                           static_cast<uint64_t>(k + 1)}}));
      }
    }
  });
  std::map<int, std::vector<uint64_t>> sent;  // by sender: message ids
  for (int i = 1; i <= kUsers; ++i) {
    std::vector<Message> got = Drain("c" + std::to_string(i));
    std::vector<uint64_t> replies;
    std::vector<DistributeMessage> pushed;
    for (Message& m : got) {
      if (const auto* p = As<MessagePending>(m)) {
        replies.push_back(m.request_id);
        sent[i].push_back(p->message_id);
        EXPECT_EQ(
            p->message_id % 3,
            static_cast<uint64_t>(PartitionedStore::AccountPartition(i, 3)))
            << "a message lives in its sender's partition";
      } else if (const auto* d = As<DistributeMessage>(m)) {
        pushed.push_back(*d);
      } else {
        ADD_FAILURE() << "unexpected " << MessageTypeName(TypeOf(m.body));
      }
    }
    EXPECT_EQ(replies, (std::vector<uint64_t>{100, 101, 102, 103}))
        << "replies to u" << i << " in request order";
    ASSERT_EQ(pushed.size(), static_cast<size_t>(kEach)) << "to u" << i;
    for (int k = 0; k < kEach; ++k) {
      EXPECT_EQ(pushed[static_cast<size_t>(k)].body,
                bodies[static_cast<size_t>(k)]);
      EXPECT_EQ(pushed[static_cast<size_t>(k)].sender,
                "u" + std::to_string((i + kUsers - 2) % kUsers + 1));
    }
  }
  // Every recipient confirms everything in one batch: each sender hears of
  // each of its messages once.
  uint64_t req = 200;
  Batch([&] {
    for (int i = 1; i <= kUsers; ++i) {
      const int to = i % kUsers + 1;
      for (uint64_t id : sent[i]) {
        core_->OnFrame("c" + std::to_string(to),
                       Encode({req++, MessageReceipt{id}}));
      }
    }
  });
  for (int i = 1; i <= kUsers; ++i) {
    std::vector<MessageSuccess> ok =
        PushesOf<MessageSuccess>("c" + std::to_string(i));
    ASSERT_EQ(ok.size(), static_cast<size_t>(kEach)) << "u" << i;
    for (int k = 0; k < kEach; ++k) {
      EXPECT_EQ(ok[static_cast<size_t>(k)].message_id,
                sent[i][static_cast<size_t>(k)]);
    }
    EXPECT_TRUE(Drain("c" + std::to_string(i)).empty());
  }
}

TEST_F(PartitionedCoreTest, AConnectionsOtherRequestsKeepTheirPlace) {
  JoinAll(3);
  const uint64_t first = SendText("c1", "u3", "one ✓");
  const uint64_t second = SendText("c2", "u3", "two ✓");
  Pushes("c3");
  // u3 confirms the first, fetches, confirms the second: the fetch (run on
  // the loop thread) sees the second and not the first; the receipt after
  // it (in another partition) waits for it.
  Batch([&] {
    core_->OnFrame("c3", Encode({6, MessageReceipt{first}}));
    core_->OnFrame("c3", Encode({7, FetchMessages{}}));
    core_->OnFrame("c3", Encode({9, MessageReceipt{second}}));
    core_->OnFrame("c3", Encode({10, Ping{}}));
  });
  std::vector<Message> got = Drain("c3");
  ASSERT_EQ(got.size(), 3u);
  ASSERT_NE(As<DistributeMessage>(got[0]), nullptr);
  EXPECT_EQ(As<DistributeMessage>(got[0])->message_id, second);
  ASSERT_NE(As<FetchResult>(got[1]), nullptr);
  EXPECT_EQ(got[1].request_id, 7u);
  EXPECT_EQ(As<FetchResult>(got[1])->count, 1u);
  EXPECT_NE(As<Pong>(got[2]), nullptr);
  EXPECT_EQ(PushesOf<MessageSuccess>("c1").size(), 1u);
  EXPECT_EQ(PushesOf<MessageSuccess>("c2").size(), 1u);
  EXPECT_EQ(Expect<FetchResult>("c3", FetchMessages{}).count, 0u);
}

TEST_F(PartitionedCoreTest, TheQueueLimitHoldsForSendsOnSeveralThreads) {
  config_.max_queue_per_user = 3;
  Restart();
  JoinAll(6);
  CreateUser("r", "offline");
  // Six senders in three partitions, two sends each, in one batch.
  Batch([&] {
    for (int k = 0; k < 2; ++k) {
      for (int i = 1; i <= 6; ++i) {
        core_->OnFrame("c" + std::to_string(i),
                       Encode({static_cast<uint64_t>(10 + k),
                               SendMessage{"offline", "✉",
                                           static_cast<uint64_t>(k + 1)}}));
      }
    }
  });
  int accepted = 0, full = 0;
  for (int i = 1; i <= 6; ++i) {
    for (const Message& m : Drain("c" + std::to_string(i))) {
      if (As<MessagePending>(m)) ++accepted;
      if (const auto* f = As<MessageFailure>(m)) {
        EXPECT_EQ(f->code, ErrorCode::kQueueFull);
        ++full;
      }
    }
  }
  EXPECT_EQ(accepted, 3);
  EXPECT_EQ(full, 9);
  Login("r", "offline");
  EXPECT_EQ(Expect<FetchResult>("r", FetchMessages{}).count, 3u);
}

// A batch whose partition fails to commit fails that partition's requests;
// the rest of the batch, which did not read them, stands.
TEST_F(PartitionedCoreTest, AFailedCommitFailsOnlyItsPartitionsRequests) {
  JoinAll(2);
  {
    testing::FullDisk full;
    Batch([&] {
      core_->OnFrame("c1", Encode({50, SendMessage{"u2", "ghost 👻", 1}}));
      core_->OnFrame("c2", Encode({51, FetchMessages{}}));
    });
  }
  std::vector<Message> to_sender = Drain("c1");
  ASSERT_EQ(to_sender.size(), 1u);
  ASSERT_NE(As<MessageFailure>(to_sender[0]), nullptr);
  EXPECT_EQ(As<MessageFailure>(to_sender[0])->code, ErrorCode::kStorage);
  // The fetch ran after the send's partition had rolled back: it saw no
  // message, live or queued.
  std::vector<Message> to_recipient = Drain("c2");
  ASSERT_EQ(to_recipient.size(), 1u);
  ASSERT_NE(As<FetchResult>(to_recipient[0]), nullptr);
  EXPECT_EQ(As<FetchResult>(to_recipient[0])->count, 0u);
  const uint64_t id = SendText("c1", "u2", "real");
  std::vector<DistributeMessage> got = PushesOf<DistributeMessage>("c2");
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].message_id, id);
}

TEST_F(PartitionedCoreTest, ReceiptsAnswerAsOnOneThread) {
  JoinAll(3);
  const uint64_t id = SendText("c1", "u2", "for u2 only");
  Pushes("c2");
  Batch([&] {
    core_->OnFrame("c3", Encode({5, MessageReceipt{id}}));
    core_->OnFrame("c3", Encode({6, MessageReceipt{id + 3 * 1'000'000}}));
    core_->OnFrame("c2", Encode({7, MessageReceipt{id}}));
    core_->OnFrame("c2", Encode({8, MessageReceipt{id}}));  // again
  });
  std::vector<Message> to_other = Drain("c3");
  ASSERT_EQ(to_other.size(), 2u);
  EXPECT_EQ(to_other[0].request_id, 5u);
  EXPECT_EQ(As<Error>(to_other[0])->code, ErrorCode::kNotYours);
  EXPECT_EQ(to_other[1].request_id, 6u);
  EXPECT_EQ(As<Error>(to_other[1])->code, ErrorCode::kUnknownMessage);
  EXPECT_TRUE(Drain("c2").empty()) << "accepted receipts get no reply";
  EXPECT_EQ(PushesOf<MessageSuccess>("c1").size(), 1u);
}

// A tick leaves pruning to the partitions' threads: it marks every
// partition due and begins no partition's transaction on the loop thread; a
// partition prunes on its own thread at its next run, before its requests.
// A partition that had no request since prunes at the next tick.
TEST_F(PartitionedCoreTest, ATickLeavesPruningToThePartitionsThreads) {
  config_.dedup_window_ms = 10'000;
  Restart();
  auto* parts = dynamic_cast<PartitionedStore*>(store_.get());
  ASSERT_NE(parts, nullptr);
  JoinAll(2);  // u1 (account 1) in partition 2, u2 (account 2) in 1
  const std::string text = "née 新 🌱 חדש";
  const uint64_t first =
      Expect<MessagePending>("c1", SendMessage{"u2", text, 77}).message_id;
  Expect<MessagePending>("c2", SendMessage{"u1", "שלום 👋", 78});
  Drain("c1");  // u2's message
  now_ += config_.dedup_window_ms + 1;
  const auto recorded = [&](int64_t sender, uint64_t client_msg_id) {
    Result<std::optional<int64_t>> r = store_->FindSend(sender, client_msg_id);
    EXPECT_TRUE(r.ok()) << r.status().ToString();
    return r.ok() && r->has_value();
  };

  Batch([&] {
    core_->OnTick();
    EXPECT_TRUE(parts->Untouched())
        << "the tick pruned on the loop thread, in the batch's transaction";
  });
  EXPECT_TRUE(recorded(1, 77));
  EXPECT_TRUE(recorded(2, 78));

  // u1 retries its send after the window: its partition prunes first, on
  // its thread, so the retry is a new message.
  const uint64_t in_partitions = core_->metrics().partition_requests.value();
  Batch([&] {
    core_->OnFrame("c1", Encode({500, SendMessage{"u2", text, 77}}));
  });
  EXPECT_EQ(core_->metrics().partition_requests.value(), in_partitions + 1)
      << "the send ran on its partition's thread";
  std::vector<Message> got = Drain("c1");
  ASSERT_EQ(got.size(), 1u);
  ASSERT_NE(As<MessagePending>(got[0]), nullptr);
  EXPECT_NE(As<MessagePending>(got[0])->message_id, first);

  // u2's partition had no request: pruned at the next tick.
  EXPECT_TRUE(recorded(2, 78));
  Tick();
  EXPECT_FALSE(recorded(2, 78));
}

// The frames a batch gathers keep their slots' buffers for the next batch
// (BrokerCore::RunArrived): a later, smaller batch runs only its own
// frames, each with its own bytes, whether the slot held a longer frame
// or one too large to keep.
TEST_F(PartitionedCoreTest, ABatchRunsOnlyItsOwnGatheredFrames) {
  JoinAll(5);
  std::string long_body;
  while (long_body.size() < 3000) long_body += "Zoë 東京 🎉 مرحبا ";
  std::string huge_body;
  while (huge_body.size() < 9000) huge_body += "שלום ✓ ";
  Batch([&] {
    for (int i = 1; i <= 5; ++i) {
      core_->OnFrame("c" + std::to_string(i),
                     Encode({static_cast<uint64_t>(i),
                             SendMessage{"u" + std::to_string(i % 5 + 1),
                                         i == 1 ? huge_body : long_body,
                                         static_cast<uint64_t>(i)}}));
    }
  });
  for (int i = 1; i <= 5; ++i) {
    const std::string peer = "c" + std::to_string(i);
    std::vector<DistributeMessage> got = PushesOf<DistributeMessage>(peer);
    ASSERT_EQ(got.size(), 1u) << peer;
    EXPECT_EQ(got[0].body, i == 2 ? huge_body : long_body) << peer;
    Drain(peer);
  }
  // One short frame in the slot of the huge one, one in a long one's.
  Batch([&] {
    core_->OnFrame("c1", Encode({20, SendMessage{"u2", "é", 20}}));
    core_->OnFrame("c2", Encode({21, Ping{}}));
  });
  std::vector<Message> c1 = Drain("c1");
  ASSERT_EQ(c1.size(), 1u);
  EXPECT_EQ(c1[0].request_id, 20u);
  EXPECT_NE(As<MessagePending>(c1[0]), nullptr);
  std::vector<DistributeMessage> pushed = PushesOf<DistributeMessage>("c2");
  ASSERT_EQ(pushed.size(), 1u);
  EXPECT_EQ(pushed[0].body, "é");
  std::vector<Message> c2 = Drain("c2");
  ASSERT_EQ(c2.size(), 1u);
  EXPECT_EQ(c2[0].request_id, 21u);
  EXPECT_NE(As<Pong>(c2[0]), nullptr);
  for (int i = 3; i <= 5; ++i) {
    EXPECT_TRUE(Drain("c" + std::to_string(i)).empty())
        << "the earlier batch's frames in later slots ran again for c" << i;
  }
}

}  // namespace
}  // namespace zchat
