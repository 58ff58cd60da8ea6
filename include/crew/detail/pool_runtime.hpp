#pragma once

// crew::detail::pool_runtime<Job>: what every pool has besides the way it schedules jobs: its
// options, its worker threads and their per-worker counters, its lifecycle phase, the producers
// waiting for room, the wait_idle() callers and the refusal and hand-back counts; and the logic
// on them that does not depend on the scheduling: seeding, the destructor's drain, the three
// shutdown forms and their reports, wait_idle, the statistics every pool reports, dropping,
// recycling. worker_pool and keyed_pool each compose one and supply what is theirs through a
// small interface (the `Pool` parameter of the templates below):
//   begin_shutdown(phase)                close admission, move to `phase`, wake everyone
//   collect(std::vector<Value>&)         hand back every unstarted job (after an abort)
//   accepted_count()                     jobs accepted so far (acquire)
//
// Phases: running -> draining -> aborting, only ever raised (a compare-exchange loop), so an
// abort escalates a drain in progress and a drain never undoes an abort.
//
// Thread safety: as the pools' (each member says what it needs).

#include <atomic>
#include <bit>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <exception>
#include <memory>
#include <random>
#include <stdexcept>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "../options.hpp"
#include "../stats.hpp"
#include "../status.hpp"
#include "cache_line.hpp"
#include "eventcount.hpp"
#include "job_runner.hpp"
#include "pool_support.hpp"
#include "room.hpp"
#include "wait.hpp"
#include "worker_set.hpp"

namespace crew::detail {

enum pool_phase : std::uint32_t { phase_running = 0, phase_draining = 1, phase_aborting = 2 };

template <class Job>
class pool_runtime {
 public:
  using options_type = pool_options<Job>;

  // `options` are checked (checked_options). Producers blocked on a full pool are woken when it
  // is down to half its capacity.
  explicit pool_runtime(options_type options)
      : options_(std::move(options)),
        workers_(options_.workers, options_.stack_size, options_.name),
        counters_(std::make_unique<worker_counters[]>(options_.workers)),
        worker_count_(options_.workers),
        room_(half_capacity(options_.queue_capacity)) {
    std::random_device seed_source;
    const std::uint64_t seed = (std::uint64_t{seed_source()} << 32) ^ seed_source() ^ now_ns();
    for (std::size_t i = 0; i < worker_count_; ++i) {
      counters_[i].rng = seed + i * 0x9E3779B97F4A7C15ULL;
    }
  }

  // ---- identity -------------------------------------------------------------------------------

  // Whether the calling thread is one of `pool`'s workers.
  static bool in_worker(const void* pool) noexcept { return current_pool == pool; }

  // Throws std::logic_error "<owner>::<what> called from one of the pool's own workers".
  static void ensure_not_in_worker(const void* pool, const char* owner, const char* what) {
    if (in_worker(pool)) {
      throw std::logic_error(std::string(owner) + "::" + what +
                             " called from one of the pool's own workers: it would wait for "
                             "itself");
    }
  }

  // ---- lifecycle ------------------------------------------------------------------------------

  // The destructor of `pool`: drains, joins every thread, waits for producers still inside a
  // waiting submit to leave (they were woken with `closed`). From a worker: a message naming
  // `owner` and std::terminate.
  template <class Pool>
  void destroy(Pool& pool, const char* owner) noexcept {
    if (in_worker(&pool)) {
      std::fputs(owner, stderr);
      std::fputs(" destroyed from one of its own workers: it would wait for itself\n", stderr);
      std::terminate();
    }
    try {
      (void)pool.shutdown(shutdown_mode::drain);
    } catch (...) {  // NOLINT(bugprone-empty-catch): only bad_alloc building a report nobody reads
      (void)workers_.wait_all_exited(steady_time::max());
    }
    workers_.join_all();
    // Producers are counted from the start of a waiting call, so none can be between a failed
    // push and its count. (Starting a call after destruction began is a bug.)
    while (room_.producers_inside() != 0) std::this_thread::yield();
  }

