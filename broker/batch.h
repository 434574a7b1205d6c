// Batch: one transaction and the frames it will send (group commit). The
// loop opens a batch, runs requests in it, then commits and sends what the
// batch produced, in order.
//
// The dependency rule, in this one place: once a batch has written anything,
// every later request of the batch depends on its commit (it may have read
// the uncommitted writes), and so does a request that writes. If the commit
// fails (or a write fails mid-batch and SQLite drops the transaction), every
// dependent request gets a `storage` refusal instead of its replies, none of
// its pushes leave, and the session changes it made are undone. Requests
// that ran before the first write, and wrote nothing, stand either way.
// A request deferred to the hash pool is not answered by the batch that
// deferred it, so it gets nothing on failure and finishes later.
//
// A request marked `alone` runs in a transaction of its own: what the batch
// wrote before it is committed first, and what it wrote is committed before
// the next request runs (a login on a shared store, whose row locks must
// not be held while other rows are locked: see pg_store.h). Between
// BeginGroup() and EndGroup(), alone requests share one such transaction
// (the caller has locked their rows in order first). A failed commit there
// refuses what depended on it, as at the batch's end.
// Loop thread only.
#pragma once

#include <array>
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "broker/metrics.h"
#include "broker/store.h"
#include "broker/verdict.h"
#include "messages/messages.h"

namespace zchat {

struct OutFrame {
  std::string routing_id;
  std::string frame;
  // The position of the request that produced it among the frames of its
  // batch (RequestInfo::order): frames of requests run on several threads
  // are put back in that order. 0 for frames of no request.
  uint64_t order = 0;
};

// `frames` grouped by connection (routing id): each connection's in their
// order, connections in the order of their first frame. libzmq's I/O thread
// wakes when a connection's queue turns non-empty and writes what it finds
// there with one send(): frames of a connection handed over together tend
// to leave together, where interleaved with other connections' frames each
// left with a send() (and two epoll_ctl()) of its own. Order between
// connections is nothing a client can see.
std::vector<OutFrame*> GroupByConnection(std::vector<OutFrame>& frames);

// Who asked, and what a refusal of it must echo.
struct RequestInfo {
  std::string routing_id;
  uint64_t request_id = 0;
  MessageType type = MessageType::kPing;
  uint64_t client_msg_id = 0;  // SEND_MESSAGE's, echoed by MESSAGE_FAILURE
  std::vector<uint64_t> client_msg_ids;  // its batch form's, likewise
  uint64_t order = 0;  // copied to its frames (OutFrame::order)
  bool alone = false;  // in a transaction of its own (above)
};

class Batch;

// The frames of one request, and what to undo if its batch fails. Handed to
// the request's handler by Batch::Run; valid only during that call.
class Responder {
 public:
  // The reply to the requesting connection, echoing its request id.
  void Reply(Body body);
  // A push (request id 0) to any connection.
  void Push(std::string_view routing_id, const Body& body);
  // An already encoded push (one encoding fanned out to several sessions).
  void PushFrame(std::string_view routing_id, std::string frame);
  // One encoded push to each of `routing_ids` (the last takes the frame).
  void PushFrameTo(const std::vector<std::string>& routing_ids,
                   std::string frame);
  // A message to sessions that logged in with batch_pushes: at the
  // commit, a connection's messages of the batch go out together in
  // DISTRIBUTE_MESSAGE's batch form (one alone in the single form), in the
  // place of the first of them.
  void PushMessageTo(const std::vector<std::string>& routing_ids,
                     DistributeMessage message);
  // The same to one session (a fetch's messages to the fetching session).
  void PushMessage(std::string_view routing_id, DistributeMessage message);
  // Runs `undo` if the batch fails and this request depended on it.
  void OnRollback(std::function<void()> undo);
  // Counts a message event, once the batch commits (metrics.h).
  void Count(MessageEvent event, uint32_t n = 1);

 private:
  friend class Batch;
  Responder(Batch& batch, size_t index) : batch_(batch), index_(index) {}
  Batch& batch_;
  size_t index_;
};

class Batch {
 public:
  // `metrics`, if given, counts requests by outcome, the events requests
  // noted (Responder::Count), batch sizes and commit times, at commit.
  explicit Batch(Store& store, Metrics* metrics = nullptr)
      : store_(store), metrics_(metrics) {}

  // Opens the transaction. If BEGIN fails, requests still run: reads work,
  // writes are refused by the store (kStorage).
  void Begin();
  // Runs one request. A refused verdict replaces whatever it emitted with
  // RefusalReply; a refusal after a write fails the batch so far.
  void Run(const RequestInfo& info,
           const std::function<Verdict(Responder&)>& work);
  // A frame that stands whatever the commit does: answers to frames that
  // could not be decoded, transport refusals, housekeeping pushes.
  void EmitIndependent(std::string routing_id, std::string frame);
  // Whether the open transaction holds writes.
  bool dirty() const { return dirty_; }
  // Commits what the batch wrote so far, in requests or not (the requests
  // run until now are settled: a later failure does not refuse them), and
  // opens the next transaction. Nothing if nothing was written.
  void Checkpoint();
  // A transaction of its own for the alone requests run until EndGroup()
  // (and for whatever the caller writes meanwhile), committed at EndGroup().
  void BeginGroup();
  void EndGroup();
  // Commits and returns the frames to send, in order.
  std::vector<OutFrame> Commit();

 private:
  friend class Responder;
  struct Record {
    RequestInfo info;
    bool depends = false;   // its frames leave only if the batch commits
    bool deferred = false;  // answered by a later batch
    ErrorCode outcome = ErrorCode::kOk;
    std::array<uint32_t, kMessageEventCount> events{};
    std::vector<std::function<void()>> undo;
  };
  struct Entry {
    OutFrame frame;
    int request;       // index into records_, or -1: stands regardless
    int message = -1;  // index into messages_: a push to coalesce, no frame
  };

  // The frames to send: the outbox's, with the messages to coalesce
  // encoded, a connection's together.
  std::vector<OutFrame> Assemble();
  // Assemble's working memory, kept from commit to commit (no allocation
  // per connection once grown): a connection's messages to coalesce gather
  // in the frame of the first (a group).
  struct Group {
    size_t frame = 0;          // its place in the frames
    std::vector<int> members;  // indices into messages_
    size_t text = 0;
  };
  std::vector<Group> groups_;  // the first group_count_ are this commit's
  size_t group_count_ = 0;
  // A connection's open group, by routing id (views into the frames of the
  // commit that filled it: cleared before each use).
  std::unordered_map<std::string_view, size_t> open_groups_;
  std::vector<uint32_t> uses_;  // each message's entries not yet encoded

  // Rolls back: dependent requests since the last failure get `storage`.
  void Fail(const Status& cause);
  // Commits the transaction so far (or fails it): the requests run until
  // now are settled.
  void Settle();
  // Opens the transaction (Begin, and after a settled or failed one).
  void Open();
  // Adds the settled requests' outcomes and events to metrics_.
  void CountOutcomes();

  Store& store_;
  Metrics* metrics_;
  std::vector<Entry> outbox_;
  std::vector<DistributeMessage> messages_;  // see PushMessageTo
  std::vector<Record> records_;
  size_t first_open_record_ = 0;  // records before it are settled
  bool dirty_ = false;
  bool had_transaction_ = false;
  int64_t changes_at_open_ = 0;  // store_.TotalChanges() when opened
  bool group_open_ = false;      // between BeginGroup() and EndGroup()
};

}  // namespace zchat
