#pragma once

// crew::redis::consumer<Adaptor>: one member of a Redis Streams consumer group feeding a crew
// pool. Many processes on many hosts each run one (or more) under distinct, stable names.
//
//   crew::redis::consumer<> jobs{
//       {.connection = {.host = "10.0.0.5"}, .stream = "jobs", .group = "workers",
//        .consumer = hostname + "-1", .min_idle = std::chrono::seconds(30)},
//       [](crew::redis::message& m, std::stop_token stop) { run_job(m); },
//       {.workers = 8}};
//   ...
//   auto report = jobs.shutdown_for(std::chrono::seconds(20));  // SIGTERM: drain, then abort
//
// Guarantees (DESIGN.md, "Beyond one machine"):
//  - At-least-once: an entry is acknowledged only after its handler returned; a handler that
//    throws leaves it pending and it is delivered again after min_idle (to any consumer). The
//    handler receives the stream id and the delivery count: the idempotency key. Exactly-once
//    is impossible: a process killed after its handler returned and before the XACK reached
//    Redis runs that message again elsewhere.
//  - Flow control: XREADGROUP COUNT = free workers (workers - in flight); a busy process does
//    not sit on messages an idle one could run.
//  - Crash recovery: every claim_interval (min_idle / 2) entries idle >= min_idle are claimed
//    from whoever owns them; after a start and after every reconnect the consumer recovers its
//    own pending entries one at a time; in-flight entries get a heartbeat (XCLAIM JUSTID by
//    their owner) every heartbeat_interval, so a long job is not stolen.
//  - Poison messages: after dead_letter_after deliveries an entry goes to the dead-letter
//    stream with its source id, delivery count, last error and consumer, and is acknowledged,
//    in one script (XADD before XACK).
//  - Shutdown: drain stops fetching, finishes and acknowledges; abort acknowledges what
//    finished and hands every unstarted message back at once without counting a delivery;
//    a deadline drains until it, then aborts.
//  - Connections: a lost connection or reply is retried with backoff and loses nothing; the
//    socket timeout is set after every connect and must exceed `block`.
//  - It never trims the stream (see the README for the MINID-safe way).
//
// Delays the options bound: an ack is sent at most `block` after its handler returned (acks
// are batched into the next XREADGROUP's pipeline, or sent at once when no read is due); an
// orphaned entry (its consumer died) is claimed within min_idle + claim_interval of its last
// heartbeat, given a free worker somewhere.
//
// Thread safety: construction and destruction are not thread-safe; shutdown*, stats(),
// pool_stats() and options() may be called from any thread concurrently (a second shutdown
// escalates: an abort during a drain aborts). shutdown* must not be called from a handler (it
// waits for the handlers: the pool throws std::logic_error). The handler runs on the pool's
// workers, several at once: it must be safe to call concurrently.
//
// Visibility: everything a handler did happens-before the return of a shutdown* that waited
// for it (through the pool's own guarantee).

#include <chrono>
#include <concepts>
#include <exception>
#include <memory>
#include <optional>
#include <stop_token>
#include <string>
#include <type_traits>
#include <utility>

#include "../options.hpp"
#include "../stats.hpp"
#include "../status.hpp"
#include "connection.hpp"
#include "fetch_loop.hpp"
#include "message.hpp"
#include "options.hpp"
#include "pool_adaptor.hpp"
#include "scripts.hpp"
#include "stats.hpp"

namespace crew::redis {

namespace detail {
template <class F>
message_handler to_message_handler(F&& f) {
  using fn = std::decay_t<F>;
  if constexpr (std::is_invocable_v<fn&, message&, std::stop_token>) {
    return message_handler(std::forward<F>(f));
  } else {
    static_assert(std::is_invocable_v<fn&, message&>,
                  "crew::redis::consumer: the handler must be callable as h(message&) or "
                  "h(message&, std::stop_token) (const message& works too).");
    return [g = fn(std::forward<F>(f))](message& m, const std::stop_token&) mutable { g(m); };
  }
}
}  // namespace detail

template <pool_adaptor Adaptor = worker_pool_adaptor>
class consumer {
 public:
  using adaptor_type = Adaptor;

  // Validates the options (std::invalid_argument naming the option), builds the pool
  // (Adaptor(message_runner, pool, extra...); what its constructor throws propagates) and
  // starts the fetch thread. Does not wait for Redis: an unreachable server is retried with
  // backoff (see stats().io_errors), and nothing is fetched until it answers.
  template <class Handler, class... Extra>
  consumer(consumer_options options, Handler&& handler, pool_options<message> pool = {},
           Extra&&... extra)
      : core_(std::make_unique<detail::consumer_core>(
            std::move(options), detail::to_message_handler(std::forward<Handler>(handler)))) {
    adaptor_.emplace(message_runner(core_.get()), std::move(pool), std::forward<Extra>(extra)...);
    core_->start([this](message&& m) { return adaptor_->try_submit(std::move(m)); },
                 adaptor_->workers());
  }

