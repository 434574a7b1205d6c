// NATS JetStream as a third reference: a durable broker whose users would
// otherwise pick it, driven over the NATS client protocol (text, one TCP
// connection per client, spoken here directly: Debian has no C client) with
// the same message size, pairs and windows as zchat's scenarios. A stream
// on file storage keeps every message until its consumer acknowledges it
// (work-queue retention); publishes wait for JetStream's acknowledgement.
// Optional: without the `nats-server` executable NatsUnavailable() says
// why and the bench prints "NATS: skipped (why)".
#pragma once

#include <cstdint>
#include <string>

#include "bench/load.h"
#include "tests/support/child_process.h"

namespace zchat::bench {

// "" if NATS can run here, else why not.
std::string NatsUnavailable();

// Starts `nats-server` with JetStream (its store in `dir`) as `child` on a
// free loopback port and waits until it accepts connections. Fills
// *target; false (with *why) if it did not come up.
bool StartNats(testing::ChildProcess& child, const std::string& dir,
               Target* target, std::string* why);

// The online cycle over JetStream: `pairs` senders publish to their
// recipient's subject and wait for the stream's acknowledgement; each
// recipient has a durable push consumer and acknowledges each message;
// `window` messages in flight per pair, the pairs spread over `threads`
// load threads.
CycleFigures RunNatsCycle(const Target& target, int pairs, int window,
                          double seconds, const std::string& tag, int threads);

// The offline queue over JetStream: one sender publishes `messages` round
// robin to `recipients` subjects with no consumer; then a durable consumer
// per recipient delivers them and each is acknowledged.
QueueFigures RunNatsOffline(const Target& target, uint64_t messages,
                            int recipients);

}  // namespace zchat::bench
