// OwnedLog (broker/owned_log.h): per-owner entries in id order, checked
// against a std::map model through random adds, removals and compactions.
#include "broker/owned_log.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <iterator>
#include <map>
#include <random>
#include <string>
#include <utility>
#include <vector>

namespace zchat {
namespace {

using Model = std::map<std::pair<int64_t, int64_t>, std::string>;

const char* const kTexts[] = {"Zoë", "東京で会おう", "🙂🎉", "مرحبا",
                              "plain ascii, longer than the small buffer"};

void ExpectSame(const OwnedLog<std::string>& log, const Model& model,
                int64_t owners) {
  ASSERT_EQ(log.size(), model.size());
  EXPECT_EQ(log.empty(), model.empty());
  for (int64_t owner = 0; owner < owners; ++owner) {
    std::vector<std::string> want;
    for (auto it = model.lower_bound({owner, INT64_MIN});
         it != model.end() && it->first.first == owner; ++it) {
      want.push_back(it->second);
      const std::string* found = log.Find(owner, it->first.second);
      ASSERT_NE(found, nullptr) << owner << " " << it->first.second;
      EXPECT_EQ(*found, it->second);
    }
    std::vector<std::string> got;
    log.ForEach(owner, [&](const std::string& v) {
      got.push_back(v);
      return true;
    });
    EXPECT_EQ(got, want) << "owner " << owner;
    EXPECT_EQ(log.Count(owner), static_cast<int64_t>(want.size()));
  }
  // ForAll: each owner's entries together, as ForEach gives them.
  std::vector<std::pair<int64_t, std::vector<std::string>>> runs;
  log.ForAll([&](int64_t owner, const std::string& v) {
    if (runs.empty() || runs.back().first != owner) runs.push_back({owner, {}});
    runs.back().second.push_back(v);
  });
  std::map<int64_t, std::vector<std::string>> by_owner;
  for (const auto& [owner, values] : runs) {
    EXPECT_TRUE(by_owner.emplace(owner, values).second)
        << "owner " << owner << " in two places";
  }
  for (int64_t owner = 0; owner < owners; ++owner) {
    std::vector<std::string> want;
    log.ForEach(owner, [&](const std::string& v) {
      want.push_back(v);
      return true;
    });
    if (want.empty()) {
      EXPECT_FALSE(by_owner.contains(owner));
    } else {
      EXPECT_EQ(by_owner[owner], want);
    }
  }
}

TEST(OwnedLogTest, MatchesAMapThroughAddsRemovalsAndCompactions) {
  std::mt19937_64 rng(13);
  OwnedLog<std::string> log;
  Model model;
  constexpr int64_t kOwners = 6;
  int64_t next_id = 1;
  for (int step = 0; step < 20'000; ++step) {
    const int64_t owner = static_cast<int64_t>(rng() % kOwners);
    const uint64_t what = rng() % 100;
    if (what < 45) {
      // Mostly the next id; sometimes one below it (out of order).
      int64_t id = next_id++;
      if (rng() % 8 == 0 && id > 40) id -= static_cast<int64_t>(rng() % 40);
      if (model.contains({owner, id}) || log.Find(owner, id)) continue;
      const std::string text =
          std::string(kTexts[rng() % std::size(kTexts)]) + std::to_string(id);
      log.Add(owner, id) = text;
      model[{owner, id}] = text;
    } else if (what < 90) {
      // The owner's oldest mostly (receipts in order), else any.
      auto first = model.lower_bound({owner, INT64_MIN});
      if (first == model.end() || first->first.first != owner) {
        EXPECT_EQ(log.Remove(owner, next_id + 5), nullptr);
        continue;
      }
      auto it = first;
      if (rng() % 3 == 0) {
        for (uint64_t n = rng() % 6; n > 0; --n) {
          auto next = std::next(it);
          if (next == model.end() || next->first.first != owner) break;
          it = next;
        }
      }
      std::string* removed = log.Remove(owner, it->first.second);
      ASSERT_NE(removed, nullptr);
      EXPECT_EQ(*removed, it->second);
      // A second removal finds nothing.
      EXPECT_EQ(log.Remove(owner, it->first.second), nullptr);
      model.erase(it);
    } else if (what < 93) {
      log.RemoveAll(owner, [&](std::string& v) {
        auto it = model.lower_bound({owner, INT64_MIN});
        ASSERT_NE(it, model.end());
        EXPECT_EQ(it->first.first, owner);
        EXPECT_EQ(v, it->second);
        model.erase(it);
      });
      EXPECT_EQ(log.Count(owner), 0);
    } else if (what < 96) {
      log.Compact();
    } else {
      // Another owner's entry is not this owner's.
      auto it = model.lower_bound({(owner + 1) % kOwners, INT64_MIN});
      if (it != model.end() && it->first.first == (owner + 1) % kOwners &&
          !model.contains({owner, it->first.second})) {
        EXPECT_EQ(log.Find(owner, it->first.second), nullptr);
        EXPECT_EQ(log.Remove(owner, it->first.second), nullptr);
      }
    }
    if (step % 500 == 0) ExpectSame(log, model, kOwners);
  }
  ExpectSame(log, model, kOwners);
  log.Compact();
  ExpectSame(log, model, kOwners);
  log.Clear();
  EXPECT_TRUE(log.empty());
  EXPECT_EQ(log.Find(0, 1), nullptr);
}

TEST(OwnedLogTest, AnEntryAddedReusesTheBufferOfOneRemoved) {
  OwnedLog<std::string> log;
  const std::string long_text(200, 'x');
  // Fill the ring to its working size, then go round it: each add takes
  // the slot (and the buffer) of an entry removed before.
  std::vector<const char*> buffers;
  for (int64_t id = 1; id <= 4; ++id) {
    std::string& v = log.Add(7, id);
    v = long_text + "—" + std::to_string(id);
    buffers.push_back(v.data());
  }
  for (int64_t id = 5; id <= 40; ++id) {
    std::string* gone = log.Remove(7, id - 4);
    ASSERT_NE(gone, nullptr);
    std::string& v = log.Add(7, id);
    // (Copied, as the store does: a move would take the string's buffer.)
    const std::string text = "Zoë " + long_text + std::to_string(id);
    v = text;
    EXPECT_NE(std::find(buffers.begin(), buffers.end(), v.data()),
              buffers.end())
        << "message " << id << " got a new buffer";
  }
  EXPECT_EQ(log.Count(7), 4);
  std::vector<std::string> left;
  log.ForEach(7, [&](const std::string& v) {
    left.push_back(v.substr(0, 4));
    return true;
  });
  EXPECT_EQ(left, std::vector<std::string>(4, "Zoë"));
}

TEST(OwnedLogTest, RemovalsInTheMiddleLeaveTheOrderAndTheCount) {
  OwnedLog<std::string> log;
  for (int64_t id = 10; id <= 19; ++id)
    log.Add(1, id) = "نور " + std::to_string(id);
  // The middle first, then the ends: tombstones are skipped, then dropped.
  for (int64_t id : {13, 15, 14, 10, 19, 11}) {
    ASSERT_NE(log.Remove(1, id), nullptr) << id;
  }
  std::vector<std::string> left;
  log.ForEach(1, [&](const std::string& v) {
    left.push_back(v);
    return true;
  });
  EXPECT_EQ(left,
            (std::vector<std::string>{"نور 12", "نور 16", "نور 17", "نور 18"}));
  EXPECT_EQ(log.Count(1), 4);
  // An id below the first, and one in a gap, go in their places.
  log.Add(1, 5) = "first";
  log.Add(1, 14) = "again";
  left.clear();
  log.ForEach(1, [&](const std::string& v) {
    left.push_back(v);
    return true;
  });
  EXPECT_EQ(left, (std::vector<std::string>{"first", "نور 12", "again",
                                            "نور 16", "نور 17", "نور 18"}));
  // ForEach stops when asked.
  int seen = 0;
  log.ForEach(1, [&](const std::string&) { return ++seen < 2; });
  EXPECT_EQ(seen, 2);
}

}  // namespace
}  // namespace zchat