  consumer(const consumer&) = delete;
  consumer& operator=(const consumer&) = delete;
  consumer(consumer&&) = delete;
  consumer& operator=(consumer&&) = delete;

  // Drains (as shutdown()), then joins every thread. With Redis unreachable it waits at most
  // flush_timeout for the last acknowledgements; what is not sent stays pending (redelivered).
  ~consumer() {
    try {
      (void)shutdown(shutdown_mode::drain);
    } catch (...) {  // NOLINT(bugprone-empty-catch): nothing is lost, entries stay pending
    }
    // The fetch thread first: it may still hand a message read just before the shutdown to
    // the (closed) pool, so the pool must outlive it. It exits once nothing is in flight (a
    // handler a deadline shutdown left running still reports to it) or, with Redis gone, after
    // flush_timeout. Then the pool, which joins any handler still running.
    core_->join();
    adaptor_.reset();
  }

  // Stops fetching, then
  //  - drain: lets a read under way hand its entries to the pool (at most one read: `block`
  //    plus a command's socket timeout), runs every message fetched, acknowledges them;
  //  - abort: hands the unstarted ones back to the group (claimable by any consumer at once,
  //    delivery count unchanged), requests a stop from running handlers through their
  //    std::stop_token, acknowledges those that return, hands back those that throw; what a
  //    read under way returns after the pool closed goes back too, counted in `returned`.
  // Returns when the pool has stopped and every outcome was sent to Redis (or flush_timeout
  // passed with Redis unreachable: report.unacknowledged counts what is left pending).
  // Thread-safe; idempotent (a later call returns an empty report).
  consumer_report shutdown(shutdown_mode mode = shutdown_mode::drain) {
    const bool abort = mode == shutdown_mode::abort;
    return finish(abort, abort ? detail::clock::now() : fetch_bound(),
                  [&] { return adaptor_->shutdown(mode); });
  }
  // Drains until the deadline, then aborts (as shutdown(abort)). Returns by the deadline plus
  // the time to send the last outcomes (bounded by flush_timeout); still_running counts
  // handlers that ignored their stop token (their outcome is sent when they return).
  template <class Clock, class Duration>
  consumer_report shutdown_until(const std::chrono::time_point<Clock, Duration>& deadline) {
    const auto steady =
        std::chrono::steady_clock::now() +
        std::chrono::duration_cast<std::chrono::steady_clock::duration>(deadline - Clock::now());
    return finish(false, std::min(steady, fetch_bound()),
                  [&] { return adaptor_->shutdown_until(steady); });
  }
  template <class Rep, class Period>
  consumer_report shutdown_for(const std::chrono::duration<Rep, Period>& timeout) {
    return shutdown_until(std::chrono::steady_clock::now() + timeout);
  }

  // Thread-safe snapshots.
  consumer_stats stats() const noexcept { return core_->stats(); }
  // The last error reply (e.g. WRONGTYPE: the stream key holds something else) or connection
  // error, for logs and health checks; empty if none yet. Thread-safe.
  std::string last_error() const { return core_->last_error(); }
  crew::pool_stats pool_stats() const { return adaptor_->stats(); }
  const consumer_options& options() const noexcept { return core_->options(); }
  std::size_t workers() const noexcept { return adaptor_->workers(); }

 private:
  // Stops fetching and waits, until `fetched_by`, for a fetch under way to hand its messages to
  // the pool (a drain then runs them), then stops the pool and waits for the outcomes to be
  // sent. report.returned counts the pool's unstarted messages and those a fetch still under
  // way at `fetched_by` handed to the closed pool: both went back to the group.
  template <class StopPool>
  consumer_report finish(bool abort, detail::clock::time_point fetched_by, StopPool&& stop_pool) {
    core_->stop_fetching(fetched_by);
    if (abort) core_->set_aborting();
    adaptor_report r = stop_pool();
    consumer_report out;
    out.returned = r.handed_back.size();
    out.still_running = r.still_running;
    core_->hand_back(std::move(r.handed_back));
    core_->begin_finishing();
    out.unacknowledged = core_->wait_quiet(r.still_running, fetch_bound());
    out.returned += core_->take_refused();
    out.executed = core_->stats().executed;
    out.drained = r.drained && out.returned == 0 && out.unacknowledged == 0;
    return out;
  }

  // How long the fetch thread may take to finish what it is doing: the flush budget plus one
  // blocked read and one command's socket timeout.
  detail::clock::time_point fetch_bound() const {
    return detail::clock::now() + options().flush_timeout + options().block +
           options().connection.socket_timeout;
  }

  std::unique_ptr<detail::consumer_core> core_;
  std::optional<Adaptor> adaptor_;
};

}  // namespace crew::redis
