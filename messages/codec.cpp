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

std::string_view AsView(const msgpack::object_str& s) {
  return std::string_view(s.ptr, s.size);
}

// Reads the fields of one map, recording the first error. Keys are unique
// strings (checked by the constructor's caller); each lookup marks its key
// used so that Finish can refuse unknown keys in strict mode.
class FieldReader {
 public:
  FieldReader(const msgpack::object_map& map, bool strict)
      : map_(map), strict_(strict) {
    static_assert(kMaxMapEntries <= 32, "used_ is a 32-bit mask");
  }

  const Status& status() const { return status_; }

  const msgpack::object* Find(std::string_view key) {
    for (uint32_t i = 0; i < map_.size; ++i) {
      if (AsView(map_.ptr[i].key.via.str) == key) {
        used_ |= uint32_t{1} << i;
        // nil counts as absent, so that optional fields may be sent as null.
        if (map_.ptr[i].val.type == msgpack::type::NIL) return nullptr;
        return &map_.ptr[i].val;
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
    if (o->via.array.size == 0) return Fail(key, "must not be empty");
    if (o->via.array.size > max_items) {
      return Fail(key, "has more than " + std::to_string(max_items) + " items");
    }
    out.resize(o->via.array.size);
    for (uint32_t i = 0; i < o->via.array.size && status_.ok(); ++i) {
      ReadUint(key, o->via.array.ptr[i], 1, hi, out[i]);
    }
  }
  void Bool(std::string_view key, bool& out) {
    const auto* o = Required(key);
    if (!o) return;
    if (o->type != msgpack::type::BOOLEAN) {
      return Fail(key, "must be a boolean");
    }
    out = o->via.boolean;
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
    if (o->via.array.size > max_items) return Fail(key, "has too many items");
    out.resize(o->via.array.size);
    for (uint32_t i = 0; i < o->via.array.size && status_.ok(); ++i) {
      ReadText(key, o->via.array.ptr[i], max_each, out[i]);
    }
  }

  // After all fields: in strict mode, any key not read is an error.
  Status Finish() {
    if (status_.ok() && strict_) {
      for (uint32_t i = 0; i < map_.size; ++i) {
        if (!(used_ & (uint32_t{1} << i))) {
          return Malformed("unknown field '" +
                           Printable(AsView(map_.ptr[i].key.via.str)) + "'");
        }
      }
    }
    return status_;
  }

 private:
  const msgpack::object* Required(std::string_view key) {
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
  void ReadText(std::string_view key, const msgpack::object& o, size_t max,
                std::string& out) {
    if (o.type != msgpack::type::STR) return Fail(key, "must be a string");
    if (o.via.str.size > max) {
      return Fail(key, "is longer than " + std::to_string(max) + " bytes");
    }
    std::string_view v = AsView(o.via.str);
    if (!IsValidUtf8(v)) return Fail(key, "is not valid UTF-8");
    out.assign(v);
  }
  void ReadBytes(std::string_view key, const msgpack::object& o, size_t exact,
                 std::string& out) {
    if (o.type != msgpack::type::BIN) return Fail(key, "must be binary");
    if (o.via.bin.size != exact) {
      return Fail(key, "must be " + std::to_string(exact) + " bytes");
    }
    out.assign(o.via.bin.ptr, o.via.bin.size);
  }
  void ReadUint(std::string_view key, const msgpack::object& o, uint64_t lo,
                uint64_t hi, uint64_t& out) {
    if (o.type != msgpack::type::POSITIVE_INTEGER) {
      // msgpack encodes non-negative integers as POSITIVE_INTEGER, so a
      // NEGATIVE_INTEGER here is a negative number.
      return Fail(key, "must be a non-negative integer");
    }
    if (o.via.u64 < lo || o.via.u64 > hi) {
      return Fail(key, "is out of range [" + std::to_string(lo) + ", " +
                           std::to_string(hi) + "]");
    }
    out = o.via.u64;
  }

  const msgpack::object_map& map_;
  uint32_t used_ = 0;  // bit i: key i was read
  bool strict_;
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

Result<Message> DecodeObject(const msgpack::object& root,
                             uint64_t* request_id) {
  if (root.type != msgpack::type::MAP) {
    return Malformed("frame is not a map");
  }
  const msgpack::object_map& map = root.via.map;
  for (uint32_t i = 0; i < map.size; ++i) {
    if (map.ptr[i].key.type != msgpack::type::STR) {
      return Malformed("map key is not a string");
    }
    for (uint32_t j = 0; j < i; ++j) {
      if (AsView(map.ptr[j].key.via.str) == AsView(map.ptr[i].key.via.str)) {
        return Malformed("duplicate field '" +
                         Printable(AsView(map.ptr[i].key.via.str)) + "'");
      }
    }
  }

  // The envelope. The request id is read first so that errors can echo it.
  FieldReader envelope(map, /*strict=*/false);
  uint64_t req = 0;
  envelope.Uint(kRequestIdKey, req, 0, UINT64_MAX);
  if (!envelope.status().ok()) return envelope.status();
  if (request_id) *request_id = req;
  uint64_t version = 0;
  envelope.Uint(kVersionKey, version, 0, UINT64_MAX);
  uint64_t type = 0;
  envelope.Uint(kTypeKey, type, 0, UINT64_MAX);
  if (!envelope.status().ok()) return envelope.status();
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

  FieldReader fields(map, /*strict=*/dir == Direction::kRequest);
  fields.Find(kVersionKey);
  fields.Find(kTypeKey);
  fields.Find(kRequestIdKey);
  return kDecoders[type - 1](fields, req);
}

}  // namespace

std::string Encode(const Message& message) {
  return Encode(message.request_id, message.body);
}

std::string Encode(uint64_t request_id, const Body& body) {
  std::string out;
  out.reserve(128);
  StringBuffer buffer(out);
  Packer pk(buffer);
  std::visit(
      [&](const auto& alternative) {
        // Visit is shared with the decoder and so takes a mutable reference;
        // the packing visitors only read.
        auto& fields = const_cast<std::remove_cvref_t<decltype(alternative)>&>(
            alternative);
        FieldCounter counter;
        fields.Visit(counter);
        pk.pack_map(static_cast<uint32_t>(3 + counter.count));
        FieldPacker packer(pk);
        packer.Uint(kVersionKey, kProtocolVersion, 0, 0);
        packer.Uint(kTypeKey, static_cast<uint64_t>(alternative.kType), 0, 0);
        packer.Uint(kRequestIdKey, request_id, 0, 0);
        fields.Visit(packer);
      },
      body);
  return out;
}

namespace {
// msgpack's unpack_reference_func: every str and bin is referenced in place.
bool ReferenceEveryString(msgpack::type::object_type, size_t, void*) {
  return true;
}
}  // namespace

Result<Message> Decode(std::string_view frame, uint64_t* request_id) {
  if (request_id) *request_id = 0;
  if (frame.size() > kMaxFrameBytes) {
    return Malformed("frame is larger than " + std::to_string(kMaxFrameBytes) +
                     " bytes");
  }
  if (frame.empty()) return Malformed("frame is empty");
  const msgpack::unpack_limit limits(
      /*array=*/kMaxListLimit, /*map=*/kMaxMapEntries,
      /*str=*/kMaxFrameBytes, /*bin=*/kMaxFrameBytes, /*ext=*/0,
      /*depth=*/kMaxDepth);
  // The parsed tree lives in a zone kept per thread and emptied for each
  // frame (its first chunk stays allocated). Its strings point into `frame`
  // instead of being copied into the zone: DecodeObject copies out every
  // value it keeps before `frame` can go.
  thread_local msgpack::zone zone;
  zone.clear();
  try {
    size_t offset = 0;
    const msgpack::object root =
        msgpack::unpack(zone, frame.data(), frame.size(), offset,
                        &ReferenceEveryString, nullptr, limits);
    if (offset != frame.size()) {
      return Malformed("trailing bytes after the message");
    }
    return DecodeObject(root, request_id);
  } catch (const msgpack::insufficient_bytes&) {
    return Malformed("frame is truncated");
  } catch (const msgpack::depth_size_overflow&) {
    return Malformed("frame is nested too deeply");
  } catch (const msgpack::size_overflow&) {
    return Malformed("a declared size exceeds the limits");
  } catch (const msgpack::parse_error&) {
    return Malformed("frame is not valid MessagePack");
  } catch (const std::exception& e) {
    return Malformed(std::string("frame could not be decoded: ") + e.what());
  }
}

}  // namespace zchat
