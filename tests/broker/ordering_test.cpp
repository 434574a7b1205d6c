// The broker's promises about batches and pipelining, each a defect that
// the broker once had:
//  - a batch whose commit fails sends nothing that read its writes;
//  - requests of one connection take effect, and are answered, in the order
//    sent, even when one waits for password hashing;
//  - a second LOGIN_REQUEST on a connection gets one answer, whatever the
//    timing.
#include "tests/support/core_fixture.h"
#include "tests/support/full_disk.h"

namespace zchat {
namespace {

using testing::As;
using testing::CoreTest;
using testing::FullDisk;

// --- A failed commit ---------------------------------------------------------

// [alice: SEND to bob] then [bob: FETCH] in one batch whose commit fails:
// bob must not see the message that never existed, neither live nor fetched.
TEST_F(CoreTest, FetchInAFailedBatchSendsNothing) {
  Join("a", "alice");
  Join("b", "bob");
  {
    FullDisk full;
    Batch([&] {
      core_->OnFrame("a", Encode({50, SendMessage{"bob", "ghost 👻", 1}}));
      core_->OnFrame("b", Encode({51, FetchMessages{}}));
    });
  }
  std::vector<Message> to_a = Drain("a");
  ASSERT_EQ(to_a.size(), 1u);
  ASSERT_NE(As<MessageFailure>(to_a[0]), nullptr);
  EXPECT_EQ(As<MessageFailure>(to_a[0])->code, ErrorCode::kStorage);
  EXPECT_EQ(As<MessageFailure>(to_a[0])->client_msg_id, 1u);
  std::vector<Message> to_b = Drain("b");
  ASSERT_EQ(to_b.size(), 1u) << "no DISTRIBUTE_MESSAGE, one reply";
  EXPECT_EQ(to_b[0].request_id, 51u);
  ASSERT_NE(As<Error>(to_b[0]), nullptr);
  EXPECT_EQ(As<Error>(to_b[0])->code, ErrorCode::kStorage);
  // Nothing was stored; the sessions still stand; the send works now.
  EXPECT_EQ(Expect<FetchResult>("b", FetchMessages{}).count, 0u);
  uint64_t id = SendText("a", "bob", "real");
  auto got = PushesOf<DistributeMessage>("b");
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].message_id, id);
  EXPECT_EQ(got[0].body, "real");
}

// Live messages waiting in a failed batch for a batch_pushes session
// (coalesced at the commit) leave with nothing: the session sees none of
// them, and the next batch's message alone.
TEST_F(CoreTest, SendsInAFailedBatchPushNothingToABatchPushesSession) {
  Join("a", "alice");
  CreateUser("x", "bob");
  Expect<LoginSuccess>("b",
                       LoginRequest{"bob", "password123", std::nullopt, true});
  {
    FullDisk full;
    Batch([&] {
      core_->OnFrame("a", Encode({70, SendMessage{"bob", "ghost 👻", 1}}));
      core_->OnFrame("a", Encode({71, SendMessage{"bob", "spectre 幽霊", 2}}));
    });
  }
  std::vector<Message> to_a = Drain("a");
  ASSERT_EQ(to_a.size(), 2u);
  for (const Message& m : to_a) {
    ASSERT_NE(As<MessageFailure>(m), nullptr)
        << MessageTypeName(TypeOf(m.body));
  }
  EXPECT_TRUE(Drain("b").empty()) << "no DISTRIBUTE_MESSAGE of the failure";
  const uint64_t id = SendText("a", "bob", "réel");
  const std::vector<DistributeMessage> got = PushesOf<DistributeMessage>("b");
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].message_id, id);
  EXPECT_TRUE(got[0].message_ids.empty());
  EXPECT_EQ(got[0].body, "réel");
}

