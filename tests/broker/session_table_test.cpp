// SessionTable: session states and their transitions, login snapshots, and
// the per-connection queue of requests waiting behind password hashing.
#include "broker/session_table.h"

#include <gtest/gtest.h>

namespace zchat {
namespace {

TEST(SessionTableTest, NewPeerIsAnonymous) {
  SessionTable t;
  Peer& p = t.Touch("id", 3, 100);
  EXPECT_EQ(p.state, SessionState::kAnonymous);
  EXPECT_FALSE(p.held());
  EXPECT_EQ(p.last_seen_ms, 100);
}

TEST(SessionTableTest, PasswordLoginPassesThroughAuthenticating) {
  SessionTable t;
  Peer& p = t.Touch("id", 3, 0);
  t.BeginAuthentication(p);
  EXPECT_EQ(p.state, SessionState::kAuthenticating);
  EXPECT_FALSE(t.IsOnline(7)) << "not a session until the check passes";
  t.EndAuthentication(p);
  t.CompleteLogin(p, 7, "Zoë", "th");
  EXPECT_EQ(p.state, SessionState::kLoggedIn);
  EXPECT_EQ(t.SessionsOf(7), std::vector<std::string>{"id"});
  t.Logout(p);
  EXPECT_EQ(p.state, SessionState::kAnonymous);
  EXPECT_TRUE(p.username.empty());
  EXPECT_FALSE(t.IsOnline(7));
}

TEST(SessionTableTest, SnapshotRestoresALoginAndItsIndex) {
  SessionTable t;
  Peer& p = t.Touch("id", 3, 0);
  t.CompleteLogin(p, 7, "alice", "th");
  LoginSnapshot before = t.Snapshot(p);
  t.Logout(p);
  t.Restore("id", 3, before);
  EXPECT_TRUE(p.logged_in());
  EXPECT_EQ(p.token_hash, "th");
  EXPECT_TRUE(t.IsOnline(7));
  // Restoring "anonymous" takes it out of the index again.
  t.Restore("id", 3, LoginSnapshot{});
  EXPECT_FALSE(t.IsOnline(7));
}

TEST(SessionTableTest, RestoreIgnoresAPeerOnAnotherConnection) {
  SessionTable t;
  Peer& p = t.Touch("id", 3, 0);
  t.CompleteLogin(p, 7, "alice", "th");
  LoginSnapshot before = t.Snapshot(p);
  t.Touch("id", 4, 0);  // the routing id now names a new connection
  t.Restore("id", 3, before);
  EXPECT_FALSE(t.Find("id")->logged_in());
  EXPECT_FALSE(t.IsOnline(7));
}

TEST(SessionTableTest, HeldPeerQueuesFramesInOrderWithinBounds) {
  SessionTable t;
  Peer& p = t.Touch("id", 3, 0);
  t.Hold(p, 42);
  EXPECT_TRUE(p.held());
  EXPECT_TRUE(t.Wait(p, "one", 2, 100));
  EXPECT_TRUE(t.Wait(p, "two", 2, 100));
  EXPECT_FALSE(t.Wait(p, "three", 2, 100)) << "frame bound";
  EXPECT_EQ(t.Release(p), (std::vector<std::string>{"one", "two"}));
  EXPECT_FALSE(p.held());
  t.Hold(p, 43);
  EXPECT_FALSE(t.Wait(p, std::string(101, 'x'), 2, 100)) << "byte bound";
  EXPECT_TRUE(t.Release(p).empty());
}

TEST(SessionTableTest, ReusedDescriptorDropsTheStalePeer) {
  SessionTable t;
  Peer& old = t.Touch("old", 5, 0);
  t.CompleteLogin(old, 1, "a", "");
  t.Touch("new", 5, 0);
  EXPECT_EQ(t.Find("old"), nullptr);
  EXPECT_FALSE(t.IsOnline(1));
}

// libzmq may hand over the last frames of a closed connection after the
// first frames of the newer connection that took its descriptor: they must
// not end the newer connection's session.
TEST(SessionTableTest, ALateFrameOfAClosedConnectionLeavesTheNewerPeer) {
  using namespace std::string_literals;
  const std::string older = "\0\0\0\x01\xff"s, newer = "\0\0\0\x02\x00"s;
  SessionTable t;
  t.Touch(older, 7, 0);
  Peer& now = t.Touch(newer, 7, 0);  // the descriptor was reused
  t.CompleteLogin(now, 9, "zoë", "");
  EXPECT_EQ(t.Find(older), nullptr);
  Peer& late = t.Touch(older, 7, 0);  // a frame it sent before closing
  EXPECT_EQ(late.connection, -1);
  ASSERT_NE(t.Find(newer), nullptr);
  EXPECT_TRUE(t.Find(newer)->logged_in());
  EXPECT_TRUE(t.IsOnline(9));
  // The newer connection keeps the descriptor: a third one on it replaces
  // the newer peer, not the stale one.
  t.Touch("\0\0\0\x03\x00"s, 7, 0);
  EXPECT_EQ(t.Find(newer), nullptr);
  EXPECT_NE(t.Find(older), nullptr);
}

TEST(SessionTableTest, SilentPeersAreListed) {
  SessionTable t;
  t.Touch("quiet", 1, 10);
  t.Touch("busy", 2, 500);
  EXPECT_EQ(t.SilentSince(100), std::vector<std::string>{"quiet"});
}

}  // namespace
}  // namespace zchat
