#pragma once

// crew::worker_pool<Job, Handler>: a fixed set of long-lived worker threads fed from a bounded
// lock-free queue of jobs stored by value.
//
// Thread safety: construction and destruction are not thread-safe (as for any object); every
// other member function may be called from any thread, concurrently. submit* and stats() may
// also be called from the pool's own workers; shutdown*, wait_idle*() and the destructor may
// not (they would wait for themselves: logic_error, or std::terminate for the destructor).
//
// Visibility: for any threads P and W, everything P did before a submit that returned
// `accepted` is visible to the handler that runs that job on W; everything a handler did is
// visible to the thread that returns from a wait_idle*() or shutdown*() that waited for it.
//
// Hazards (documented, not hidden): a handler that submits into its own full pool under the
// block policy would deadlock if every worker did it, so waiting submits from a worker return
// `rejected` instead of waiting. A handler that never returns keeps its worker forever: abort
// and deadline shutdowns request a stop through the std::stop_token, which the handler must
// poll; C++ cannot kill a thread.
//
// Composition (each mechanism argues its protocol in its own header):
//   detail/scheduler.hpp   who takes which job: the bounded ring (bounded_queue.hpp, the
//                          admission bound), a stealable stash per worker (detail/stash.hpp) and
//                          the parking of idle workers (detail/parking.hpp)
//   detail/pool_runtime.hpp  what every pool has besides its scheduling: options, the threads
//                          (detail/worker_set.hpp), per-worker counters, the lifecycle phase,
//                          producers waiting for room (detail/room.hpp), wait_idle() callers
//                          (detail/eventcount.hpp), the destructor's drain, the shutdown forms
//                          and their reports, stats, recycling (shared with keyed_pool)
//   detail/submit_range.hpp  the submit forms over a pool's one-attempt push
//   detail/job_runner.hpp  the handler call, its exceptions and counters
// This file adds what is the pool's own: the push into the ring, the closing of the ring, the
// collection for a hand-back and the worker's loop around the handler.
//
// Closing: shutdown closes the ring by setting a bit in its tail ticket (bounded_queue::close),
// so a submit either claimed its slot before the close (its job is accepted and will be drained
// or handed back) or gets `closed`. No submit can be lost between "accepted" and the drain.
//
// Stop tokens: a handler of the stop-token form receives a copy of its worker's token per job
// (an atomic increment and decrement of the token's shared state); each worker allocates its
// own source on its own thread (worker_set::adopt_stop_source), so the states do not share a
// cache line.

#include <algorithm>
#include <atomic>
#include <chrono>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <iterator>
#include <optional>
#include <ranges>
#include <stdexcept>
#include <stop_token>
#include <string>
#include <thread>
#include <type_traits>
#include <utility>
#include <vector>

#include "bounded_queue.hpp"
#include "concurrency.hpp"
#include "detail/eventcount.hpp"
#include "detail/handler.hpp"
#include "detail/job_runner.hpp"
#include "detail/pool_runtime.hpp"
#include "detail/pool_support.hpp"
#include "detail/room.hpp"
#include "detail/scheduler.hpp"
#include "detail/submit_range.hpp"
#include "detail/wait.hpp"
#include "detail/worker_set.hpp"
#include "options.hpp"
#include "stats.hpp"
#include "status.hpp"

namespace crew {

template <class Job, class Handler = job_handler<Job>>
class worker_pool {
  static_assert(std::is_object_v<Job> && !std::is_const_v<Job>,
                "crew::worker_pool<Job>: Job must be a non-const object type stored by value.");
  static_assert(std::is_nothrow_move_constructible_v<Job>,
                "crew::worker_pool<Job>: Job must be nothrow move constructible (jobs are moved "
                "into and out of claimed queue slots). Mark its move constructor noexcept, or "
                "submit std::unique_ptr<Job>.");
  static_assert(std::is_invocable_v<Handler&, Job&&, std::stop_token> ||
                    std::is_invocable_v<Handler&, Job&&>,
                "crew::worker_pool<Job, Handler>: the handler must be callable as "
                "handler(std::move(job)) or handler(std::move(job), std::stop_token).");

  using envelope = detail::envelope<Job>;

 public:
  using job_type = Job;
  using handler_type = Handler;
  using options_type = pool_options<Job>;