// A batch-form send in a batch whose commit fails: one MESSAGE_FAILURE
// (storage) naming each of its client_msg_ids, nothing pushed, nothing
// remembered (sent again, they are new messages).
TEST_F(CoreTest, ABatchSendInAFailedBatchFailsWhole) {
  Join("a", "alice");
  Join("b", "bob");
  SendMessage batch;
  batch.recipient = "bob";
  batch.bodies = {"ghost 👻", "spectre 幽霊", "شبح"};
  batch.client_msg_ids = {5, 6, 7};
  {
    FullDisk full;
    Batch([&] { core_->OnFrame("a", Encode({80, batch})); });
  }
  std::vector<Message> to_a = Drain("a");
  ASSERT_EQ(to_a.size(), 1u);
  const MessageFailure* fail = As<MessageFailure>(to_a[0]);
  ASSERT_NE(fail, nullptr) << MessageTypeName(TypeOf(to_a[0].body));
  EXPECT_EQ(fail->code, ErrorCode::kStorage);
  EXPECT_EQ(fail->client_msg_ids, batch.client_msg_ids);
  EXPECT_TRUE(Drain("b").empty()) << "no DISTRIBUTE_MESSAGE of the failure";
  auto pending = Expect<MessagePending>("a", batch);
  ASSERT_EQ(pending.message_ids.size(), 3u);
  const std::vector<DistributeMessage> got = PushesOf<DistributeMessage>("b");
  ASSERT_EQ(got.size(), 3u);
  for (size_t i = 0; i < got.size(); ++i) {
    EXPECT_EQ(got[i].message_id, pending.message_ids[i]);
    EXPECT_EQ(got[i].body, batch.bodies[i]);
  }
}

// A retried send in the failed batch must not be told MESSAGE_PENDING for
// the rolled-back message.
TEST_F(CoreTest, RetryInAFailedBatchIsNotAcknowledged) {
  Join("a", "alice");
  CreateUser("b", "bob");
  {
    FullDisk full;
    Batch([&] {
      core_->OnFrame("a", Encode({60, SendMessage{"bob", "héllo", 9}}));
      core_->OnFrame("a", Encode({61, SendMessage{"bob", "héllo", 9}}));
    });
  }
  std::vector<Message> to_a = Drain("a");
  ASSERT_EQ(to_a.size(), 2u);
  for (const Message& m : to_a) {
    ASSERT_NE(As<MessageFailure>(m), nullptr)
        << MessageTypeName(TypeOf(m.body));
    EXPECT_EQ(As<MessageFailure>(m)->code, ErrorCode::kStorage);
  }
  EXPECT_EQ(to_a[0].request_id, 60u);
  EXPECT_EQ(to_a[1].request_id, 61u);
  // The retry after the failure makes the one real message.
  Expect<MessagePending>("a", SendMessage{"bob", "héllo", 9});
  Login("b", "bob");
  EXPECT_EQ(Expect<FetchResult>("b", FetchMessages{}).count, 1u);
}

// Requests that ran before the batch's first write, and wrote nothing,
// stand when the commit fails; so do refusals of undecodable frames.
TEST_F(CoreTest, RequestsBeforeTheFirstWriteStandWhenTheCommitFails) {
  Join("a", "alice");
  Join("b", "bob");
  SendText("a", "bob", "queued");
  Pushes("b");
  {
    FullDisk full;
    Batch([&] {
      core_->OnFrame("b", Encode({70, FetchMessages{}}));  // reads only
      core_->OnFrame("a", Encode({71, SendMessage{"bob", "new", 2}}));
      core_->OnFrame("b", std::string("\xc1"));  // not MessagePack
    });
  }
  std::vector<Message> to_b = Drain("b");
  ASSERT_EQ(to_b.size(), 3u);
  ASSERT_NE(As<DistributeMessage>(to_b[0]), nullptr);
  EXPECT_EQ(As<DistributeMessage>(to_b[0])->body, "queued");
  ASSERT_NE(As<FetchResult>(to_b[1]), nullptr);
  EXPECT_EQ(As<FetchResult>(to_b[1])->count, 1u);
  ASSERT_NE(As<Error>(to_b[2]), nullptr);
  EXPECT_EQ(As<Error>(to_b[2])->code, ErrorCode::kMalformed);
  std::vector<Message> to_a = Drain("a");
  ASSERT_EQ(to_a.size(), 1u);
  EXPECT_EQ(As<MessageFailure>(to_a[0])->code, ErrorCode::kStorage);
}

