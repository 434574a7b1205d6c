// Handler tests for the message workflows: send, fetch, receipt, list.
#include <algorithm>
#include <set>

#include "tests/support/core_fixture.h"

namespace zchat {
namespace {

using testing::CoreTest;

TEST_F(CoreTest, SendToUnknownRecipientFails) {
  Join("a", "alice");
  auto fail = Expect<MessageFailure>("a", SendMessage{"nobody", "hi", 5});
  EXPECT_EQ(fail.code, ErrorCode::kUnknownRecipient);
  EXPECT_EQ(fail.client_msg_id, 5u);
}

TEST_F(CoreTest, SendToOnlineRecipientPushesAtOnce) {
  Join("a", "alice");
  Join("b", "bob");
  auto pending = Expect<MessagePending>("a", SendMessage{"BOB", "hello", 7});
  EXPECT_EQ(pending.client_msg_id, 7u);
  auto got = PushesOf<DistributeMessage>("b");
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].message_id, pending.message_id);
  EXPECT_EQ(got[0].sender, "alice");
  EXPECT_EQ(got[0].body, "hello");
  EXPECT_EQ(got[0].sent_at_ms, static_cast<uint64_t>(now_));
}

TEST_F(CoreTest, SendToOfflineRecipientQueuesUntilFetch) {
  Join("a", "alice");
  CreateUser("b", "bob");
  uint64_t id = SendText("a", "bob", "while you were out");
  EXPECT_TRUE(Pushes("b").empty());
  EXPECT_EQ(Login("b", "bob").pending, 1u);
  EXPECT_TRUE(PushesOf<DistributeMessage>("b").empty())
      << "queued messages wait until asked for";
  auto result = Expect<FetchResult>("b", FetchMessages{});
  EXPECT_EQ(result.count, 1u);
  EXPECT_EQ(result.remaining, 0u);
  auto got = PushesOf<DistributeMessage>("b");
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].message_id, id);
  EXPECT_EQ(got[0].body, "while you were out");
}

TEST_F(CoreTest, QueuedMessagesSurviveRestart) {
  Join("a", "alice");
  CreateUser("b", "bob");
  uint64_t id = SendText("a", "bob", "durable");
  Restart();
  EXPECT_EQ(Login("b", "bob").pending, 1u);
  Expect<FetchResult>("b", FetchMessages{});
  auto got = PushesOf<DistributeMessage>("b");
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].message_id, id);
}

TEST_F(CoreTest, RetriedSendReturnsSameIdEvenAfterRestartAndDelivery) {
  Join("a", "alice");
  Join("b", "bob");
  auto first = Expect<MessagePending>("a", SendMessage{"bob", "once", 77});
  auto again = Expect<MessagePending>("a", SendMessage{"bob", "once", 77});
  EXPECT_EQ(again.message_id, first.message_id);
  Pushes("b");
  EXPECT_FALSE(Call("b", MessageReceipt{first.message_id}).has_value());
  Restart();
  Login("a", "alice");
  Login("b", "bob");
  auto after = Expect<MessagePending>("a", SendMessage{"bob", "once", 77});
  EXPECT_EQ(after.message_id, first.message_id);
  EXPECT_EQ(Expect<FetchResult>("b", FetchMessages{}).count, 0u)
      << "the retry must not make a second message";
}

TEST_F(CoreTest, ClientMessageIdsArePerSender) {
  Join("a", "alice");
  Join("c", "carol");
  CreateUser("b", "bob");
  auto from_a = Expect<MessagePending>("a", SendMessage{"bob", "x", 1});
  auto from_c = Expect<MessagePending>("c", SendMessage{"bob", "y", 1});
  EXPECT_NE(from_a.message_id, from_c.message_id);
}

TEST_F(CoreTest, OversizeBodyIsRefused) {
  Join("a", "alice");
  Join("b", "bob");
  auto fail = Expect<MessageFailure>(
      "a", SendMessage{"bob", std::string(kMaxBodyBytes + 1, 'x'), 3});
  EXPECT_EQ(fail.code, ErrorCode::kBodyTooLarge);
  EXPECT_TRUE(Pushes("b").empty());
  SendText("a", "bob", std::string(kMaxBodyBytes, 'x'));  // the limit is fine
}

TEST_F(CoreTest, FullQueueRefusesSends) {
  config_.max_queue_per_user = 2;
  Restart();
  Join("a", "alice");
  CreateUser("b", "bob");
  SendText("a", "bob", "1");
  SendText("a", "bob", "2");
  EXPECT_EQ(Expect<MessageFailure>("a", SendMessage{"bob", "3", 3}).code,
            ErrorCode::kQueueFull);
  // Draining makes room.
  Login("b", "bob");
  Expect<FetchResult>("b", FetchMessages{1});
  auto got = PushesOf<DistributeMessage>("b");
  ASSERT_EQ(got.size(), 1u);
  EXPECT_FALSE(Call("b", MessageReceipt{got[0].message_id}).has_value());
  SendText("a", "bob", "3");
}

TEST_F(CoreTest, SendToSelfIsAllowed) {
  Join("a", "alice");
  uint64_t id = SendText("a", "alice", "note to self");
  auto got = PushesOf<DistributeMessage>("a");
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].message_id, id);
}

TEST_F(CoreTest, FetchIsOldestFirstAndBounded) {
  Join("a", "alice");
  CreateUser("b", "bob");
  std::vector<uint64_t> ids;
  for (int i = 0; i < 5; ++i)
    ids.push_back(SendText("a", "bob", std::to_string(i)));
  Login("b", "bob");
  auto first = Expect<FetchResult>("b", FetchMessages{3});
  EXPECT_EQ(first.count, 3u);
  EXPECT_EQ(first.remaining, 2u);
  auto got = PushesOf<DistributeMessage>("b");
  ASSERT_EQ(got.size(), 3u);
  for (int i = 0; i < 3; ++i) EXPECT_EQ(got[i].message_id, ids[i]);
}

TEST_F(CoreTest, UnconfirmedMessagesComeAgain) {
  Join("a", "alice");
  Join("b", "bob");
  uint64_t id = SendText("a", "bob", "again");
  ASSERT_EQ(PushesOf<DistributeMessage>("b").size(), 1u);  // live push
  Expect<FetchResult>("b", FetchMessages{});
  auto got = PushesOf<DistributeMessage>("b");
  ASSERT_EQ(got.size(), 1u) << "pushed but not confirmed: still undelivered";
  EXPECT_EQ(got[0].message_id, id);
  EXPECT_FALSE(Call("b", MessageReceipt{id}).has_value());
  EXPECT_EQ(Expect<FetchResult>("b", FetchMessages{}).count, 0u);
}

