#pragma once

// crew::redis::consumer_options (what a consumer reads, from where, how patiently) and
// crew::redis::consumer_report (what a shutdown did).

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <string>

#include "connection.hpp"

namespace crew::redis {

struct consumer_options {
  connection_options connection;  // its socket_timeout must exceed `block`
  std::string stream;             // the stream key
  std::string group;              // the consumer group (created at `group_start_id` if absent)
  // This consumer's name in the group. Keep it stable per process slot (host + slot number):
  // a restart under the same name recovers its own pending entries at once instead of waiting
  // min_idle for another consumer to claim them.
  std::string consumer;
  std::string dead_stream;               // empty: stream + ":dead"
  std::string group_start_id = "0";      // XGROUP CREATE ... <id> MKSTREAM; "$" = new only
  std::chrono::milliseconds block{200};  // XREADGROUP BLOCK; also bounds the ack delay
  // An entry pending (unacknowledged, no heartbeat) this long is presumed orphaned and claimed
  // by whoever scans next. Must exceed the longest gap between heartbeats under load.
  std::chrono::milliseconds min_idle{30000};
  std::chrono::milliseconds claim_interval{0};      // 0: min_idle / 2
  std::chrono::milliseconds heartbeat_interval{0};  // 0: min_idle / 3
  // A message whose handler ran (or was delivered) this many times without an ack goes to the
  // dead-letter stream: a handler that throws on delivery N moves it at once; a delivery
  // beyond N (the handler crashed its process) moves it instead of running it.
  std::uint64_t dead_letter_after = 5;
  std::size_t max_ack_batch = 512;  // ids per XACK
  // At shutdown, how long to keep trying to reach Redis to send acks and hand-backs; what is
  // not sent by then stays pending and is redelivered (never lost).
  std::chrono::milliseconds flush_timeout{5000};
};

// What a consumer shutdown did.
struct consumer_report {
  std::uint64_t executed = 0;      // handler invocations by this consumer in total
  std::size_t returned = 0;        // unstarted messages this call handed back to the group
  std::size_t still_running = 0;   // handlers still running at return (deadline only)
  std::size_t unacknowledged = 0;  // outcomes not sent at return (Redis unreachable)
  bool drained = false;            // every fetched message ran and every outcome was sent
};

namespace detail {

inline std::chrono::milliseconds claim_interval_of(const consumer_options& o) noexcept {
  if (o.claim_interval.count() > 0) return o.claim_interval;
  return std::max(std::chrono::milliseconds(1), o.min_idle / 2);
}
inline std::chrono::milliseconds heartbeat_interval_of(const consumer_options& o) noexcept {
  if (o.heartbeat_interval.count() > 0) return o.heartbeat_interval;
  return std::max(std::chrono::milliseconds(1), o.min_idle / 3);
}

// Throws std::invalid_argument naming the first bad option; fills dead_stream.
inline consumer_options checked(consumer_options o) {
  const auto bad = [](const char* what) {
    throw std::invalid_argument(std::string("crew::redis::consumer_options: ") + what);
  };
  if (o.stream.empty()) bad("stream must not be empty");
  if (o.group.empty()) bad("group must not be empty");
  if (o.consumer.empty()) bad("consumer must not be empty");
  if (o.block.count() <= 0) bad("block must be positive");
  if (o.min_idle.count() <= 0) bad("min_idle must be positive");
  if (o.claim_interval.count() < 0) bad("claim_interval must not be negative");
  if (o.heartbeat_interval.count() < 0) bad("heartbeat_interval must not be negative");
  if (heartbeat_interval_of(o) >= o.min_idle) bad("heartbeat_interval must be below min_idle");
  if (o.connection.socket_timeout <= o.block) {
    bad("connection.socket_timeout must exceed block (a BLOCK read would time out the socket)");
  }
  if (o.dead_letter_after == 0) bad("dead_letter_after must be at least 1");
  if (o.max_ack_batch == 0) bad("max_ack_batch must be at least 1");
  if (o.flush_timeout.count() < 0) bad("flush_timeout must not be negative");
  if (o.dead_stream.empty()) o.dead_stream = o.stream + ":dead";
  if (o.dead_stream == o.stream) bad("dead_stream must differ from stream");
  return o;
}

}  // namespace detail
}  // namespace crew::redis
