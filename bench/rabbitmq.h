// RabbitMQ as a fourth reference: the durable broker the users
// would most often pick instead, driven over AMQP 0-9-1 with Debian's
// rabbitmq-c (librabbitmq) and the same message size, pairs and windows as
// zchat's scenarios. Each recipient has a durable queue (quorum by default,
// or classic); messages are persistent, and publishes wait for the broker's
// confirm (publisher confirms: sent once the queue has the message on disk),
// the equivalent of MESSAGE_PENDING. Optional: without the server
// (rabbitmq-server) or without librabbitmq at build time,
// RabbitMqUnavailable() says why and the bench prints "RabbitMQ: skipped
// (why)".
#pragma once

#include <cstdint>
#include <string>

#include "bench/load.h"
#include "tests/support/child_process.h"

namespace zchat::bench {

// "" if RabbitMQ can run here, else why not.
std::string RabbitMqUnavailable();

// Starts a RabbitMQ node (its store and logs in `dir`) as `child` on a free
// loopback port, with its Erlang port mapper (epmd, one for the whole run)
// on another, and waits until it accepts connections. Fills *target; false
// (with *why) if it did not come up.
bool StartRabbitMq(testing::ChildProcess& child, const std::string& dir,
                   Target* target, std::string* why);

// The online cycle over RabbitMQ: `pairs` senders publish persistent
// messages to their recipient's queue (of `queue_type`, "quorum" or
// "classic") and wait for the confirms; each recipient consumes its queue
// and acknowledges what it read together (one basic.ack with `multiple`, as
// zchat's recipients confirm together); `window` messages in flight per
// pair, the pairs spread over `threads` load threads.
CycleFigures RunRabbitMqCycle(const Target& target, int pairs, int window,
                              double seconds, const std::string& tag,
                              int threads, const std::string& queue_type);

// The offline queue over RabbitMQ: one sender publishes `messages` round
// robin to `recipients` queues with no consumer; then each recipient
// consumes its queue and acknowledges what it read.
QueueFigures RunRabbitMqOffline(const Target& target, uint64_t messages,
                                int recipients, const std::string& queue_type);

}  // namespace zchat::bench
