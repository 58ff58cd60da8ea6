#pragma once

// The seam between crew::redis::consumer and crew's pools.
//
// The consumer does not care which pool runs its messages; it needs five things from one,
// named by the concept crew::redis::pool_adaptor:
//   try_submit(message&&) -> submit_status   never waits; moves from the message only when
//                                            accepted (every crew pool promises this)
//   shutdown(mode), shutdown_until(deadline) -> adaptor_report   the unstarted messages back
//   workers() -> size_t                      how many messages may run at once (the consumer
//                                            never has more than this many in flight: that is
//                                            its flow control, COUNT = free workers)
//   stats() -> pool_stats
// An adaptor is constructed by the consumer as Adaptor(message_runner, pool_options<message>,
// extra...), where `extra` are the consumer constructor's trailing arguments; the adaptor
// builds its pool with the runner as the handler (the runner calls the user's handler and
// reports the outcome to the consumer; it never throws).
//
// Two adaptors ship: worker_pool_adaptor (any message on any worker) and keyed_pool_adaptor
// (messages with equal keys run one at a time, in stream order, e.g. keyed by a field). Write
// your own for another pool; it must keep the five promises above.
//
// Queue capacity: the consumer keeps at most workers() messages in flight, so the adaptors
// raise a queue_capacity below workers to workers (a smaller queue could refuse a message the
// consumer was entitled to submit; a refused message is handed back to the group, never lost,
// but it would be a pointless round trip).

#include <chrono>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <stop_token>
#include <utility>
#include <vector>

#include "../keyed_pool.hpp"
#include "../options.hpp"
#include "../stats.hpp"
#include "../status.hpp"
#include "../worker_pool.hpp"
#include "message.hpp"

namespace crew::redis {

namespace detail {
// Implemented by the consumer's core: runs one message on a worker thread and records the
// outcome. Must not throw.
class run_sink {
 public:
  virtual void run(message&& m, std::stop_token stop) noexcept = 0;
  virtual ~run_sink() = default;

 protected:
  run_sink() = default;
  run_sink(const run_sink&) = default;
  run_sink(run_sink&&) = default;
  run_sink& operator=(const run_sink&) = default;
  run_sink& operator=(run_sink&&) = default;
};
}  // namespace detail

// The handler an adaptor gives its pool. Copyable, one indirect call per message. Thread-safe:
// the pool calls it from any of its workers at once.
class message_runner {
 public:
  explicit message_runner(detail::run_sink* sink) noexcept : sink_(sink) {}
  void operator()(message&& m, std::stop_token stop) const noexcept {
    sink_->run(std::move(m), std::move(stop));
  }

 private:
  detail::run_sink* sink_;
};

// What an adaptor's shutdown returns.
struct adaptor_report {
  std::vector<message> handed_back;  // accepted messages that never started
  std::size_t still_running = 0;     // jobs still running at return (deadline only)
  bool drained = false;              // every accepted message ran
};

template <class A>
concept pool_adaptor = requires(A& a, const A& ca, message&& m, shutdown_mode mode,
                                std::chrono::steady_clock::time_point t) {
  { a.try_submit(std::move(m)) } -> std::same_as<submit_status>;
  { a.shutdown(mode) } -> std::same_as<adaptor_report>;
  { a.shutdown_until(t) } -> std::same_as<adaptor_report>;
  { ca.workers() } -> std::convertible_to<std::size_t>;
  { ca.stats() } -> std::same_as<pool_stats>;
};

namespace detail {
inline pool_options<message> sized_for_workers(pool_options<message> o) {
  if (o.queue_capacity < o.workers) o.queue_capacity = o.workers;
  return o;
}
template <class Report, class Take>
adaptor_report to_adaptor_report(Report r, Take take) {
  adaptor_report out;
  out.handed_back.reserve(r.handed_back.size());
  for (auto& job : r.handed_back) out.handed_back.push_back(take(std::move(job)));
  out.still_running = r.still_running;
  out.drained = r.drained;
  return out;
}
}  // namespace detail

namespace detail {
// What both adaptors forward unchanged to their pool; `Take` turns a handed-back job into the
// message (the pair's second for a keyed pool).
template <class Pool, class Take>
class pool_forwarder {
 public:
  adaptor_report shutdown(shutdown_mode mode) {
    return to_adaptor_report(pool_.shutdown(mode), Take{});
  }
  adaptor_report shutdown_until(std::chrono::steady_clock::time_point t) {
    return to_adaptor_report(pool_.shutdown_until(t), Take{});
  }
  std::size_t workers() const noexcept { return pool_.workers(); }
  pool_stats stats() const { return pool_.stats(); }
  Pool& pool() noexcept { return pool_; }

 protected:
  pool_forwarder(message_runner run, pool_options<message> options)
      : pool_(run, sized_for_workers(std::move(options))) {}

 private:
  Pool pool_;
};

struct take_message {
  message operator()(message&& m) const noexcept { return std::move(m); }
};
template <class Key>
struct take_second {
  message operator()(std::pair<Key, message>&& p) const noexcept { return std::move(p.second); }
};
}  // namespace detail

// A crew::worker_pool<message>. Thread-safety: as worker_pool's members (all but construction
// and destruction are thread-safe).
class worker_pool_adaptor
    : public detail::pool_forwarder<worker_pool<message, message_runner>, detail::take_message> {
 public:
  using pool_type = worker_pool<message, message_runner>;

  // Throws what worker_pool's constructor throws (std::invalid_argument for bad options).
  worker_pool_adaptor(message_runner run, pool_options<message> options)
      : pool_forwarder(run, std::move(options)) {}

  submit_status try_submit(message&& m) noexcept { return pool().try_submit(std::move(m)); }
};

// A crew::keyed_pool<Key, message>: messages whose key_of(message) compare equal run one at a
// time, in the order the consumer submitted them (stream order within one consumer process;
// across processes, Redis gives no order). KeyOf: Key(const message&), must not throw.
// Thread-safety: as keyed_pool's members.
template <class Key, class KeyOf>
class keyed_pool_adaptor : public detail::pool_forwarder<keyed_pool<Key, message, message_runner>,
                                                         detail::take_second<Key>> {
  using base =
      detail::pool_forwarder<keyed_pool<Key, message, message_runner>, detail::take_second<Key>>;

 public:
  using pool_type = keyed_pool<Key, message, message_runner>;

  keyed_pool_adaptor(message_runner run, pool_options<message> options, KeyOf key_of = {})
      : base(run, std::move(options)), key_of_(std::move(key_of)) {}

  submit_status try_submit(message&& m) {
    const Key key = key_of_(static_cast<const message&>(m));
    return this->pool().try_submit(key, std::move(m));
  }

 private:
  KeyOf key_of_;
};

}  // namespace crew::redis