TEST_F(CoreTest, ReceiptTellsOnlineSenderAtOnce) {
  Join("a", "alice");
  Join("b", "bob");
  auto pending = Expect<MessagePending>("a", SendMessage{"bob", "hi", 11});
  Pushes("b");
  EXPECT_FALSE(Call("b", MessageReceipt{pending.message_id}).has_value());
  auto success = PushesOf<MessageSuccess>("a");
  ASSERT_EQ(success.size(), 1u);
  EXPECT_EQ(success[0].message_id, pending.message_id);
  EXPECT_EQ(success[0].recipient, "bob");
  EXPECT_EQ(success[0].client_msg_id, 11u);
  // A second receipt is a harmless no-op: no reply, no second success.
  EXPECT_FALSE(Call("b", MessageReceipt{pending.message_id}).has_value());
  EXPECT_TRUE(PushesOf<MessageSuccess>("a").empty());
}

// Notices are kept until the sender acknowledges them: through restarts,
// and again at every login until then.
TEST_F(CoreTest, NoticeForOfflineSenderIsKeptUntilAcknowledged) {
  Join("a", "alice");
  Join("b", "bob");
  uint64_t id = SendText("a", "bob", "hi");
  Expect<LogoutSuccess>("a", Logout{});
  EXPECT_FALSE(Call("b", MessageReceipt{id}).has_value());
  Restart();  // the notice is durable
  Login("a", "alice");
  auto success = PushesOf<MessageSuccess>("a");
  ASSERT_EQ(success.size(), 1u);
  EXPECT_EQ(success[0].message_id, id);
  // Not acknowledged: it comes again at the next login, after a restart too.
  Expect<LogoutSuccess>("a", Logout{});
  Restart();
  Login("a", "alice");
  success = PushesOf<MessageSuccess>("a");
  ASSERT_EQ(success.size(), 1u);
  EXPECT_EQ(success[0].message_id, id);
  // Acknowledged (no reply): gone for good.
  EXPECT_FALSE(Call("a", NoticeReceipt{id}).has_value());
  Expect<LogoutSuccess>("a", Logout{});
  Restart();
  Login("a", "alice");
  EXPECT_TRUE(PushesOf<MessageSuccess>("a").empty());
  EXPECT_EQ(Expect<FetchResult>("a", FetchNotices{}).count, 0u);
}

// The sender's connection died without a word (the pushes went into a hole):
// the notice comes again at its next login and on FETCH_NOTICES, until
// acknowledged.
TEST_F(CoreTest, UnacknowledgedNoticeComesAgainAtLoginAndOnFetch) {
  Join("a", "alice");
  Join("b", "bob");
  uint64_t id = SendText("a", "bob", "hi");
  Pushes("b");
  EXPECT_FALSE(Call("b", MessageReceipt{id}).has_value());
  ASSERT_EQ(PushesOf<MessageSuccess>("a").size(), 1u) << "pushed at once";
  // "a" still looks alive; alice logs in again elsewhere.
  Login("a2", "alice");
  auto again = PushesOf<MessageSuccess>("a2");
  ASSERT_EQ(again.size(), 1u);
  EXPECT_EQ(again[0].message_id, id);
  EXPECT_EQ(again[0].recipient, "bob");
  EXPECT_TRUE(PushesOf<MessageSuccess>("a").empty())
      << "a login resends to the new session only";
  auto fetched = Expect<FetchResult>("a2", FetchNotices{});
  EXPECT_EQ(fetched.count, 1u);
  EXPECT_EQ(fetched.remaining, 0u);
  auto pushed = PushesOf<MessageSuccess>("a2");
  ASSERT_EQ(pushed.size(), 1u);
  EXPECT_EQ(pushed[0].message_id, id);
  // One session acknowledges for all.
  EXPECT_FALSE(Call("a2", NoticeReceipt{id}).has_value());
  EXPECT_EQ(Expect<FetchResult>("a", FetchNotices{}).count, 0u);
  Login("a3", "alice");
  EXPECT_TRUE(PushesOf<MessageSuccess>("a3").empty());
  // A repeated or unknown acknowledgement is a harmless no-op.
  EXPECT_FALSE(Call("a2", NoticeReceipt{id}).has_value());
  EXPECT_FALSE(Call("a2", NoticeReceipt{id + 1000}).has_value());
}

TEST_F(CoreTest, NoticesComeOldestMessageFirst) {
  Join("a", "alice");
  Join("b", "bob");
  std::vector<uint64_t> ids;
  for (int i = 0; i < 3; ++i) ids.push_back(SendText("a", "bob", "m"));
  Expect<LogoutSuccess>("a", Logout{});
  // Confirmed newest first; the notices still come in message order.
  for (auto it = ids.rbegin(); it != ids.rend(); ++it) {
    EXPECT_FALSE(Call("b", MessageReceipt{*it}).has_value());
  }
  Login("a", "alice");
  std::vector<uint64_t> got;
  for (const auto& s : PushesOf<MessageSuccess>("a"))
    got.push_back(s.message_id);
  EXPECT_EQ(got, ids);
  auto first = Expect<FetchResult>("a", FetchNotices{2});
  EXPECT_EQ(first.count, 2u);
  EXPECT_EQ(first.remaining, 1u);
  got.clear();
  for (const auto& s : PushesOf<MessageSuccess>("a"))
    got.push_back(s.message_id);
  EXPECT_EQ(got, (std::vector<uint64_t>{ids[0], ids[1]}));
  EXPECT_FALSE(Call("a", NoticeReceipt{ids[0]}).has_value());
  auto rest = Expect<FetchResult>("a", FetchNotices{});
  EXPECT_EQ(rest.count, 2u);
  EXPECT_EQ(rest.remaining, 0u);
  got.clear();
  for (const auto& s : PushesOf<MessageSuccess>("a"))
    got.push_back(s.message_id);
  EXPECT_EQ(got, (std::vector<uint64_t>{ids[1], ids[2]}));
}