  // Jobs a worker claims from the ring with one operation at most; the ones it has not started
  // stay stealable by idle workers and occupy no ring slot.
  static constexpr std::size_t max_batch = detail::scheduler<envelope>::stash_size;
  // The largest worker count accepted; more is a configuration error, not a pool.
  static constexpr std::size_t max_workers = 16384;

  // Builds the pool and starts its threads (options.workers, or options.min_workers of an
  // elastic pool), each running on_worker_start before the constructor returns.
  // Throws std::invalid_argument naming the option when workers is 0 or above max_workers,
  // when queue_capacity is 0 or cannot be allocated, when min_workers exceeds workers, or when
  // idle_timeout or max_queue_wait is negative; std::system_error when a thread cannot be
  // started; whatever on_worker_start throws (the threads already started are stopped and
  // joined first).
  // NOLINTNEXTLINE(cppcoreguidelines-pro-type-member-init): delegates; the target initializes all
  explicit worker_pool(Handler handler, options_type options = {})
      : worker_pool(std::in_place, std::move(handler), std::move(options)) {}

  // As above, with a handler per worker: each worker builds its own, on its own thread, with
  // factory(const crew::worker_info&) before its first job, and destroys it there when it stops
  // (see crew::per_worker). What the factory throws during the constructor is thrown from it.
  template <class Factory>
  // NOLINTNEXTLINE(cppcoreguidelines-pro-type-member-init): delegates; the target initializes all
  explicit worker_pool(per_worker_factory<Factory> factory, options_type options = {})
      : worker_pool(std::in_place, std::move(factory), std::move(options)) {}

  worker_pool(const worker_pool&) = delete;
  worker_pool& operator=(const worker_pool&) = delete;
  worker_pool(worker_pool&&) = delete;
  worker_pool& operator=(worker_pool&&) = delete;

  // Drains: runs every queued job, then joins every thread the pool started (including workers
  // a deadline shutdown left running: this blocks until their jobs return). Jobs left in the
  // pool after the last shutdown call returned (a deadline shutdown racing a steal) are
  // destroyed here; call shutdown() again before destruction to collect them. Destroying the
  // pool from one of its own workers is a programming error: it prints a message and calls
  // std::terminate.
  ~worker_pool() { rt_.destroy(*this, "crew::worker_pool"); }

  // ---- submitting ---------------------------------------------------------------------------

  // Submits a job; when the queue is full, does what options.on_full says: block (wait for
  // room), reject, or drop (the job goes to on_drop on this thread). Returns accepted, rejected,
  // dropped or closed. The job is moved from only when accepted or dropped. Thread-safe; from a
  // worker of this pool, the block policy returns rejected instead of waiting.
  submit_status submit(Job&& job) {
    return detail::submit_with_policy(job, options_.on_full, range_ops{this});
  }

  // Submits a job if there is room now: accepted, rejected (full) or closed. Never waits. The
  // job is moved from only when accepted. Thread-safe.
  submit_status try_submit(Job&& job) noexcept { return detail::submit_once(job, range_ops{this}); }

  // Submits a job, waiting up to `timeout` for room (asleep, after a brief poll): accepted,
  // timed_out or closed (a shutdown also wakes the waiter); returns by the deadline. A timeout
  // <= 0 makes one attempt and never waits. The job is moved from only when accepted.
  // Thread-safe; from a worker of this pool, a full queue gives rejected at once.
  template <class Rep, class Period>
  submit_status submit_for(Job&& job, const std::chrono::duration<Rep, Period>& timeout) {
    return submit_waiting(job, detail::deadline_after(timeout), nullptr);
  }

  // As submit_for, with a deadline on any clock (a passed deadline: one attempt, no wait).
  template <class Clock, class Duration>
  submit_status submit_until(Job&& job, const std::chrono::time_point<Clock, Duration>& deadline) {
    return submit_waiting(job, detail::to_steady_deadline(deadline), nullptr);
  }

  // Submits a job, waiting for room until `token` is stopped: accepted, cancelled or closed. A
  // token already stopped cancels only the waiting: if there is room, the job is accepted. The
  // job is moved from only when accepted. Thread-safe; from a worker of this pool, a full queue
  // gives rejected at once.
  submit_status submit(Job&& job, std::stop_token token) {
    return submit_waiting(job, detail::steady_time::max(), &token);
  }

