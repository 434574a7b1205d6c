// BrokerCore: the broker without its sockets. It takes frames, hash-pool
// completions and ticks, and returns the frames to send. It composes the
// parts, each with one concern:
//   SessionTable (session_table.h)  who is connected, session states, holds
//   dispatcher.h                    which handler serves which request, when
//   handlers.h (handle_*.cpp)       one handler per request type
//   Batch (batch.h)                 the transaction and the outbox
//   Notices (notices.h)             the sender's delivery notices
//   Store (store.h)                 durable state
// A batch is BeginBatch, any number of OnFrame/OnHashResults/OnTick, then
// EndBatch, which commits and returns what to send. Requests of one
// connection take effect in the order they were sent: while one waits for
// password hashing, the connection's later frames wait behind it. With a
// store that reads ahead (Store::WantsLookahead, PostgreSQL), frames are
// gathered until the batch's next other event, their sends' and receipts'
// reads are announced at once (Store::Prefetch), and then they run in order.
// Loop thread only.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "broker/batch.h"
#include "broker/config.h"
#include "broker/context.h"
#include "broker/hash_pool.h"
#include "broker/login_throttle.h"
#include "broker/metrics.h"
#include "broker/notices.h"
#include "broker/partitioned_store.h"
#include "broker/session_table.h"
#include "broker/store.h"
#include "broker/verdict.h"
#include "broker/workers.h"
#include "messages/messages.h"

namespace zchat {

class BrokerCore {
 public:
  using Clock = std::function<int64_t()>;  // Unix time, milliseconds

  BrokerCore(Store& store, HashPool& hashes, BrokerConfig config, Clock clock);

  void BeginBatch();
  // One frame from a peer. `connection` identifies the transport connection
  // it came on (the socket descriptor; -1 if unknown): a routing id that
  // shows up on another connection is a new peer, not the old session.
  void OnFrame(std::string_view routing_id, std::string_view frame,
               int connection = -1);
  // A message the transport refused before decoding (several parts, a
  // client-chosen routing id): answered with ERROR, request id 0.
  void OnTransportError(std::string_view routing_id, ErrorCode code,
                        std::string detail);
  // Finishes password work that the hash pool completed, then runs the
  // frames that waited behind it.
  void OnHashResults();
  // Ends sessions silent past the timeout; prunes old dedup ids and tokens.
  void OnTick();
  // Commits the batch and returns what to send, in order (see batch.h for
  // what a failed commit sends instead).
  std::vector<OutFrame> EndBatch();

  // Runs the hot requests of each batch (SEND_MESSAGE, MESSAGE_RECEIPT and
  // NOTICE_RECEIPT of logged-in connections) partition by partition, on
  // `threads` threads (this one included), each partition in a transaction
  // of its own, committed by its thread (partitioned_store.h): a batch's
  // commits and most of its work run in parallel. `store` is the store the
  // core was made with. The other requests run after them, on this thread,
  // as before; so does every request of a connection after its first other
  // request in the batch, so that its requests take effect in order.
  // Fails (and changes nothing) if the views cannot be opened.
  [[nodiscard]] Status RunInPartitions(PartitionedStore& store, int threads);

  // Several brokers on one store: pushes what other brokers' commits told
  // this one (messages and notices for accounts with sessions here, deleted
  // accounts). Does nothing for a store of one broker.
  void OnStoreNotifications();

  // The transport could not deliver to this peer (it is gone): its session
  // ends. Queued messages stay queued.
  void OnPeerGone(std::string_view routing_id);

  const SessionTable& sessions() const { return sessions_; }
  // Counted by the core; the transport adds its own (server.cpp).
  Metrics& metrics() { return metrics_; }
  const Metrics& metrics() const { return metrics_; }

 private:
  // A request waiting for the hash pool.
  struct Deferral {
    std::string routing_id;
    uint64_t request_id = 0;
    PendingHash pending;
  };