TEST_F(CoreTest, UndeliverableNoticeIsKeptUntilAcknowledged) {
  Join("a", "alice");
  Join("b", "bob");
  uint64_t id = SendText("a", "bob", "never read");
  Expect<DeletionSuccess>("b", DeletionRequest{true});
  auto live = PushesOf<MessageUndeliverable>("a");
  ASSERT_EQ(live.size(), 1u);
  EXPECT_EQ(live[0].message_id, id);
  Login("a2", "alice");
  auto again = PushesOf<MessageUndeliverable>("a2");
  ASSERT_EQ(again.size(), 1u);
  EXPECT_EQ(again[0].message_id, id);
  EXPECT_EQ(again[0].code, ErrorCode::kRecipientDeleted);
  EXPECT_FALSE(Call("a2", NoticeReceipt{id}).has_value());
  Login("a3", "alice");
  EXPECT_TRUE(Pushes("a3").empty());
}

// Only the sender's own notices: another account's receipt for the same id
// touches nothing.
TEST_F(CoreTest, NoticeReceiptOnlyAcknowledgesOwnNotices) {
  Join("a", "alice");
  Join("b", "bob");
  uint64_t id = SendText("a", "bob", "hi");
  EXPECT_FALSE(Call("b", MessageReceipt{id}).has_value());
  EXPECT_FALSE(Call("b", NoticeReceipt{id}).has_value());  // a no-op
  Login("a2", "alice");
  ASSERT_EQ(PushesOf<MessageSuccess>("a2").size(), 1u);
}

// One NOTICE_RECEIPT with message_ids acknowledges each of its notices;
// ids with no notice of this account (unknown, someone else's, repeated)
// are no-ops, as for message_id.
TEST_F(CoreTest, ANoticeReceiptWithIdsAcknowledgesEachOfThem) {
  Join("a", "alice");
  Join("b", "bob");
  Join("c", "chloe");
  const uint64_t first = SendText("a", "bob", "Grüße, 你好 👋");
  const uint64_t second = SendText("a", "bob", "مرحبا");
  const uint64_t third = SendText("a", "bob", "zoë");
  const uint64_t chloes = SendText("c", "bob", "李雷");
  for (uint64_t id : {first, second, third, chloes}) {
    EXPECT_FALSE(Call("b", MessageReceipt{id}).has_value());
  }
  NoticeReceipt acks;
  acks.message_ids = {third, first, chloes, first, third + 1000};
  EXPECT_FALSE(Call("a", acks).has_value());  // accepted: no reply
  Login("a2", "alice");
  const auto again = PushesOf<MessageSuccess>("a2");
  ASSERT_EQ(again.size(), 1u);
  EXPECT_EQ(again[0].message_id, second);
  Login("c2", "chloe");
  ASSERT_EQ(PushesOf<MessageSuccess>("c2").size(), 1u);  // not alice's to ack
}

// One MESSAGE_RECEIPT with message_ids confirms each of them as if sent
// alone: the senders hear of each, the queue empties; repeats are no-ops.
TEST_F(CoreTest, AReceiptWithIdsConfirmsEachOfThem) {
  Join("a", "alice");
  Join("c", "carol");
  CreateUser("x", "bob");
  const uint64_t first = SendText("a", "bob", "Grüße, 你好 👋");
  const uint64_t second = SendText("c", "bob", "مرحبا");
  const uint64_t third = SendText("a", "bob", "zoë");
  Login("b", "bob");
  ASSERT_EQ(Expect<FetchResult>("b", FetchMessages{}).count, 3u);
  MessageReceipt all;
  all.message_ids = {third, first, second, first};
  EXPECT_FALSE(Call("b", all).has_value());  // accepted: no reply
  std::vector<uint64_t> to_alice, to_carol;
  for (const MessageSuccess& s : PushesOf<MessageSuccess>("a")) {
    to_alice.push_back(s.message_id);
  }
  for (const MessageSuccess& s : PushesOf<MessageSuccess>("c")) {
    to_carol.push_back(s.message_id);
  }
  EXPECT_EQ(to_alice, (std::vector<uint64_t>{third, first}));
  EXPECT_EQ(to_carol, (std::vector<uint64_t>{second}));
  EXPECT_EQ(Expect<FetchResult>("b", FetchMessages{}).count, 0u);
}

// A session that logged in with batch_pushes hears of a receipt's
// deliveries to one recipient in one MESSAGE_SUCCESS (message_ids and
// client_msg_ids, pairwise, in the receipt's order); a session of the same
// account without it gets one each. A single delivery keeps the single
// form. The notices stored meanwhile come again at a login and on
// FETCH_NOTICES in runs by recipient, oldest first; FETCH_RESULT counts
// notices, not frames.
TEST_F(CoreTest, ABatchPushesSessionHearsOfAReceiptInOneFrame) {
  CreateUser("x", "Zoe");
  Expect<LoginSuccess>("a",
                       LoginRequest{"Zoe", "password123", std::nullopt, true});
  Login("a1", "Zoe");  // one frame a notice
  Join("b", "li.lei");
  Join("c", "sara");
  const uint64_t first =
      Expect<MessagePending>("a", SendMessage{"li.lei", "Grüße 👋", 501})
          .message_id;
  const uint64_t second =
      Expect<MessagePending>("a", SendMessage{"li.lei", "你好", 502})
          .message_id;
  const uint64_t third =
      Expect<MessagePending>("a", SendMessage{"sara", "مرحبا", 503}).message_id;
  Pushes("b");
  Pushes("c");
  MessageReceipt both;
  both.message_ids = {second, first, second};
  EXPECT_FALSE(Call("b", both).has_value());
  std::vector<MessageSuccess> batched = PushesOf<MessageSuccess>("a");
  ASSERT_EQ(batched.size(), 1u);
  EXPECT_EQ(batched[0].message_id, 0u);
  EXPECT_EQ(batched[0].recipient, "li.lei");
  EXPECT_EQ(batched[0].message_ids, (std::vector<uint64_t>{second, first}));
  EXPECT_EQ(batched[0].client_msg_ids, (std::vector<uint64_t>{502, 501}));
  std::vector<MessageSuccess> each = PushesOf<MessageSuccess>("a1");
  ASSERT_EQ(each.size(), 2u);
  EXPECT_EQ(each[0].message_id, second);
  EXPECT_EQ(each[0].client_msg_id, 502u);
  EXPECT_EQ(each[1].message_id, first);
  EXPECT_EQ(each[1].client_msg_id, 501u);
  EXPECT_TRUE(each[0].message_ids.empty());

  EXPECT_FALSE(Call("c", MessageReceipt{third}).has_value());
  batched = PushesOf<MessageSuccess>("a");
  ASSERT_EQ(batched.size(), 1u);
  EXPECT_EQ(batched[0].message_id, third);
  EXPECT_EQ(batched[0].recipient, "sara");
  EXPECT_EQ(batched[0].client_msg_id, 503u);
  EXPECT_TRUE(batched[0].message_ids.empty());
  PushesOf<MessageSuccess>("a1");

  // Nothing acknowledged: a new batch session gets the three again, as a
  // run to li.lei and a single notice for sara.
  auto login = Expect<LoginSuccess>(
      "a2", LoginRequest{"Zoe", "password123", std::nullopt, true});
  auto expect_runs = [&](const std::vector<MessageSuccess>& got) {
    ASSERT_EQ(got.size(), 2u);
    EXPECT_EQ(got[0].recipient, "li.lei");
    EXPECT_EQ(got[0].message_ids, (std::vector<uint64_t>{first, second}));
    EXPECT_EQ(got[0].client_msg_ids, (std::vector<uint64_t>{501, 502}));
    EXPECT_EQ(got[1].message_id, third);
    EXPECT_EQ(got[1].recipient, "sara");
  };
  expect_runs(PushesOf<MessageSuccess>("a2"));
  FetchResult fetched = Expect<FetchResult>("a2", FetchNotices{});
  EXPECT_EQ(fetched.count, 3u);
  EXPECT_EQ(fetched.remaining, 0u);
  expect_runs(PushesOf<MessageSuccess>("a2"));
  // A session without batch_pushes gets them one by one.
  Login("a3", "Zoe");
  EXPECT_EQ(PushesOf<MessageSuccess>("a3").size(), 3u);
  // One acknowledgement for all of them.
  NoticeReceipt acks;
  acks.message_ids = {first, second, third};
  EXPECT_FALSE(Call("a2", acks).has_value());
  EXPECT_EQ(Expect<FetchResult>("a", FetchNotices{}).count, 0u);
}