  // Submits the elements of `range` in order, each as submit(Job&&) would under options.on_full,
  // stopping at the first one refused (block: waits for room; reject: stops when full; drop:
  // accepts what fits and drops the rest of the range, each to on_drop) or at closed. Returns
  // how many were accepted: always a prefix of the range. Only accepted (or dropped) elements
  // are moved from. Forward ranges of Job are claimed in runs with one queue operation per run,
  // and wake one parked worker per job (not a chain). Thread-safe; from a worker of this pool,
  // it does not wait (stops at a full queue).
  template <std::ranges::input_range R>
  requires std::constructible_from<Job, std::ranges::range_rvalue_reference_t<R>> std::size_t
  submit_bulk(R&& range) {
    return submit_range(range, options_.on_full);
  }

  // Submits the elements of `range` in order while there is room; stops at the first element
  // that does not fit, or at closed. Returns how many were accepted (a prefix); only those are
  // moved from. Never waits. Thread-safe.
  template <std::ranges::input_range R>
  requires std::constructible_from<Job, std::ranges::range_rvalue_reference_t<R>> std::size_t
  try_submit_bulk(R&& range) {
    return submit_range(range, overflow_policy::reject);
  }

  // ---- shutting down ------------------------------------------------------------------------

  // Closes the pool (new submits get closed, blocked producers wake with closed) and
  //  - drain: runs every queued job, then returns when all workers have exited;
  //  - abort: hands back every queued job unstarted, requests a stop from running jobs through
  //    their std::stop_token, and returns when all workers have exited.
  // Idempotent; safe concurrently with submits and other shutdowns; an abort escalates a drain
  // in progress. Each unstarted job is handed back in exactly one report. Throws
  // std::logic_error, changing nothing, when called from one of this pool's workers.
  shutdown_report<Job> shutdown(shutdown_mode mode = shutdown_mode::drain) {
    ensure_not_in_worker("shutdown");
    return rt_.template shutdown<Job>(*this, mode);
  }

  // Closes the pool and drains until `deadline` (any clock); then, if jobs remain, aborts: the
  // queued jobs are handed back, running jobs are asked to stop, idle workers are joined, and
  // the call returns. Returns by the deadline (plus the time to hand back the queue and for
  // idle workers to exit); still_running counts the workers whose job had not returned. A
  // passed deadline is an abort that returns at once. Same thread-safety and errors as
  // shutdown().
  template <class Clock, class Duration>
  shutdown_report<Job> shutdown_until(const std::chrono::time_point<Clock, Duration>& deadline) {
    ensure_not_in_worker("shutdown_until");
    return rt_.template shutdown_by<Job>(*this, detail::to_steady_deadline(deadline));
  }

  // As shutdown_until(now + timeout); a timeout <= 0 is an abort that returns at once.
  template <class Rep, class Period>
  shutdown_report<Job> shutdown_for(const std::chrono::duration<Rep, Period>& timeout) {
    ensure_not_in_worker("shutdown_for");
    return rt_.template shutdown_by<Job>(*this, detail::deadline_after(timeout));
  }

  // Blocks until no job is queued and none is running (every accepted job has run or been
  // handed back), without closing the pool. Jobs submitted meanwhile extend the wait. Safe from
  // many threads at once and concurrently with shutdown. Throws std::logic_error when called
  // from one of this pool's workers.
  void wait_idle() {
    ensure_not_in_worker("wait_idle");
    (void)rt_.wait_idle(*this, detail::steady_time::max());
  }

  // As wait_idle(), giving up at the deadline: true when the pool became idle, false when jobs
  // were still queued or running then. A timeout <= 0 only looks. Same errors as wait_idle().
  template <class Rep, class Period>
  bool wait_idle_for(const std::chrono::duration<Rep, Period>& timeout) {
    ensure_not_in_worker("wait_idle_for");
    return rt_.wait_idle(*this, detail::deadline_after(timeout));
  }

  // As wait_idle_for, with a deadline on any clock.
  template <class Clock, class Duration>
  bool wait_idle_until(const std::chrono::time_point<Clock, Duration>& deadline) {
    ensure_not_in_worker("wait_idle_until");
    return rt_.wait_idle(*this, detail::to_steady_deadline(deadline));
  }

  // ---- observing ----------------------------------------------------------------------------

  // A snapshot of the pool's counters and gauges. Each value is read atomically; the values are
  // not read at one instant (counting must not serialise workers), so under load they can
  // disagree slightly. queue_depth counts the accepted jobs waiting to start, wherever they
  // wait (the ring or a worker's stash). Thread-safe, wait-free, allocation-free.
  pool_stats stats() const noexcept {
    pool_stats s = rt_.stats();
    s.capacity = sched_.capacity();
    rt_.settle(s, sched_.ring().pushed_count());
    return s;
  }

