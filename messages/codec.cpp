#include "messages/codec.h"

#include <array>
#include <cstring>
#include <msgpack.hpp>
#include <utility>

#include "messages/utf8.h"

namespace zchat {
namespace {

static_assert(kMessageTypeCount == 28);

// Envelope keys, present in every frame.
constexpr std::string_view kVersionKey = "v";
constexpr std::string_view kTypeKey = "type";
constexpr std::string_view kRequestIdKey = "req";

// Bounds handed to msgpack before it allocates anything.
constexpr size_t kMaxMapEntries = 16;
constexpr size_t kMaxDepth = 2;  // the frame map, and one array inside it

// Packs straight into the std::string Encode returns (msgpack's sbuffer
// would need a copy into it).
class StringBuffer {
 public:
  explicit StringBuffer(std::string& out) : out_(out) {}
  void write(const char* data, size_t size) { out_.append(data, size); }

 private:
  std::string& out_;
};
using Packer = msgpack::packer<StringBuffer>;

// --- Encoding ---------------------------------------------------------------

class FieldCounter {
 public:
  size_t count = 0;
  void Text(std::string_view, const std::string&, size_t) { ++count; }
  void Bytes(std::string_view, const std::string&, size_t) { ++count; }
  void Uint(std::string_view, uint64_t, uint64_t, uint64_t) { ++count; }
  void Bool(std::string_view, bool) { ++count; }
  void Code(std::string_view, ErrorCode) { ++count; }
  void TextList(std::string_view, const std::vector<std::string>&, size_t,
                size_t) {
    ++count;
  }
  void OptText(std::string_view, const std::optional<std::string>& v, size_t) {
    count += v.has_value();
  }
  void OptBytes(std::string_view, const std::optional<std::string>& v, size_t) {
    count += v.has_value();
  }
  void OptUint(std::string_view, const std::optional<uint64_t>& v, uint64_t,
               uint64_t) {
    count += v.has_value();
  }
  void OptId(std::string_view, uint64_t v, uint64_t) { count += v != 0; }
  void IdList(std::string_view, const std::vector<uint64_t>& v, size_t,
              uint64_t) {
    count += !v.empty();
  }
  void OptFlag(std::string_view, bool v) { count += v; }
};

class FieldPacker {
 public:
  explicit FieldPacker(Packer& pk) : pk_(pk) {}
  void Text(std::string_view key, const std::string& v, size_t) {
    Key(key);
    Str(v);
  }
  void Bytes(std::string_view key, const std::string& v, size_t) {
    Key(key);
    pk_.pack_bin(static_cast<uint32_t>(v.size()));
    pk_.pack_bin_body(v.data(), static_cast<uint32_t>(v.size()));
  }
  void Uint(std::string_view key, uint64_t v, uint64_t, uint64_t) {
    Key(key);
    pk_.pack_uint64(v);
  }
  void Bool(std::string_view key, bool v) {
    Key(key);
    if (v) {
      pk_.pack_true();
    } else {
      pk_.pack_false();
    }
  }
  void Code(std::string_view key, ErrorCode v) {
    Uint(key, static_cast<uint64_t>(v), 0, 0);
  }
  void TextList(std::string_view key, const std::vector<std::string>& v, size_t,
                size_t) {
    Key(key);
    pk_.pack_array(static_cast<uint32_t>(v.size()));
    for (const auto& s : v) Str(s);
  }
  void OptText(std::string_view key, const std::optional<std::string>& v,
               size_t max) {
    if (v) Text(key, *v, max);
  }
  void OptBytes(std::string_view key, const std::optional<std::string>& v,
                size_t max) {
    if (v) Bytes(key, *v, max);
  }
  void OptUint(std::string_view key, const std::optional<uint64_t>& v,
               uint64_t lo, uint64_t hi) {
    if (v) Uint(key, *v, lo, hi);
  }
  void OptId(std::string_view key, uint64_t v, uint64_t hi) {
    if (v != 0) Uint(key, v, 1, hi);
  }
  void IdList(std::string_view key, const std::vector<uint64_t>& v, size_t,
              uint64_t) {
    if (v.empty()) return;
    Key(key);
    pk_.pack_array(static_cast<uint32_t>(v.size()));
    for (uint64_t id : v) pk_.pack_uint64(id);
  }
  void OptFlag(std::string_view key, bool v) {
    if (v) Bool(key, v);
  }

