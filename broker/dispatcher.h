// The dispatch table: for each request type, its handler, its finisher (for
// requests that wait for password hashing) and the session states that allow
// it. Replies and pushes have no route: a client may not send them. No
// request-specific code lives here.
#pragma once

#include <cstdint>

#include "broker/context.h"
#include "broker/verdict.h"
#include "messages/messages.h"

namespace zchat {

using Handler = Verdict (*)(Context&, Request&, const Message&);
using Finisher = Verdict (*)(Context&, Request&, const PendingHash&,
                             const HashResult&);

struct Route {
  Handler handle = nullptr;
  Finisher finish = nullptr;  // null: the request never defers
  uint8_t allowed = 0;        // bit (1 << SessionState) per allowed state

  bool Allows(SessionState state) const {
    return allowed & (1u << static_cast<unsigned>(state));
  }
};

// The route for `type`, or null if a client may not send it.
const Route* FindRoute(MessageType type);

// The dispatcher's refusals (ERROR, whatever the type).
Verdict RefuseNotARequest(MessageType type);
Verdict RefuseInState(MessageType type, SessionState state);

}  // namespace zchat
