// Batch: the transaction scope and outbox, and its dependency rule, over a
// real SQLite store. The commit is failed for real (FullDisk).
#include "broker/batch.h"

#include <gtest/gtest.h>

#include "messages/codec.h"
#include "tests/support/full_disk.h"
#include "tests/support/temp_dir.h"

namespace zchat {
namespace {

using testing::FullDisk;
using testing::TempDir;

class BatchTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto store = Store::Open(dir_.File("batch.db"), StoreOptions{});
    ASSERT_TRUE(store.ok()) << store.status().ToString();
    store_ = std::move(*store);
  }

  static RequestInfo Info(const std::string& peer, uint64_t req,
                          MessageType type = MessageType::kPing) {
    return RequestInfo{peer, req, type, 0};
  }

  // A request that writes (creates an account) and replies.
  Verdict Write(Responder& out, const std::string& name) {
    Result<int64_t> id = store_->CreateAccount(name, name, "hash", 0);
    if (!id.ok()) return id.status();
    out.Reply(CreateSuccess{name});
    return Verdict::Accepted();
  }

  static Message DecodeOrDie(const OutFrame& f) {
    Result<Message> m = Decode(f.frame);
    EXPECT_TRUE(m.ok());
    return m.ok() ? *m : Message{};
  }

  TempDir dir_;
  std::unique_ptr<Store> store_;
};

TEST_F(BatchTest, CommittedBatchSendsEverythingInOrder) {
  Batch batch(*store_);
  batch.Begin();
  batch.Run(Info("a", 1), [&](Responder& out) { return Write(out, "ann"); });
  batch.Run(Info("b", 2), [&](Responder& out) {
    out.Push("a", Pong{});
    out.Reply(Pong{});
    return Verdict::Accepted();
  });
  batch.EmitIndependent("c", Encode(Message{0, Pong{}}));
  std::vector<OutFrame> out = batch.Commit();
  ASSERT_EQ(out.size(), 4u);
  EXPECT_EQ(out[0].routing_id, "a");
  EXPECT_EQ(out[1].routing_id, "a");
  EXPECT_EQ(out[2].routing_id, "b");
  EXPECT_EQ(DecodeOrDie(out[2]).request_id, 2u);
  EXPECT_EQ(out[3].routing_id, "c");
  EXPECT_TRUE(store_->FindAccount("ann")->has_value());
}

TEST_F(BatchTest, FailedCommitRefusesWhatDependedOnIt) {
  Batch batch(*store_);
  int undone_before = 0, undone_after = 0;
  {
    FullDisk full;
    batch.Begin();
    // Before any write, writing nothing: stands.
    batch.Run(Info("early", 1), [&](Responder& out) {
      out.OnRollback([&] { ++undone_before; });
      out.Reply(Pong{});
      return Verdict::Accepted();
    });
    batch.Run(Info("w", 2, MessageType::kCreateAccount),
              [&](Responder& out) { return Write(out, "bob"); });
    EXPECT_TRUE(batch.dirty());
    // After the write, a reader: depends, and its push must not leave.
    batch.Run(Info("late", 3, MessageType::kFetchMessages),
              [&](Responder& out) {
                out.OnRollback([&] { ++undone_after; });
                out.Push("late", DistributeMessage{1, "bob", "x", 0});
                out.Reply(FetchResult{1, 0});
                return Verdict::Accepted();
              });
    batch.EmitIndependent("any", Encode(Message{0, Pong{}}));
  }
  std::vector<OutFrame> out;
  {
    FullDisk full;
    out = batch.Commit();
  }
  EXPECT_EQ(undone_before, 0) << "an independent request is not undone";
  EXPECT_EQ(undone_after, 1) << "a dependent request is undone";
  ASSERT_EQ(out.size(), 4u);
  EXPECT_EQ(out[0].routing_id, "early");
  EXPECT_TRUE(std::holds_alternative<Pong>(DecodeOrDie(out[0]).body));
  EXPECT_EQ(out[1].routing_id, "any");
  // The dependent requests, each with its own typed storage refusal.
  EXPECT_EQ(out[2].routing_id, "w");
  Message w = DecodeOrDie(out[2]);
  ASSERT_TRUE(std::holds_alternative<CreateFailure>(w.body));
  EXPECT_EQ(std::get<CreateFailure>(w.body).code, ErrorCode::kStorage);
  EXPECT_EQ(out[3].routing_id, "late");
  Message late = DecodeOrDie(out[3]);
  EXPECT_EQ(late.request_id, 3u);
  ASSERT_TRUE(std::holds_alternative<Error>(late.body));
  EXPECT_EQ(std::get<Error>(late.body).code, ErrorCode::kStorage);
  EXPECT_FALSE(store_->FindAccount("bob")->has_value());
}