// A login whose batch fails is undone: the connection is not logged in,
// whatever the client was told (storage).
TEST_F(CoreTest, LoginInAFailedBatchLeavesTheConnectionAnonymous) {
  CreateUser("a", "alice");
  Join("b", "bob");
  std::string token = Login("t", "alice").token;
  {
    FullDisk full;
    Batch([&] {
      core_->OnFrame("b", Encode({80, SendMessage{"bob", "self", 3}}));
      core_->OnFrame("a",
                     Encode({81, LoginRequest{"alice", std::nullopt, token}}));
    });
  }
  std::vector<Message> to_a = Drain("a");
  ASSERT_EQ(to_a.size(), 1u);
  ASSERT_NE(As<LoginFailure>(to_a[0]), nullptr);
  EXPECT_EQ(As<LoginFailure>(to_a[0])->code, ErrorCode::kStorage);
  EXPECT_EQ(ExpectError("a", FetchMessages{}), ErrorCode::kNotLoggedIn);
  Expect<LoginSuccess>("a", LoginRequest{"alice", std::nullopt, token});
}

// --- Pipelining
// ---------------------------------------------------------------

// CREATE_ACCOUNT, LOGIN_REQUEST and FETCH_MESSAGES sent back to back: each
// takes effect after the one before, and the replies come in that order.
TEST_F(CoreTest, PipelinedRequestsTakeEffectInOrder) {
  Batch([&] {
    core_->OnFrame("p", Encode({1, CreateAccount{"zoë", "password123"}}));
    core_->OnFrame("p", Encode({2, CreateAccount{"zoe", "password123"}}));
    core_->OnFrame(
        "p", Encode({3, LoginRequest{"ZOE", "password123", std::nullopt}}));
    core_->OnFrame("p", Encode({4, FetchMessages{}}));
    core_->OnFrame("p", Encode({5, Ping{}}));
  });
  FinishHashing();
  std::vector<Message> replies = Drain("p");
  ASSERT_EQ(replies.size(), 5u);
  for (size_t i = 0; i < replies.size(); ++i) {
    EXPECT_EQ(replies[i].request_id, i + 1) << "replies in request order";
  }
  ASSERT_NE(As<CreateFailure>(replies[0]), nullptr);
  EXPECT_EQ(As<CreateFailure>(replies[0])->code, ErrorCode::kInvalidUsername);
  EXPECT_NE(As<CreateSuccess>(replies[1]), nullptr);
  ASSERT_NE(As<LoginSuccess>(replies[2]), nullptr);
  EXPECT_EQ(As<LoginSuccess>(replies[2])->username, "zoe");
  EXPECT_NE(As<FetchResult>(replies[3]), nullptr);
  EXPECT_NE(As<Pong>(replies[4]), nullptr);
}

// While one connection waits for password hashing, others are served.
TEST_F(CoreTest, WaitingConnectionDoesNotHoldUpOthers) {
  Join("b", "bob");
  HashPool stalled(/*threads=*/0, /*max_queued=*/8, HashCost{1, 8192});
  BrokerCore core(*store_, stalled, config_, [this] { return now_; });
  core.BeginBatch();
  core.OnFrame("p", Encode({1, CreateAccount{"carol", "password123"}}));
  core.OnFrame("p", Encode({2, Ping{}}));
  core.OnFrame("q", Encode({3, Ping{}}));
  std::vector<OutFrame> out = core.EndBatch();
  ASSERT_EQ(out.size(), 1u) << "p waits; q is answered";
  EXPECT_EQ(out[0].routing_id, "q");
  EXPECT_EQ(core.sessions().peer_count(), 2u);
}

// The queue behind a waiting request is bounded: past it, requests are
// refused with busy at once (and take no effect).
TEST_F(CoreTest, WaitingQueueIsBounded) {
  HashPool stalled(/*threads=*/0, /*max_queued=*/8, HashCost{1, 8192});
  BrokerCore core(*store_, stalled, config_, [this] { return now_; });
  core.BeginBatch();
  core.OnFrame("p", Encode({1, CreateAccount{"carol", "password123"}}));
  const size_t extra = 5;
  for (size_t i = 0; i < config_.max_waiting_requests + extra; ++i) {
    core.OnFrame("p", Encode({100 + i, SendMessage{"x", "y", i}}));
  }
  std::vector<OutFrame> out = core.EndBatch();
  ASSERT_EQ(out.size(), extra);
  for (size_t i = 0; i < out.size(); ++i) {
    Result<Message> m = Decode(out[i].frame);
    ASSERT_TRUE(m.ok());
    const auto* f = As<MessageFailure>(*m);
    ASSERT_NE(f, nullptr);
    EXPECT_EQ(f->code, ErrorCode::kBusy);
    EXPECT_EQ(m->request_id, 100 + config_.max_waiting_requests + i);
    EXPECT_EQ(f->client_msg_id, config_.max_waiting_requests + i);
  }
}

