#include "messages/codec.h"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <memory>
#include <numeric>
#include <span>
#include <thread>

#include "messages/utf8.h"
#include "tests/support/samples.h"
#include "tests/support/test_util.h"

namespace zchat {
namespace {

using testing::FromHex;
using testing::RawFrame;
using testing::RawPacker;
using testing::SampleMessages;

// A field `key` holding an array of these ids, or of these texts.
void PackIds(RawPacker& pk, const char* key, const std::vector<uint64_t>& v) {
  pk.pack(key);
  pk.pack_array(static_cast<uint32_t>(v.size()));
  for (uint64_t id : v) pk.pack(id);
}
void PackTexts(RawPacker& pk, const char* key,
               const std::vector<std::string>& v) {
  pk.pack(key);
  pk.pack_array(static_cast<uint32_t>(v.size()));
  for (const std::string& t : v) pk.pack(t);
}

// A frame of `type` with request id `req`: the envelope, then the fields
// the callback adds (extra counts them).
std::string EnvelopeFrame(MessageType type, uint64_t req, int extra,
                          const std::function<void(RawPacker&)>& add) {
  return RawFrame([&](RawPacker& pk) {
    pk.pack_map(static_cast<uint32_t>(3 + extra));
    pk.pack("v");
    pk.pack(1);
    pk.pack("type");
    pk.pack(static_cast<int>(type));
    pk.pack("req");
    pk.pack(req);
    add(pk);
  });
}

// A SEND_MESSAGE with the fields the callback adds (extra counts them).
// Used to vary one field at a time.
std::string SendFrame(int extra, const std::function<void(RawPacker&)>& add) {
  return EnvelopeFrame(MessageType::kSendMessage, 9, extra, add);
}

std::string ValidSend(const std::string& recipient, const std::string& body) {
  return SendFrame(3, [&](RawPacker& pk) {
    pk.pack("recipient");
    pk.pack(recipient);
    pk.pack("body");
    pk.pack(body);
    pk.pack("client_msg_id");
    pk.pack(5);
  });
}

void ExpectRejected(const std::string& frame, ErrorCode code,
                    const std::string& detail_part) {
  Result<Message> r = Decode(frame);
  ASSERT_FALSE(r.ok()) << "frame was accepted";
  EXPECT_EQ(r.status().code(), code) << r.status().ToString();
  EXPECT_NE(r.status().detail().find(detail_part), std::string::npos)
      << "detail was: " << r.status().detail();
}

TEST(CodecTest, EveryMessageTypeHasASample) {
  std::vector<bool> seen(kMessageTypeCount + 1, false);
  for (const Message& m : SampleMessages()) {
    seen[static_cast<size_t>(TypeOf(m.body))] = true;
  }
  for (size_t t = 1; t <= kMessageTypeCount; ++t) {
    EXPECT_TRUE(seen[t]) << MessageTypeName(static_cast<MessageType>(t));
  }
}

TEST(CodecTest, RoundTripsEveryMessageType) {
  for (const Message& m : SampleMessages()) {
    const std::string bytes = Encode(m);
    Result<Message> back = Decode(bytes);
    ASSERT_TRUE(back.ok()) << MessageTypeName(TypeOf(m.body)) << ": "
                           << back.status().ToString();
    EXPECT_EQ(TypeOf(back->body), TypeOf(m.body));
    EXPECT_EQ(back->request_id, m.request_id);
    EXPECT_EQ(Encode(*back), bytes) << MessageTypeName(TypeOf(m.body));
  }
}

TEST(CodecTest, RoundTripKeepsFieldValues) {
  Message m{77, SendMessage{"bob", "h\xc3\xa9llo", UINT64_MAX}};
  Result<Message> back = Decode(Encode(m));
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  const auto& send = std::get<SendMessage>(back->body);
  EXPECT_EQ(send.recipient, "bob");
  EXPECT_EQ(send.body, "h\xc3\xa9llo");
  EXPECT_EQ(send.client_msg_id, UINT64_MAX);
  EXPECT_EQ(back->request_id, 77u);
}

// Frames of every size, from a few bytes to several times Encode's first
// reservation, come out byte for byte as msgpack's own packer writes them
// into its sbuffer, text in several scripts included.
TEST(CodecTest, EncodesFramesOfEverySizeAsMsgpackDoes) {
  const std::string pieces[] = {"e", "\xc3\xa9", "\xe4\xb8\x96\xe7\x95\x8c",
                                "\xf0\x9f\x8c\x8d", "\xd7\xa9\xd7\x9c"};
  const std::string sender =
      "\xc3\xb1"
      "and\xc3\xba";  // ñandú
  std::string body;
  std::vector<std::string> names;
  for (uint64_t n = 1; n <= 700; ++n) {
    body += pieces[n % 5];
    const uint64_t sent_at = uint64_t{1} << (n % 64);
    const std::string want = EnvelopeFrame(MessageType::kDistributeMessage, n,
                                           4, [&](RawPacker& pk) {
                                             pk.pack("message_id");
                                             pk.pack(n);
                                             pk.pack("sender");
                                             pk.pack(sender);
                                             pk.pack("body");
                                             pk.pack(body);
                                             pk.pack("sent_at");
                                             pk.pack(sent_at);
                                           });
    ASSERT_EQ(Encode({n, DistributeMessage{n, sender, body, sent_at}}), want)
        << "body of " << body.size() << " bytes";

    if (n > 300) continue;
    names.push_back(pieces[n % 5] + std::to_string(n));
    const std::string list =
        EnvelopeFrame(MessageType::kAccountList, n, 2, [&](RawPacker& pk) {
          pk.pack("accounts");
          pk.pack(names);
          pk.pack("cursor");
          pk.pack(names.back());
        });
    ASSERT_EQ(Encode({n, AccountList{names, names.back()}}), list)
        << names.size() << " names";
  }
}

TEST(CodecTest, OptionalFieldsMayBeAbsentOrNil) {
  Result<Message> absent = Decode(Encode({3, ListAccounts{}}));
  ASSERT_TRUE(absent.ok()) << absent.status().ToString();
  EXPECT_FALSE(std::get<ListAccounts>(absent->body).pattern.has_value());

  std::string with_nil =
      EnvelopeFrame(MessageType::kListAccounts, 1, 1, [](RawPacker& pk) {
        pk.pack("pattern");
        pk.pack_nil();
      });
  Result<Message> nil = Decode(with_nil);
  ASSERT_TRUE(nil.ok()) << nil.status().ToString();
  EXPECT_FALSE(std::get<ListAccounts>(nil->body).pattern.has_value());
}

TEST(CodecTest, EncodingIsDeterministic) {
  Message m{5, LoginSuccess{"alice", 1, std::string(kTokenBytes, '\1')}};
  EXPECT_EQ(Encode(m), Encode(m));
  // Smallest integer forms: a small request id is one byte.
  EXPECT_EQ(Encode({1, Ping{}}), FromHex("83 a1 76 01 a4 74 79 70 65 16 a3 72 "
                                         "65 71 01"));
}

TEST(CodecTest, AcceptsKeysInAnyOrder) {
  std::string frame = RawFrame([](RawPacker& pk) {
    pk.pack_map(6);
    pk.pack("client_msg_id");
    pk.pack(3);
    pk.pack("body");
    pk.pack("hi");
    pk.pack("req");
    pk.pack(2);
    pk.pack("recipient");
    pk.pack("bob");
    pk.pack("type");
    pk.pack(11);
    pk.pack("v");
    pk.pack(1);
  });
  Result<Message> r = Decode(frame);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(std::get<SendMessage>(r->body).recipient, "bob");
}

TEST(CodecTest, RejectsEmptyFrame) {
  ExpectRejected("", ErrorCode::kMalformed, "empty");
}

TEST(CodecTest, RejectsTruncatedFrame) {
  std::string frame = ValidSend("bob", "hello");
  for (size_t n = 1; n < frame.size(); ++n) {
    ExpectRejected(frame.substr(0, n), ErrorCode::kMalformed, "truncated");
  }
}

TEST(CodecTest, RejectsNonMap) {
  ExpectRejected(FromHex("93 01 02 03"), ErrorCode::kMalformed, "not a map");
  ExpectRejected(FromHex("a3 61 62 63"), ErrorCode::kMalformed, "not a map");
}

TEST(CodecTest, RejectsNonStringKey) {
  ExpectRejected(FromHex("81 01 02"), ErrorCode::kMalformed, "key");
}

TEST(CodecTest, RejectsDuplicateKey) {
  std::string frame = SendFrame(4, [](RawPacker& pk) {
    pk.pack("recipient");
    pk.pack("bob");
    pk.pack("recipient");
    pk.pack("eve");
    pk.pack("body");
    pk.pack("x");
    pk.pack("client_msg_id");
    pk.pack(1);
  });
  ExpectRejected(frame, ErrorCode::kMalformed, "duplicate field 'recipient'");
}

TEST(CodecTest, RejectsMissingField) {
  std::string frame = SendFrame(2, [](RawPacker& pk) {
    pk.pack("recipient");
    pk.pack("bob");
    pk.pack("client_msg_id");
    pk.pack(1);
  });
  ExpectRejected(frame, ErrorCode::kMalformed, "field 'body' is missing");
}

TEST(CodecTest, RejectsMissingEnvelopeField) {
  std::string frame = RawFrame([](RawPacker& pk) {
    pk.pack_map(2);
    pk.pack("v");
    pk.pack(1);
    pk.pack("req");
    pk.pack(1);
  });
  ExpectRejected(frame, ErrorCode::kMalformed, "field 'type' is missing");
}

TEST(CodecTest, RejectsWrongType) {
  std::string frame = SendFrame(3, [](RawPacker& pk) {
    pk.pack("recipient");
    pk.pack(12);
    pk.pack("body");
    pk.pack("x");
    pk.pack("client_msg_id");
    pk.pack(1);
  });
  ExpectRejected(frame, ErrorCode::kMalformed,
                 "field 'recipient' must be a string");
  std::string negative = SendFrame(3, [](RawPacker& pk) {
    pk.pack("recipient");
    pk.pack("bob");
    pk.pack("body");
    pk.pack("x");
    pk.pack("client_msg_id");
    pk.pack(-1);
  });
  ExpectRejected(negative, ErrorCode::kMalformed,
                 "field 'client_msg_id' must be a non-negative integer");
  std::string binary_text = SendFrame(3, [](RawPacker& pk) {
    pk.pack("recipient");
    pk.pack_bin(3);
    pk.pack_bin_body("bob", 3);
    pk.pack("body");
    pk.pack("x");
    pk.pack("client_msg_id");
    pk.pack(1);
  });
  ExpectRejected(binary_text, ErrorCode::kMalformed,
                 "field 'recipient' must be a string");
}

TEST(CodecTest, RejectsOverLongString) {
  ExpectRejected(ValidSend(std::string(kMaxNameBytes + 1, 'a'), "x"),
                 ErrorCode::kMalformed, "field 'recipient' is longer than");
}

TEST(CodecTest, RejectsInvalidUtf8) {
  ExpectRejected(ValidSend("bob", "bad \xff byte"), ErrorCode::kMalformed,
                 "field 'body' is not valid UTF-8");
  ExpectRejected(ValidSend("b\xc0\xafob", "x"), ErrorCode::kMalformed,
                 "field 'recipient' is not valid UTF-8");
}

TEST(CodecTest, RejectsOutOfRangeValues) {
  std::string zero_id = SendFrame(3, [](RawPacker& pk) {
    pk.pack("recipient");
    pk.pack("bob");
    pk.pack("body");
    pk.pack("x");
    pk.pack("client_msg_id");
    pk.pack(0);
  });
  ExpectRejected(zero_id, ErrorCode::kMalformed,
                 "field 'client_msg_id' is out of range");
  // An error code past the table, in a strictly read message... replies are
  // tolerant, so build a request with a range: FETCH limit over the maximum.
  Message fetch{1, FetchMessages{kMaxFetchLimit + 1}};
  ExpectRejected(Encode(fetch), ErrorCode::kMalformed,
                 "field 'limit' is out of range");
}

// A uint field accepts every MessagePack integer format whose value is in
// range: fixint, uint 8-64, and the signed int 8-64 formats holding a
// non-negative value, in any width (not only the smallest). Floats are
// refused, even integral ones.
TEST(CodecTest, UintFieldsTakeAnyIntegerFormatButNoFloat) {
  const std::function<void(RawPacker&)> forms[] = {
      [](RawPacker& pk) { pk.pack_fix_uint8(7); },
      [](RawPacker& pk) { pk.pack_fix_uint16(7); },
      [](RawPacker& pk) { pk.pack_fix_uint32(7); },
      [](RawPacker& pk) { pk.pack_fix_uint64(7); },
      [](RawPacker& pk) { pk.pack_fix_int8(7); },
      [](RawPacker& pk) { pk.pack_fix_int16(7); },
      [](RawPacker& pk) { pk.pack_fix_int32(7); },
      [](RawPacker& pk) { pk.pack_fix_int64(7); },
  };
  for (const auto& form : forms) {
    std::string frame = SendFrame(3, [&](RawPacker& pk) {
      pk.pack("recipient");
      pk.pack("bob");
      pk.pack("body");
      pk.pack("x");
      pk.pack("client_msg_id");
      form(pk);
    });
    Result<Message> r = Decode(frame);
    ASSERT_TRUE(r.ok()) << r.status().ToString();
    EXPECT_EQ(std::get<SendMessage>(r->body).client_msg_id, 7u);
  }
  // The whole range, and the envelope too (req as int64, v as uint16).
  EXPECT_TRUE(Decode(FromHex("83 a1 76 cd 00 01 a4 74 79 70 65 d0 16"
                             " a3 72 65 71 d3 7f ff ff ff ff ff ff ff"))
                  .ok());
  std::string top = SendFrame(3, [](RawPacker& pk) {
    pk.pack("recipient");
    pk.pack("bob");
    pk.pack("body");
    pk.pack("x");
    pk.pack("client_msg_id");
    pk.pack_fix_uint64(UINT64_MAX);
  });
  ASSERT_TRUE(Decode(top).ok());
  EXPECT_EQ(std::get<SendMessage>(Decode(top)->body).client_msg_id, UINT64_MAX);

  const std::function<void(RawPacker&)> refused[] = {
      // (msgpack-c packs an integral double as an integer: 7.5, and the
      // raw frames below for integral floats.)
      [](RawPacker& pk) { pk.pack_double(7.5); },
      [](RawPacker& pk) { pk.pack_float(7.5f); },
      [](RawPacker& pk) { pk.pack_fix_int8(-1); },
      [](RawPacker& pk) { pk.pack_fix_int64(INT64_MIN); },
      [](RawPacker& pk) { pk.pack("7"); },
  };
  for (const auto& form : refused) {
    std::string frame = SendFrame(3, [&](RawPacker& pk) {
      pk.pack("recipient");
      pk.pack("bob");
      pk.pack("body");
      pk.pack("x");
      pk.pack("client_msg_id");
      form(pk);
    });
    ExpectRejected(frame, ErrorCode::kMalformed,
                   "field 'client_msg_id' must be a non-negative integer");
  }
  // An integral float in the envelope (float 64 5.0, float 32 5.0): `req`
  // cannot be read, so it is not echoed.
  for (const char* hex : {"cb 40 14 00 00 00 00 00 00", "ca 40 a0 00 00"}) {
    uint64_t req = 99;
    Result<Message> r = Decode(
        FromHex(std::string("83 a1 76 01 a4 74 79 70 65 16 a3 72 65 71 ") +
                hex),
        &req);
    ASSERT_FALSE(r.ok()) << hex;
    EXPECT_EQ(r.status().detail(),
              "field 'req' must be a non-negative integer");
    EXPECT_EQ(req, 0u);
  }
  // And in a field: client_msg_id = float 64 7.0.
  ExpectRejected(FromHex("86 a1 76 01 a4 74 79 70 65 0b a3 72 65 71 05"
                         " a9 72 65 63 69 70 69 65 6e 74 a3 62 6f 62"
                         " a4 62 6f 64 79 a1 78"
                         " ad 63 6c 69 65 6e 74 5f 6d 73 67 5f 69 64"
                         " cb 40 1c 00 00 00 00 00 00"),
                 ErrorCode::kMalformed,
                 "field 'client_msg_id' must be a non-negative integer");
}

// Required fields are read before unknown keys are looked for: a misspelled
// required field is reported as missing, a misspelled optional one as
// unknown.
TEST(CodecTest, MisspelledFieldsAreMissingOrUnknown) {
  std::string frame = SendFrame(3, [](RawPacker& pk) {
    pk.pack("recipent");
    pk.pack("bob");
    pk.pack("body");
    pk.pack("x");
    pk.pack("client_msg_id");
    pk.pack(1);
  });
  ExpectRejected(frame, ErrorCode::kMalformed, "field 'recipient' is missing");
  std::string list =
      EnvelopeFrame(MessageType::kListAccounts, 3, 1, [](RawPacker& pk) {
        pk.pack("patern");
        pk.pack("a*");
      });
  ExpectRejected(list, ErrorCode::kMalformed, "unknown field 'patern'");
}

// NOTICE_RECEIPT and FETCH_NOTICES follow the rules of MESSAGE_RECEIPT and
// FETCH_MESSAGES: a message id in 1..2^63-1, a limit in 1..1000.
TEST(CodecTest, NoticeRequestsCheckTheirFields) {
  auto notice_receipt = [](const std::function<void(RawPacker&)>& add) {
    return EnvelopeFrame(MessageType::kNoticeReceipt, 3, 1, add);
  };
  ExpectRejected(notice_receipt([](RawPacker& pk) {
                   pk.pack("message_id");
                   pk.pack(0);
                 }),
                 ErrorCode::kMalformed, "field 'message_id' is out of range");
  ExpectRejected(
      Encode({1, NoticeReceipt{static_cast<uint64_t>(INT64_MAX) + 1}}),
      ErrorCode::kMalformed, "field 'message_id' is out of range");
  ExpectRejected(Encode({1, FetchNotices{0}}), ErrorCode::kMalformed,
                 "field 'limit' is out of range");
  ExpectRejected(Encode({1, FetchNotices{kMaxFetchLimit + 1}}),
                 ErrorCode::kMalformed, "field 'limit' is out of range");
  std::string missing = RawFrame([](RawPacker& pk) {
    pk.pack_map(3);
    pk.pack("v");
    pk.pack(1);
    pk.pack("type");
    pk.pack(static_cast<int>(MessageType::kNoticeReceipt));
    pk.pack("req");
    pk.pack(3);
  });
  ExpectRejected(missing, ErrorCode::kMalformed,
                 "exactly one of 'message_id' and 'message_ids' is required");
  ExpectRejected(Encode({0, NoticeReceipt{1}}), ErrorCode::kMalformed, "'req'");
  // The limit is optional; the largest id round-trips.
  for (const Message& m :
       {Message{4, FetchNotices{}},
        Message{5, NoticeReceipt{static_cast<uint64_t>(INT64_MAX)}}}) {
    Result<Message> back = Decode(Encode(m));
    ASSERT_TRUE(back.ok()) << back.status().ToString();
    EXPECT_EQ(Encode(*back), Encode(m));
  }
  EXPECT_EQ(DirectionOf(MessageType::kNoticeReceipt), Direction::kRequest);
  EXPECT_EQ(MessageTypeName(MessageType::kFetchNotices), "FETCH_NOTICES");
}

// MESSAGE_RECEIPT and NOTICE_RECEIPT name one message (message_id) or up to
// 1000 (message_ids), never both and never neither.
template <class R>
void ExpectAListOfIds() {
  R many;
  for (uint64_t id = 1; id < kMaxReceiptIds; ++id)
    many.message_ids.push_back(id);
  many.message_ids.push_back(static_cast<uint64_t>(INT64_MAX));
  Result<Message> back = Decode(Encode({7, many}));
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  const auto& got = std::get<R>(back->body);
  EXPECT_EQ(got.message_id, 0u);
  EXPECT_EQ(got.message_ids, many.message_ids);

  auto with = [](int fields, const std::function<void(RawPacker&)>& add) {
    return EnvelopeFrame(R::kType, 3, fields, add);
  };
  auto ids = [](RawPacker& pk, const std::vector<uint64_t>& v) {
    pk.pack("message_ids");
    pk.pack_array(static_cast<uint32_t>(v.size()));
    for (uint64_t id : v) pk.pack(id);
  };
  ExpectRejected(with(2,
                      [&](RawPacker& pk) {
                        pk.pack("message_id");
                        pk.pack(5);
                        ids(pk, {6});
                      }),
                 ErrorCode::kMalformed,
                 "exactly one of 'message_id' and 'message_ids' is required");
  ExpectRejected(with(1, [&](RawPacker& pk) { ids(pk, {}); }),
                 ErrorCode::kMalformed,
                 "field 'message_ids' must not be empty");
  // The parser's array limit (1000, as for every list) refuses more.
  std::vector<uint64_t> too_many(kMaxReceiptIds + 1, 1);
  ExpectRejected(
      with(1, [&](RawPacker& pk) { PackIds(pk, "client_msg_ids", too_many); }),
      ErrorCode::kMalformed, "a declared size exceeds the limits");
  ExpectRejected(with(1,
                      [&](RawPacker& pk) {
                        ids(pk, {4, 0, 9});
                      }),
                 ErrorCode::kMalformed, "field 'message_ids' is out of range");
  ExpectRejected(with(1,
                      [&](RawPacker& pk) {
                        ids(pk, {static_cast<uint64_t>(INT64_MAX) + 1});
                      }),
                 ErrorCode::kMalformed, "field 'message_ids' is out of range");
  ExpectRejected(with(1,
                      [](RawPacker& pk) {
                        pk.pack("message_ids");
                        pk.pack(12);
                      }),
                 ErrorCode::kMalformed, "field 'message_ids' must be an array");
  ExpectRejected(with(1,
                      [](RawPacker& pk) {
                        pk.pack("message_ids");
                        pk.pack_array(2);
                        pk.pack(3);
                        pk.pack("4");
                      }),
                 ErrorCode::kMalformed,
                 "field 'message_ids' must be a non-negative integer");
}

TEST(CodecTest, NoticeReceiptTakesAListOfIds) {
  ExpectAListOfIds<NoticeReceipt>();
}

TEST(CodecTest, MessageReceiptTakesAListOfIds) {
  ExpectAListOfIds<MessageReceipt>();
}

// A session that logs in with batch_pushes may get MESSAGE_SUCCESS in its
// batch form: message_ids and client_msg_ids, pairwise, instead of
// message_id and client_msg_id. Exactly one form; the lists as long as
// each other.
TEST(CodecTest, MessageSuccessHasABatchForm) {
  MessageSuccess run;
  run.recipient = "李雷";
  for (uint64_t i = 1; i <= kMaxReceiptIds; ++i) {
    run.message_ids.push_back(i * 3);
    run.client_msg_ids.push_back(UINT64_MAX - i);
  }
  Result<Message> back = Decode(Encode({0, run}));
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  const auto& got = std::get<MessageSuccess>(back->body);
  EXPECT_EQ(got.message_id, 0u);
  EXPECT_EQ(got.client_msg_id, 0u);
  EXPECT_EQ(got.recipient, "李雷");
  EXPECT_EQ(got.message_ids, run.message_ids);
  EXPECT_EQ(got.client_msg_ids, run.client_msg_ids);
  std::vector<std::pair<uint64_t, uint64_t>> pairs;
  ForEachDelivered(
      got, [&](uint64_t id, uint64_t cmid) { pairs.emplace_back(id, cmid); });
  ASSERT_EQ(pairs.size(), kMaxReceiptIds);
  EXPECT_EQ(pairs.back(),
            std::make_pair(kMaxReceiptIds * 3, UINT64_MAX - kMaxReceiptIds));
  // The single form is unchanged, and ForEachDelivered sees its one pair.
  const std::string single = Encode({0, MessageSuccess{42, "Zoë", 7}});
  EXPECT_EQ(single.find("message_ids"), std::string::npos);
  pairs.clear();
  ForEachDelivered(
      std::get<MessageSuccess>(Decode(single)->body),
      [&](uint64_t id, uint64_t cmid) { pairs.emplace_back(id, cmid); });
  EXPECT_EQ(pairs, (std::vector<std::pair<uint64_t, uint64_t>>{{42, 7}}));

  auto with = [](int fields, const std::function<void(RawPacker&)>& add) {
    return EnvelopeFrame(MessageType::kMessageSuccess, 0, fields + 1,
                         [&](RawPacker& pk) {
                           pk.pack("recipient");
                           pk.pack("bob");
                           add(pk);
                         });
  };
  ExpectRejected(with(3,
                      [&](RawPacker& pk) {
                        pk.pack("message_id");
                        pk.pack(5);
                        pk.pack("client_msg_id");
                        pk.pack(6);
                        PackIds(pk, "message_ids", {7});
                      }),
                 ErrorCode::kMalformed,
                 "exactly one of 'message_id' and 'message_ids' is required");
  ExpectRejected(with(0, [](RawPacker&) {}), ErrorCode::kMalformed,
                 "exactly one of 'message_id' and 'message_ids' is required");
  ExpectRejected(with(2,
                      [&](RawPacker& pk) {
                        PackIds(pk, "message_ids", {7, 8});
                        PackIds(pk, "client_msg_ids", {1});
                      }),
                 ErrorCode::kMalformed, "one for each");
  ExpectRejected(
      with(1, [&](RawPacker& pk) { PackIds(pk, "message_ids", {7}); }),
      ErrorCode::kMalformed, "one for each");
  ExpectRejected(with(1,
                      [&](RawPacker& pk) {
                        pk.pack("message_id");
                        pk.pack(5);
                      }),
                 ErrorCode::kMalformed, "one for each");
  ExpectRejected(with(2,
                      [&](RawPacker& pk) {
                        PackIds(pk, "message_ids", {7});
                        PackIds(pk, "client_msg_ids", {0});
                      }),
                 ErrorCode::kMalformed,
                 "field 'client_msg_ids' is out of range");
}

// Encode(request_id, DistributeMessage), the broker's way for pushes, writes
// the bytes Encode(Message) writes, in both forms and whatever the text.
TEST(CodecTest, DistributeMessageEncodesAsAnyBody) {
  const DistributeMessage one{7, "Zoë", "東京で会おう 🙂 مرحبا",
                              1767225600000};
  EXPECT_EQ(Encode(0, one), Encode(Message{0, one}));
  EXPECT_EQ(Encode(42, one), Encode(Message{42, one}));
  DistributeMessage many;
  const std::vector<std::string> texts = {
      "Grüße", "你好", "👋", "مرحبا", "", std::string(5000, 'x')};
  for (size_t i = 0; i < texts.size(); ++i) {
    many.message_ids.push_back(100 + i);
    many.senders.push_back(i % 2 ? "zoë" : "李雷");
    many.bodies.push_back(texts[i]);
    many.sent_ats_ms.push_back(1767225600000 + i);
  }
  EXPECT_EQ(Encode(0, many), Encode(Message{0, many}));
  Result<Message> back = Decode(Encode(0, many));
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  EXPECT_EQ(std::get<DistributeMessage>(back->body).bodies, texts);
}

// To a session that logs in with batch_pushes, a fetch's messages may come
// in DISTRIBUTE_MESSAGE's batch form: message_ids, senders, bodies and
// sent_ats, itemwise. Exactly one form; the lists as long as each other.
TEST(CodecTest, DistributeMessageHasABatchForm) {
  DistributeMessage many;
  const std::vector<std::string> texts = {"Grüße", "你好", "👋", "مرحبا", ""};
  for (size_t i = 0; i < texts.size(); ++i) {
    many.message_ids.push_back(100 + i);
    many.senders.push_back(i % 2 ? "zoe" : "li.lei");
    many.bodies.push_back(texts[i]);
    many.sent_ats_ms.push_back(1767225600000 + i);
  }
  Result<Message> back = Decode(Encode({0, many}));
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  const auto& got = std::get<DistributeMessage>(back->body);
  EXPECT_EQ(got.message_id, 0u);
  EXPECT_EQ(got.message_ids, many.message_ids);
  EXPECT_EQ(got.senders, many.senders);
  EXPECT_EQ(got.bodies, many.bodies);
  EXPECT_EQ(got.sent_ats_ms, many.sent_ats_ms);
  std::vector<std::string> seen;
  ForEachMessage(got, [&](uint64_t id, const std::string& sender,
                          const std::string& body, uint64_t at) {
    seen.push_back(std::to_string(id) + sender + body + std::to_string(at));
  });
  ASSERT_EQ(seen.size(), texts.size());
  EXPECT_EQ(seen[1], "101zoe你好1767225600001");
  // The single form keeps its bytes (the golden frame) and its one message.
  const std::string single =
      Encode({0, DistributeMessage{42, "alice", "hello bob", 1767225600000}});
  EXPECT_EQ(single.find("message_ids"), std::string::npos);
  seen.clear();
  ForEachMessage(
      std::get<DistributeMessage>(Decode(single)->body),
      [&](uint64_t id, const std::string& sender, const std::string& body,
          uint64_t) { seen.push_back(std::to_string(id) + sender + body); });
  EXPECT_EQ(seen, (std::vector<std::string>{"42alicehello bob"}));

  auto batch = [](int fields, const std::function<void(RawPacker&)>& add) {
    return EnvelopeFrame(MessageType::kDistributeMessage, 0, fields, add);
  };
  ExpectRejected(batch(4,
                       [&](RawPacker& pk) {
                         PackIds(pk, "message_ids", {1, 2});
                         PackTexts(pk, "senders", {"a", "b"});
                         PackTexts(pk, "bodies", {"x"});
                         PackIds(pk, "sent_ats", {5, 6});
                       }),
                 ErrorCode::kMalformed, "one for each");
  ExpectRejected(batch(3,
                       [&](RawPacker& pk) {
                         PackIds(pk, "message_ids", {1});
                         PackTexts(pk, "senders", {"a"});
                         PackTexts(pk, "bodies", {"x"});
                       }),
                 ErrorCode::kMalformed, "one for each");
  ExpectRejected(batch(5,
                       [&](RawPacker& pk) {
                         pk.pack("message_id");
                         pk.pack(3);
                         PackIds(pk, "message_ids", {1});
                         PackTexts(pk, "senders", {"a"});
                         PackTexts(pk, "bodies", {"x"});
                         PackIds(pk, "sent_ats", {5});
                       }),
                 ErrorCode::kMalformed,
                 "exactly one of 'message_id' and 'message_ids' is required");
  ExpectRejected(batch(4,
                       [&](RawPacker& pk) {
                         PackIds(pk, "message_ids", {1});
                         PackTexts(pk, "senders", {"a"});
                         PackTexts(pk, "bodies",
                                   {std::string(kMaxBodyBytes + 1, 'x')});
                         PackIds(pk, "sent_ats", {5});
                       }),
                 ErrorCode::kMalformed, "field 'bodies' is longer than");
}

// SEND_MESSAGE's batch form: one recipient, bodies and client_msg_ids
// itemwise (up to kMaxSendItems); its reply MESSAGE_PENDING's batch form
// pairs message_ids with client_msg_ids; MESSAGE_FAILURE names every item
// of a refused batch in client_msg_ids. The single forms keep their bytes.
TEST(CodecTest, SendMessageHasABatchForm) {
  SendMessage many;
  many.recipient = "Zoë";
  const std::vector<std::string> texts = {"Grüße", "你好", "👋", "مرحبا", ""};
  for (size_t i = 0; i < texts.size(); ++i) {
    many.bodies.push_back(texts[i]);
    many.client_msg_ids.push_back(UINT64_MAX - i);
  }
  Result<Message> back = Decode(Encode({9, many}));
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  const auto& got = std::get<SendMessage>(back->body);
  EXPECT_EQ(got.recipient, "Zoë");
  EXPECT_EQ(got.client_msg_id, 0u);
  EXPECT_EQ(got.bodies, many.bodies);
  EXPECT_EQ(got.client_msg_ids, many.client_msg_ids);
  std::vector<std::string> seen;
  ForEachSent(got, [&](const std::string& body, uint64_t cmid) {
    seen.push_back(body + "/" + std::to_string(UINT64_MAX - cmid));
  });
  EXPECT_EQ(seen, (std::vector<std::string>{"Grüße/0", "你好/1", "👋/2",
                                            "مرحبا/3", "/4"}));
  const std::string single = Encode({5, SendMessage{"bob", "hello bob", 7}});
  EXPECT_EQ(single.find("client_msg_ids"), std::string::npos);
  seen.clear();
  ForEachSent(std::get<SendMessage>(Decode(single)->body),
              [&](const std::string& body, uint64_t cmid) {
                seen.push_back(body + "/" + std::to_string(cmid));
              });
  EXPECT_EQ(seen, (std::vector<std::string>{"hello bob/7"}));

  auto with = [](int fields, const std::function<void(RawPacker&)>& add) {
    return EnvelopeFrame(MessageType::kSendMessage, 3, fields + 1,
                         [&](RawPacker& pk) {
                           pk.pack("recipient");
                           pk.pack("bob");
                           add(pk);
                         });
  };
  ExpectRejected(with(2,
                      [&](RawPacker& pk) {
                        PackIds(pk, "client_msg_ids", {1, 2});
                        PackTexts(pk, "bodies", {"x"});
                      }),
                 ErrorCode::kMalformed,
                 "'bodies' goes with 'client_msg_ids', one for each");
  ExpectRejected(
      with(1, [&](RawPacker& pk) { PackIds(pk, "client_msg_ids", {1}); }),
      ErrorCode::kMalformed, "'bodies'");
  ExpectRejected(with(2,
                      [&](RawPacker& pk) {
                        PackIds(pk, "client_msg_ids", {});
                        PackTexts(pk, "bodies", {});
                      }),
                 ErrorCode::kMalformed, "must not be empty");
  ExpectRejected(with(3,
                      [&](RawPacker& pk) {
                        PackIds(pk, "client_msg_ids", {1});
                        PackTexts(pk, "bodies", {"x"});
                        pk.pack("client_msg_id");
                        pk.pack(1);
                      }),
                 ErrorCode::kMalformed, "unknown field 'client_msg_id'");
  ExpectRejected(with(3,
                      [&](RawPacker& pk) {
                        PackIds(pk, "client_msg_ids", {1});
                        PackTexts(pk, "bodies", {"x"});
                        pk.pack("body");
                        pk.pack("y");
                      }),
                 ErrorCode::kMalformed, "unknown field 'body'");
  ExpectRejected(with(2,
                      [&](RawPacker& pk) {
                        PackIds(pk, "client_msg_ids", {0});
                        PackTexts(pk, "bodies", {"x"});
                      }),
                 ErrorCode::kMalformed,
                 "field 'client_msg_ids' is out of range");
  std::vector<uint64_t> too_many(kMaxSendItems + 1);
  std::iota(too_many.begin(), too_many.end(), 1);
  ExpectRejected(with(2,
                      [&](RawPacker& pk) {
                        PackIds(pk, "client_msg_ids", too_many);
                        PackTexts(pk, "bodies",
                                  std::vector<std::string>(too_many.size()));
                      }),
                 ErrorCode::kMalformed, "exceeds the limits");

  // The replies.
  MessagePending pending;
  pending.message_ids = {40, 41, 45};
  pending.client_msg_ids = {7, 9, 8};
  back = Decode(Encode({9, pending}));
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  std::vector<std::pair<uint64_t, uint64_t>> pairs;
  ForEachPending(
      std::get<MessagePending>(back->body),
      [&](uint64_t id, uint64_t cmid) { pairs.emplace_back(id, cmid); });
  EXPECT_EQ(pairs, (std::vector<std::pair<uint64_t, uint64_t>>{
                       {40, 7}, {41, 9}, {45, 8}}));
  const std::string one = Encode({5, MessagePending{42, 7}});
  EXPECT_EQ(one.find("message_ids"), std::string::npos);
  pairs.clear();
  ForEachPending(
      std::get<MessagePending>(Decode(one)->body),
      [&](uint64_t id, uint64_t cmid) { pairs.emplace_back(id, cmid); });
  EXPECT_EQ(pairs, (std::vector<std::pair<uint64_t, uint64_t>>{{42, 7}}));
  auto reply = [](int fields, const std::function<void(RawPacker&)>& add) {
    return EnvelopeFrame(MessageType::kMessagePending, 3, fields, add);
  };
  ExpectRejected(reply(2,
                       [&](RawPacker& pk) {
                         PackIds(pk, "message_ids", {1, 2});
                         PackIds(pk, "client_msg_ids", {1});
                       }),
                 ErrorCode::kMalformed, "one for each");
  ExpectRejected(reply(2,
                       [&](RawPacker& pk) {
                         pk.pack("message_id");
                         pk.pack(1);
                         PackIds(pk, "client_msg_ids", {1});
                       }),
                 ErrorCode::kMalformed, "one for each");

  MessageFailure failure{ErrorCode::kQueueFull, "full", 0, {3, 2, 1}};
  back = Decode(Encode({9, failure}));
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  EXPECT_EQ(std::get<MessageFailure>(back->body).client_msg_ids,
            (std::vector<uint64_t>{3, 2, 1}));
  EXPECT_EQ(Encode({5, MessageFailure{ErrorCode::kQueueFull, "full", 7}})
                .find("client_msg_ids"),
            std::string::npos);
}

// LOGIN_REQUEST's batch_pushes: absent is false, present must be a
// boolean; it is sent only when true.
TEST(CodecTest, LoginRequestMayAskForBatchPushes) {
  LoginRequest ask{"Zoë", "correct horse", std::nullopt, true};
  Result<Message> back = Decode(Encode({2, ask}));
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  EXPECT_TRUE(std::get<LoginRequest>(back->body).batch_pushes);
  const std::string plain =
      Encode({2, LoginRequest{"Zoë", "correct horse", std::nullopt}});
  EXPECT_EQ(plain.find("batch_pushes"), std::string::npos);
  EXPECT_FALSE(std::get<LoginRequest>(Decode(plain)->body).batch_pushes);
  auto login = [](const std::function<void(RawPacker&)>& add) {
    return EnvelopeFrame(MessageType::kLoginRequest, 2, 3, [&](RawPacker& pk) {
      pk.pack("username");
      pk.pack("zoë");
      pk.pack("password");
      pk.pack("correct horse");
      pk.pack("batch_pushes");
      add(pk);
    });
  };
  back = Decode(login([](RawPacker& pk) { pk.pack(false); }));
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  EXPECT_FALSE(std::get<LoginRequest>(back->body).batch_pushes);
  ExpectRejected(login([](RawPacker& pk) { pk.pack(1); }),
                 ErrorCode::kMalformed,
                 "field 'batch_pushes' must be a boolean");
  ExpectRejected(login([](RawPacker& pk) { pk.pack("true"); }),
                 ErrorCode::kMalformed,
                 "field 'batch_pushes' must be a boolean");
}

// The ERROR that answers a MESSAGE_RECEIPT with message_ids names the ids it
// refused; other ERRORs carry no such field.
TEST(CodecTest, AnErrorMayNameRefusedIds) {
  Error refused{ErrorCode::kNotYours, "2 of 5 messages not confirmed", {7, 9}};
  Result<Message> back = Decode(Encode({4, refused}));
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  EXPECT_EQ(std::get<Error>(back->body).message_ids,
            (std::vector<uint64_t>{7, 9}));
  Error plain{ErrorCode::kMalformed, "no"};
  EXPECT_EQ(Encode({4, plain}).find("message_ids"), std::string::npos);
}

TEST(CodecTest, TolerantReadersKeepUnknownErrorCodes) {
  Message err{1, Error{static_cast<ErrorCode>(999), "from the future"}};
  Result<Message> r = Decode(Encode(err));
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(static_cast<int>(std::get<Error>(r->body).code), 999);
}

TEST(CodecTest, RejectsTrailingBytes) {
  ExpectRejected(ValidSend("bob", "x") + std::string("\x00", 1),
                 ErrorCode::kMalformed, "trailing bytes");
}

TEST(CodecTest, RejectsSizeBombsQuickly) {
  const char* bombs[] = {
      "dd ff ff ff ff",           // array32 of 4 billion
      "df ff ff ff ff",           // map32 of 4 billion
      "db ff ff ff ff",           // str32 of 4 GiB
      "c6 ff ff ff ff",           // bin32 of 4 GiB
      "c9 ff ff ff ff 01",        // ext32 of 4 GiB
      "81 a1 76 dd ff ff ff ff",  // inside the map
  };
  for (const char* hex : bombs) {
    auto start = std::chrono::steady_clock::now();
    Result<Message> r = Decode(FromHex(hex));
    auto took = std::chrono::steady_clock::now() - start;
    ASSERT_FALSE(r.ok()) << hex;
    EXPECT_EQ(r.status().code(), ErrorCode::kMalformed) << hex;
    // Not a timing assertion: a bomb that allocated would take seconds and
    // gigabytes; this bound only catches that catastrophe.
    EXPECT_LT(took, std::chrono::seconds(1)) << hex;
  }
}

TEST(CodecTest, RejectsDeepNesting) {
  std::string frame(200, '\x91');  // 200 nested one-element arrays
  frame.push_back('\x01');
  ExpectRejected(frame, ErrorCode::kMalformed, "nested too deeply");
  // A map inside an array inside the frame map is one level too many.
  std::string nested = SendFrame(1, [](RawPacker& pk) {
    pk.pack("recipient");
    pk.pack_array(1);
    pk.pack_map(0);
  });
  ExpectRejected(nested, ErrorCode::kMalformed, "nested too deeply");
}

// Each array value is read on its own: a reply read tolerantly with an
// unknown array field before `accounts` still gets its own names.
TEST(CodecTest, ReadsEachArrayValueOnItsOwn) {
  std::string frame =
      EnvelopeFrame(MessageType::kAccountList, 4, 3, [](RawPacker& pk) {
        pk.pack("later");  // a field from a newer broker
        pk.pack(std::vector<std::string>{"x", "y", "z"});
        pk.pack("accounts");
        pk.pack(std::vector<std::string>{"alice", "zoë", "李"});
        pk.pack("cursor");
        pk.pack("p2");
      });
  Result<Message> r = Decode(frame);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  const auto& list = std::get<AccountList>(r->body);
  EXPECT_EQ(list.accounts, (std::vector<std::string>{"alice", "zoë", "李"}));
  EXPECT_EQ(list.cursor, "p2");
}

// The decoder keeps its scratch space per thread (codec.cpp): what one frame
// left there never shows in the next, on the same thread or on others.
TEST(CodecTest, EachFrameIsReadAfresh) {
  std::vector<uint64_t> all(kMaxReceiptIds);
  std::iota(all.begin(), all.end(), 1);
  const Message many{8, MessageReceipt{0, all}};
  const Message two{9, MessageReceipt{0, {41, 42}}};
  const Message send{10, SendMessage{"bob", "héllo 🌍 שלום 李", 7}};
  const Message ping{11, Ping{}};
  auto same = [](const Message& m) {
    Result<Message> r = Decode(Encode(m));
    return r.ok() && Encode(*r) == Encode(m);
  };
  // Fewer items and fewer entries than the frame before: nothing stale is
  // read (a leftover entry would be an unknown field to the strict PING).
  EXPECT_TRUE(same(many));
  EXPECT_TRUE(same(two));
  EXPECT_TRUE(same(send));
  EXPECT_TRUE(same(ping));
  // After a frame refused halfway through its map.
  std::string cut = Encode(send);
  cut.resize(cut.size() - 3);
  EXPECT_FALSE(Decode(cut).ok());
  EXPECT_TRUE(same(ping));
  EXPECT_TRUE(same(two));

  std::atomic<int> wrong{0};
  std::vector<std::thread> threads;
  const Message* kinds[] = {&many, &two, &send, &ping};
  for (const Message* m : kinds) {
    threads.emplace_back([&, m] {
      for (int i = 0; i < 300; ++i) {
        if (!same(*m)) ++wrong;
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(wrong.load(), 0);
}

// Values no field can hold are typed, not read: a map as a value, an array
// as a key.
TEST(CodecTest, RejectsContainersWhereTextBelongs) {
  std::string map_value = SendFrame(3, [](RawPacker& pk) {
    pk.pack("recipient");
    pk.pack_map(1);
    pk.pack("name");
    pk.pack("bob");
    pk.pack("body");
    pk.pack("héllo 🌍 שלום");
    pk.pack("client_msg_id");
    pk.pack(5);
  });
  ExpectRejected(map_value, ErrorCode::kMalformed,
                 "field 'recipient' must be a string");
  std::string array_key = SendFrame(1, [](RawPacker& pk) {
    pk.pack_array(1);
    pk.pack("recipient");
    pk.pack("bob");
  });
  ExpectRejected(array_key, ErrorCode::kMalformed, "map key is not a string");
}

TEST(CodecTest, RejectsTooManyEntries) {
  std::string frame = RawFrame([](RawPacker& pk) {
    pk.pack_map(17);
    for (int i = 0; i < 17; ++i) {
      pk.pack("k" + std::to_string(i));
      pk.pack(i);
    }
  });
  ExpectRejected(frame, ErrorCode::kMalformed, "exceeds the limits");
}

TEST(CodecTest, RejectsUnknownType) {
  std::string frame = RawFrame([](RawPacker& pk) {
    pk.pack_map(3);
    pk.pack("v");
    pk.pack(1);
    pk.pack("type");
    pk.pack(200);
    pk.pack("req");
    pk.pack(31);
  });
  uint64_t req = 0;
  Result<Message> r = Decode(frame, &req);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), ErrorCode::kUnknownType);
  EXPECT_EQ(req, 31u) << "the error must be able to echo the request id";
}

TEST(CodecTest, RejectsUnsupportedVersion) {
  std::string frame = RawFrame([](RawPacker& pk) {
    pk.pack_map(3);
    pk.pack("v");
    pk.pack(2);
    pk.pack("type");
    pk.pack(22);
    pk.pack("req");
    pk.pack(1);
  });
  ExpectRejected(frame, ErrorCode::kUnsupportedVersion, "version 2");
}

TEST(CodecTest, RejectsUnknownKeyInRequest) {
  std::string frame = SendFrame(4, [](RawPacker& pk) {
    pk.pack("recipient");
    pk.pack("bob");
    pk.pack("body");
    pk.pack("x");
    pk.pack("client_msg_id");
    pk.pack(1);
    pk.pack("recipent");
    pk.pack("typo");
  });
  ExpectRejected(frame, ErrorCode::kMalformed, "unknown field 'recipent'");
}

TEST(CodecTest, IgnoresUnknownKeyInReplyAndPush) {
  std::string frame =
      EnvelopeFrame(MessageType::kError, 4, 2, [](RawPacker& pk) {
        pk.pack("code");
        pk.pack(4);
        pk.pack("reason");
        pk.pack("x");
      });
  std::string with_extra = frame;
  with_extra[0] = '\x86';
  with_extra += RawFrame([](RawPacker& pk) {
    pk.pack("added_later");
    pk.pack(true);
  });
  Result<Message> r = Decode(with_extra);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(std::get<Error>(r->body).code, ErrorCode::kNotLoggedIn);
}

TEST(CodecTest, RequestsNeedNonzeroIdAndPushesZero) {
  ExpectRejected(Encode({0, Ping{}}), ErrorCode::kMalformed, "'req'");
  ExpectRejected(Encode({5, SessionEnded{ErrorCode::kSessionExpired, "x"}}),
                 ErrorCode::kMalformed, "'req'");
}

TEST(CodecTest, LoginNeedsExactlyOneCredential) {
  ExpectRejected(Encode({1, LoginRequest{"a", std::nullopt, std::nullopt}}),
                 ErrorCode::kMalformed, "exactly one");
  ExpectRejected(
      Encode({1, LoginRequest{"a", "pw", std::string(kTokenBytes, 'x')}}),
      ErrorCode::kMalformed, "exactly one");
  ExpectRejected(Encode({1, LoginRequest{"a", std::nullopt, "short"}}),
                 ErrorCode::kMalformed, "field 'token' must be 32 bytes");
}

TEST(CodecTest, RejectsOversizeFrame) {
  ExpectRejected(std::string(kMaxFrameBytes + 1, '\xc0'), ErrorCode::kMalformed,
                 "larger than");
}

TEST(Utf8Test, TruncatesOnCharacterBoundaries) {
  std::string text = "ab\xc3\xa9\xe2\x82\xac";  // a b é €
  TruncateUtf8(text, 3);
  EXPECT_EQ(text, "ab");
  text = "ab\xc3\xa9\xe2\x82\xac";
  TruncateUtf8(text, 6);
  EXPECT_EQ(text, "ab\xc3\xa9");
  text = "short";
  TruncateUtf8(text, 100);
  EXPECT_EQ(text, "short");
}

TEST(Utf8Test, AcceptsValidAndRejectsInvalid) {
  EXPECT_TRUE(IsValidUtf8(""));
  EXPECT_TRUE(IsValidUtf8("plain"));
  EXPECT_TRUE(IsValidUtf8("\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80"));
  EXPECT_FALSE(IsValidUtf8("\x80"));              // lone continuation
  EXPECT_FALSE(IsValidUtf8("\xc3"));              // truncated
  EXPECT_FALSE(IsValidUtf8("\xe0\x80\xaf"));      // overlong
  EXPECT_FALSE(IsValidUtf8("\xed\xa0\x80"));      // surrogate
  EXPECT_FALSE(IsValidUtf8("\xf4\x90\x80\x80"));  // above U+10FFFF
  EXPECT_FALSE(IsValidUtf8("\xfe"));
}

// The definition, one code point at a time: a sequence is valid when it
// decodes to a scalar value (not a surrogate, at most U+10FFFF) in the
// shortest form that holds it.
bool ReferenceUtf8(std::string_view text) {
  size_t i = 0;
  while (i < text.size()) {
    const auto c = static_cast<uint8_t>(text[i]);
    size_t n;
    uint32_t cp;
    if (c < 0x80) {
      n = 1, cp = c;
    } else if ((c & 0xE0) == 0xC0) {
      n = 2, cp = c & 0x1F;
    } else if ((c & 0xF0) == 0xE0) {
      n = 3, cp = c & 0x0F;
    } else if ((c & 0xF8) == 0xF0) {
      n = 4, cp = c & 0x07;
    } else {
      return false;
    }
    if (i + n > text.size()) return false;
    for (size_t k = 1; k < n; ++k) {
      const auto b = static_cast<uint8_t>(text[i + k]);
      if ((b & 0xC0) != 0x80) return false;
      cp = (cp << 6) | (b & 0x3F);
    }
    const uint32_t shortest = cp < 0x80      ? 1
                              : cp < 0x800   ? 2
                              : cp < 0x10000 ? 3
                                             : 4;
    if (n != shortest || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) {
      return false;
    }
    i += n;
  }
  return true;
}

// Every sequence of one and two bytes, and of three and four bytes every
// lead and second byte with the later bytes drawn from the edges of their
// ranges, behind ASCII bytes (so that it falls at different places of the
// eight-byte steps) and before more ASCII: the validator agrees with the
// definition on all.
TEST(Utf8Test, AgreesWithTheDefinitionOnEverySequence) {
  size_t checked = 0, valid = 0;
  // Longer sequences at three places only: first in a step, across two,
  // and last in one.
  auto check = [&](const std::string& seq) {
    static constexpr size_t kAll[] = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9};
    static constexpr size_t kSome[] = {0, 5, 7};
    for (size_t lead : seq.size() <= 2 ? std::span<const size_t>(kAll)
                                       : std::span<const size_t>(kSome)) {
      const std::string text = std::string(lead, 'a') + seq + "bcdefghij";
      const bool want = ReferenceUtf8(text);
      // In a buffer of its exact size, so that the sanitized build sees any
      // read past the end (a std::string has its terminator there).
      auto exact = std::make_unique<char[]>(text.size());
      std::memcpy(exact.get(), text.data(), text.size());
      ASSERT_EQ(IsValidUtf8(std::string_view(exact.get(), text.size())), want)
          << "lead " << lead << ", bytes " << ::testing::PrintToString(seq);
      ++checked;
      valid += want;
    }
  };
  // Past the second byte only whether a byte continues matters: the edges
  // of the ranges stand for all.
  static constexpr int kEdges[] = {0x00, 0x7F, 0x80, 0x8F, 0x90,
                                   0x9F, 0xA0, 0xBF, 0xC0, 0xFF};
  for (int a = 0; a < 256; ++a) {
    check(std::string(1, static_cast<char>(a)));
    for (int b = 0; b < 256; ++b) {
      const std::string two = {static_cast<char>(a), static_cast<char>(b)};
      check(two);
      if (a < 0xE0 || a > 0xF7) continue;  // the leads of longer sequences
      for (int c : kEdges) {
        if (a <= 0xEF) {
          check(two + static_cast<char>(c));
          continue;
        }
        for (int d : kEdges) {
          check(two + static_cast<char>(c) + static_cast<char>(d));
        }
      }
    }
  }
  // Enough of both kinds, as a sanity check of the loops themselves.
  EXPECT_GT(checked, 500'000u);
  EXPECT_GT(valid, 10'000u);
}

}  // namespace
}  // namespace zchat

namespace zchat {
namespace {

// Found by the dispatcher fuzzer: an unknown key that is not UTF-8 was
// quoted as is in the error, making the broker's own ERROR undecodable.
TEST(CodecTest, ErrorsQuoteKeysAsValidText) {
  std::string frame =
      EnvelopeFrame(MessageType::kPing, 6, 1, [](RawPacker& pk) {
        pk.pack_str(5);
        pk.pack_str_body("lim\xff\xfe", 5);
        pk.pack(-1);
      });
  Result<Message> r = Decode(frame);
  ASSERT_FALSE(r.ok());
  EXPECT_TRUE(IsValidUtf8(r.status().detail())) << r.status().detail();
  EXPECT_NE(r.status().detail().find("lim\\xff\\xfe"), std::string::npos)
      << r.status().detail();
  // And the ERROR built from it encodes and decodes.
  Message error{6, Error{r.status().code(), r.status().detail()}};
  EXPECT_TRUE(Decode(Encode(error)).ok());
}

}  // namespace
}  // namespace zchat