TEST_F(BatchTest, RefusalReplacesFramesWithTheMappedReply) {
  Batch batch(*store_);
  batch.Begin();
  batch.Run(Info("a", 5, MessageType::kDeletionRequest), [&](Responder& out) {
    out.Reply(Pong{});  // dropped: the refusal is the answer
    return Verdict(Status(ErrorCode::kHasPending, "2 waiting")).WithPending(2);
  });
  std::vector<OutFrame> out = batch.Commit();
  ASSERT_EQ(out.size(), 1u);
  Message m = DecodeOrDie(out[0]);
  EXPECT_EQ(m.request_id, 5u);
  ASSERT_TRUE(std::holds_alternative<DeletionFailure>(m.body));
  EXPECT_EQ(std::get<DeletionFailure>(m.body).code, ErrorCode::kHasPending);
  EXPECT_EQ(std::get<DeletionFailure>(m.body).pending, 2u);
}

TEST_F(BatchTest, DispatchRefusalsAreErrorsWhateverTheType) {
  Batch batch(*store_);
  batch.Begin();
  batch.Run(Info("a", 6, MessageType::kSendMessage), [&](Responder&) {
    return Verdict::Refused(Status(ErrorCode::kNotLoggedIn, "log in"),
                            Verdict::Stage::kDispatch);
  });
  std::vector<OutFrame> out = batch.Commit();
  ASSERT_EQ(out.size(), 1u);
  EXPECT_TRUE(std::holds_alternative<Error>(DecodeOrDie(out[0]).body));
}

TEST_F(BatchTest, DeferredRequestGetsNothingWhenTheCommitFails) {
  Batch batch(*store_);
  std::vector<OutFrame> out;
  {
    FullDisk full;
    batch.Begin();
    batch.Run(Info("w", 1, MessageType::kCreateAccount),
              [&](Responder& out) { return Write(out, "carol"); });
    batch.Run(Info("d", 2, MessageType::kLoginRequest), [&](Responder&) {
      return Verdict::Deferred(HashJob{}, PendingHash{});
    });
    out = batch.Commit();
  }
  ASSERT_EQ(out.size(), 1u) << "only the writer's refusal";
  EXPECT_EQ(out[0].routing_id, "w");
}

// A write that fails mid-batch undoes the batch so far; later requests run
// in a new transaction and commit.
TEST_F(BatchTest, FailedWriteFailsTheBatchSoFarAndTheRestGoesOn) {
  Batch batch(*store_);
  batch.Begin();
  batch.Run(Info("a", 1, MessageType::kCreateAccount),
            [&](Responder& out) { return Write(out, "dave"); });
  batch.Run(Info("b", 2, MessageType::kCreateAccount), [&](Responder& out) {
    Verdict o = Write(out, "erin");  // a write, then a failure
    return o.refused() ? o : Verdict(Status(ErrorCode::kStorage, "I/O"));
  });
  batch.Run(Info("c", 3, MessageType::kCreateAccount),
            [&](Responder& out) { return Write(out, "fred"); });
  std::vector<OutFrame> out = batch.Commit();
  ASSERT_EQ(out.size(), 3u);
  EXPECT_EQ(out[0].routing_id, "a");
  EXPECT_EQ(std::get<CreateFailure>(DecodeOrDie(out[0]).body).code,
            ErrorCode::kStorage);
  EXPECT_EQ(out[1].routing_id, "b");
  EXPECT_EQ(out[2].routing_id, "c");
  EXPECT_TRUE(std::holds_alternative<CreateSuccess>(DecodeOrDie(out[2]).body));
  EXPECT_FALSE(store_->FindAccount("dave")->has_value());
  EXPECT_FALSE(store_->FindAccount("erin")->has_value());
  EXPECT_TRUE(store_->FindAccount("fred")->has_value());
}

// A request marked alone runs in a transaction of its own: what the batch
// wrote before it is committed first, and it is committed before the next
// request. So a failed commit at the batch's end refuses neither.
TEST_F(BatchTest, AnAloneRequestIsCommittedOnItsOwn) {
  Batch batch(*store_);
  batch.Begin();
  batch.Run(Info("a", 1, MessageType::kCreateAccount),
            [&](Responder& out) { return Write(out, "gail"); });
  RequestInfo alone = Info("b", 2, MessageType::kCreateAccount);
  alone.alone = true;
  batch.Run(alone, [&](Responder& out) { return Write(out, "hank"); });
  EXPECT_FALSE(batch.dirty()) << "committed before the next request";
  std::vector<OutFrame> out;
  {
    FullDisk full;
    batch.Run(Info("c", 3, MessageType::kCreateAccount),
              [&](Responder& out) { return Write(out, "ivy"); });
    out = batch.Commit();
  }
  ASSERT_EQ(out.size(), 3u);
  EXPECT_EQ(out[0].routing_id, "a");
  EXPECT_TRUE(std::holds_alternative<CreateSuccess>(DecodeOrDie(out[0]).body));
  EXPECT_EQ(out[1].routing_id, "b");
  EXPECT_TRUE(std::holds_alternative<CreateSuccess>(DecodeOrDie(out[1]).body));
  EXPECT_EQ(out[2].routing_id, "c");
  Message c = DecodeOrDie(out[2]);
  ASSERT_TRUE(std::holds_alternative<CreateFailure>(c.body));
  EXPECT_EQ(std::get<CreateFailure>(c.body).code, ErrorCode::kStorage);
  EXPECT_TRUE(store_->FindAccount("gail")->has_value());
  EXPECT_TRUE(store_->FindAccount("hank")->has_value());
  EXPECT_FALSE(store_->FindAccount("ivy")->has_value());
}