// Two logins pipelined on one connection: the first logs in, the second is
// refused with ERROR already_logged_in, by password or by token.
TEST_F(CoreTest, SecondPipelinedLoginIsAlwaysAlreadyLoggedIn) {
  CreateUser("x", "alice");
  std::string token = Login("t", "alice").token;
  Batch([&] {
    core_->OnFrame(
        "p", Encode({1, LoginRequest{"alice", "password123", std::nullopt}}));
    core_->OnFrame(
        "p", Encode({2, LoginRequest{"alice", "password123", std::nullopt}}));
    core_->OnFrame("p",
                   Encode({3, LoginRequest{"alice", std::nullopt, token}}));
  });
  FinishHashing();
  std::vector<Message> replies = Drain("p");
  ASSERT_EQ(replies.size(), 3u);
  EXPECT_NE(As<LoginSuccess>(replies[0]), nullptr);
  for (size_t i : {1, 2}) {
    EXPECT_EQ(replies[i].request_id, i + 1);
    ASSERT_NE(As<Error>(replies[i]), nullptr)
        << MessageTypeName(TypeOf(replies[i].body));
    EXPECT_EQ(As<Error>(replies[i])->code, ErrorCode::kAlreadyLoggedIn);
  }
}

// A connection that goes away while its login is being checked: the result
// is dropped; a new connection with the same routing id is not logged in.
TEST_F(CoreTest, LoginOfAGoneConnectionIsDropped) {
  CreateUser("x", "alice");
  Batch([&] {
    core_->OnFrame(
        "p", Encode({1, LoginRequest{"alice", "password123", std::nullopt}}),
        /*connection=*/7);
  });
  core_->OnPeerGone("p");
  Batch([&] { core_->OnFrame("p", Encode({2, Ping{}}), 8); });
  FinishHashing();
  std::vector<Message> replies = Drain("p");
  ASSERT_EQ(replies.size(), 1u);
  EXPECT_NE(As<Pong>(replies[0]), nullptr);
  EXPECT_EQ(core_->sessions().session_count(), 0u);
}