  // Raises the phase to `target` (never lowers it), stops respawns and, for an abort, requests
  // a stop from every running job. The pool then closes its admission and wakes its workers.
  void raise_phase(std::uint32_t target) noexcept {
    std::uint32_t current = phase_.load(std::memory_order_seq_cst);
    while (current < target &&
           !phase_.compare_exchange_weak(current, target, std::memory_order_seq_cst)) {
    }
    workers_.stop_respawns();
    if (target == phase_aborting) workers_.request_stop_all();
  }

  // relaxed: a hint for the workers' loops (each pool says which load orders its exit).
  std::uint32_t phase_hint() const noexcept { return phase_.load(std::memory_order_relaxed); }
  std::uint32_t phase() const noexcept { return phase_.load(std::memory_order_seq_cst); }

  // shutdown(mode) of `pool`: see worker_pool::shutdown.
  template <class Value, class Pool>
  shutdown_report<Value> shutdown(Pool& pool, shutdown_mode mode) {
    shutdown_report<Value> report;
    pool.begin_shutdown(mode == shutdown_mode::abort ? phase_aborting : phase_draining);
    (void)workers_.wait_all_exited(steady_time::max());
    // After an abort (this one or a concurrent one), whatever is left was never started.
    if (phase() == phase_aborting) pool.collect(report.handed_back);
    finish(pool, report);
    return report;
  }

  // shutdown_until / shutdown_for of `pool`: drain until the deadline, then abort, hand back
  // what is queued and join the idle workers (the ones inside a job stay: still_running).
  template <class Value, class Pool>
  shutdown_report<Value> shutdown_by(Pool& pool, steady_time deadline) {
    shutdown_report<Value> report;
    pool.begin_shutdown(phase_draining);
    if (!workers_.wait_all_exited(deadline)) {
      pool.begin_shutdown(phase_aborting);
      // Idle and parked workers exit at once; only the ones inside a job stay.
      (void)workers_.wait_settled();
      pool.collect(report.handed_back);
    }
    finish(pool, report);
    return report;
  }

  // ---- jobs done ------------------------------------------------------------------------------

  std::uint64_t executed_total() const noexcept {
    std::uint64_t n = 0;
    for (std::size_t i = 0; i < worker_count_; ++i) n += counters_[i].executed_acquire();
    return n;
  }

  // Whether every job accepted by the time of the call has run or been handed back. Completed
  // first, accepted second: both only grow and completed <= accepted, so equality means every
  // job accepted by the first read had completed then.
  template <class Pool>
  bool is_idle(const Pool& pool) const noexcept {
    const std::uint64_t done = handed_back_.load(std::memory_order_acquire) + executed_total();
    return done >= pool.accepted_count();
  }

  // wait_idle / wait_idle_for / wait_idle_until of `pool`. The fence in eventcount::await pairs
  // with the one in signal_idle(): either the waiter sees the last count, or the worker sees the
  // waiter and bumps the epoch after its read.
  template <class Pool>
  bool wait_idle(const Pool& pool, steady_time deadline) {
    return idle_.await([&] { return is_idle(pool); }, deadline);
  }

  // Tells wait_idle() callers to re-check. The fence orders the caller's last counter store
  // before the waiter-count load (the notifier's half of the eventcount handshake).
  void signal_idle() noexcept {
    std::atomic_thread_fence(std::memory_order_seq_cst);
    idle_.notify_all();
  }

  // Counts `n` jobs handed back (release: wait_idle's and finish()'s acquire reads compare it
  // with the executed counts) and wakes wait_idle() callers.
  void handed_back(std::size_t n) noexcept {
    handed_back_.fetch_add(n, std::memory_order_release);
    signal_idle();
  }

  // ---- refusals -------------------------------------------------------------------------------

  // Relaxed counters: statistics, nothing is published through them.
  void refused() noexcept { rejected_.fetch_add(1, std::memory_order_relaxed); }