// A session that logged in with batch_pushes gets a fetch's messages in
// DISTRIBUTE_MESSAGE's batch form: as few frames as the frame limit allows
// (half of it for the text), the messages in order. Another session of the
// same account gets one frame each.
TEST_F(CoreTest, ABatchPushesSessionGetsAFetchInFewFrames) {
  Join("a", "alice");
  CreateUser("x", "bob");
  std::vector<std::string> bodies = {"Grüße, 你好 👋", "مرحبا", "zoë"};
  for (int i = 0; i < 8; ++i) {
    bodies.push_back(std::string(kMaxBodyBytes / 2, 'x') + "é" +
                     std::string(kMaxBodyBytes / 2 - 2, 'y'));
  }
  std::vector<uint64_t> ids;
  for (const std::string& body : bodies)
    ids.push_back(SendText("a", "bob", body));
  Expect<LoginSuccess>("b",
                       LoginRequest{"bob", "password123", std::nullopt, true});
  const FetchResult fetched = Expect<FetchResult>("b", FetchMessages{});
  EXPECT_EQ(fetched.count, bodies.size());
  for (const OutFrame& out : last_frames_) {
    EXPECT_LE(out.frame.size(), kMaxFrameBytes);
  }
  const std::vector<DistributeMessage> frames =
      PushesOf<DistributeMessage>("b");
  ASSERT_EQ(frames.size(), 3u) << "3 small and 3 large, 3 large, 2 large";
  std::vector<uint64_t> got_ids;
  std::vector<std::string> got_bodies;
  for (const DistributeMessage& d : frames) {
    ForEachMessage(d, [&](uint64_t id, const std::string& sender,
                          const std::string& body, uint64_t sent_at) {
      EXPECT_EQ(sender, "alice");
      EXPECT_EQ(sent_at, static_cast<uint64_t>(now_));
      got_ids.push_back(id);
      got_bodies.push_back(body);
    });
  }
  EXPECT_EQ(got_ids, ids);
  EXPECT_EQ(got_bodies, bodies);
  EXPECT_EQ(frames[2].message_ids.size(), 2u);
  // Nothing confirmed: another session fetches them again, one a frame.
  Login("b2", "bob");
  EXPECT_EQ(Expect<FetchResult>("b2", FetchMessages{}).count, bodies.size());
  const std::vector<DistributeMessage> each = PushesOf<DistributeMessage>("b2");
  ASSERT_EQ(each.size(), bodies.size());
  EXPECT_TRUE(each[0].message_ids.empty());
  EXPECT_EQ(each[0].message_id, ids[0]);
  EXPECT_EQ(each[0].body, bodies[0]);
  // One message fetched alone keeps the single form.
  MessageReceipt all;
  all.message_ids.assign(ids.begin() + 1, ids.end());
  EXPECT_FALSE(Call("b", all).has_value());
  EXPECT_EQ(Expect<FetchResult>("b", FetchMessages{}).count, 1u);
  const std::vector<DistributeMessage> one = PushesOf<DistributeMessage>("b");
  ASSERT_EQ(one.size(), 1u);
  EXPECT_EQ(one[0].message_id, ids[0]);
  EXPECT_TRUE(one[0].message_ids.empty());
}

// Live messages of one broker batch to a session that logged in with
// batch_pushes leave in one DISTRIBUTE_MESSAGE (batch form), in order,
// after the commit; a session of the same account without batch_pushes
// gets one frame each. A message alone keeps the single form.
TEST_F(CoreTest, ABatchPushesSessionGetsABatchsLiveMessagesInOneFrame) {
  Join("a", "alice");
  CreateUser("x", "bob");
  Expect<LoginSuccess>("b",
                       LoginRequest{"bob", "password123", std::nullopt, true});
  Login("b2", "bob");
  const std::vector<std::pair<std::string, std::string>> sends = {
      {"a", "Grüße 👋"}, {"a", "مرحبا"}, {"a", "你好"}, {"a", "zoë"}};
  Batch([&] {
    uint64_t cmid = 700;
    for (const auto& [peer, body] : sends) {
      core_->OnFrame(
          peer, Encode(Message{next_req_++, SendMessage{"bob", body, ++cmid}}),
          -1);
    }
  });
  std::vector<uint64_t> ids;
  for (const Message& m : Drain("a")) {
    ASSERT_TRUE(std::holds_alternative<MessagePending>(m.body));
    ids.push_back(std::get<MessagePending>(m.body).message_id);
  }
  const std::vector<DistributeMessage> one = PushesOf<DistributeMessage>("b");
  ASSERT_EQ(one.size(), 1u);
  ASSERT_EQ(one[0].message_ids.size(), sends.size());
  for (size_t i = 0; i < sends.size(); ++i) {
    EXPECT_EQ(one[0].senders[i], "alice");
    EXPECT_EQ(one[0].bodies[i], sends[i].second);
  }
  EXPECT_EQ(one[0].message_ids, ids);
  const std::vector<DistributeMessage> each = PushesOf<DistributeMessage>("b2");
  ASSERT_EQ(each.size(), sends.size());
  for (size_t i = 0; i < sends.size(); ++i) {
    EXPECT_EQ(each[i].message_id, one[0].message_ids[i]);
    EXPECT_EQ(each[i].body, sends[i].second);
  }
  // Alone in its batch: the single form.
  const uint64_t alone = SendText("a", "bob", "שלום");
  const std::vector<DistributeMessage> single =
      PushesOf<DistributeMessage>("b");
  ASSERT_EQ(single.size(), 1u);
  EXPECT_EQ(single[0].message_id, alone);
  EXPECT_TRUE(single[0].message_ids.empty());
  EXPECT_EQ(single[0].body, "שלום");
}

