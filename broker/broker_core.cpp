#include "broker/broker_core.h"

#include <algorithm>
#include <cassert>
#include <cstdlib>
#include <iterator>
#include <utility>

#include "broker/dispatcher.h"
#include "broker/log.h"
#include "broker/usernames.h"
#include "messages/codec.h"

namespace zchat {

BrokerCore::BrokerCore(Store& store, HashPool& hashes, BrokerConfig config,
                       Clock clock)
    : store_(store),
      hashes_(hashes),
      config_(config),
      clock_(std::move(clock)),
      throttle_(config.throttle),
      notices_(store, sessions_, config.max_notices_per_account),
      batch_(store, &metrics_) {}

Context BrokerCore::MakeContext() {
  return Context{store_,  sessions_, notices_, throttle_,
                 hashes_, config_,   clock_()};
}

void BrokerCore::BeginBatch() {
  assert(!in_batch_);
  in_batch_ = true;
  batch_.Begin();
}

std::vector<OutFrame> BrokerCore::EndBatch() {
  assert(in_batch_);
  RunArrived();
  in_batch_ = false;
  return batch_.Commit();
}

void BrokerCore::OnFrame(std::string_view routing_id, std::string_view frame,
                         int connection) {
  assert(in_batch_);
  if (LogEnabled(LogLevel::kDebug) && !sessions_.Find(routing_id)) {
    // Local diagnostics only: routing ids never go to clients.
    static constexpr char kHex[] = "0123456789abcdef";
    std::string hex;
    for (unsigned char c : routing_id) {
      hex.push_back(kHex[c >> 4]);
      hex.push_back(kHex[c & 15]);
    }
    Log(LogLevel::kDebug, "new peer " + hex);
  }
  Peer& peer = sessions_.Touch(routing_id, connection, clock_());
  if (peer.held()) {
    if (!sessions_.Wait(peer, std::string(frame), config_.max_waiting_requests,
                        config_.max_waiting_bytes)) {
      RefuseWaiting(peer, frame);
    }
    return;
  }
  if (store_.WantsLookahead() || partitioned_) {
    if (arrived_count_ == arrived_.size()) arrived_.emplace_back();
    Arrived& slot = arrived_[arrived_count_++];
    slot.routing_id.assign(routing_id);
    slot.frame.assign(frame);
    return;
  }
  Handle(peer, frame);
}

Status BrokerCore::RunInPartitions(PartitionedStore& store, int threads) {
  assert(static_cast<Store*>(&store) == &store_);
  if (Status s = store.OpenViews(); !s.ok()) return s;
  partitioned_ = &store;
  workers_ = std::make_unique<Workers>(
      std::max(1, std::min(threads, store.partitions())));
  lanes_.clear();
  for (int p = 0; p < store.partitions(); ++p) {
    Store& view = store.View(p);
    lanes_.push_back({std::make_unique<Notices>(
                          view, sessions_, config_.max_notices_per_account),
                      std::make_unique<Batch>(view, &metrics_)});
  }
  prune_due_.assign(lanes_.size(), 0);
  return Status::Ok();
}

int BrokerCore::HotPartition(const Peer& peer, const Result<Message>& m) const {
  if (!m.ok() || !peer.logged_in() || peer.held()) return -1;
  if (std::holds_alternative<SendMessage>(m->body) ||
      std::holds_alternative<NoticeReceipt>(m->body)) {
    // The sender's messages, dedup records and notices.
    return partitioned_->OfAccountId(peer.account_id);
  }
  if (const auto* receipt = std::get_if<MessageReceipt>(&m->body)) {
    // The messages' (their senders', where their notices go too): ids of
    // several partitions run on the loop thread.
    int partition = -1;
    for (uint64_t id : ReceiptIds(*receipt)) {
      const int p = partitioned_->OfMessageId(static_cast<int64_t>(id));
      if (partition >= 0 && p != partition) return -1;
      partition = p;
    }
    return partition;
  }
  return -1;
}

void BrokerCore::RunLanes(
    const std::vector<Peer*>& peers,
    const std::vector<std::optional<Result<Message>>>& decoded,
    const std::vector<int>& lanes) {
  const int64_t now = clock_();
  std::vector<std::vector<size_t>> by_partition(lanes_.size());
  for (size_t i = 0; i < lanes.size(); ++i) {
    if (lanes[i] >= 0) by_partition[static_cast<size_t>(lanes[i])].push_back(i);
  }
  std::vector<std::vector<OutFrame>> out(lanes_.size());
  // One partition's requests run in order on one thread, in its own batch;
  // a thread serves partitions t, t + threads, ...
  auto run_partition = [&](size_t p) {
    Lane& lane = lanes_[p];
    Store& view = partitioned_->View(static_cast<int>(p));
    lane.batch->Begin();
    if (prune_due_[p]) {
      // Still due after a failure (no transaction, a full disk): tried
      // again at the next run or tick.
      if (Status s = view.Prune(prune_sends_before_, prune_tokens_before_);
          s.ok()) {
        prune_due_[p] = 0;
      } else {
        Log(LogLevel::kWarn, "pruning old send ids and tokens in partition " +
                                 std::to_string(p) + ": " + s.ToString());
      }
    }
    metrics_.partition_requests.Add(by_partition[p].size());
    for (size_t i : by_partition[p]) {
      const Message& message = **decoded[i];
      lane.batch->Run(
          InfoOf(*peers[i], message, i + 1), [&](Responder& out) -> Verdict {
            Context ctx{view,    sessions_, *lane.notices, throttle_, hashes_,
                        config_, now};
            return Serve(ctx, *peers[i], message, out);
          });
    }
    out[p] = lane.batch->Commit();
  };
  const size_t threads = static_cast<size_t>(workers_->threads());
  std::vector<std::function<void()>> tasks;
  for (size_t t = 0; t < threads && t < lanes_.size(); ++t) {
    // Only threads with requests to run are woken.
    bool busy = false;
    for (size_t p = t; p < lanes_.size(); p += threads) {
      busy = busy || !by_partition[p].empty();
    }
    if (!busy) continue;
    tasks.push_back([&, t] {
      for (size_t p = t; p < lanes_.size(); p += threads) {
        if (!by_partition[p].empty()) run_partition(p);
      }
    });
  }
  workers_->RunAll(tasks);
  // Back in arrival order: a connection's replies follow its requests. A
  // lane's frames are in its requests' order (unless a failed commit put
  // refusals at its end), so the lanes are merged head by head; one
  // request's frames all come from one lane, in the order made.
  const auto by_order = [](const OutFrame& a, const OutFrame& b) {
    return a.order < b.order;
  };
  for (auto& part : out) {
    if (!std::is_sorted(part.begin(), part.end(), by_order)) {
      std::stable_sort(part.begin(), part.end(), by_order);
    }
  }
  std::vector<size_t> next(out.size(), 0);
  for (;;) {
    size_t from = out.size();
    for (size_t p = 0; p < out.size(); ++p) {
      if (next[p] < out[p].size() &&
          (from == out.size() ||
           by_order(out[p][next[p]], out[from][next[from]]))) {
        from = p;
      }
    }
    if (from == out.size()) break;
    OutFrame& f = out[from][next[from]++];
    batch_.EmitIndependent(std::move(f.routing_id), std::move(f.frame));
  }
}

void BrokerCore::RunArrived() {
  if (arrived_count_ == 0) return;
  // Taken out first: what runs may gather (and run) frames of its own.
  std::vector<Arrived> slots = std::exchange(arrived_, {});
  const size_t count = std::exchange(arrived_count_, 0);
  RunFrames(std::span<const Arrived>(slots.data(), count));
  for (size_t i = 0; i < count; ++i) {
    if (slots[i].frame.capacity() > kKeptFrameBytes) {
      slots[i].frame = std::string();
    }
  }
  if (arrived_.empty()) arrived_ = std::move(slots);
}

void BrokerCore::RunFrames(std::span<const Arrived> frames) {
  std::vector<std::optional<Result<Message>>> decoded(frames.size());
  std::vector<uint64_t> request_ids(frames.size(), 0);
  std::vector<Lookahead> reads;
  // With worker threads, a large batch is decoded on all of them (a quarter
  // of a chat message's instructions).
  const size_t threads =
      workers_ ? static_cast<size_t>(workers_->threads()) : 1;
  if (threads > 1 && frames.size() >= kParallelDecodeFrames) {
    std::vector<std::function<void()>> tasks;
    const size_t step = (frames.size() + threads - 1) / threads;
    for (size_t from = 0; from < frames.size(); from += step) {
      tasks.push_back([&, from] {
        for (size_t i = from; i < std::min(frames.size(), from + step); ++i) {
          decoded[i].emplace(Decode(frames[i].frame, &request_ids[i]));
        }
      });
    }
    workers_->RunAll(tasks);
  }
  for (size_t i = 0; i < frames.size(); ++i) {
    if (!decoded[i])
      decoded[i].emplace(Decode(frames[i].frame, &request_ids[i]));
    if (!store_.WantsLookahead()) continue;
    const Peer* peer = sessions_.Find(frames[i].routing_id);
    const Result<Message>& m = *decoded[i];
    // Only what the handler will read for sure: a wrong guess costs a read.
    if (!m.ok() || !peer || peer->held() || !peer->logged_in()) continue;
    if (const auto* send = std::get_if<SendMessage>(&m->body)) {
      const std::string key = UsernameKey(send->recipient);
      ForEachSent(*send, [&](const std::string& body, uint64_t cmid) {
        if (body.size() <= kMaxBodyBytes) {
          reads.push_back(
              {Lookahead::Kind::kSend, peer->account_id, cmid, key});
        }
      });
    } else if (const auto* receipt = std::get_if<MessageReceipt>(&m->body)) {
      for (uint64_t id : ReceiptIds(*receipt)) {
        reads.push_back({Lookahead::Kind::kReceipt, peer->account_id, id, {}});
      }
    }
  }
  store_.Prefetch(reads);
  // Partitions: the hot requests first, each on its partition's thread.
  std::vector<int> lanes(frames.size(), -1);
  if (partitioned_ && partitioned_->Untouched()) {
    std::vector<Peer*> peers(frames.size(), nullptr);
    std::unordered_set<std::string_view> in_order;  // went to this thread
    std::vector<int64_t> recipients;
    bool any = false;
    for (size_t i = 0; i < frames.size(); ++i) {
      const std::string& id = frames[i].routing_id;
      peers[i] = sessions_.Find(id);
      if (!peers[i] || in_order.count(id)) continue;
      const int p = HotPartition(*peers[i], *decoded[i]);
      if (p < 0) {
        in_order.insert(id);
        continue;
      }
      lanes[i] = p;
      any = true;
      if (const auto* send = std::get_if<SendMessage>(&(*decoded[i])->body)) {
        Result<std::optional<int64_t>> to =
            store_.FindAccountId(UsernameKey(send->recipient));
        if (to.ok() && to->has_value()) recipients.push_back(**to);
      }
    }
    if (any) {
      if (Status s = partitioned_->PrepareParallel(recipients); s.ok()) {
        RunLanes(peers, decoded, lanes);
      } else {
        Log(LogLevel::kWarn, "requests run on one thread: " + s.ToString());
        std::fill(lanes.begin(), lanes.end(), -1);
      }
    }
  }
  // On a shared store, a run of consecutive requests that run alone (token
  // logins, FETCH_NOTICES: InfoOf) shares one transaction, its logins' rows
  // locked first, in order (a re-login storm: one commit, not one each).
  const auto alone = [&](size_t i) {
    return lanes[i] < 0 && decoded[i]->ok() && RunsAlone(**decoded[i]);
  };
  size_t group_end = 0;  // the open group's end, or 0: none open
  for (size_t i = 0; i < frames.size(); ++i) {
    if (group_end == i && group_end > 0) {
      batch_.EndGroup();
      group_end = 0;
    }
    if (group_end == 0 && store_.Shared() && alone(i)) {
      std::vector<std::string> keys;
      for (group_end = i; group_end < frames.size() && alone(group_end);
           ++group_end) {
        const auto* login =
            std::get_if<LoginRequest>(&(*decoded[group_end])->body);
        if (login && IsValidUsername(login->username)) {
          keys.push_back(UsernameKey(login->username));
        }
      }
      batch_.BeginGroup();
      if (store_.InTransaction()) {
        if (Status s = store_.PrepareSessions(keys); !s.ok()) {
          Log(LogLevel::kWarn, "preparing logins: " + s.ToString());
        }
      }
    }
    if (lanes[i] >= 0) continue;  // ran in its partition
    Peer* peer = sessions_.Find(frames[i].routing_id);
    if (!peer) continue;  // gone meanwhile (nothing removes one in a batch)
    if (peer->held()) {   // an earlier frame of the batch holds it now
      if (!sessions_.Wait(*peer, frames[i].frame, config_.max_waiting_requests,
                          config_.max_waiting_bytes)) {
        RefuseWaiting(*peer, frames[i].frame);
      }
      continue;
    }
    Result<Message>& m = *decoded[i];
    if (!m.ok()) {
      RefuseUndecoded(*peer, m.status(), request_ids[i]);
      continue;
    }
    Dispatch(*peer, *m);
  }
  if (group_end > 0) batch_.EndGroup();
}

std::optional<Message> BrokerCore::DecodeOrRefuse(const Peer& peer,
                                                  std::string_view frame) {
  uint64_t request_id = 0;
  Result<Message> decoded = Decode(frame, &request_id);
  if (decoded.ok()) return std::move(*decoded);
  RefuseUndecoded(peer, decoded.status(), request_id);
  return std::nullopt;
}

void BrokerCore::RefuseUndecoded(const Peer& peer, const Status& status,
                                 uint64_t request_id) {
  metrics_.CountRequest(0, status.code());
  // Not a request: its ERROR does not depend on the batch.
  batch_.EmitIndependent(
      peer.routing_id,
      Encode(Message{request_id, Error{status.code(), status.detail()}}));
}

void BrokerCore::RefuseWaiting(Peer& peer, std::string_view frame) {
  std::optional<Message> m = DecodeOrRefuse(peer, frame);
  if (!m) return;
  const auto* send = std::get_if<SendMessage>(&m->body);
  metrics_.CountRequest(static_cast<uint64_t>(TypeOf(m->body)),
                        ErrorCode::kBusy);
  const Verdict busy = Verdict::Refused(
      Status(ErrorCode::kBusy,
             "too many requests wait behind this connection's password "
             "check; retry after its reply"));
  batch_.EmitIndependent(
      peer.routing_id,
      Encode(
          Message{m->request_id,
                  RefusalReply(
                      TypeOf(m->body), busy, send ? send->client_msg_id : 0,
                      send ? send->client_msg_ids : std::vector<uint64_t>{})}));
}

void BrokerCore::OnTransportError(std::string_view routing_id, ErrorCode code,
                                  std::string detail) {
  RunArrived();  // what arrived before it goes first
  // No session is looked up or created: the frame is not a request.
  metrics_.CountRequest(0, code);
  batch_.EmitIndependent(std::string(routing_id),
                         Encode(Message{0, Error{code, std::move(detail)}}));
}

void BrokerCore::Handle(Peer& peer, std::string_view frame) {
  if (std::optional<Message> m = DecodeOrRefuse(peer, frame)) {
    Dispatch(peer, *m);
  }
}

RequestInfo BrokerCore::InfoOf(const Peer& peer, const Message& message,
                               uint64_t order) const {
  RequestInfo info{peer.routing_id, message.request_id, TypeOf(message.body)};
  info.order = order;
  if (const auto* send = std::get_if<SendMessage>(&message.body)) {
    info.client_msg_id = send->client_msg_id;
    info.client_msg_ids = send->client_msg_ids;
  }
  info.alone = RunsAlone(message);
  return info;
}

bool BrokerCore::RunsAlone(const Message& message) const {
  // On a shared store, what locks an account's counter rows before the
  // commit (a token login's presence; notices read, which sends the
  // transaction's notice writes first) runs alone: held with other rows,
  // they could deadlock with another broker's commit (pg_store.h).
  if (!store_.Shared()) return false;
  const auto* login = std::get_if<LoginRequest>(&message.body);
  return (login && login->token) ||
         std::holds_alternative<FetchNotices>(message.body);
}

Verdict BrokerCore::Serve(Context& ctx, Peer& peer, const Message& message,
                          Responder& out) {
  const MessageType type = TypeOf(message.body);
  const Route* route = FindRoute(type);
  if (!route) return RefuseNotARequest(type);
  if (!route->Allows(peer.state)) return RefuseInState(type, peer.state);
  Request req{peer, message.request_id, out};
  Verdict verdict = route->handle(ctx, req, message);
  if (verdict.deferred()) {
    return Defer(peer, message.request_id, std::move(verdict));
  }
  return verdict;
}

void BrokerCore::Dispatch(Peer& peer, const Message& message) {
  // The work captures one pointer, which std::function keeps without
  // allocating (three did not fit, an allocation per request).
  struct Call {
    BrokerCore* core;
    Peer* peer;
    const Message* message;
  } call{this, &peer, &message};
  batch_.Run(InfoOf(peer, message, 0), [&call](Responder& out) -> Verdict {
    Context ctx = call.core->MakeContext();
    return call.core->Serve(ctx, *call.peer, *call.message, out);
  });
}

Verdict BrokerCore::Defer(Peer& peer, uint64_t request_id, Verdict deferred) {
  const uint64_t ticket = next_ticket_++;
  HashJob job = std::move(deferred.job());
  job.ticket = ticket;
  if (!hashes_.Submit(std::move(job))) {
    return Status(ErrorCode::kBusy, "the broker is busy; retry shortly");
  }
  PendingHash& pending = deferred.pending_hash();
  if (pending.type == MessageType::kLoginRequest) {
    sessions_.BeginAuthentication(peer);
  }
  sessions_.Hold(peer, ticket);
  deferred_[ticket] = Deferral{peer.routing_id, request_id, std::move(pending)};
  return deferred;
}

void BrokerCore::OnHashResults() {
  assert(in_batch_);
  RunArrived();
  std::vector<std::pair<Deferral, HashResult>> done;
  for (HashResult& result : hashes_.TakeCompleted()) {
    auto it = deferred_.find(result.ticket);
    if (it == deferred_.end()) continue;
    done.emplace_back(std::move(it->second), std::move(result));
    deferred_.erase(it);
  }
  // On a shared store the logins finish alone (InfoOf), all of them in one
  // transaction with their rows locked first, in order; what waited behind
  // them runs after it.
  const auto login = [](const auto& d) {
    return d.first.pending.type == MessageType::kLoginRequest;
  };
  if (store_.Shared() && std::any_of(done.begin(), done.end(), login)) {
    std::vector<std::string> keys;
    for (const auto& d : done) {
      if (login(d) && d.first.pending.account_id > 0) {
        keys.push_back(d.first.pending.key);
      }
    }
    batch_.BeginGroup();
    if (store_.InTransaction()) {
      if (Status s = store_.PrepareSessions(keys); !s.ok()) {
        Log(LogLevel::kWarn, "preparing logins: " + s.ToString());
      }
    }
    std::vector<std::string> finished;
    for (auto& d : done) {
      if (!login(d)) continue;
      std::string id = d.first.routing_id;
      if (Finish(std::move(d.first), d.second, /*run_waiting=*/false)) {
        finished.push_back(std::move(id));
      }
    }
    batch_.EndGroup();
    for (const std::string& id : finished) {
      if (Peer* peer = sessions_.Find(id)) RunWaiting(*peer);
    }
    std::erase_if(done, login);
  }
  for (auto& [deferral, result] : done) Finish(std::move(deferral), result);
}

bool BrokerCore::Finish(Deferral deferral, const HashResult& result,
                        bool run_waiting) {
  // The connection may have gone while the hash ran (or its routing id now
  // names a new connection, which holds no ticket of ours).
  Peer* peer = sessions_.Find(deferral.routing_id);
  if (!peer || peer->hold_ticket != result.ticket) return false;
  const MessageType type = deferral.pending.type;
  const Route* route = FindRoute(type);
  assert(route && route->finish);
  // The password check is over: the finisher logs the connection in, or
  // refuses and leaves it anonymous.
  if (peer->state == SessionState::kAuthenticating) {
    sessions_.EndAuthentication(*peer);
  }
  // A password login's session starts here: alone on a shared store, as a
  // token login (InfoOf).
  RequestInfo info{peer->routing_id, deferral.request_id, type, 0};
  info.alone = store_.Shared() && type == MessageType::kLoginRequest;
  batch_.Run(info, [&](Responder& out) -> Verdict {
    Context ctx = MakeContext();
    Request req{*peer, deferral.request_id, out};
    return route->finish(ctx, req, deferral.pending, result);
  });
  if (run_waiting) RunWaiting(*peer);
  return true;
}

void BrokerCore::RunWaiting(Peer& peer) {
  std::vector<std::string> waiting = sessions_.Release(peer);
  for (size_t i = 0; i < waiting.size(); ++i) {
    if (peer.held()) {
      // Held again: the rest waits behind the new hold, in order.
      for (size_t j = i; j < waiting.size(); ++j) {
        if (!sessions_.Wait(peer, std::move(waiting[j]),
                            config_.max_waiting_requests,
                            config_.max_waiting_bytes)) {
          RefuseWaiting(peer, waiting[j]);
        }
      }
      return;
    }
    Handle(peer, waiting[i]);
  }
}

void BrokerCore::OnPeerGone(std::string_view routing_id) {
  if (in_batch_) RunArrived();
  if (const Peer* peer = sessions_.Find(routing_id);
      peer && peer->logged_in()) {
    Log(LogLevel::kInfo,
        "session ended: " + peer->username + " (connection gone)");
  }
  sessions_.Remove(routing_id);
}

void BrokerCore::OnStoreNotifications() {
  assert(in_batch_);
  RunArrived();
  if (!store_.Shared()) return;
  const std::vector<std::string> items = store_.TakeNotifications();
  // The messages named, read at once (those confirmed meanwhile are gone).
  std::vector<int64_t> ids;
  for (const std::string& item : items) {
    if (item.starts_with("m ")) {
      ids.push_back(std::strtoll(item.c_str() + 2, nullptr, 10));
    }
  }
  std::unordered_map<int64_t, QueuedMessage> messages;
  if (!ids.empty()) {
    Result<std::vector<QueuedMessage>> found = store_.FindMessages(ids);
    if (found.ok()) {
      for (QueuedMessage& q : *found) messages[q.id] = std::move(q);
    } else {
      Log(LogLevel::kWarn, "notified messages not read (they stay queued): " +
                               found.status().ToString());
    }
  }
  for (const std::string& item : items) {
    if (item.starts_with("m ")) {
      const int64_t id = std::strtoll(item.c_str() + 2, nullptr, 10);
      auto m = messages.find(id);
      if (m == messages.end()) continue;  // confirmed meanwhile
      const QueuedMessage& q = m->second;
      const std::vector<std::string> here =
          sessions_.SessionsOf(q.recipient_id);
      if (here.empty()) continue;
      const std::string frame = Encode(Message{
          0, DistributeMessage{static_cast<uint64_t>(q.id), q.sender_name,
                               q.body, static_cast<uint64_t>(q.sent_at_ms)}});
      for (const std::string& s : here) batch_.EmitIndependent(s, frame);
    } else if (item.starts_with("n ")) {
      int64_t account = 0;
      Notice notice;
      if (!Notices::FromItem(item, &account, &notice)) continue;
      const std::vector<std::string> here = sessions_.SessionsOf(account);
      if (here.empty()) continue;
      const std::string frame = Encode(Message{0, Notices::ToBody(notice)});
      for (const std::string& s : here) batch_.EmitIndependent(s, frame);
    } else if (item.starts_with("d ")) {
      const int64_t account = std::strtoll(item.c_str() + 2, nullptr, 10);
      for (const std::string& s : sessions_.SessionsOf(account)) {
        batch_.EmitIndependent(
            s, Encode(Message{0, SessionEnded{ErrorCode::kAccountDeleted,
                                              "the account was deleted"}}));
        if (Peer* p = sessions_.Find(s)) sessions_.Logout(*p);
      }
    }
  }
}

void BrokerCore::ReconcilePresence(int64_t now_ms) {
  if (Status s = store_.RenewLease(now_ms, kLeaseMs); !s.ok()) {
    Log(LogLevel::kWarn, "renewing this broker's lease: " + s.ToString());
    return;
  }
  std::unordered_set<int64_t> now_here;
  for (int64_t account : sessions_.Accounts()) {
    now_here.insert(account);
    if (!published_.count(account)) {
      if (!store_.SetPresence(account, true).ok()) return;
    }
  }
  for (int64_t account : published_) {
    if (!now_here.count(account)) {
      if (!store_.SetPresence(account, false).ok()) return;
    }
  }
  published_ = std::move(now_here);
}

void BrokerCore::OnTick() {
  assert(in_batch_);
  RunArrived();
  const int64_t now = clock_();
  for (const std::string& id :
       sessions_.SilentSince(now - config_.session_timeout_ms)) {
    if (Peer* peer = sessions_.Find(id); peer && peer->logged_in()) {
      Log(LogLevel::kInfo,
          "session ended: " + peer->username + " (" +
              std::string(ErrorCodeName(ErrorCode::kSessionExpired)) + ")");
      batch_.EmitIndependent(
          id, Encode(Message{
                  0, SessionEnded{
                         ErrorCode::kSessionExpired,
                         "no traffic for " +
                             std::to_string(config_.session_timeout_ms / 1000) +
                             " s"}}));
    }
    sessions_.Remove(id);
  }
  throttle_.Forget(now);
  if (store_.Shared() && store_.InTransaction()) ReconcilePresence(now);
  if (!store_.InTransaction()) return;
  const int64_t sends_before = now - config_.dedup_window_ms;
  const int64_t tokens_before = now - config_.token_lifetime_ms;
  if (partitioned_) {
    // Each partition prunes on its own thread at its next run (RunLanes);
    // one that had none since the last tick prunes here (prune_due_).
    prune_sends_before_ = sends_before;
    prune_tokens_before_ = tokens_before;
    for (size_t p = 0; p < prune_due_.size(); ++p) {
      if (!prune_due_[p]) {
        prune_due_[p] = 1;
        continue;
      }
      prune_due_[p] = 0;
      if (Status s = partitioned_->PrunePartition(static_cast<int>(p),
                                                  sends_before, tokens_before);
          !s.ok()) {
        Log(LogLevel::kWarn, "pruning old send ids and tokens in partition " +
                                 std::to_string(p) + ": " + s.ToString());
      }
    }
    return;
  }
  if (Status s = store_.Prune(sends_before, tokens_before); !s.ok()) {
    Log(LogLevel::kWarn, "pruning old send ids and tokens: " + s.ToString());
  }
}

}  // namespace zchat