 private:
  void Key(std::string_view key) { Str(key); }
  void Str(std::string_view s) {
    pk_.pack_str(static_cast<uint32_t>(s.size()));
    pk_.pack_str_body(s.data(), static_cast<uint32_t>(s.size()));
  }
  Packer& pk_;
};

// --- Decoding ---------------------------------------------------------------

Status Malformed(std::string detail) {
  return Status(ErrorCode::kMalformed, std::move(detail));
}

// A key quoted in an error reason: the reason is a text field of the reply,
// so it must be valid UTF-8 (and short) whatever the key held. Printable
// ASCII is kept, anything else becomes \xHH.
std::string Printable(std::string_view key) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  for (unsigned char c : key.substr(0, 64)) {
    if (c >= 0x20 && c < 0x7f) {
      out.push_back(static_cast<char>(c));
    } else {
      out += "\\x";
      out.push_back(kHex[c >> 4]);
      out.push_back(kHex[c & 15]);
    }
  }
  if (key.size() > 64) out += "...";
  return out;
}

// One value as the parser saw it. Strings and bins point into the frame.
struct Value {
  msgpack::type::object_type type = msgpack::type::NIL;
  bool boolean = false;
  uint64_t u64 = 0;        // POSITIVE_INTEGER
  std::string_view bytes;  // STR, BIN
  uint32_t first = 0;      // ARRAY: its items are items[first, first + size)
  uint32_t size = 0;       // ARRAY, MAP: number of items or entries
};

// Key comparison, the decoder's commonest: most keys differ in length or in
// their first byte, which is cheaper to look at than calling memcmp.
bool SameKey(std::string_view a, std::string_view b) {
  return a.size() == b.size() &&
         (a.empty() ||
          (a[0] == b[0] && std::memcmp(a.data(), b.data(), a.size()) == 0));
}

// One entry of the frame's map. A key that is not a string is only marked.
struct Entry {
  bool key_is_str = false;
  std::string_view key;
  Value value;
};

// The frame's parts, filled by FrameVisitor.
struct ParsedFrame {
  bool root_is_map = false;
  uint32_t entry_count = 0;
  std::array<Entry, kMaxMapEntries> entries;
  // The items of the map's arrays (the only values one level down that a
  // field reads); the vector keeps its capacity from frame to frame.
  std::vector<Value> items;
};

// Why a parse stopped, in the order the reasons are reported.
enum class ParseStop { kNone, kSize, kDepth, kSyntax, kTruncated };

// A msgpack parser visitor that records the frame's map straight into a
// ParsedFrame: no object tree, no allocation (the item list keeps its
// capacity). The bounds are those msgpack's unpack_limit enforces, checked
// in the same callbacks and order: a container's size before its depth.
class FrameVisitor : public msgpack::null_visitor {
 public:
  explicit FrameVisitor(ParsedFrame& frame) : frame_(frame) {}

  ParseStop stop() const { return stop_; }

  bool visit_nil() { return Scalar(Value{}); }
  bool visit_boolean(bool v) {
    Value value;
    value.type = msgpack::type::BOOLEAN;
    value.boolean = v;
    return Scalar(value);
  }
  bool visit_positive_integer(uint64_t v) {
    Value value;
    value.type = msgpack::type::POSITIVE_INTEGER;
    value.u64 = v;
    return Scalar(value);
  }
  // The signed formats: msgpack calls this for all of them, whatever the
  // sign, and a non-negative value is a uint to every field.
  bool visit_negative_integer(int64_t v) {
    if (v >= 0) return visit_positive_integer(static_cast<uint64_t>(v));
    return Scalar(Typed(msgpack::type::NEGATIVE_INTEGER));
  }
  bool visit_float32(float) { return Scalar(Typed(msgpack::type::FLOAT32)); }
  bool visit_float64(double) { return Scalar(Typed(msgpack::type::FLOAT64)); }
  bool visit_str(const char* v, uint32_t size) {
    if (size > kMaxFrameBytes) return Stop(ParseStop::kSize);
    Value value = Typed(msgpack::type::STR);
    value.bytes = std::string_view(v, size);
    return Scalar(value);
  }
  bool visit_bin(const char* v, uint32_t size) {
    if (size > kMaxFrameBytes) return Stop(ParseStop::kSize);
    Value value = Typed(msgpack::type::BIN);
    value.bytes = std::string_view(v, size);
    return Scalar(value);
  }
  bool visit_ext(const char*, uint32_t) {
    // No field is an ext: the limit for their size is 0.
    return Stop(ParseStop::kSize);
  }
  bool start_array(uint32_t n) {
    if (n > kMaxListLimit) return Stop(ParseStop::kSize);
    return Open(msgpack::type::ARRAY, n);
  }
  bool end_array() { return Close(); }
  bool start_map(uint32_t n) {
    if (n > kMaxMapEntries) return Stop(ParseStop::kSize);
    return Open(msgpack::type::MAP, n);
  }
  bool end_map() { return Close(); }
  bool start_map_key() {
    if (depth_ == 1) {
      in_key_ = true;
      frame_.entries[frame_.entry_count++] = Entry{};
    }
    return true;
  }
  bool end_map_key() {
    if (depth_ == 1) in_key_ = false;
    return true;
  }
  void parse_error(size_t, size_t) { stop_ = ParseStop::kSyntax; }
  void insufficient_bytes(size_t, size_t) { stop_ = ParseStop::kTruncated; }