// SEND_MESSAGE's batch form: the messages stored in their order, one
// MESSAGE_PENDING naming each, pushed as if sent one by one (one frame to a
// batch_pushes session); a retry of the batch, or of part of it, gets the
// same ids and stores nothing again.
TEST_F(CoreTest, ABatchSendStoresEachMessageInOrder) {
  Join("a", "alice");
  CreateUser("x", "bob");
  Expect<LoginSuccess>("b",
                       LoginRequest{"bob", "password123", std::nullopt, true});
  Login("b2", "bob");
  SendMessage batch;
  batch.recipient = "BOB";
  batch.bodies = {"Grüße 👋", "مرحبا", "你好", "zoë"};
  batch.client_msg_ids = {31, 30, 77, 2};
  auto pending = Expect<MessagePending>("a", batch);
  EXPECT_EQ(pending.message_id, 0u);
  EXPECT_EQ(pending.client_msg_ids, batch.client_msg_ids);
  ASSERT_EQ(pending.message_ids.size(), 4u);
  EXPECT_TRUE(
      std::is_sorted(pending.message_ids.begin(), pending.message_ids.end()));
  EXPECT_EQ(
      std::set<uint64_t>(pending.message_ids.begin(), pending.message_ids.end())
          .size(),
      4u);
  const std::vector<DistributeMessage> one = PushesOf<DistributeMessage>("b");
  ASSERT_EQ(one.size(), 1u);
  EXPECT_EQ(one[0].message_ids, pending.message_ids);
  EXPECT_EQ(one[0].bodies, batch.bodies);
  const std::vector<DistributeMessage> each = PushesOf<DistributeMessage>("b2");
  ASSERT_EQ(each.size(), 4u);
  for (size_t i = 0; i < each.size(); ++i) {
    EXPECT_EQ(each[i].message_id, pending.message_ids[i]);
    EXPECT_EQ(each[i].sender, "alice");
    EXPECT_EQ(each[i].body, batch.bodies[i]);
  }
  // The whole batch again: the same ids, nothing new.
  auto again = Expect<MessagePending>("a", batch);
  EXPECT_EQ(again.message_ids, pending.message_ids);
  EXPECT_TRUE(Pushes("b").empty());
  EXPECT_TRUE(Pushes("b2").empty());
  // Part of it again, with a new one: the old ids, one new message.
  SendMessage mixed;
  mixed.recipient = "bob";
  mixed.bodies = {"again", "שלום"};
  mixed.client_msg_ids = {77, 78};
  auto part = Expect<MessagePending>("a", mixed);
  ASSERT_EQ(part.message_ids.size(), 2u);
  EXPECT_EQ(part.message_ids[0], pending.message_ids[2]);
  EXPECT_GT(part.message_ids[1], pending.message_ids[3]);
  const std::vector<DistributeMessage> fresh =
      PushesOf<DistributeMessage>("b2");
  ASSERT_EQ(fresh.size(), 1u);
  EXPECT_EQ(fresh[0].message_id, part.message_ids[1]);
  EXPECT_EQ(fresh[0].body, "שלום");
  // A single send with a batch's client_msg_id is a retry too.
  EXPECT_EQ(Expect<MessagePending>("a", SendMessage{"bob", "x", 30}).message_id,
            pending.message_ids[1]);
  // Fetched later, oldest first: the batch's order.
  Login("b3", "bob");
  Expect<FetchResult>("b3", FetchMessages{});
  std::vector<uint64_t> fetched;
  for (const auto& d : PushesOf<DistributeMessage>("b3")) {
    fetched.push_back(d.message_id);
  }
  std::vector<uint64_t> all = pending.message_ids;
  all.push_back(part.message_ids[1]);
  EXPECT_EQ(fetched, all);
}

// The largest batch (kMaxSendItems messages), and one to oneself: every
// message stored in order, each pushed as if sent alone.
TEST_F(CoreTest, ABatchSendOfTheMostMessagesAndOneToOneselfWork) {
  Join("a", "alice");
  CreateUser("x", "bob");
  SendMessage most;
  most.recipient = "bob";
  for (uint64_t i = 0; i < kMaxSendItems; ++i) {
    most.bodies.push_back(std::to_string(i) + (i % 2 ? " 👋" : " مرحبا"));
    most.client_msg_ids.push_back(kMaxSendItems - i);
  }
  auto pending = Expect<MessagePending>("a", most);
  ASSERT_EQ(pending.message_ids.size(), kMaxSendItems);
  EXPECT_TRUE(
      std::is_sorted(pending.message_ids.begin(), pending.message_ids.end()));
  EXPECT_EQ(Login("b", "bob").pending, kMaxSendItems);
  EXPECT_EQ(Expect<FetchResult>("b", FetchMessages{}).count, kMaxSendItems);
  const std::vector<DistributeMessage> got = PushesOf<DistributeMessage>("b");
  ASSERT_EQ(got.size(), kMaxSendItems);
  for (size_t i = 0; i < got.size(); ++i) {
    EXPECT_EQ(got[i].message_id, pending.message_ids[i]);
    EXPECT_EQ(got[i].body, most.bodies[i]);
  }

  SendMessage self;
  self.recipient = "Alice";
  self.bodies = {"note 1 ✍", "note 2 ✍"};
  self.client_msg_ids = {5000, 5001};
  auto mine = Expect<MessagePending>("a", self);
  const std::vector<DistributeMessage> notes = PushesOf<DistributeMessage>("a");
  ASSERT_EQ(notes.size(), 2u);
  for (size_t i = 0; i < notes.size(); ++i) {
    EXPECT_EQ(notes[i].message_id, mine.message_ids[i]);
    EXPECT_EQ(notes[i].sender, "alice");
    EXPECT_EQ(notes[i].body, self.bodies[i]);
  }
}

