// The baseline: a minimal ROUTER forwarder that speaks just enough of the
// protocol to run the same client cycle as the broker, with no validation
// beyond decoding, no storage and no password hashing. LOGIN maps a name to
// the connection; SEND_MESSAGE gets MESSAGE_PENDING and is pushed to the
// recipient as DISTRIBUTE_MESSAGE; MESSAGE_RECEIPT pushes MESSAGE_SUCCESS to
// the sender; PING gets PONG. Runs until SIGTERM/SIGINT.
#pragma once

#include <string>

namespace zchat::bench {

int RunForwarder(const std::string& bind, const std::string& endpoint_file);

}  // namespace zchat::bench