  // What worker `i` is doing now (racy snapshot). Throws std::out_of_range when i >= workers().
  // Thread-safe.
  worker_state state_of(std::size_t i) const {
    if (i >= rt_.worker_count()) {
      throw std::out_of_range("crew::worker_pool::state_of: worker " + std::to_string(i) + " of " +
                              std::to_string(rt_.worker_count()));
    }
    return rt_.workers().state(i);
  }

  // The configured number of workers. Thread-safe.
  std::size_t workers() const noexcept { return rt_.worker_count(); }

  // The real queue capacity: options.queue_capacity rounded up to a power of two. Thread-safe.
  std::size_t capacity() const noexcept { return sched_.capacity(); }

  // The options the pool was built with. Thread-safe (read-only after construction).
  const options_type& options() const noexcept { return options_; }

  // Whether shutdown has begun. Thread-safe.
  bool is_shut_down() const noexcept { return sched_.closed(); }

 private:
  // The public constructors' common part: `source` is the handler or the per-worker factory
  // (the handler source is built in place: a handler need not be movable).
  template <class Source>
  worker_pool(std::in_place_t /*tag*/, Source&& source, options_type options)
      : handlers_(std::forward<Source>(source)),
        rt_(detail::checked_options(std::move(options), max_workers)),
        sched_(rt_.options().queue_capacity, rt_.worker_count(), "crew::worker_pool"),
        options_(rt_.options()),
        recycle_after_(options_.recycle_after),
        stamps_(rt_.stamps()) {
    rt_.start(*this);
  }

  using push_result = detail::push_result;
  using room_result = detail::room_result;
  template <class>
  friend class detail::pool_runtime;  // the runtime's interface below, and worker_main

  // ---- submit internals ---------------------------------------------------------------------

  std::uint64_t stamp() const noexcept { return stamps_ ? detail::now_ns() : 0; }

  // One attempt to queue `job`; moves from it only when accepted. An accepted job that finds no
  // free worker grows an elastic pool (pool_runtime::after_accept).
  push_result push(Job& job) noexcept {
    if (sched_.push(std::move(job), stamp())) {
      rt_.after_accept(*this, [this] { return sched_.ring().size_approx(); });
      return push_result::accepted;
    }
    return sched_.closed() ? push_result::closed : push_result::full;
  }

  detail::room_result wait_for_room(detail::steady_time deadline, const std::stop_token* token,
                                    bool retry) {
    return rt_.room().wait(
        deadline, token, retry, [this] { return sched_.ring().size_approx(); },
        [this] { return sched_.closed(); });
  }

  submit_status submit_waiting(Job& job, detail::steady_time deadline,
                               const std::stop_token* token) {
    return detail::submit_waiting(job, range_ops{this}, deadline, token);
  }

  // The pool's side of detail::submit_once, submit_waiting, submit_with_policy, submit_range.
  struct range_ops {
    worker_pool* pool;
    push_result push(Job& job) const noexcept { return pool->push(job); }
    template <class It>
    std::size_t push_run(It it, std::size_t n) const noexcept {
      const std::size_t pushed =
          pool->sched_.push_bulk(detail::stamping_iterator<Job, It>{it, pool->stamp()}, n);
      if (pushed != 0) {
        pool->rt_.after_accept(*pool, [p = pool] { return p->sched_.ring().size_approx(); });
      }
      return pushed;
    }
    bool closed() const noexcept { return pool->sched_.closed(); }
    void drop(Job&& job) const { pool->rt_.drop(std::move(job)); }
    bool may_wait() const noexcept { return !pool->in_own_worker(); }
    void refused() const noexcept { pool->rt_.refused(); }
    room_result wait(detail::steady_time deadline, const std::stop_token* token, bool retry) const {
      return pool->wait_for_room(deadline, token, retry);
    }
    std::atomic<std::uint32_t>& inside_count() const noexcept {
      return pool->rt_.room().inside_count();
    }
  };

  template <class R>
  std::size_t submit_range(R& range, overflow_policy policy) {
    return detail::submit_range<Job>(range, policy, range_ops{this});
  }

  // ---- worker internals ---------------------------------------------------------------------