// The same, when the new connection is checking a login of its own: the
// first result (taken while the second hash still runs) changes nothing of
// it; its login is answered, then what waited behind it, in order.
TEST_F(CoreTest, LoginOfAGoneConnectionLeavesTheNextOnesLoginAlone) {
  CreateUser("x", "alice");
  CreateUser("y", "bjorn");
  Batch([&] {
    core_->OnFrame(
        "p", Encode({1, LoginRequest{"alice", "password123", std::nullopt}}),
        /*connection=*/7);
  });
  pollfd done{pool_.wake_fd(), POLLIN, 0};
  ASSERT_EQ(::poll(&done, 1, 10'000), 1) << "the first hash did not finish";
  core_->OnPeerGone("p");
  Batch([&] {
    core_->OnFrame(
        "p", Encode({2, LoginRequest{"bjorn", "password123", std::nullopt}}),
        8);
    core_->OnFrame("p", Encode({3, Ping{}}), 8);
    core_->OnHashResults();
  });
  FinishHashing();
  std::vector<Message> replies = Drain("p");
  ASSERT_EQ(replies.size(), 2u);
  EXPECT_EQ(replies[0].request_id, 2u);
  ASSERT_NE(As<LoginSuccess>(replies[0]), nullptr) << Describe(replies[0]);
  EXPECT_EQ(As<LoginSuccess>(replies[0])->username, "bjorn");
  EXPECT_EQ(replies[1].request_id, 3u);
  EXPECT_NE(As<Pong>(replies[1]), nullptr);
}

// --- One batch, many requests ------------------------------------------------

// Sends, retries and receipts in one batch answer as if each ran alone, in
// order: a store that reads the batch's lookups ahead (PostgreSQL) corrects
// them for the batch's own writes (a retry of a send stored just before, a
// queue grown and shrunk within the batch, a message confirmed twice).
TEST_F(CoreTest, RequestsInOneBatchAnswerAsIfEachRanAlone) {
  config_.max_queue_per_user = 4;
  Restart();
  Join("a", "alice");
  Join("b", "bob");
  const uint64_t m0 = SendText("a", "bob", "zéro");
  const uint64_t m1 = SendText("a", "bob", "一");
  Drain("a");
  Drain("b");
  Batch([&] {
    core_->OnFrame("a", Encode({70, SendMessage{"bob", "café ☕", 100}}));
    core_->OnFrame("a", Encode({71, SendMessage{"bob", "café ☕", 100}}));
    core_->OnFrame("b", Encode({72, MessageReceipt{m0}}));
    core_->OnFrame("b", Encode({73, MessageReceipt{m0}}));
    core_->OnFrame("a", Encode({74, MessageReceipt{m1}}));
    core_->OnFrame("a", Encode({75, SendMessage{"bob", "שלום", 101}}));
    core_->OnFrame("a", Encode({76, SendMessage{"bob", "🙂🙃", 102}}));
    core_->OnFrame("a", Encode({77, SendMessage{"bob", "full", 103}}));
    core_->OnFrame("b", Encode({78, MessageReceipt{m1 + 1'000'000}}));
    core_->OnFrame("a", Encode({79, SendMessage{"nobody", "?", 104}}));
  });
  std::map<uint64_t, Message> replies;
  std::vector<uint64_t> order;
  std::vector<MessageSuccess> success;
  for (const std::string peer : {"a", "b"}) {
    for (Message& m : Drain(peer)) {
      if (m.request_id == 0) {  // a push
        if (const auto* s = As<MessageSuccess>(m)) success.push_back(*s);
        continue;
      }
      order.push_back(m.request_id);
      replies.emplace(m.request_id, std::move(m));
    }
  }
  // 72 and 73 (accepted receipts) have no reply.
  EXPECT_EQ(order, (std::vector<uint64_t>{70, 71, 74, 75, 76, 77, 79, 78}));
  ASSERT_NE(As<MessagePending>(replies[70]), nullptr);
  ASSERT_NE(As<MessagePending>(replies[71]), nullptr);
  const uint64_t first = As<MessagePending>(replies[70])->message_id;
  EXPECT_EQ(As<MessagePending>(replies[71])->message_id, first)
      << "the retry gets the id of the send just stored";
  ASSERT_NE(As<Error>(replies[74]), nullptr);
  EXPECT_EQ(As<Error>(replies[74])->code, ErrorCode::kNotYours);
  // bob's queue: m0, m1 before; +first = 3; m0 confirmed = 2; 75 = 3; 76 = 4;
  // 77 finds 4 of 4.
  ASSERT_NE(As<MessagePending>(replies[75]), nullptr);
  ASSERT_NE(As<MessagePending>(replies[76]), nullptr);
  ASSERT_NE(As<MessageFailure>(replies[77]), nullptr);
  EXPECT_EQ(As<MessageFailure>(replies[77])->code, ErrorCode::kQueueFull);
  ASSERT_NE(As<Error>(replies[78]), nullptr);
  EXPECT_EQ(As<Error>(replies[78])->code, ErrorCode::kUnknownMessage);
  ASSERT_NE(As<MessageFailure>(replies[79]), nullptr);
  EXPECT_EQ(As<MessageFailure>(replies[79])->code,
            ErrorCode::kUnknownRecipient);
  // One MESSAGE_SUCCESS for m0, though bob confirmed it twice.
  ASSERT_EQ(success.size(), 1u);
  EXPECT_EQ(success[0].message_id, m0);
  // What is queued, in order.
  auto bob = store_->FindAccount("bob");
  ASSERT_TRUE(bob.ok() && bob->has_value());
  auto queued = store_->FetchPending((*bob)->id, 10);
  ASSERT_TRUE(queued.ok());
  std::vector<std::string> bodies;
  for (const QueuedMessage& q : *queued) bodies.push_back(q.body);
  EXPECT_EQ(bodies,
            (std::vector<std::string>{"一", "café ☕", "שלום", "🙂🙃"}));
}

}  // namespace
}  // namespace zchat