  Context MakeContext();
  // The request in `frame`, or nullopt after answering it with ERROR.
  std::optional<Message> DecodeOrRefuse(const Peer& peer,
                                        std::string_view frame);
  // Decodes and dispatches one frame of a peer that is not held.
  void Handle(Peer& peer, std::string_view frame);
  // Answers a frame that did not decode with ERROR (it does not depend on
  // the batch).
  void RefuseUndecoded(const Peer& peer, const Status& status,
                       uint64_t request_id);
  // Runs the gathered frames (arrived_, RunFrames) and keeps their slots'
  // buffers for the next batch's.
  void RunArrived();
  void Dispatch(Peer& peer, const Message& message);
  // Who asked and what a refusal echoes; `order` as in RequestInfo.
  RequestInfo InfoOf(const Peer& peer, const Message& message,
                     uint64_t order) const;
  // Whether `message` runs in a transaction of its own (RequestInfo::alone).
  bool RunsAlone(const Message& message) const;
  // Routes one request to its handler, with the dispatcher's refusals, in
  // `ctx` (the loop's, or a partition's: a hot request never defers, and only
  // a deferral touches the core's own state).
  Verdict Serve(Context& ctx, Peer& peer, const Message& message,
                Responder& out);
  // Hands a deferred request's job to the pool and holds its connection.
  Verdict Defer(Peer& peer, uint64_t request_id, Verdict deferred);
  // Finishes a deferred request; then runs what waited behind it, unless
  // `run_waiting` is false (the caller does, later). False if its
  // connection is gone (or is another one now): nothing ran.
  bool Finish(Deferral deferral, const HashResult& result,
              bool run_waiting = true);
  // Runs the frames that waited while `peer` was held, until one holds it
  // again.
  void RunWaiting(Peer& peer);
  void RefuseWaiting(Peer& peer, std::string_view frame);
  // The partition whose thread may run `m` from `peer` (-1: this thread).
  int HotPartition(const Peer& peer, const Result<Message>& m) const;
  // Runs the frames marked with a partition in `lanes` (RunInPartitions),
  // on the workers; their frames join the batch's as independent frames
  // (their partitions have committed).
  void RunLanes(const std::vector<Peer*>& peers,
                const std::vector<std::optional<Result<Message>>>& decoded,
                const std::vector<int>& lanes);

  Store& store_;
  HashPool& hashes_;
  const BrokerConfig config_;
  const Clock clock_;
  SessionTable sessions_;
  LoginThrottle throttle_;
  Notices notices_;
  Metrics metrics_;
  Batch batch_;
  bool in_batch_ = false;
  struct Arrived {
    std::string routing_id;
    std::string frame;
  };
  // The frames gathered for RunArrived are the first arrived_count_ slots;
  // a slot keeps its strings' buffers from batch to batch (a frame's up to
  // kKeptFrameBytes), so that gathering a frame is a copy, not also an
  // allocation and a free.
  static constexpr size_t kKeptFrameBytes = 4096;
  std::vector<Arrived> arrived_;
  size_t arrived_count_ = 0;
  // Announces the frames' reads, then handles each in order.
  void RunFrames(std::span<const Arrived> frames);
  std::unordered_map<uint64_t, Deferral> deferred_;  // by hash-pool ticket
  // Several brokers on one store: the accounts this broker has recorded as
  // present here, reconciled with the session table at every tick, and how
  // long its lease lasts without renewal.
  std::unordered_set<int64_t> published_;
  static constexpr int64_t kLeaseMs = 10'000;
  // Records presence changes and renews the lease (at a tick, in a batch).
  void ReconcilePresence(int64_t now_ms);
  uint64_t next_ticket_ = 1;
  // RunInPartitions: the store, the threads, and per partition the batch and
  // notices its thread uses.
  PartitionedStore* partitioned_ = nullptr;
  std::unique_ptr<Workers> workers_;
  static constexpr size_t kParallelDecodeFrames = 64;
  struct Lane {
    std::unique_ptr<Notices> notices;
    std::unique_ptr<Batch> batch;
  };
  std::vector<Lane> lanes_;
  // Pruning with partitions: a tick marks every partition due; a due
  // partition prunes on its own thread at its next run in a lane, before its
  // requests (RunLanes), with the cutoffs of the latest tick. One still due
  // at the next tick (it had no requests meanwhile) prunes then, on this
  // thread. So the pruning, like the requests, runs on the partitions'
  // threads, not on the loop's. Element p is written by the loop thread
  // between runs and by partition p's thread during one.
  std::vector<char> prune_due_;
  int64_t prune_sends_before_ = 0;
  int64_t prune_tokens_before_ = 0;
};

}  // namespace zchat