 private:
  static Value Typed(msgpack::type::object_type type) {
    Value value;
    value.type = type;
    return value;
  }
  bool Stop(ParseStop why) {
    stop_ = why;
    return false;
  }
  // The value being visited belongs to an entry of the frame's map.
  bool InEntry() const { return depth_ == 1 && frame_.root_is_map; }
  bool Scalar(const Value& value) {
    if (InEntry()) {
      Entry& e = frame_.entries[frame_.entry_count - 1];
      if (!in_key_) {
        e.value = value;
      } else if (value.type == msgpack::type::STR) {
        e.key_is_str = true;
        e.key = value.bytes;
      }
    } else if (depth_ == 2 && in_entry_array_) {
      frame_.items.push_back(value);
    }
    return true;
  }
  bool Open(msgpack::type::object_type type, uint32_t n) {
    // As unpack_limit's depth: containers already open, plus this one.
    if (depth_ + 1 > kMaxDepth) return Stop(ParseStop::kDepth);
    if (depth_ == 0) {
      frame_.root_is_map = type == msgpack::type::MAP;
    } else if (InEntry() && !in_key_) {
      Value& v = frame_.entries[frame_.entry_count - 1].value;
      v = Typed(type);
      v.size = n;
      if (type == msgpack::type::ARRAY) {
        v.first = static_cast<uint32_t>(frame_.items.size());
        in_entry_array_ = true;
      }
    }
    ++depth_;
    return true;
  }
  bool Close() {
    --depth_;
    if (depth_ == 1) in_entry_array_ = false;
    return true;
  }

  ParsedFrame& frame_;
  size_t depth_ = 0;  // containers open
  bool in_key_ = false;
  bool in_entry_array_ = false;  // an array that is a value of the frame's map
  ParseStop stop_ = ParseStop::kNone;
};

// Reads the fields of one map, recording the first error. Keys are unique
// strings (checked by the caller); each lookup marks its key used so that
// Finish can refuse unknown keys in strict mode.
class FieldReader {
 public:
  explicit FieldReader(const ParsedFrame& frame) : frame_(frame) {
    static_assert(kMaxMapEntries <= 32, "used_ is a 32-bit mask");
  }

  const Status& status() const { return status_; }
  void set_strict(bool strict) { strict_ = strict; }

  const Value* Find(std::string_view key) {
    for (uint32_t i = 0; i < frame_.entry_count; ++i) {
      const Entry& e = frame_.entries[i];
      if (SameKey(e.key, key)) {
        used_ |= uint32_t{1} << i;
        // nil counts as absent, so that optional fields may be sent as null.
        if (e.value.type == msgpack::type::NIL) return nullptr;
        return &e.value;
      }
    }
    return nullptr;
  }