// A batch any of whose messages would be refused alone is refused whole:
// one MESSAGE_FAILURE naming every client_msg_id, and nothing stored.
TEST_F(CoreTest, ABatchSendIsRefusedWhole) {
  config_.max_queue_per_user = 5;
  Restart();
  Join("a", "alice");
  CreateUser("x", "bob");
  auto refused = [&](std::vector<std::string> bodies,
                     std::vector<uint64_t> cmids, ErrorCode code,
                     const std::string& reason_part,
                     const std::string& to = "bob") {
    SendMessage batch;
    batch.recipient = to;
    batch.bodies = std::move(bodies);
    batch.client_msg_ids = std::move(cmids);
    auto fail = Expect<MessageFailure>("a", batch);
    EXPECT_EQ(fail.code, code) << fail.reason;
    EXPECT_NE(fail.reason.find(reason_part), std::string::npos) << fail.reason;
    EXPECT_EQ(fail.client_msg_id, 0u);
    EXPECT_EQ(fail.client_msg_ids, batch.client_msg_ids);
  };
  refused({"Grüße", "你好"}, {1, 2}, ErrorCode::kUnknownRecipient,
          "no account named 'nobody'", "nobody");
  refused({"a", "b", std::string(kMaxBodyBytes + 1, 'x'), "d"}, {1, 2, 3, 4},
          ErrorCode::kBodyTooLarge, "message 3 of 4: body is");
  refused({"a", "b", "c"}, {1, 2, 1}, ErrorCode::kInvalidArgument,
          "client_msg_id 1 appears more than once");
  // Three queued; four more would pass the limit of five.
  SendText("a", "bob", "1");
  SendText("a", "bob", "2");
  SendText("a", "bob", "3");
  refused({"👋", "مرحبا", "zoë"}, {11, 12, 13}, ErrorCode::kQueueFull,
          "'bob' would have 6 undelivered messages");
  // None of the refused was stored, nor remembered as sent.
  EXPECT_EQ(Login("b", "bob").pending, 3u);
  SendMessage fits;
  fits.recipient = "bob";
  fits.bodies = {"👋", "مرحبا"};
  fits.client_msg_ids = {11, 12};
  auto ok = Expect<MessagePending>("a", fits);
  ASSERT_EQ(ok.message_ids.size(), 2u);
  // Full now; a retry of it still answers (it adds nothing).
  EXPECT_EQ(Expect<MessagePending>("a", fits).message_ids, ok.message_ids);
  refused({"👋", "more"}, {12, 14}, ErrorCode::kQueueFull, "would have 6");
  EXPECT_EQ(PushesOf<DistributeMessage>("b").size(), 2u);  // live, each
  Expect<FetchResult>("b", FetchMessages{});
  std::vector<std::string> bodies;
  for (const auto& d : PushesOf<DistributeMessage>("b")) {
    bodies.push_back(d.body);
  }
  EXPECT_EQ(bodies, (std::vector<std::string>{"1", "2", "3", "👋", "مرحبا"}));
}

// Ids the broker would refuse alone (someone else's message, one never
// handed out) change nothing and are named in one ERROR; the others of the
// request are confirmed all the same.
TEST_F(CoreTest, AReceiptWithIdsNamesTheIdsItRefused) {
  Join("a", "alice");
  Join("b", "bob");
  Join("c", "carol");
  const uint64_t bobs = SendText("a", "bob", "李雷");
  const uint64_t carols = SendText("a", "carol", "שלום");
  const uint64_t never = carols + 1000;
  MessageReceipt mixed;
  mixed.message_ids = {carols, bobs, never};
  std::optional<Message> reply = Call("b", mixed);
  ASSERT_TRUE(reply.has_value());
  const auto* error = std::get_if<Error>(&reply->body);
  ASSERT_NE(error, nullptr);
  EXPECT_EQ(error->code, ErrorCode::kNotYours);  // the first refused
  EXPECT_EQ(error->message_ids, (std::vector<uint64_t>{carols, never}));
  EXPECT_NE(error->reason.find("2 of 3"), std::string::npos) << error->reason;
  // Bob's message is confirmed; Carol's still waits for her.
  std::vector<uint64_t> told;
  for (const MessageSuccess& s : PushesOf<MessageSuccess>("a")) {
    told.push_back(s.message_id);
  }
  EXPECT_EQ(told, (std::vector<uint64_t>{bobs}));
  EXPECT_EQ(Expect<FetchResult>("c", FetchMessages{}).count, 1u);
  EXPECT_EQ(Expect<FetchResult>("b", FetchMessages{}).count, 0u);
  // Every id refused: the same ERROR, nothing confirmed.
  MessageReceipt none;
  none.message_ids = {never};
  reply = Call("b", none);
  ASSERT_TRUE(reply.has_value());
  ASSERT_TRUE(std::holds_alternative<Error>(reply->body));
  EXPECT_EQ(std::get<Error>(reply->body).code, ErrorCode::kUnknownMessage);
  EXPECT_EQ(Expect<FetchResult>("c", FetchMessages{}).count, 1u);
}

TEST_F(CoreTest, DeletedSendersNoticesAreGone) {
  Join("a", "alice");
  Join("b", "bob");
  uint64_t id = SendText("a", "bob", "hi");
  auto account = store_->FindAccount("alice");
  ASSERT_TRUE(account.ok() && account->has_value());
  const int64_t alice = (*account)->id;
  EXPECT_FALSE(Call("b", MessageReceipt{id}).has_value());
  auto count = store_->CountNotices(alice);
  ASSERT_TRUE(count.ok());
  EXPECT_EQ(*count, 1);
  Expect<DeletionSuccess>("a", DeletionRequest{false});
  Restart();  // read from the database, not a cache
  count = store_->CountNotices(alice);
  ASSERT_TRUE(count.ok());
  EXPECT_EQ(*count, 0);
  Join("a", "alice");  // a new account with the old name inherits nothing
  EXPECT_TRUE(Pushes("a").empty());
  EXPECT_EQ(Expect<FetchResult>("a", FetchNotices{}).count, 0u);
}

