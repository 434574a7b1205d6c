// The broker's promises about batches and pipelining, each a defect that
// the broker once had:
//  - a batch whose commit fails sends nothing that read its writes;
//  - requests of one connection take effect, and are answered, in the order
//    sent, even when one waits for password hashing;
//  - a second LOGIN_REQUEST on a connection gets one answer, whatever the
//    timing.
#include <algorithm>
#include <map>
#include <random>
#include <set>

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

// --- Random batches --------------------------------------------------------

// What clients send, in random batches, against a model of the conversation
// (on one file, on PostgreSQL, and in partitions on three threads, as every
// CoreTest): eight users send to each other (single and batch forms of
// SEND_MESSAGE, some of them retries of sends already acknowledged),
// confirm some of what they got (single ids and lists), and acknowledge
// some of their notices, all mixed in each batch. Every send is answered
// once, in order on its connection; a retry gets its first id; each message
// reaches its recipient only, each pair's in the order sent; MESSAGE_SUCCESS
// comes only for a confirmed message, and for every one.
TEST_F(CoreTest, RandomBatchesKeepEveryPromise) {
  constexpr int kUsers = 8;
  const auto conn = [](int u) { return "c" + std::to_string(u); };
  const auto name = [](int u) { return "u" + std::to_string(u); };
  for (int u = 1; u <= kUsers; ++u) Join(conn(u), name(u));
  std::mt19937_64 rng(20261205);
  const auto below = [&](uint64_t n) {
    return std::uniform_int_distribution<uint64_t>(0, n - 1)(rng);
  };
  const std::string texts[] = {"crème brûlée ", "東京で会おう ", "🎂🎈 ",
                               "סוף שבוע ",     "مع السلامة ",   "Ελλάδα "};
  struct Sent {
    int from, to;
    uint64_t cmid;
    std::string body;
  };
  std::map<uint64_t, Sent> sent;                               // by message id
  std::map<std::pair<int, uint64_t>, uint64_t> acknowledged;   // (from, cmid)
  std::map<std::pair<int, int>, std::vector<uint64_t>> order;  // pair: ids
  std::map<std::pair<int, int>, size_t> pushed;   // pair: how many came
  std::map<int, std::set<uint64_t>> unconfirmed;  // recipient: ids
  std::set<uint64_t> confirmed, succeeded;
  std::map<int, std::vector<uint64_t>> notices;  // sender: not yet acked
  std::map<int, uint64_t> next_cmid;
  uint64_t next_req = 1'000;

  for (int round = 0; round < 60; ++round) {
    // What each connection asked in this batch, in order: the request id
    // and, for a send, its (client_msg_id, recipient, body), several for
    // the batch form, and whether each is a retry.
    struct Asked {
      uint64_t req;
      std::vector<Sent> sends;
    };
    std::map<int, std::vector<Asked>> asked;
    const bool last = round == 59;  // confirm and acknowledge everything
    Batch([&] {
      for (int f = 0; f < (last ? 0 : 60); ++f) {
        const int u = 1 + static_cast<int>(below(kUsers));
        const uint64_t kind = below(10);
        const uint64_t req = next_req++;
        if (kind < 6) {
          int to = 1 + static_cast<int>(below(kUsers - 1));
          if (to >= u) ++to;
          std::vector<Sent> sends;
          const size_t n = kind < 4 ? 1 : 2 + below(5);
          for (size_t k = 0; k < n; ++k) {
            // A retry of a send acknowledged in an earlier batch, or new.
            uint64_t cmid = 0;
            if (below(8) == 0 && next_cmid[u] > 0) {
              auto it = acknowledged.lower_bound({u, 1 + below(next_cmid[u])});
              if (it != acknowledged.end() && it->first.first == u &&
                  sent.at(it->second).to == to &&
                  std::none_of(sends.begin(), sends.end(), [&](const Sent& x) {
                    return x.cmid == it->first.second;
                  })) {
                cmid = it->first.second;  // (once a request: ids are unique)
              }
            }
            if (cmid == 0) cmid = ++next_cmid[u];
            sends.push_back(
                {u, to, cmid,
                 texts[below(std::size(texts))] + std::to_string(cmid)});
          }
          SendMessage m;
          m.recipient = name(to);
          if (n == 1) {
            m.body = sends[0].body;
            m.client_msg_id = sends[0].cmid;
          } else {
            for (const Sent& x : sends) {
              m.client_msg_ids.push_back(x.cmid);
              m.bodies.push_back(x.body);
            }
          }
          // A retry's body is that of its first send, as a client resends.
          for (Sent& x : sends) {
            if (auto it = acknowledged.find({u, x.cmid});
                it != acknowledged.end()) {
              x.body = sent.at(it->second).body;
            }
          }
          if (n == 1) {
            m.body = sends[0].body;
          } else {
            for (size_t k = 0; k < n; ++k) m.bodies[k] = sends[k].body;
          }
          asked[u].push_back({req, sends});
          core_->OnFrame(conn(u), Encode({req, m}));
        } else if (kind < 9 && !unconfirmed[u].empty()) {
          // Confirms some of what it got, one id or a list.
          std::vector<uint64_t> ids;
          for (uint64_t id : unconfirmed[u]) {
            if (below(2) == 0) ids.push_back(id);
          }
          if (ids.empty()) ids.push_back(*unconfirmed[u].begin());
          for (uint64_t id : ids) {
            unconfirmed[u].erase(id);
            confirmed.insert(id);
          }
          MessageReceipt r;
          if (ids.size() == 1) {
            r.message_id = ids[0];
          } else {
            r.message_ids = ids;
          }
          core_->OnFrame(conn(u), Encode({req, r}));
        } else if (!notices[u].empty()) {
          NoticeReceipt r;
          r.message_ids = notices[u];
          notices[u].clear();
          core_->OnFrame(conn(u), Encode({req, r}));
        }
      }
      if (last) {  // everything left, confirmed and acknowledged
        for (int u = 1; u <= kUsers; ++u) {
          if (!unconfirmed[u].empty()) {
            MessageReceipt r;
            r.message_ids.assign(unconfirmed[u].begin(), unconfirmed[u].end());
            for (uint64_t id : r.message_ids) confirmed.insert(id);
            unconfirmed[u].clear();
            core_->OnFrame(conn(u), Encode({next_req++, r}));
          }
        }
      }
    });
    // Replies first (a push's message may be another connection's reply).
    std::map<int, std::vector<Message>> got;
    for (int u = 1; u <= kUsers; ++u) got[u] = Drain(conn(u));
    for (int u = 1; u <= kUsers; ++u) {
      size_t next = 0;  // the next of asked[u] to be answered
      for (const Message& m : got[u]) {
        if (m.request_id == 0) continue;
        ASSERT_LT(next, asked[u].size())
            << "an answer to no send: " << MessageTypeName(TypeOf(m.body))
            << Describe(m) << ", round " << round;
        const Asked& a = asked[u][next++];
        ASSERT_EQ(m.request_id, a.req) << "answers out of order";
        const auto* p = As<MessagePending>(m);
        if (const auto* f = As<MessageFailure>(m)) {
          ADD_FAILURE() << "MESSAGE_FAILURE " << ErrorCodeName(f->code) << ": "
                        << f->reason;
        }
        ASSERT_NE(p, nullptr) << MessageTypeName(TypeOf(m.body)) << Describe(m);
        size_t k = 0;
        ForEachPending(*p, [&](uint64_t id, uint64_t cmid) {
          ASSERT_LT(k, a.sends.size());
          const Sent& x = a.sends[k++];
          ASSERT_EQ(cmid, x.cmid);
          if (auto it = acknowledged.find({u, cmid});
              it != acknowledged.end()) {
            ASSERT_EQ(id, it->second) << "a retry got another id";
            return;
          }
          ASSERT_FALSE(sent.contains(id)) << "id " << id << " given twice";
          sent.emplace(id, x);
          acknowledged.emplace(std::make_pair(u, cmid), id);
          order[{u, x.to}].push_back(id);
        });
        ASSERT_EQ(k, a.sends.size());
      }
      ASSERT_EQ(next, asked[u].size()) << "a send of u" << u << " unanswered";
    }
    for (int u = 1; u <= kUsers; ++u) {
      for (const Message& m : got[u]) {
        if (m.request_id != 0) continue;
        if (const auto* d = As<DistributeMessage>(m)) {
          ForEachMessage(*d, [&](uint64_t id, const std::string& sender,
                                 const std::string& body, uint64_t) {
            auto it = sent.find(id);
            ASSERT_NE(it, sent.end()) << "a push of an unknown id " << id;
            ASSERT_EQ(it->second.to, u) << "a message to another user";
            ASSERT_EQ(sender, name(it->second.from));
            ASSERT_EQ(body, it->second.body);
            if (confirmed.contains(id) || unconfirmed[u].contains(id)) return;
            // The first time it comes: next in its pair's order.
            const auto pair = std::make_pair(it->second.from, u);
            size_t& n = pushed[pair];
            ASSERT_LT(n, order[pair].size());
            ASSERT_EQ(order[pair][n], id) << "a pair's messages out of order";
            ++n;
            unconfirmed[u].insert(id);
          });
        } else if (const auto* ok = As<MessageSuccess>(m)) {
          ForEachDelivered(*ok, [&](uint64_t id, uint64_t cmid) {
            ASSERT_TRUE(confirmed.contains(id))
                << "MESSAGE_SUCCESS for an unconfirmed message " << id;
            ASSERT_EQ(sent.at(id).from, u) << "a notice to another sender";
            ASSERT_EQ(sent.at(id).cmid, cmid);
            if (succeeded.insert(id).second) notices[u].push_back(id);
          });
        } else {
          ADD_FAILURE() << "unexpected push "
                        << MessageTypeName(TypeOf(m.body));
        }
      }
    }
    if (HasFatalFailure()) return;
  }
  // Every message came, was confirmed and told its sender.
  for (const auto& [pair, ids] : order) {
    EXPECT_EQ(pushed[pair], ids.size())
        << "u" << pair.first << " -> u" << pair.second;
  }
  EXPECT_EQ(confirmed.size(), sent.size());
  EXPECT_EQ(succeeded, confirmed);
  EXPECT_GT(sent.size(), 1000u);
}

}  // namespace
}  // namespace zchat
