// OwnedLog<T>: entries keyed by an owner (an account) and an id (a message
// id), kept per owner in id order: the memory side of SqliteStore's message
// log, where entries come and go by the thousand a second.
//
// Each owner's entries sit in a ring of slots that the log keeps: an entry
// added takes a slot whose value an earlier entry left there, so that the
// caller's assignment reuses its strings' buffers, and an entry removed only
// marks its slot (a tombstone) until the ring's ends reach it. No allocation
// per entry once the rings have grown to their working size. Compact() drops
// the tombstones, the empty owners and the slots past what each ring holds;
// the store calls it when it rewrites the log, which bounds the tombstones by
// the log's operations.
//
// For entries that arrive in id order per owner (a recipient's logged
// messages: ids grow), where an add is at its ring's end. An add below the
// owner's last id is correct but moves the ring's later slots by one, so
// entries that come out of order by the thousand (a sender's notices, in
// the order of its recipients' receipts) belong in another structure.
#pragma once

#include <algorithm>
#include <cassert>
#include <cstddef>
#include <cstdint>
#include <unordered_map>
#include <utility>
#include <vector>

namespace zchat {

template <class T>
class OwnedLog {
 public:
  // The live entry (owner, id), or null.
  T* Find(int64_t owner, int64_t id) {
    return const_cast<T*>(std::as_const(*this).Find(owner, id));
  }
  const T* Find(int64_t owner, int64_t id) const {
    auto it = rings_.find(owner);
    if (it == rings_.end()) return nullptr;
    const Ring& r = it->second;
    const size_t p = r.LowerBound(id);
    if (p == r.count || r.At(p).id != id || !r.At(p).live) return nullptr;
    return &r.At(p).value;
  }

  // A slot for the entry (owner, id), which must not be live: the caller
  // assigns all of its value (what is there is an earlier entry's).
  T& Add(int64_t owner, int64_t id) {
    Ring& r = rings_[owner];
    if (r.count == r.slots.size()) r.Grow();
    Slot* slot;
    if (r.count == 0 || r.At(r.count - 1).id < id) {
      slot = &r.At(r.count++);
    } else {
      const size_t p = r.LowerBound(id);
      assert(!(r.At(p).id == id && r.At(p).live));
      if (r.At(p).id != id) {
        for (size_t i = r.count++; i > p; --i) {
          std::swap(r.At(i), r.At(i - 1));
        }
      }
      slot = &r.At(p);
    }
    slot->id = id;
    slot->live = true;
    ++r.live;
    ++size_;
    return slot->value;
  }

  // Removes the live entry (owner, id) and returns its value, which stays
  // valid until the next Add, Compact or Clear; null when there is none.
  T* Remove(int64_t owner, int64_t id) {
    auto it = rings_.find(owner);
    if (it == rings_.end()) return nullptr;
    Ring& r = it->second;
    const size_t p = r.LowerBound(id);
    if (p == r.count || r.At(p).id != id || !r.At(p).live) return nullptr;
    Slot& slot = r.At(p);
    slot.live = false;
    --r.live;
    --size_;
    while (r.count > 0 && !r.At(0).live) {
      r.head = (r.head + 1) & (r.slots.size() - 1);
      --r.count;
    }
    while (r.count > 0 && !r.At(r.count - 1).live) --r.count;
    return &slot.value;
  }

  // The owner's live entries.
  int64_t Count(int64_t owner) const {
    auto it = rings_.find(owner);
    return it == rings_.end() ? 0 : it->second.live;
  }

  // All live entries.
  size_t size() const { return size_; }
  bool empty() const { return size_ == 0; }

  // Calls f(value) on the owner's live entries in id order, while f returns
  // true.
  template <class F>
  void ForEach(int64_t owner, F&& f) const {
    auto it = rings_.find(owner);
    if (it == rings_.end()) return;
    const Ring& r = it->second;
    for (size_t i = 0; i < r.count; ++i) {
      const Slot& s = r.At(i);
      if (s.live && !f(s.value)) return;
    }
  }

  // Calls f(owner, value) on every live entry: owners in no set order, each
  // owner's entries in id order.
  template <class F>
  void ForAll(F&& f) const {
    for (const auto& [owner, r] : rings_) {
      for (size_t i = 0; i < r.count; ++i) {
        const Slot& s = r.At(i);
        if (s.live) f(owner, s.value);
      }
    }
  }

  // Removes the owner's live entries, calling f(value) on each in id order
  // first (f may move the value out).
  template <class F>
  void RemoveAll(int64_t owner, F&& f) {
    auto it = rings_.find(owner);
    if (it == rings_.end()) return;
    Ring& r = it->second;
    for (size_t i = 0; i < r.count; ++i) {
      Slot& s = r.At(i);
      if (s.live) f(s.value);
    }
    size_ -= static_cast<size_t>(r.live);
    rings_.erase(it);
  }

  // Drops the tombstones, the owners with no live entry, and the slots (and
  // their values' buffers) each ring holds beyond its entries.
  void Compact() {
    for (auto it = rings_.begin(); it != rings_.end();) {
      if (it->second.live == 0) {
        it = rings_.erase(it);
      } else {
        it->second.Rebuild(static_cast<size_t>(it->second.live));
        ++it;
      }
    }
  }

  void Clear() {
    rings_.clear();
    size_ = 0;
  }

 private:
  struct Slot {
    int64_t id = 0;
    bool live = false;
    T value{};
  };
  // Slots [head, head + count) (mod the size, a power of two) in id order,
  // live or tombstones; the first and the last are live.
  struct Ring {
    std::vector<Slot> slots;
    size_t head = 0;
    size_t count = 0;
    int64_t live = 0;

    Slot& At(size_t i) { return slots[(head + i) & (slots.size() - 1)]; }
    const Slot& At(size_t i) const {
      return slots[(head + i) & (slots.size() - 1)];
    }
    size_t LowerBound(int64_t id) const {
      size_t lo = 0, hi = count;
      while (lo < hi) {
        const size_t mid = lo + (hi - lo) / 2;
        if (At(mid).id < id) {
          lo = mid + 1;
        } else {
          hi = mid;
        }
      }
      return lo;
    }
    void Grow() { Rebuild(std::max<size_t>(4, 2 * slots.size())); }
    // Moves the live slots, in order, to a new vector of at least `room`
    // slots (a power of two).
    void Rebuild(size_t room) {
      size_t size = 4;
      while (size < room) size *= 2;
      std::vector<Slot> moved(size);
      size_t n = 0;
      for (size_t i = 0; i < count; ++i) {
        Slot& s = At(i);
        if (s.live) moved[n++] = std::move(s);
      }
      slots = std::move(moved);
      head = 0;
      count = n;
    }
  };

  std::unordered_map<int64_t, Ring> rings_;
  size_t size_ = 0;
};

}  // namespace zchat