// A receipt for a message whose sender is gone stores no notice.
TEST_F(CoreTest, ReceiptForDeletedSenderStoresNothing) {
  Join("a", "alice");
  Join("b", "bob");
  auto account = store_->FindAccount("alice");
  ASSERT_TRUE(account.ok() && account->has_value());
  const int64_t alice = (*account)->id;
  uint64_t id = SendText("a", "bob", "hi");
  Expect<DeletionSuccess>("a", DeletionRequest{false});
  Pushes("b");
  EXPECT_FALSE(Call("b", MessageReceipt{id}).has_value());
  auto count = store_->CountNotices(alice);
  ASSERT_TRUE(count.ok());
  EXPECT_EQ(*count, 0);
}

TEST_F(CoreTest, NoticesPerSenderAreCapped) {
  config_.max_notices_per_account = 3;
  Restart();
  Join("a", "alice");
  Join("b", "bob");
  std::vector<uint64_t> ids;
  for (int i = 0; i < 5; ++i) ids.push_back(SendText("a", "bob", "m"));
  Expect<LogoutSuccess>("a", Logout{});
  for (uint64_t id : ids)
    EXPECT_FALSE(Call("b", MessageReceipt{id}).has_value());
  Login("a", "alice");
  std::vector<uint64_t> got;
  for (const auto& s : PushesOf<MessageSuccess>("a"))
    got.push_back(s.message_id);
  EXPECT_EQ(got, (std::vector<uint64_t>{ids[2], ids[3], ids[4]}))
      << "the oldest are dropped";
  auto fetched = Expect<FetchResult>("a", FetchNotices{});
  EXPECT_EQ(fetched.count, 3u);
  EXPECT_EQ(fetched.remaining, 0u);
}

TEST_F(CoreTest, NoticeRequestsNeedLogin) {
  CreateUser("x", "xavier");
  EXPECT_EQ(ExpectError("x", NoticeReceipt{1}), ErrorCode::kNotLoggedIn);
  EXPECT_EQ(ExpectError("x", FetchNotices{}), ErrorCode::kNotLoggedIn);
}

TEST_F(CoreTest, ReceiptOnlyFromTheRecipient) {
  Join("a", "alice");
  Join("b", "bob");
  Join("e", "eve");
  uint64_t id = SendText("a", "bob", "private");
  EXPECT_EQ(ExpectError("e", MessageReceipt{id}), ErrorCode::kNotYours);
  EXPECT_EQ(ExpectError("a", MessageReceipt{id}), ErrorCode::kNotYours);
  EXPECT_EQ(ExpectError("e", MessageReceipt{id + 1000}),
            ErrorCode::kUnknownMessage);
  EXPECT_TRUE(PushesOf<MessageSuccess>("a").empty());
  // Still queued for bob.
  Expect<FetchResult>("b", FetchMessages{});
  EXPECT_EQ(PushesOf<DistributeMessage>("b").back().message_id, id);
}

class ListTest : public CoreTest {
 protected:
  void SetUp() override {
    CoreTest::SetUp();
    ASSERT_TRUE(store_->Begin().ok());
    for (const char* name : {"Alice", "anna", "bob", "carol", "abba", "zed"}) {
      ASSERT_TRUE(store_->CreateAccount(name, UsernameKey(name), "x", 0).ok());
    }
    ASSERT_TRUE(store_->Commit().ok());
    Join("me", "me");
  }
  AccountList List(std::optional<std::string> pattern,
                   std::optional<uint64_t> limit = std::nullopt,
                   std::optional<std::string> cursor = std::nullopt) {
    return Expect<AccountList>("me", ListAccounts{pattern, limit, cursor});
  }
};

TEST_F(ListTest, ListsEveryoneInOrder) {
  auto page = List(std::nullopt);
  EXPECT_EQ(page.accounts,
            (std::vector<std::string>{"abba", "Alice", "anna", "bob", "carol",
                                      "me", "zed"}));
  EXPECT_EQ(page.cursor, "");
}

TEST_F(ListTest, WildcardsAreCaseInsensitive) {
  EXPECT_EQ(List("A*").accounts,
            (std::vector<std::string>{"abba", "Alice", "anna"}));
  EXPECT_EQ(List("*b*").accounts, (std::vector<std::string>{"abba", "bob"}));
  EXPECT_EQ(List("?nna").accounts, (std::vector<std::string>{"anna"}));
  EXPECT_EQ(List("*a").accounts, (std::vector<std::string>{"abba", "anna"}));
  EXPECT_EQ(List("BOB").accounts, (std::vector<std::string>{"bob"}));
  EXPECT_TRUE(List("b").accounts.empty());
  EXPECT_TRUE(List("\\*").accounts.empty()) << "escaped star is literal";
}

TEST_F(ListTest, PagesWithCursor) {
  std::vector<std::string> all;
  std::optional<std::string> cursor;
  int pages = 0;
  do {
    auto page = List(std::nullopt, 3, cursor);
    EXPECT_LE(page.accounts.size(), 3u);
    all.insert(all.end(), page.accounts.begin(), page.accounts.end());
    cursor = page.cursor;
    ASSERT_LT(++pages, 10);
  } while (!cursor->empty());
  EXPECT_EQ(all, (std::vector<std::string>{"abba", "Alice", "anna", "bob",
                                           "carol", "me", "zed"}));
}

TEST_F(ListTest, EmptyPatternMatchesNothing) {
  // "" is a pattern (it matches only the empty name), not "absent".
  auto page = List("");
  EXPECT_TRUE(page.accounts.empty());
  EXPECT_EQ(page.cursor, "");
  EXPECT_EQ(List(std::nullopt).accounts.size(), 7u) << "absent is '*'";
}

TEST_F(ListTest, EachPageTakesItsOwnLimit) {
  auto first = List("a*", 1);
  EXPECT_EQ(first.accounts, (std::vector<std::string>{"abba"}));
  auto rest = List("a*", std::nullopt, first.cursor);  // default 100
  EXPECT_EQ(rest.accounts, (std::vector<std::string>{"Alice", "anna"}));
  EXPECT_EQ(rest.cursor, "");
  // An empty cursor is no cursor: the first page.
  EXPECT_EQ(List("a*", 1, "").accounts, (std::vector<std::string>{"abba"}));
}

