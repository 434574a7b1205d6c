// Mosquitto as a second reference: a real broker with persistence, driven
// over MQTT 3.1.1 through libmosquitto with the same message size, pairs and
// windows as zchat's scenarios (docs/performance.md says what is equivalent
// and what is not). Optional: without libmosquitto at build time or the
// `mosquitto` executable at run time, MosquittoUnavailable() says why and
// the bench prints "Mosquitto: skipped (why)".
#pragma once

#include <cstdint>
#include <string>

#include "bench/load.h"
#include "tests/support/child_process.h"

namespace zchat::bench {

// "" if Mosquitto can run here, else why not.
std::string MosquittoUnavailable();

// Starts `mosquitto` as `child` on a free loopback port with a config file,
// persistence and log in `dir`, and waits until it accepts connections.
// Fills *target; false (with *why) if it did not come up.
bool StartMosquitto(testing::ChildProcess& child, const std::string& dir,
                    Target* target, std::string* why);

// The online cycle over MQTT: `pairs` senders publish QoS 1 to their
// recipient's topic, keeping `window` messages in flight, the pairs spread
// over `threads` load threads.
CycleFigures RunMqttCycle(const Target& target, int pairs, int window,
                          double seconds, const std::string& tag, int threads);

// The offline queue over MQTT: `recipients` persistent sessions
// (clean session off, QoS 1 subscription) disconnect; one sender publishes
// `messages` round robin to them; then they reconnect and drain.
QueueFigures RunMqttOffline(const Target& target, uint64_t messages,
                            int recipients);

}  // namespace zchat::bench