  void Text(std::string_view key, std::string& out, size_t max) {
    if (const auto* o = Required(key)) ReadText(key, *o, max, out);
  }
  void OptText(std::string_view key, std::optional<std::string>& out,
               size_t max) {
    if (!status_.ok()) return;
    if (const auto* o = Find(key)) ReadText(key, *o, max, out.emplace());
  }
  void Bytes(std::string_view key, std::string& out, size_t exact) {
    if (const auto* o = Required(key)) ReadBytes(key, *o, exact, out);
  }
  void OptBytes(std::string_view key, std::optional<std::string>& out,
                size_t exact) {
    if (!status_.ok()) return;
    if (const auto* o = Find(key)) ReadBytes(key, *o, exact, out.emplace());
  }
  void Uint(std::string_view key, uint64_t& out, uint64_t lo, uint64_t hi) {
    if (const auto* o = Required(key)) ReadUint(key, *o, lo, hi, out);
  }
  void OptUint(std::string_view key, std::optional<uint64_t>& out, uint64_t lo,
               uint64_t hi) {
    if (!status_.ok()) return;
    if (const auto* o = Find(key)) ReadUint(key, *o, lo, hi, out.emplace());
  }
  // An optional id: 0 when absent (a present one is 1..hi).
  void OptId(std::string_view key, uint64_t& out, uint64_t hi) {
    if (!status_.ok()) return;
    if (const auto* o = Find(key)) ReadUint(key, *o, 1, hi, out);
  }
  // An optional list of ids: empty when absent; a present one holds
  // 1..max_items ids, each 1..hi.
  void IdList(std::string_view key, std::vector<uint64_t>& out,
              size_t max_items, uint64_t hi) {
    if (!status_.ok()) return;
    const auto* o = Find(key);
    if (!o) return;
    if (o->type != msgpack::type::ARRAY) return Fail(key, "must be an array");
    if (o->size == 0) return Fail(key, "must not be empty");
    if (o->size > max_items) {
      return Fail(key, "has more than " + std::to_string(max_items) + " items");
    }
    out.resize(o->size);
    for (uint32_t i = 0; i < o->size && status_.ok(); ++i) {
      ReadUint(key, Item(*o, i), 1, hi, out[i]);
    }
  }
  void Bool(std::string_view key, bool& out) {
    if (const auto* o = Required(key)) ReadBool(key, *o, out);
  }
  // An optional boolean: false when absent.
  void OptFlag(std::string_view key, bool& out) {
    if (!status_.ok()) return;
    if (const auto* o = Find(key)) ReadBool(key, *o, out);
  }
  void Code(std::string_view key, ErrorCode& out) {
    uint64_t v = 0;
    // Tolerant readers keep codes from a newer peer; strict ones refuse them.
    Uint(key, v, 0, strict_ ? kMaxErrorCode : UINT16_MAX);
    out = static_cast<ErrorCode>(v);
  }
  void TextList(std::string_view key, std::vector<std::string>& out,
                size_t max_items, size_t max_each) {
    const auto* o = Required(key);
    if (!o) return;
    if (o->type != msgpack::type::ARRAY) return Fail(key, "must be an array");
    if (o->size > max_items) return Fail(key, "has too many items");
    out.resize(o->size);
    for (uint32_t i = 0; i < o->size && status_.ok(); ++i) {
      ReadText(key, Item(*o, i), max_each, out[i]);
    }
  }

  // After all fields: in strict mode, any key not read is an error.
  Status Finish() {
    if (status_.ok() && strict_) {
      for (uint32_t i = 0; i < frame_.entry_count; ++i) {
        if (!(used_ & (uint32_t{1} << i))) {
          return Malformed("unknown field '" +
                           Printable(frame_.entries[i].key) + "'");
        }
      }
    }
    return status_;
  }

 private:
  const Value& Item(const Value& array, uint32_t i) const {
    return frame_.items[array.first + i];
  }
  const Value* Required(std::string_view key) {
    if (!status_.ok()) return nullptr;
    const auto* o = Find(key);
    if (!o) Fail(key, "is missing");
    return o;
  }
  void Fail(std::string_view key, std::string_view what) {
    if (status_.ok()) {
      status_ =
          Malformed("field '" + std::string(key) + "' " + std::string(what));
    }
  }
  void ReadText(std::string_view key, const Value& o, size_t max,
                std::string& out) {
    if (o.type != msgpack::type::STR) return Fail(key, "must be a string");
    if (o.bytes.size() > max) {
      return Fail(key, "is longer than " + std::to_string(max) + " bytes");
    }
    if (!IsValidUtf8(o.bytes)) return Fail(key, "is not valid UTF-8");
    out.assign(o.bytes);
  }
  void ReadBool(std::string_view key, const Value& o, bool& out) {
    if (o.type != msgpack::type::BOOLEAN) return Fail(key, "must be a boolean");
    out = o.boolean;
  }
  void ReadBytes(std::string_view key, const Value& o, size_t exact,
                 std::string& out) {
    if (o.type != msgpack::type::BIN) return Fail(key, "must be binary");
    if (o.bytes.size() != exact) {
      return Fail(key, "must be " + std::to_string(exact) + " bytes");
    }
    out.assign(o.bytes);
  }
  void ReadUint(std::string_view key, const Value& o, uint64_t lo, uint64_t hi,
                uint64_t& out) {
    if (o.type != msgpack::type::POSITIVE_INTEGER) {
      // msgpack encodes non-negative integers as POSITIVE_INTEGER, so a
      // NEGATIVE_INTEGER here is a negative number.
      return Fail(key, "must be a non-negative integer");
    }
    if (o.u64 < lo || o.u64 > hi) {
      return Fail(key, "is out of range [" + std::to_string(lo) + ", " +
                           std::to_string(hi) + "]");
    }
    out = o.u64;
  }