  bool in_own_worker() const noexcept { return runtime::in_worker(this); }
  void ensure_not_in_worker(const char* what) const {
    runtime::ensure_not_in_worker(this, "crew::worker_pool", what);
  }

  // A thread of slot i: the runtime's start-up and teardown around work().
  void worker_main(std::size_t i) noexcept {
    rt_.run_worker(*this, i, handlers_,
                   [this, i](Handler& handler, const std::stop_token& token) noexcept {
                     return work(i, handler, token);
                   });
  }

  // Worker i's loop: run what the scheduler finds, recycle after the threshold, go idle (an
  // elastic pool's idle worker may expire), leave at shutdown.
  detail::worker_end work(std::size_t i, Handler& handler, const std::stop_token& token) noexcept {
    detail::worker_set& workers = rt_.workers();
    detail::worker_counters& c = rt_.counters(i);
    std::uint64_t threshold = c.draw_threshold(recycle_after_);
    std::uint64_t since_recycle = 0;
    detail::idle_period idle;
    auto run = [&](envelope&& env) noexcept {
      rt_.went_busy(*this, idle);  // before the job: a long job must not count as a free worker
      workers.set_state(i, worker_state::running);
      rt_.run(handler, std::move(env), token, c);
      workers.set_state(i, worker_state::idle);
    };
    // After a ring claim (a seq_cst RMW on its head): see detail::room_gate::after_claim.
    auto after_claim = [this]() noexcept {
      rt_.room().after_claim([this] { return sched_.ring().size_approx(); });
    };
    // Jobs left in this worker's stash: an elastic pool below full size may grow.
    auto stashed = [this]() noexcept { rt_.after_stash(*this); };
    for (;;) {
      // relaxed: a hint; a job that starts just as the abort begins counts as running, and the
      // closed check below (seq_cst) orders the exit.
      if (rt_.phase_hint() == detail::phase_aborting) break;
      if (sched_.run_next(i, run, after_claim, stashed)) {
        if (recycle_after_ != 0 && ++since_recycle >= threshold) {
          since_recycle = 0;
          threshold = c.draw_threshold(recycle_after_);
          // respawned: the new thread carries on
          if (rt_.recycle(i, [this](std::size_t w) noexcept { worker_main(w); })) {
            return detail::worker_end::respawned;
          }
        }
        continue;
      }
      if (rt_.went_idle(idle)) rt_.signal_idle();
      if (sched_.closed()) {
        if (rt_.phase() == detail::phase_aborting || sched_.drained()) break;
        std::this_thread::yield();  // a producer is writing a claimed slot, or a steal is in flight
        continue;
      }
      if (rt_.expire(i, idle, [this] { return sched_.has_work(); })) {
        return detail::worker_end::retired;
      }
      sched_.idle(
          i, [this]() noexcept { return sched_.closed(); },
          [&workers, i](bool parked) noexcept {
            workers.set_state(i, parked ? worker_state::parked : worker_state::idle);
          },
          rt_.park_deadline(idle));
    }
    rt_.left_idle(idle);
    rt_.signal_idle();
    return detail::worker_end::exited;
  }

  // ---- the runtime's interface (detail/pool_runtime.hpp) --------------------------------------

  std::size_t waiting_jobs() const noexcept { return sched_.waiting(); }

  std::uint64_t accepted_count() const noexcept { return sched_.ring().pushed_count(); }

  void begin_shutdown(std::uint32_t target) noexcept {
    rt_.raise_phase(target);
    // After the phase: a worker that sees the ring closed also sees the phase.
    sched_.close();
    sched_.wake_all();
    rt_.room().wake_all();
  }

  // Takes every job still in the pool (stashes, then the ring) into `out`, for a report.
  void collect(std::vector<Job>& out) {
    std::vector<envelope> taken;
    const std::size_t n = sched_.collect(taken);
    out.reserve(out.size() + n);
    for (envelope& e : taken) out.push_back(std::move(e.job));
    rt_.handed_back(n);
  }

  using runtime = detail::pool_runtime<Job>;

  detail::handler_source<Handler> handlers_;  // the shared handler, or the per-worker factory
  runtime rt_;  // options, threads, counters, phase, waiting producers, wait_idle callers
  detail::scheduler<envelope> sched_;
  // Read-mostly copies for the workers' loop.
  const options_type& options_;
  std::uint64_t recycle_after_;
  bool stamps_;  // jobs carry their submit time (latency tracking or expiry)
};

}  // namespace crew
