// Handler tests for the account workflows: create, login, logout, delete.
#include "broker/dispatcher.h"
#include "tests/support/core_fixture.h"

namespace zchat {
namespace {

using testing::CoreTest;

TEST(DispatchTest, EveryRequestTypeHasAnEntry) {
  for (size_t t = 1; t <= kMessageTypeCount; ++t) {
    auto type = static_cast<MessageType>(t);
    EXPECT_EQ(FindRoute(type) != nullptr,
              DirectionOf(type) == Direction::kRequest)
        << MessageTypeName(type);
  }
}

TEST_F(CoreTest, CreateAccountSucceeds) { CreateUser("p1", "alice"); }

TEST_F(CoreTest, CreateRefusesTakenNameCaseInsensitively) {
  CreateUser("p1", "alice");
  auto fail =
      Expect<CreateFailure>("p2", CreateAccount{"ALICE", "password123"});
  EXPECT_EQ(fail.code, ErrorCode::kUsernameTaken);
}

TEST_F(CoreTest, CreateRefusesInvalidUsernames) {
  for (const char* name : {"", "-alice", ".x", "has space", "a*", "ümlaut",
                           "abcdefghijklmnopqrstuvwxyz0123456"}) {
    auto fail = Expect<CreateFailure>("p1", CreateAccount{name, "password123"});
    EXPECT_EQ(fail.code, ErrorCode::kInvalidUsername) << name;
  }
  CreateUser("p1", "a.b-c_9");
  CreateUser("p1", std::string(32, 'z'));
}

TEST_F(CoreTest, CreateRefusesWeakAndOverlongPasswords) {
  EXPECT_EQ(Expect<CreateFailure>("p1", CreateAccount{"bob", "short"}).code,
            ErrorCode::kWeakPassword);
  EXPECT_EQ(
      Expect<CreateFailure>("p1", CreateAccount{"bob", std::string(257, 'x')})
          .code,
      ErrorCode::kPasswordTooLong);
  // Nothing was created: the name is still free.
  CreateUser("p1", "bob");
}

TEST_F(CoreTest, ConcurrentCreatesOfOneNameMakeOneAccount) {
  // Both requests are accepted for hashing before either finishes.
  Batch([&] {
    core_->OnFrame("p1", Encode({1, CreateAccount{"carol", "password123"}}));
    core_->OnFrame("p2", Encode({1, CreateAccount{"Carol", "password456"}}));
  });
  FinishHashing();
  int created = 0, taken = 0;
  for (const char* peer : {"p1", "p2"}) {
    ASSERT_EQ(inbox_[peer].size(), 1u) << peer;
    const Body& b = inbox_[peer].front().body;
    if (std::holds_alternative<CreateSuccess>(b)) ++created;
    if (const auto* f = std::get_if<CreateFailure>(&b)) {
      EXPECT_EQ(f->code, ErrorCode::kUsernameTaken);
      ++taken;
    }
  }
  EXPECT_EQ(created, 1);
  EXPECT_EQ(taken, 1);
}

TEST_F(CoreTest, LoginReportsPendingCountAndUsernameAsRegistered) {
  CreateUser("p1", "Alice");
  Join("p2", "bob");
  SendText("p2", "alice", "one");
  SendText("p2", "alice", "two");
  LoginSuccess ok = Login("p1", "ALICE");
  EXPECT_EQ(ok.username, "Alice");
  EXPECT_EQ(ok.pending, 2u);
  EXPECT_EQ(ok.token.size(), kTokenBytes);
}

TEST_F(CoreTest, LoginFailureIsTheSameForUnknownUserAndWrongPassword) {
  CreateUser("p1", "alice");
  auto wrong = Expect<LoginFailure>(
      "p1", LoginRequest{"alice", "wrong-password", std::nullopt});
  auto unknown = Expect<LoginFailure>(
      "p1", LoginRequest{"nobody", "wrong-password", std::nullopt});
  EXPECT_EQ(wrong.code, ErrorCode::kBadCredentials);
  EXPECT_EQ(unknown.code, wrong.code);
  EXPECT_EQ(unknown.reason, wrong.reason);
}

TEST_F(CoreTest, RepeatedFailuresAreThrottledPerUser) {
  CreateUser("p1", "alice");
  CreateUser("p1", "bob");
  for (int i = 0; i < config_.throttle.free_failures; ++i) {
    EXPECT_EQ(Expect<LoginFailure>(
                  "p1", LoginRequest{"alice", "bad-guess1", std::nullopt})
                  .code,
              ErrorCode::kBadCredentials);
  }
  auto throttled = Expect<LoginFailure>(
      "p1", LoginRequest{"alice", "password123", std::nullopt});
  EXPECT_EQ(throttled.code, ErrorCode::kThrottled);
  EXPECT_GT(throttled.retry_after_ms, 0u);
  // Another user is unaffected.
  Login("p2", "bob");
  // After the delay, the right password works again.
  now_ += static_cast<int64_t>(throttled.retry_after_ms);
  Login("p1", "alice");
}

TEST_F(CoreTest, TokenLogsInWithoutPasswordUntilLogout) {
  CreateUser("p1", "alice");
  std::string token = Login("p1", "alice").token;
  // A second connection (say, after a reconnect) resumes with the token.
  auto resumed =
      Expect<LoginSuccess>("p2", LoginRequest{"alice", std::nullopt, token});
  EXPECT_EQ(resumed.username, "alice");
  Expect<LogoutSuccess>("p2", Logout{});
  auto refused =
      Expect<LoginFailure>("p3", LoginRequest{"alice", std::nullopt, token});
  EXPECT_EQ(refused.code, ErrorCode::kBadCredentials);
}

TEST_F(CoreTest, TokenSurvivesRestartAndExpires) {
  CreateUser("p1", "alice");
  std::string token = Login("p1", "alice").token;
  Restart();
  Expect<LoginSuccess>("p1", LoginRequest{"alice", std::nullopt, token});
  now_ += config_.token_lifetime_ms + 1;
  EXPECT_EQ(
      Expect<LoginFailure>("p2", LoginRequest{"alice", std::nullopt, token})
          .code,
      ErrorCode::kBadCredentials);
}

TEST_F(CoreTest, TokenOfOneUserDoesNotLogInAnother) {
  CreateUser("p1", "alice");
  CreateUser("p1", "bob");
  std::string token = Login("p1", "alice").token;
  EXPECT_EQ(
      Expect<LoginFailure>("p2", LoginRequest{"bob", std::nullopt, token}).code,
      ErrorCode::kBadCredentials);
}

TEST_F(CoreTest, SecondLoginOnOneConnectionIsRefused) {
  CreateUser("p1", "alice");
  Login("p1", "alice");
  EXPECT_EQ(
      ExpectError("p1", LoginRequest{"alice", "password123", std::nullopt}),
      ErrorCode::kAlreadyLoggedIn);
}

TEST_F(CoreTest, RequestsBeforeLoginAreRefused) {
  const Body needs_login[] = {
      Logout{},         ListAccounts{},    SendMessage{"bob", "x", 1},
      FetchMessages{},  MessageReceipt{1}, DeletionRequest{false},
      NoticeReceipt{1}, FetchNotices{}};
  // Session-state refusals always come as ERROR, whatever the type.
  for (const Body& body : needs_login) {
    const Error e = Expect<Error>("p1", body);
    EXPECT_EQ(e.code, ErrorCode::kNotLoggedIn) << MessageTypeName(TypeOf(body));
    EXPECT_EQ(e.reason,
              std::string(MessageTypeName(TypeOf(body))) + " requires login");
  }
  EXPECT_TRUE(inbox_["p1"].empty()) << "one reply per request, nothing else";
  Expect<Pong>("p1", Ping{});
}

TEST_F(CoreTest, ClientMayNotSendRepliesOrPushes) {
  EXPECT_EQ(ExpectError("p1", Pong{}), ErrorCode::kInvalidArgument);
}

TEST_F(CoreTest, MalformedFrameGetsErrorEchoingRequestId) {
  // SEND_MESSAGE missing its body, request id 41.
  Message m{41, SendMessage{"bob", "x", 1}};
  std::string frame = Encode(m);
  Deliver("p1", frame.substr(0, frame.size() - 1));
  ASSERT_EQ(inbox_["p1"].size(), 1u);
  const auto& e = std::get<Error>(inbox_["p1"].front().body);
  EXPECT_EQ(e.code, ErrorCode::kMalformed);
  EXPECT_EQ(inbox_["p1"].front().request_id, 0u);  // truncated: unreadable
  inbox_["p1"].clear();
  // {"v": 1, "type": 99, "req": 42}: an unknown type, request id readable.
  Deliver("p1", std::string("\x83\xa1v\x01\xa4type\x63\xa3req\x2a"));
  ASSERT_EQ(inbox_["p1"].size(), 1u);
  EXPECT_EQ(inbox_["p1"].front().request_id, 42u);
  EXPECT_EQ(std::get<Error>(inbox_["p1"].front().body).code,
            ErrorCode::kUnknownType);
}

TEST_F(CoreTest, UserMayBeLoggedInFromSeveralConnections) {
  CreateUser("a1", "alice");
  Login("a1", "alice");
  Login("a2", "alice");
  Join("b1", "bob");
  uint64_t id = SendText("b1", "alice", "to both");
  for (const char* peer : {"a1", "a2"}) {
    auto got = PushesOf<DistributeMessage>(peer);
    ASSERT_EQ(got.size(), 1u) << peer;
    EXPECT_EQ(got[0].message_id, id);
    EXPECT_EQ(got[0].sender, "bob");
  }
}

TEST_F(CoreTest, DeletionWithPendingNeedsForce) {
  Join("a", "alice");
  Join("b", "bob");
  Expect<LogoutSuccess>("a", Logout{});
  Login("a", "alice");
  SendText("b", "alice", "one");
  SendText("b", "alice", "two");
  auto refused = Expect<DeletionFailure>("a", DeletionRequest{false});
  EXPECT_EQ(refused.code, ErrorCode::kHasPending);
  EXPECT_EQ(refused.pending, 2u);
  // Nothing changed: still logged in, messages still there.
  EXPECT_EQ(Expect<FetchResult>("a", FetchMessages{}).count, 2u);
}

TEST_F(CoreTest, DeletionWithoutPendingSucceeds) {
  Join("a", "alice");
  EXPECT_EQ(Expect<DeletionSuccess>("a", DeletionRequest{false}).purged, 0u);
  EXPECT_EQ(ExpectError("a", FetchMessages{}), ErrorCode::kNotLoggedIn);
}

TEST_F(CoreTest, ForcedDeletionPurgesAndTellsEveryone) {
  Join("a1", "alice");
  Login("a2", "alice");
  Join("b", "bob");
  Join("c", "carol");
  uint64_t from_bob = SendText("b", "alice", "hi from bob");
  uint64_t from_carol = SendText("c", "alice", "hi from carol");
  Expect<LogoutSuccess>("c", Logout{});  // carol is offline at deletion
  Pushes("a1");
  Pushes("a2");

  EXPECT_EQ(Expect<DeletionSuccess>("a1", DeletionRequest{true}).purged, 2u);
  // The other session is told and ended.
  auto ended = PushesOf<SessionEnded>("a2");
  ASSERT_EQ(ended.size(), 1u);
  EXPECT_EQ(ended[0].code, ErrorCode::kAccountDeleted);
  EXPECT_EQ(ExpectError("a2", FetchMessages{}), ErrorCode::kNotLoggedIn);
  // Online sender: told at once.
  auto bob_notice = PushesOf<MessageUndeliverable>("b");
  ASSERT_EQ(bob_notice.size(), 1u);
  EXPECT_EQ(bob_notice[0].message_id, from_bob);
  EXPECT_EQ(bob_notice[0].code, ErrorCode::kRecipientDeleted);
  // Offline sender: told at next login.
  Login("c", "carol");
  auto carol_notice = PushesOf<MessageUndeliverable>("c");
  ASSERT_EQ(carol_notice.size(), 1u);
  EXPECT_EQ(carol_notice[0].message_id, from_carol);
  // The name is gone.
  auto fail = Expect<MessageFailure>("b", SendMessage{"alice", "x", 99});
  EXPECT_EQ(fail.code, ErrorCode::kUnknownRecipient);
}

TEST_F(CoreTest, NewAccountWithDeletedNameInheritsNothing) {
  Join("a", "alice");
  std::string old_token = Login("a2", "alice").token;
  Join("b", "bob");
  SendText("a", "bob", "from old alice");
  SendText("b", "alice", "for old alice");
  Expect<DeletionSuccess>("a", DeletionRequest{true});

  CreateUser("n", "alice");
  LoginSuccess fresh = Login("n", "alice");
  EXPECT_EQ(fresh.pending, 0u);
  EXPECT_TRUE(Pushes("n").empty()) << "no notices of the old account";
  EXPECT_EQ(
      Expect<LoginFailure>("x", LoginRequest{"alice", std::nullopt, old_token})
          .code,
      ErrorCode::kBadCredentials);
  // Bob confirming old alice's message tells nobody (new alice included).
  Pushes("b");
  auto fetched = Expect<FetchResult>("b", FetchMessages{});
  EXPECT_EQ(fetched.count, 1u) << "messages the deleted user sent remain";
  auto got = PushesOf<DistributeMessage>("b");
  ASSERT_EQ(got.size(), 1u);
  EXPECT_FALSE(Call("b", MessageReceipt{got[0].message_id}).has_value());
  EXPECT_TRUE(Pushes("n").empty());
}

// The session belongs to the connection, not to the routing id: the same
// routing id arriving on another connection is a stranger.
TEST_F(CoreTest, RoutingIdOnAnotherConnectionIsANewPeer) {
  CreateUser("x", "alice");
  Deliver("r1", Encode({1, LoginRequest{"alice", "password123", std::nullopt}}),
          /*connection=*/7);
  Call("x", Ping{});  // lets the login finish
  ASSERT_TRUE(std::holds_alternative<LoginSuccess>(inbox_["r1"].back().body));
  inbox_.clear();
  Deliver("r1", Encode({2, FetchMessages{}}), /*connection=*/8);
  ASSERT_EQ(inbox_["r1"].size(), 1u);
  EXPECT_EQ(std::get<Error>(inbox_["r1"].front().body).code,
            ErrorCode::kNotLoggedIn);
}

// A descriptor is reused only after its connection closed: whoever was on
// it before is gone, and so is their session.
TEST_F(CoreTest, ReusedDescriptorEndsTheOldSession) {
  CreateUser("x", "alice");
  Join("b", "bob");
  Deliver("r1", Encode({1, LoginRequest{"alice", "password123", std::nullopt}}),
          /*connection=*/7);
  Call("x", Ping{});
  inbox_.clear();
  Deliver("r2", Encode({1, Ping{}}), /*connection=*/7);
  SendText("b", "alice", "nobody is there");
  EXPECT_TRUE(Pushes("r1").empty());
  EXPECT_TRUE(Pushes("r2").empty());
}

TEST_F(CoreTest, SilentSessionsExpire) {
  Join("a", "alice");
  now_ += config_.session_timeout_ms + 1;
  Tick();
  auto ended = PushesOf<SessionEnded>("a");
  ASSERT_EQ(ended.size(), 1u);
  EXPECT_EQ(ended[0].code, ErrorCode::kSessionExpired);
  EXPECT_EQ(ExpectError("a", FetchMessages{}), ErrorCode::kNotLoggedIn);
}

TEST_F(CoreTest, TrafficKeepsSessionAlive) {
  Join("a", "alice");
  for (int i = 0; i < 5; ++i) {
    now_ += config_.session_timeout_ms / 2;
    Expect<Pong>("a", Ping{});
    Tick();
  }
  EXPECT_TRUE(PushesOf<SessionEnded>("a").empty());
  Expect<FetchResult>("a", FetchMessages{});
}

}  // namespace
}  // namespace zchat

namespace zchat {
namespace {

using testing::CoreTest;

// Password hashing is bounded: past the queue's capacity, requests are
// refused with busy at once instead of piling up. (A pool with no workers
// keeps every accepted job queued, so the count is exact.)
TEST_F(CoreTest, HashingQueueOverflowIsRefusedWithBusy) {
  HashPool stalled(/*threads=*/0, /*max_queued=*/64, HashCost{1, 8192});
  BrokerCore core(*store_, stalled, config_, [this] { return now_; });
  core.BeginBatch();
  for (int i = 0; i < 100; ++i) {
    core.OnFrame(
        "p" + std::to_string(i),
        Encode({1, CreateAccount{"user" + std::to_string(i), "password123"}}));
  }
  int busy = 0;
  for (const OutFrame& out : core.EndBatch()) {
    Result<Message> m = Decode(out.frame);
    ASSERT_TRUE(m.ok());
    auto* f = std::get_if<CreateFailure>(&m->body);
    ASSERT_NE(f, nullptr);
    EXPECT_EQ(f->code, ErrorCode::kBusy);
    ++busy;
  }
  EXPECT_EQ(busy, 100 - 64);
  EXPECT_EQ(stalled.in_flight(), 64u);
}

}  // namespace
}  // namespace zchat
