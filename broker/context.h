// What a handler works with: a narrow view of the broker (store, sessions,
// notices, throttle, hash pool, config, the time) and the request it
// handles. Handlers are free functions over these (handlers.h); none of them
// touches a socket.
#pragma once

#include <cstdint>
#include <utility>

#include "broker/batch.h"
#include "broker/config.h"
#include "broker/hash_pool.h"
#include "broker/login_throttle.h"
#include "broker/notices.h"
#include "broker/session_table.h"
#include "broker/store.h"

namespace zchat {

struct Context {
  Store& store;
  SessionTable& sessions;
  Notices& notices;
  LoginThrottle& throttle;
  const HashPool& hashes;
  const BrokerConfig& config;
  int64_t now_ms;
};

// One request being handled: the connection it came on, its id, and where
// its replies and pushes go.
struct Request {
  Peer& peer;
  uint64_t id;
  Responder& out;

  void Reply(Body body) { out.Reply(std::move(body)); }
};

// Changes `peer`'s login through `transition` (a SessionTable transition)
// so that it is undone if the request's batch fails.
template <class Transition>
void ChangeSession(Context& ctx, Responder& out, Peer& peer,
                   Transition&& transition) {
  out.OnRollback([&sessions = ctx.sessions, id = peer.routing_id,
                  connection = peer.connection,
                  before = ctx.sessions.Snapshot(peer)] {
    sessions.Restore(id, connection, before);
  });
  transition();
}

// Tells the other brokers holding sessions of `account_id` (several brokers
// on one store) about `item` when the batch commits: "m ID" (a message to
// push), "n ACCOUNT ID KIND CLIENT_MSG_ID PEER" (a notice), "d ACCOUNT" (the
// account was deleted). Nothing for a store of one broker.
void NotifyOtherBrokers(Context& ctx, int64_t account_id,
                        const std::string& item);

// A live message to every session of an account: one frame each to the
// sessions that did not log in with batch_pushes, coalesced with the
// batch's others to each session that did (Responder::PushMessageTo).
// Returns how many sessions it went to.
size_t PushMessageToAccount(Context& ctx, Responder& out, int64_t account_id,
                            DistributeMessage message);

}  // namespace zchat
