// Strict, deterministic MessagePack codec for zchat frames.
// Encode: the same Message always yields the same bytes (fixed key order,
// smallest integer forms). Decode: msgpack's parser with a visitor that
// records the frame's map in place (no object tree), bounded (16 map
// entries, 1000 array items, two levels of containers); refuses trailing
// bytes, wrong types, over-long or non-UTF-8 text and out-of-range values,
// and names the offending field. Thread-safe (scratch space is per thread).
#pragma once

#include <string>
#include <string_view>

#include "messages/messages.h"
#include "messages/status.h"

namespace zchat {

std::string Encode(const Message& message);
// The same bytes as Encode(Message{request_id, body}), without copying the
// body into a Message first.
std::string Encode(uint64_t request_id, const Body& body);
// The same for the broker's most frequent push, sized ahead, without making
// a Body of it.
std::string Encode(uint64_t request_id, const DistributeMessage& push);

// Decodes one frame. Requests are read strictly: an unknown key is an error.
// Replies and pushes are read tolerantly (unknown keys ignored, unknown error
// codes kept) so that a broker can add fields without breaking old clients.
// On failure, *request_id (if given) is the frame's request id when it could
// be read, else 0, so that the ERROR reply can echo it.
Result<Message> Decode(std::string_view frame, uint64_t* request_id = nullptr);

}  // namespace zchat