  const ParsedFrame& frame_;
  uint32_t used_ = 0;  // bit i: entry i was read
  bool strict_ = false;
  Status status_;
};

template <class T>
Result<Message> DecodeBody(FieldReader& reader, uint64_t request_id) {
  T body;
  body.Visit(reader);
  Status s = reader.Finish();
  if (!s.ok()) return s;
  if constexpr (std::is_same_v<T, LoginRequest>) {
    if (body.password.has_value() == body.token.has_value()) {
      return Malformed("exactly one of 'password' and 'token' is required");
    }
  }
  if constexpr (std::is_same_v<T, NoticeReceipt> ||
                std::is_same_v<T, MessageReceipt>) {
    if ((body.message_id != 0) == !body.message_ids.empty()) {
      return Malformed(
          "exactly one of 'message_id' and 'message_ids' is required");
    }
  }
  if constexpr (std::is_same_v<T, DistributeMessage>) {
    if ((body.message_id != 0) == !body.message_ids.empty()) {
      return Malformed(
          "exactly one of 'message_id' and 'message_ids' is required");
    }
    const size_t n = body.message_ids.size();
    if (n != 0 && (body.senders.size() != n || body.bodies.size() != n ||
                   body.sent_ats_ms.size() != n)) {
      return Malformed(
          "'senders', 'bodies' and 'sent_ats' go with 'message_ids', one for "
          "each");
    }
  }
  if constexpr (std::is_same_v<T, SendMessage>) {
    if (body.bodies.size() != body.client_msg_ids.size()) {
      return Malformed("'bodies' goes with 'client_msg_ids', one for each");
    }
  }
  if constexpr (std::is_same_v<T, MessagePending> ||
                std::is_same_v<T, MessageSuccess>) {
    if ((body.message_id != 0) == !body.message_ids.empty()) {
      return Malformed(
          "exactly one of 'message_id' and 'message_ids' is required");
    }
    if ((body.client_msg_id != 0) != (body.message_id != 0) ||
        body.client_msg_ids.size() != body.message_ids.size()) {
      return Malformed(
          "'client_msg_id' goes with 'message_id', and 'client_msg_ids' "
          "with 'message_ids', one for each");
    }
  }
  return Message{request_id, Body(std::move(body))};
}

using BodyDecoder = Result<Message> (*)(FieldReader&, uint64_t);

template <size_t... I>
constexpr std::array<BodyDecoder, sizeof...(I)> MakeDecoders(
    std::index_sequence<I...>) {
  return {&DecodeBody<std::variant_alternative_t<I, Body>>...};
}

constexpr auto kDecoders =
    MakeDecoders(std::make_index_sequence<kMessageTypeCount>());

// The variant's order is the wire numbering.
template <size_t... I>
constexpr bool NumberedInOrder(std::index_sequence<I...>) {
  return ((static_cast<size_t>(std::variant_alternative_t<I, Body>::kType) ==
           I + 1) &&
          ...);
}
static_assert(NumberedInOrder(std::make_index_sequence<kMessageTypeCount>()),
              "Body alternatives must be listed in wire-number order");

Result<Message> DecodeFrame(const ParsedFrame& frame, uint64_t* request_id) {
  if (!frame.root_is_map) return Malformed("frame is not a map");
  for (uint32_t i = 0; i < frame.entry_count; ++i) {
    const Entry& e = frame.entries[i];
    if (!e.key_is_str) return Malformed("map key is not a string");
    for (uint32_t j = 0; j < i; ++j) {
      if (SameKey(frame.entries[j].key, e.key)) {
        return Malformed("duplicate field '" + Printable(e.key) + "'");
      }
    }
  }

  // The envelope. The request id is read first so that errors can echo it;
  // reading it marks its keys used for the body's strict reading below.
  FieldReader fields(frame);
  uint64_t req = 0;
  fields.Uint(kRequestIdKey, req, 0, UINT64_MAX);
  if (!fields.status().ok()) return fields.status();
  if (request_id) *request_id = req;
  uint64_t version = 0;
  fields.Uint(kVersionKey, version, 0, UINT64_MAX);
  uint64_t type = 0;
  fields.Uint(kTypeKey, type, 0, UINT64_MAX);
  if (!fields.status().ok()) return fields.status();
  if (version != kProtocolVersion) {
    return Status(ErrorCode::kUnsupportedVersion,
                  "protocol version " + std::to_string(version) +
                      " is not supported (this peer speaks " +
                      std::to_string(kProtocolVersion) + ")");
  }
  if (!IsKnownMessageType(type)) {
    return Status(ErrorCode::kUnknownType,
                  "unknown message type " + std::to_string(type));
  }
  const Direction dir = DirectionOf(static_cast<MessageType>(type));
  if (dir == Direction::kRequest && req == 0) {
    return Malformed("field 'req' must be nonzero on a request");
  }
  if (dir == Direction::kPush && req != 0) {
    return Malformed("field 'req' must be 0 on a push");
  }
  fields.set_strict(dir == Direction::kRequest);
  return kDecoders[type - 1](fields, req);
}

}  // namespace

