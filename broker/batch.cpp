#include "broker/batch.h"

#include <algorithm>
#include <cassert>
#include <chrono>
#include <unordered_map>
#include <utility>

#include "broker/log.h"
#include "messages/codec.h"

namespace zchat {

std::vector<OutFrame*> GroupByConnection(std::vector<OutFrame>& frames) {
  std::vector<OutFrame*> out;
  out.reserve(frames.size());
  if (frames.size() <= 2) {
    for (OutFrame& f : frames) out.push_back(&f);
    return out;
  }
  // Each frame's connection by the rank of its first frame, then the frames
  // placed by rank, each connection's in their order (a counting sort:
  // linear, where sorting (rank, index) pairs was n log n).
  std::unordered_map<std::string_view, uint32_t> rank;
  rank.reserve(frames.size());
  std::vector<uint32_t> rank_of(frames.size());
  std::vector<uint32_t> start;  // per rank: its frames' count, then offset
  for (size_t i = 0; i < frames.size(); ++i) {
    const auto r =
        rank.emplace(frames[i].routing_id, static_cast<uint32_t>(rank.size()));
    if (r.second) start.push_back(0);
    rank_of[i] = r.first->second;
    ++start[rank_of[i]];
  }
  uint32_t offset = 0;
  for (uint32_t& n : start) offset += std::exchange(n, offset);
  out.resize(frames.size());
  for (size_t i = 0; i < frames.size(); ++i) {
    out[start[rank_of[i]]++] = &frames[i];
  }
  return out;
}

void Responder::Reply(Body body) {
  const Batch::Record& r = batch_.records_[index_];
  batch_.outbox_.push_back(
      {{r.info.routing_id, Encode(r.info.request_id, body), r.info.order},
       static_cast<int>(index_)});
}

void Responder::Push(std::string_view routing_id, const Body& body) {
  PushFrame(routing_id, Encode(0, body));
}

void Responder::PushFrame(std::string_view routing_id, std::string frame) {
  batch_.outbox_.push_back({{std::string(routing_id), std::move(frame),
                             batch_.records_[index_].info.order},
                            static_cast<int>(index_)});
}

void Responder::PushFrameTo(const std::vector<std::string>& routing_ids,
                            std::string frame) {
  if (routing_ids.empty()) return;
  for (size_t i = 0; i + 1 < routing_ids.size(); ++i) {
    PushFrame(routing_ids[i], frame);
  }
  PushFrame(routing_ids.back(), std::move(frame));
}

void Responder::PushMessageTo(const std::vector<std::string>& routing_ids,
                              DistributeMessage message) {
  if (routing_ids.empty()) return;
  const int m = static_cast<int>(batch_.messages_.size());
  batch_.messages_.push_back(std::move(message));
  for (const std::string& id : routing_ids) {
    batch_.outbox_.push_back(
        {{id, std::string(), batch_.records_[index_].info.order},
         static_cast<int>(index_),
         m});
  }
}

void Responder::PushMessage(std::string_view routing_id,
                            DistributeMessage message) {
  const int m = static_cast<int>(batch_.messages_.size());
  batch_.messages_.push_back(std::move(message));
  batch_.outbox_.push_back({{std::string(routing_id), std::string(),
                             batch_.records_[index_].info.order},
                            static_cast<int>(index_),
                            m});
}

void Responder::OnRollback(std::function<void()> undo) {
  batch_.records_[index_].undo.push_back(std::move(undo));
}

void Responder::Count(MessageEvent event, uint32_t n) {
  batch_.records_[index_].events[static_cast<size_t>(event)] += n;
}

void Batch::Begin() {
  assert(outbox_.empty() && records_.empty());
  dirty_ = false;
  group_open_ = false;
  Open();
}

void Batch::Open() {
  had_transaction_ = store_.Begin().ok();
  changes_at_open_ = store_.TotalChanges();
}

void Batch::EmitIndependent(std::string routing_id, std::string frame) {
  outbox_.push_back({{std::move(routing_id), std::move(frame)}, -1});
}

void Batch::Run(const RequestInfo& info,
                const std::function<Verdict(Responder&)>& work) {
  if (info.alone && !group_open_) Checkpoint();
  const size_t index = records_.size();
  records_.push_back(Record{info});
  const size_t mark = outbox_.size();
  const int64_t changes_before = store_.TotalChanges();
  const bool depended_before = dirty_;
  Responder out(*this, index);
  Verdict verdict = work(out);
  const bool wrote = store_.TotalChanges() != changes_before;
  if (wrote) dirty_ = true;
  Record& record = records_[index];
  record.depends = depended_before || wrote;
  if (verdict.refused()) {
    // Handlers check everything before their first write, so a refusal
    // after a write is the database's (disk full, I/O error); so is a
    // transaction that SQLite dropped on its own. Either way the batch so
    // far is undone.
    if (wrote || (had_transaction_ && !store_.InTransaction())) {
      record.depends = true;
      Fail(verdict.status());
      dirty_ = false;
      Open();
      return;
    }
    outbox_.resize(mark);
    for (auto it = record.undo.rbegin(); it != record.undo.rend(); ++it) {
      (*it)();
    }
    record.undo.clear();
    record.events = {};
    record.outcome = verdict.status().code();
    outbox_.push_back(
        {{info.routing_id,
          Encode(Message{info.request_id,
                         RefusalReply(info.type, verdict, info.client_msg_id,
                                      info.client_msg_ids)}),
          info.order},
         static_cast<int>(index)});
    return;
  }
  record.deferred = verdict.deferred();
  if (!record.depends) record.undo.clear();  // it stands whatever happens
  if (info.alone && !group_open_) Checkpoint();
}

void Batch::Checkpoint() {
  const bool wrote = dirty_ || store_.TotalChanges() != changes_at_open_;
  if (!wrote && !(had_transaction_ && !store_.InTransaction())) return;
  dirty_ = dirty_ || wrote;
  Settle();
  Open();
}

void Batch::BeginGroup() {
  Checkpoint();
  group_open_ = true;
}

void Batch::EndGroup() {
  group_open_ = false;
  Checkpoint();
}

void Batch::Fail(const Status& cause) {
  store_.Rollback();
  Log(LogLevel::kWarn, "batch rolled back: " + cause.ToString());
  const auto failed = [&](int request) {
    return request >= static_cast<int>(first_open_record_) &&
           records_[request].depends && !records_[request].deferred;
  };
  // Session changes of dependent requests are undone, newest first.
  for (size_t i = records_.size(); i-- > first_open_record_;) {
    if (!failed(static_cast<int>(i))) continue;
    auto& undo = records_[i].undo;
    for (auto it = undo.rbegin(); it != undo.rend(); ++it) (*it)();
    undo.clear();
  }
  std::vector<Entry> kept;
  kept.reserve(outbox_.size());
  for (Entry& e : outbox_) {
    if (e.request < 0 || !failed(e.request)) kept.push_back(std::move(e));
  }
  outbox_ = std::move(kept);
  const Verdict refusal = Verdict::Refused(
      Status(ErrorCode::kStorage,
             "the database refused the write: " + cause.detail()));
  for (size_t i = first_open_record_; i < records_.size(); ++i) {
    if (!failed(static_cast<int>(i))) continue;
    records_[i].outcome = ErrorCode::kStorage;
    records_[i].events = {};
    const RequestInfo& info = records_[i].info;
    outbox_.push_back(
        {{info.routing_id,
          Encode(Message{info.request_id,
                         RefusalReply(info.type, refusal, info.client_msg_id,
                                      info.client_msg_ids)}),
          info.order},
         -1});
  }
  first_open_record_ = records_.size();
}

void Batch::Settle() {
  if (store_.InTransaction()) {
    const auto start = std::chrono::steady_clock::now();
    Status s = store_.Commit();
    if (metrics_ && dirty_ && s.ok()) {
      metrics_->commit_seconds.Observe(
          std::chrono::duration<double>(std::chrono::steady_clock::now() -
                                        start)
              .count());
    }
    if (!s.ok()) Fail(s);
  } else if (dirty_) {
    // SQLite ended the transaction on its own after writes were made.
    Fail(Status(ErrorCode::kStorage, "the transaction was lost"));
  }
  first_open_record_ = records_.size();
  dirty_ = false;
}

std::vector<OutFrame> Batch::Commit() {
  Settle();
  std::vector<OutFrame> frames = Assemble();
  if (metrics_) CountOutcomes();
  outbox_.clear();
  messages_.clear();
  records_.clear();
  first_open_record_ = 0;
  dirty_ = false;
  return frames;
}

std::vector<OutFrame> Batch::Assemble() {
  std::vector<OutFrame> frames;
  frames.reserve(outbox_.size());
  if (messages_.empty()) {
    for (Entry& e : outbox_) frames.push_back(std::move(e.frame));
    return frames;
  }
  // A group takes up to 1000 messages and, past the first, 64 KiB of
  // senders and bodies (half the frame limit, whatever their sizes).
  group_count_ = 0;
  open_groups_.clear();
  uses_.assign(messages_.size(), 0);
  for (const Entry& e : outbox_) {
    if (e.message >= 0) ++uses_[static_cast<size_t>(e.message)];
  }
  for (Entry& e : outbox_) {
    if (e.message < 0) {
      frames.push_back(std::move(e.frame));
      continue;
    }
    const DistributeMessage& m = messages_[static_cast<size_t>(e.message)];
    const size_t text = m.sender.size() + m.body.size();
    auto it = open_groups_.find(e.frame.routing_id);
    if (it != open_groups_.end()) {
      Group& g = groups_[it->second];
      if (g.members.size() < kMaxFetchLimit &&
          g.text + text <= kMaxFrameBytes / 2) {
        g.members.push_back(e.message);
        g.text += text;
        continue;
      }
    }
    if (group_count_ == groups_.size()) groups_.emplace_back();
    Group& g = groups_[group_count_++];
    g.frame = frames.size();
    g.members.assign(1, e.message);
    g.text = text;
    frames.push_back(std::move(e.frame));
    open_groups_[frames.back().routing_id] = group_count_ - 1;
  }
  for (size_t k = 0; k < group_count_; ++k) {
    const Group& g = groups_[k];
    if (g.members.size() == 1) {
      --uses_[static_cast<size_t>(g.members[0])];
      frames[g.frame].frame =
          Encode(0, messages_[static_cast<size_t>(g.members[0])]);
      continue;
    }
    DistributeMessage batch;
    batch.message_ids.reserve(g.members.size());
    batch.senders.reserve(g.members.size());
    batch.bodies.reserve(g.members.size());
    batch.sent_ats_ms.reserve(g.members.size());
    for (int i : g.members) {
      DistributeMessage& m = messages_[static_cast<size_t>(i)];
      batch.message_ids.push_back(m.message_id);
      batch.sent_ats_ms.push_back(m.sent_at_ms);
      if (--uses_[static_cast<size_t>(i)] == 0) {  // its last connection
        batch.senders.push_back(std::move(m.sender));
        batch.bodies.push_back(std::move(m.body));
      } else {
        batch.senders.push_back(m.sender);
        batch.bodies.push_back(m.body);
      }
    }
    frames[g.frame].frame = Encode(0, batch);
  }
  return frames;
}

void Batch::CountOutcomes() {
  if (records_.empty()) return;
  metrics_->batch_requests.Observe(static_cast<double>(records_.size()));
  for (const Record& r : records_) {
    // A deferred request is counted when its finisher runs.
    if (r.deferred && r.outcome == ErrorCode::kOk) continue;
    metrics_->CountRequest(static_cast<uint64_t>(r.info.type), r.outcome);
    if (r.outcome != ErrorCode::kOk) continue;
    for (size_t e = 0; e < kMessageEventCount; ++e) {
      if (r.events[e]) metrics_->messages[e].Add(r.events[e]);
    }
  }
}

}  // namespace zchat
