#pragma once

// crew::redis::consumer_stats: what a consumer has done, and its Prometheus exposition.
//
// The counters are written by the consumer's fetch thread (most) and its workers (executed,
// failed), and read by any thread calling stats(). Each is its own atomic with relaxed loads,
// stores and increments: a counter needs no ordering with anything else (no reader uses one
// counter to decide that another thing is visible), only a torn-free value; a snapshot is
// "consistent enough" (each field some recent value), as crew::pool_stats is.

#include <atomic>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <string_view>

#include "../stats.hpp"

namespace crew::redis {

struct consumer_stats {
  std::uint64_t fetched = 0;        // entries delivered by XREADGROUP (new messages)
  std::uint64_t reclaimed = 0;      // stale entries claimed from the pending list (any owner)
  std::uint64_t recovered = 0;      // own pending entries recovered after a start or reconnect
  std::uint64_t executed = 0;       // handler invocations, thrown or not
  std::uint64_t failed = 0;         // handler invocations that threw
  std::uint64_t acknowledged = 0;   // entries XACKed after their handler returned
  std::uint64_t dead_lettered = 0;  // entries moved to the dead-letter stream
  std::uint64_t returned = 0;       // entries handed back to the group (abort, refused submit)
  std::uint64_t deleted = 0;        // pending entries found deleted (XDEL), acknowledged unrun
  std::uint64_t heartbeats = 0;     // entries whose claim a heartbeat refreshed
  std::uint64_t lost_claims = 0;    // in-flight entries another consumer had claimed meanwhile
  std::uint64_t reconnects = 0;     // successful connects after the first
  std::uint64_t io_errors = 0;      // lost connections and lost replies
  std::uint64_t in_flight = 0;      // gauge: entries submitted to the pool and not yet finished
};

namespace detail {

inline void bump(std::atomic<std::uint64_t>& c, std::uint64_t n = 1) noexcept {
  c.fetch_add(n, std::memory_order_relaxed);  // relaxed: see the file comment
}

struct consumer_counters {
  // Relaxed throughout: see the file comment.
  std::atomic<std::uint64_t> fetched{0}, reclaimed{0}, recovered{0}, executed{0}, failed{0},
      acknowledged{0}, dead_lettered{0}, returned{0}, deleted{0}, heartbeats{0}, lost_claims{0},
      reconnects{0}, io_errors{0}, in_flight{0};

  consumer_stats snapshot() const noexcept {
    const auto get = [](const std::atomic<std::uint64_t>& c) {
      return c.load(std::memory_order_relaxed);
    };
    return {get(fetched),      get(reclaimed),     get(recovered), get(executed), get(failed),
            get(acknowledged), get(dead_lettered), get(returned),  get(deleted),  get(heartbeats),
            get(lost_claims),  get(reconnects),    get(io_errors), get(in_flight)};
  }
};

}  // namespace detail

// Prometheus text exposition (format 0.0.4) of a snapshot; `name` is the metric prefix (it
// must match [a-zA-Z_:][a-zA-Z0-9_:]*, else std::invalid_argument). Counters are
// <name>_redis_<field>_total, in_flight is the gauge <name>_redis_in_flight. Thread-safe (it
// only reads its argument).
inline std::string to_prometheus(const consumer_stats& s, std::string_view name) {
  if (!crew::detail::is_prometheus_metric_name(name)) {
    throw std::invalid_argument("crew::redis::to_prometheus: metric name prefix \"" +
                                std::string(name) + "\" does not match [a-zA-Z_:][a-zA-Z0-9_:]*");
  }
  std::string out;
  out.reserve(2048);
  const auto counter = [&](std::string_view suffix, std::string_view help, std::uint64_t v) {
    crew::detail::append_scalar(out, name, suffix, help, "counter", v);
  };
  counter("_redis_fetched_total", "Entries delivered by XREADGROUP.", s.fetched);
  counter("_redis_reclaimed_total", "Stale pending entries claimed.", s.reclaimed);
  counter("_redis_recovered_total", "Own pending entries recovered after a (re)connect.",
          s.recovered);
  counter("_redis_executed_total", "Handler invocations, thrown or not.", s.executed);
  counter("_redis_failed_total", "Handler invocations that threw.", s.failed);
  counter("_redis_acknowledged_total", "Entries acknowledged after their handler returned.",
          s.acknowledged);
  counter("_redis_dead_lettered_total", "Entries moved to the dead-letter stream.",
          s.dead_lettered);
  counter("_redis_returned_total", "Entries handed back to the group unstarted.", s.returned);
  counter("_redis_deleted_total", "Pending entries found deleted and acknowledged unrun.",
          s.deleted);
  counter("_redis_heartbeats_total", "Claims refreshed by heartbeats.", s.heartbeats);
  counter("_redis_lost_claims_total", "In-flight entries claimed by another consumer.",
          s.lost_claims);
  counter("_redis_reconnects_total", "Reconnects to Redis.", s.reconnects);
  counter("_redis_io_errors_total", "Lost connections and lost replies.", s.io_errors);
  crew::detail::append_scalar(out, name, "_redis_in_flight",
                              "Entries submitted to the pool and not finished.", "gauge",
                              s.in_flight);
  return out;
}

}  // namespace crew::redis