TEST_F(ListTest, CursorIsOpaqueAndBoundToItsPattern) {
  auto first = List("a*", 1);
  ASSERT_FALSE(first.cursor.empty());
  EXPECT_EQ(first.cursor.find("abba"), std::string::npos)
      << "the cursor is not the last name: " << first.cursor;
  EXPECT_LE(first.cursor.size(), kMaxCursorBytes);
  // The same pattern in another case is the same query.
  EXPECT_EQ(List("A*", 10, first.cursor).accounts,
            (std::vector<std::string>{"Alice", "anna"}));
  // Another pattern, absent pattern, the empty pattern: refused.
  EXPECT_EQ(ExpectError("me", ListAccounts{"b*", 10, first.cursor}),
            ErrorCode::kInvalidArgument);
  EXPECT_EQ(ExpectError("me", ListAccounts{std::nullopt, 10, first.cursor}),
            ErrorCode::kInvalidArgument);
  EXPECT_EQ(ExpectError("me", ListAccounts{"", 10, first.cursor}),
            ErrorCode::kInvalidArgument);
  // Made up: a name (the old format), garbage, a truncated or altered cursor.
  for (std::string bad :
       {std::string("abba"), std::string("L1zz"), first.cursor.substr(0, 18),
        first.cursor + "0", "L2" + first.cursor.substr(2)}) {
    EXPECT_EQ(ExpectError("me", ListAccounts{"a*", 10, bad}),
              ErrorCode::kInvalidArgument)
        << bad;
  }
  // A position forged under the right digest only moves the start.
  const std::string forged = first.cursor.substr(0, 18) + "616e6e" /* "ann" */;
  EXPECT_EQ(List("a*", 10, forged).accounts,
            (std::vector<std::string>{"anna"}));
}

TEST_F(ListTest, InfixScanIsBoundedPerRequest) {
  ASSERT_TRUE(store_->Begin().ok());
  for (int i = 0; i < kListScanBudget + 500; ++i) {
    std::string name = "user" + std::to_string(100000 + i);
    ASSERT_TRUE(store_->CreateAccount(name, name, "x", 0).ok());
  }
  ASSERT_TRUE(store_->Commit().ok());
  // Only "zed" matches, far past the budget: the first page comes back
  // empty with a cursor, and paging on finds it.
  auto first = List("*ze*", 10);
  EXPECT_TRUE(first.accounts.empty());
  ASSERT_FALSE(first.cursor.empty());
  auto second = List("*ze*", 10, first.cursor);
  EXPECT_EQ(second.accounts, (std::vector<std::string>{"zed"}));
}

TEST(WildcardTest, Matches) {
  EXPECT_TRUE(WildcardMatch("*", ""));
  EXPECT_TRUE(WildcardMatch("a*c", "abbbc"));
  EXPECT_TRUE(WildcardMatch("a?c", "abc"));
  EXPECT_FALSE(WildcardMatch("a?c", "ac"));
  EXPECT_TRUE(WildcardMatch("*a*b*", "xxaxxbxx"));
  EXPECT_FALSE(WildcardMatch("*a*b", "xxbxxa"));
  EXPECT_TRUE(WildcardMatch("a\\*", "a*"));
  EXPECT_FALSE(WildcardMatch("a\\*", "ab"));
  EXPECT_EQ(WildcardPrefix("ab*c"), "ab");
  EXPECT_EQ(WildcardPrefix("a\\*b?"), "a*b");
  EXPECT_EQ(WildcardPrefix("*ab"), "");
}

}  // namespace
}  // namespace zchat

namespace zchat {
namespace {

using testing::CoreTest;

// A full disk: SQLite's max_page_count stops growth. Sends fail with a clear
// error and no MESSAGE_PENDING; reads go on; space returning heals it.
TEST_F(CoreTest, FullDiskRefusesSendsButServesReads) {
  Join("a", "alice");
  Join("b", "bob");
  SendText("a", "bob", "before");
  Pushes("b");
  // Cap the database at its current size.
  Restart(StoreOptions{SyncMode::kFull, /*max_pages=*/1});
  Login("a", "alice");
  Login("b", "bob");
  const std::string big(kMaxBodyBytes, 'x');
  bool refused = false;
  for (int i = 0; i < 50 && !refused; ++i) {
    std::optional<Message> r = Call("a", SendMessage{"bob", big, 5000u + i});
    ASSERT_TRUE(r.has_value());
    if (auto* f = std::get_if<MessageFailure>(&r->body)) {
      EXPECT_EQ(f->code, ErrorCode::kStorage) << f->reason;
      refused = true;
    }
  }
  ASSERT_TRUE(refused) << "the capped database kept accepting messages";
  // Reads still work.
  EXPECT_GE(Expect<FetchResult>("b", FetchMessages{}).count, 1u);
  Expect<Pong>("a", Ping{});
  // Space returns: sends work again.
  Restart();
  Login("a", "alice");
  SendText("a", "bob", "after");
}

// A read-only database (a read-only file system, a locked file): reads are
// served, writes get a clear storage error and change nothing.
TEST_F(CoreTest, ReadOnlyDatabaseServesReads) {
  Join("a", "alice");
  CreateUser("b", "bob");
  SendText("a", "alice", "kept");
  std::string token = Login("a2", "alice").token;
  Restart(StoreOptions{SyncMode::kNormal, 0, /*read_only=*/true});
  // A token login only reads.
  EXPECT_EQ(
      Expect<LoginSuccess>("a", LoginRequest{"alice", std::nullopt, token})
          .pending,
      1u);
  EXPECT_EQ(Expect<FetchResult>("a", FetchMessages{}).count, 1u);
  EXPECT_EQ(Expect<AccountList>("a", ListAccounts{}).accounts.size(), 2u);
  Expect<Pong>("a", Ping{});
  auto refused = Expect<MessageFailure>("a", SendMessage{"bob", "x", 99});
  EXPECT_EQ(refused.code, ErrorCode::kStorage) << refused.reason;
  EXPECT_EQ(
      Expect<CreateFailure>("c", CreateAccount{"carol", "password123"}).code,
      ErrorCode::kStorage);
  // Writable again: nothing of the refused requests happened.
  Restart();
  Login("b", "bob");
  EXPECT_EQ(Expect<FetchResult>("b", FetchMessages{}).count, 0u);
  CreateUser("c", "carol");
}

}  // namespace
}  // namespace zchat