  // Consumes a dropped job: the caller's object is moved from whether or not on_drop takes it.
  void drop(Job&& job) {
    dropped_.fetch_add(1, std::memory_order_relaxed);
    Job taken(std::move(job));
    if (options_.on_drop) options_.on_drop(std::move(taken));
  }

  // ---- workers --------------------------------------------------------------------------------

  // Recycles worker i after its threshold (see recycle_worker); `successor(i)` runs the new
  // thread. True when the caller must return without touching the worker again.
  template <class Successor>
  bool recycle(std::size_t i, Successor successor) noexcept {
    return recycle_worker(workers_, i, counters_[i], options_, phase_hint() == phase_running,
                          std::move(successor));
  }

  // ---- observing ------------------------------------------------------------------------------

  // The statistics every pool reports (workers, busy, blocked producers, refusals, hand-backs,
  // the per-worker counters and histograms). The pool adds capacity, accepted, queue_depth.
  pool_stats stats() const noexcept {
    pool_stats s;
    s.workers = worker_count_;
    s.blocked_producers = room_.blocked();
    s.rejected = rejected_.load(std::memory_order_relaxed);
    s.dropped = dropped_.load(std::memory_order_relaxed);
    s.handed_back = handed_back_.load(std::memory_order_relaxed);
    s.latency_enabled = options_.track_latency;
    for (std::size_t i = 0; i < worker_count_; ++i) {
      counters_[i].add_to(s, options_.track_latency);
      s.busy += workers_.state(i) == worker_state::running ? 1 : 0;
    }
    return s;
  }

  // Completes `s` with `accepted` (read last: accepted >= executed + handed_back in the
  // snapshot, as at every instant) and the queue depth it implies.
  static void settle(pool_stats& s, std::uint64_t accepted) noexcept {
    s.accepted = accepted;
    const std::uint64_t settled = s.executed + s.handed_back + s.busy;
    s.queue_depth = s.accepted > settled ? static_cast<std::size_t>(s.accepted - settled) : 0;
  }

  const options_type& options() const noexcept { return options_; }
  worker_set& workers() noexcept { return workers_; }
  const worker_set& workers() const noexcept { return workers_; }
  worker_counters& counters(std::size_t i) noexcept { return counters_[i]; }
  std::size_t worker_count() const noexcept { return worker_count_; }
  room_gate& room() noexcept { return room_; }
  const room_gate& room() const noexcept { return room_; }

 private:
  // Half the capacity a pool makes of `requested` (rounded up to a power of two), without
  // overflow for requests no pool can have (the pool's constructor refuses those).
  static std::size_t half_capacity(std::size_t requested) noexcept {
    constexpr std::size_t top = std::size_t{1} << (sizeof(std::size_t) * 8 - 1);
    return requested > top ? top / 2 : std::bit_ceil(requested) / 2;
  }

  template <class Pool, class Report>
  void finish(Pool& pool, Report& report) {
    report.still_running = workers_.live();
    if (report.still_running == 0) {
      workers_.join_all();
    } else {
      workers_.join_exited();
    }
    report.executed = executed_total();
    report.drained = report.still_running == 0 &&
                     handed_back_.load(std::memory_order_acquire) == 0 &&
                     report.executed == pool.accepted_count();
  }

  options_type options_;
  worker_set workers_;
  std::unique_ptr<worker_counters[]> counters_;
  std::size_t worker_count_;
  room_gate room_;   // producers waiting for room (and the destructor's count of them)
  eventcount idle_;  // wait_idle() callers
  alignas(cache_line_size) std::atomic<std::uint32_t> phase_{phase_running};
  // Slow-path counters (refusals and hand-backs only). rejected_ and dropped_ are relaxed:
  // statistics. handed_back_ is release/acquire (see handed_back()).
  alignas(cache_line_size) std::atomic<std::uint64_t> rejected_{0};
  std::atomic<std::uint64_t> dropped_{0};
  std::atomic<std::uint64_t> handed_back_{0};
};

}  // namespace crew::detail