std::string Encode(const Message& message) {
  return Encode(message.request_id, message.body);
}

namespace {

// One message's frame; `room` is what the frame is likely to need.
template <class Fields>
std::string EncodeFields(uint64_t request_id, const Fields& alternative,
                         size_t room) {
  std::string out;
  out.reserve(room);
  StringBuffer buffer(out);
  Packer pk(buffer);
  // Visit is shared with the decoder and so takes a mutable reference; the
  // packing visitors only read.
  auto& fields = const_cast<Fields&>(alternative);
  FieldCounter counter;
  fields.Visit(counter);
  pk.pack_map(static_cast<uint32_t>(3 + counter.count));
  FieldPacker packer(pk);
  packer.Uint(kVersionKey, kProtocolVersion, 0, 0);
  packer.Uint(kTypeKey, static_cast<uint64_t>(Fields::kType), 0, 0);
  packer.Uint(kRequestIdKey, request_id, 0, 0);
  fields.Visit(packer);
  return out;
}

}  // namespace

std::string Encode(uint64_t request_id, const Body& body) {
  return std::visit(
      [&](const auto& alternative) {
        return EncodeFields(request_id, alternative, 128);
      },
      body);
}

std::string Encode(uint64_t request_id, const DistributeMessage& push) {
  // The keys and numbers take under 64 bytes, and each message of the batch
  // form under 32 more besides its text.
  size_t room = 64 + push.sender.size() + push.body.size();
  for (size_t i = 0; i < push.senders.size(); ++i) {
    room += 32 + push.senders[i].size();
  }
  for (const std::string& body : push.bodies) room += body.size();
  return EncodeFields(request_id, push, room);
}

Result<Message> Decode(std::string_view frame, uint64_t* request_id) {
  if (request_id) *request_id = 0;
  if (frame.size() > kMaxFrameBytes) {
    return Malformed("frame is larger than " + std::to_string(kMaxFrameBytes) +
                     " bytes");
  }
  if (frame.empty()) return Malformed("frame is empty");
  // The parts, kept per thread (the item list with its capacity). Strings
  // and bins point into `frame`: DecodeFrame copies out every value it keeps.
  thread_local ParsedFrame parsed;
  parsed.root_is_map = false;
  parsed.entry_count = 0;
  parsed.items.clear();
  FrameVisitor visitor(parsed);
  size_t offset = 0;
  if (!msgpack::parse(frame.data(), frame.size(), offset, visitor)) {
    switch (visitor.stop()) {
      case ParseStop::kSize:
        return Malformed("a declared size exceeds the limits");
      case ParseStop::kDepth:
        return Malformed("frame is nested too deeply");
      case ParseStop::kTruncated:
        return Malformed("frame is truncated");
      case ParseStop::kSyntax:
      case ParseStop::kNone:
        return Malformed("frame is not valid MessagePack");
    }
  }
  if (offset != frame.size()) {
    return Malformed("trailing bytes after the message");
  }
  return DecodeFrame(parsed, request_id);
}

}  // namespace zchat
