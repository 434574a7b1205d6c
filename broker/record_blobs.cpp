#include "broker/record_blobs.h"

#include <cstring>
#include <string_view>
#include <utility>

namespace zchat {

namespace {

uint64_t Zigzag(uint64_t v) {
  return (v << 1) ^ (static_cast<uint64_t>(static_cast<int64_t>(v) >> 63));
}

uint64_t Unzigzag(uint64_t v) { return (v >> 1) ^ (~(v & 1) + 1); }

size_t VarintSize(uint64_t v) {
  size_t n = 1;
  while (v >= 0x80) {
    v >>= 7;
    ++n;
  }
  return n;
}

// Writes one record at the end of a string: grown once by the most the
// record can take (kVarintMax a varint, plus the texts), written through a
// pointer, and cut back to what was written when the Appender goes. (A
// push_back or an append a byte or a field costs a capacity check and a
// terminator each.)
class Appender {
 public:
  static constexpr size_t kVarintMax = 10;

  Appender(std::string& out, size_t most) : out_(out) {
    const size_t at = out.size();
    out.resize(at + most);
    p_ = out.data() + at;
  }
  ~Appender() { out_.resize(static_cast<size_t>(p_ - out_.data())); }
  Appender(const Appender&) = delete;
  Appender& operator=(const Appender&) = delete;

  void Byte(char c) { *p_++ = c; }
  void Varint(uint64_t v) {
    while (v >= 0x80) {
      *p_++ = static_cast<char>((v & 0x7f) | 0x80);
      v >>= 7;
    }
    *p_++ = static_cast<char>(v);
  }
  void Text(std::string_view text) {
    Varint(text.size());
    if (!text.empty()) std::memcpy(p_, text.data(), text.size());
    p_ += text.size();
  }