// Metrics count at commit: outcomes by type and the events requests noted;
// a failed batch counts its dependent requests as storage and none of their
// events.
TEST_F(BatchTest, MetricsCountOutcomesAndEventsAtCommit) {
  Metrics metrics;
  Batch batch(*store_, &metrics);
  batch.Begin();
  batch.Run(Info("a", 1, MessageType::kSendMessage), [&](Responder& out) {
    out.Count(MessageEvent::kAccepted);
    out.Count(MessageEvent::kQueued);
    return Write(out, "ann");
  });
  batch.Run(Info("b", 2, MessageType::kSendMessage), [&](Responder& out) {
    out.Count(MessageEvent::kAccepted);  // dropped: the request is refused
    return Verdict::Refused(
        Status(ErrorCode::kUnknownRecipient, "no account named 'x'"));
  });
  // Not committed yet: nothing counted.
  EXPECT_EQ(metrics.requests(11, ErrorCode::kOk), 0u);
  (void)batch.Commit();
  EXPECT_EQ(metrics.requests(11, ErrorCode::kOk), 1u);
  EXPECT_EQ(metrics.requests(11, ErrorCode::kUnknownRecipient), 1u);
  EXPECT_EQ(
      metrics.messages[static_cast<size_t>(MessageEvent::kAccepted)].value(),
      1u);
  EXPECT_EQ(
      metrics.messages[static_cast<size_t>(MessageEvent::kQueued)].value(), 1u);
  EXPECT_EQ(metrics.batch_requests.count(), 1u);
  EXPECT_EQ(metrics.commit_seconds.count(), 1u);

  {
    FullDisk full;
    batch.Begin();
    batch.Run(Info("c", 3, MessageType::kSendMessage), [&](Responder& out) {
      out.Count(MessageEvent::kAccepted);
      return Write(out, std::string(4096, 'z'));
    });
    (void)batch.Commit();
  }
  EXPECT_EQ(metrics.requests(11, ErrorCode::kOk), 1u);
  EXPECT_EQ(metrics.requests(11, ErrorCode::kStorage), 1u);
  EXPECT_EQ(
      metrics.messages[static_cast<size_t>(MessageEvent::kAccepted)].value(),
      1u);
  EXPECT_EQ(metrics.commit_seconds.count(), 1u);  // only commits that held
}

// The frames of a batch go out grouped by connection: each connection's in
// their order, connections in the order of their first frame, nothing lost
// or repeated. Routing ids here are bytes, as libzmq's are.
TEST(GroupByConnectionTest, KeepsEachConnectionsOrder) {
  const std::string a{'\0', '\x01', 'a'}, b{'\0', '\x01', 'b'},
      c{'\0', '\xff', 'c'};
  std::vector<OutFrame> frames = {{b, "b1"}, {a, "a1"}, {b, "b2"}, {c, "c1"},
                                  {a, "a2"}, {b, "b3"}, {c, "c2"}, {a, "a3"}};
  std::vector<std::string> sent;
  for (const OutFrame* f : GroupByConnection(frames)) sent.push_back(f->frame);
  EXPECT_EQ(sent, (std::vector<std::string>{"b1", "b2", "b3", "a1", "a2", "a3",
                                            "c1", "c2"}));
  // Short batches, and one connection only, as they came.
  std::vector<OutFrame> two = {{b, "x"}, {a, "y"}};
  std::vector<OutFrame> one = {{c, "1"}, {c, "2"}, {c, "3"}};
  std::vector<std::string> got;
  for (auto* batch : {&two, &one}) {
    for (const OutFrame* f : GroupByConnection(*batch)) got.push_back(f->frame);
  }
  EXPECT_EQ(got, (std::vector<std::string>{"x", "y", "1", "2", "3"}));
  std::vector<OutFrame> none;
  EXPECT_TRUE(GroupByConnection(none).empty());
}

}  // namespace
}  // namespace zchat