 private:
  std::string& out_;
  char* p_;
};

// Reads a varint at `*pos`, advancing it. False if cut short or longer than
// a uint64 can be (ten bytes).
bool GetVarint(std::string_view in, size_t* pos, uint64_t* v) {
  uint64_t result = 0;
  for (int shift = 0; shift < 70; shift += 7) {
    if (*pos >= in.size()) return false;
    const auto byte = static_cast<uint8_t>(in[(*pos)++]);
    result |= static_cast<uint64_t>(byte & 0x7f) << shift;
    if ((byte & 0x80) == 0) {
      *v = result;
      return true;
    }
  }
  return false;
}

uint64_t U(int64_t v) { return static_cast<uint64_t>(v); }

bool GetText(std::string_view in, size_t* pos, std::string* text) {
  uint64_t length = 0;
  if (!GetVarint(in, pos, &length) || length > in.size() - *pos) return false;
  text->assign(in.substr(*pos, length));
  *pos += length;
  return true;
}

bool GetSigned(std::string_view in, size_t* pos, int64_t* v) {
  uint64_t raw = 0;
  if (!GetVarint(in, pos, &raw)) return false;
  *v = static_cast<int64_t>(Unzigzag(raw));
  return true;
}

}  // namespace

size_t RunEncoder::SizeOf(const RunRecord& record) const {
  return VarintSize(U(record.client_msg_id) - U(last_id_)) +
         VarintSize(Zigzag(U(record.message_id) - U(last_message_)));
}

void RunEncoder::Add(const RunRecord& record) {
  Appender out(bytes_, 2 * Appender::kVarintMax);
  out.Varint(U(record.client_msg_id) - U(last_id_));
  out.Varint(Zigzag(U(record.message_id) - U(last_message_)));
  last_id_ = record.client_msg_id;
  last_message_ = record.message_id;
}

bool DecodeRun(int64_t first_id, std::string_view blob,
               std::vector<RunRecord>* out) {
  out->clear();
  uint64_t id = U(first_id);
  uint64_t message = 0;
  size_t pos = 0;
  while (pos < blob.size()) {
    uint64_t step = 0;
    uint64_t delta = 0;
    if (!GetVarint(blob, &pos, &step) || !GetVarint(blob, &pos, &delta)) {
      return false;
    }
    // Ascending as SQLite orders them (signed): the first record is the
    // run's first id, each later one strictly above the one before.
    const uint64_t next = id + step;
    if (out->empty() ? step != 0
                     : (step == 0 || static_cast<int64_t>(next) <
                                         static_cast<int64_t>(id))) {
      return false;
    }
    id = next;
    message += Unzigzag(delta);
    out->push_back(
        RunRecord{static_cast<int64_t>(id), static_cast<int64_t>(message)});
  }
  return true;
}

void BatchEncoder::Add(const SendRecord& record) {
  {
    Appender out(bytes_, 4 * Appender::kVarintMax);
    out.Varint(Zigzag(U(record.sender_id) - U(last_.sender_id)));
    out.Varint(Zigzag(U(record.client_msg_id) - U(last_.client_msg_id)));
    out.Varint(Zigzag(U(record.message_id) - U(last_.message_id)));
    out.Varint(Zigzag(U(record.created_at) - U(last_.created_at)));
  }
  last_ = record;
}

bool DecodeBatch(std::string_view blob, std::vector<SendRecord>* out) {
  uint64_t fields[4] = {0, 0, 0, 0};
  size_t pos = 0;
  while (pos < blob.size()) {
    for (uint64_t& field : fields) {
      uint64_t delta = 0;
      if (!GetVarint(blob, &pos, &delta)) return false;
      field += Unzigzag(delta);
    }
    out->push_back(SendRecord{
        static_cast<int64_t>(fields[0]), static_cast<int64_t>(fields[1]),
        static_cast<int64_t>(fields[2]), static_cast<int64_t>(fields[3])});
  }
  return true;
}

void AppendNoticeOp(std::string& blob, const NoticeOp& op) {
  if (op.add) {
    AppendNoticeAdd(blob, op.account_id, op.notice);
  } else {
    AppendNoticeAck(blob, op.account_id, op.notice.message_id);
  }
}

void AppendNoticeAdd(std::string& blob, int64_t account_id,
                     const Notice& notice) {
  Appender out(blob, 1 + 5 * Appender::kVarintMax + notice.peer_name.size());
  out.Byte('\x01');
  out.Varint(Zigzag(U(account_id)));
  out.Varint(Zigzag(U(notice.message_id)));
  out.Varint(static_cast<uint64_t>(notice.kind));
  out.Varint(notice.client_msg_id);
  out.Text(notice.peer_name);
}

void AppendNoticeAck(std::string& blob, int64_t account_id,
                     int64_t message_id) {
  Appender out(blob, 1 + 2 * Appender::kVarintMax);
  out.Byte('\x02');
  out.Varint(Zigzag(U(account_id)));
  out.Varint(Zigzag(U(message_id)));
}

bool DecodeNoticeOps(std::string_view blob, std::vector<NoticeOp>* out) {
  size_t pos = 0;
  while (pos < blob.size()) {
    NoticeOp op;
    const char tag = blob[pos++];
    if (tag != '\x01' && tag != '\x02') return false;
    op.add = tag == '\x01';
    if (!GetSigned(blob, &pos, &op.account_id) ||
        !GetSigned(blob, &pos, &op.notice.message_id)) {
      return false;
    }
    if (op.add) {
      uint64_t kind = 0;
      if (!GetVarint(blob, &pos, &kind) ||
          !GetVarint(blob, &pos, &op.notice.client_msg_id) ||
          !GetText(blob, &pos, &op.notice.peer_name)) {
        return false;
      }
      if (kind != static_cast<uint64_t>(NoticeKind::kDelivered) &&
          kind != static_cast<uint64_t>(NoticeKind::kUndeliverable)) {
        return false;
      }
      op.notice.kind = static_cast<NoticeKind>(kind);
    }
    out->push_back(std::move(op));
  }
  return true;
}

void AppendMessageAdd(std::string& blob, const QueuedMessage& m) {
  Appender out(blob, 1 + 8 * Appender::kVarintMax + m.sender_name.size() +
                         m.recipient_name.size() + m.body.size());
  out.Byte('\x01');
  out.Varint(Zigzag(U(m.id)));
  out.Varint(Zigzag(U(m.sender_id)));
  out.Varint(Zigzag(U(m.recipient_id)));
  out.Varint(m.client_msg_id);
  out.Varint(Zigzag(U(m.sent_at_ms)));
  out.Text(m.sender_name);
  out.Text(m.recipient_name);
  out.Text(m.body);
}

void AppendMessageRemove(std::string& blob, int64_t id) {
  Appender out(blob, 1 + Appender::kVarintMax);
  out.Byte('\x02');
  out.Varint(Zigzag(U(id)));
}

bool DecodeMessageOps(std::string_view blob, std::vector<MessageOp>* out) {
  size_t pos = 0;
  while (pos < blob.size()) {
    MessageOp op;
    const char tag = blob[pos++];
    if (tag != '\x01' && tag != '\x02') return false;
    op.add = tag == '\x01';
    QueuedMessage& m = op.message;
    if (!GetSigned(blob, &pos, &m.id)) return false;
    if (op.add && !(GetSigned(blob, &pos, &m.sender_id) &&
                    GetSigned(blob, &pos, &m.recipient_id) &&
                    GetVarint(blob, &pos, &m.client_msg_id) &&
                    GetSigned(blob, &pos, &m.sent_at_ms) &&
                    GetText(blob, &pos, &m.sender_name) &&
                    GetText(blob, &pos, &m.recipient_name) &&
                    GetText(blob, &pos, &m.body))) {
      return false;
    }
    out->push_back(std::move(op));
  }
  return true;
}

}  // namespace zchat
