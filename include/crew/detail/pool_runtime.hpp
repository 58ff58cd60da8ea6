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
//   worker_main(i)                       the body of a thread of slot i (run_worker inside)
//   waiting_jobs()                       jobs (or keys) waiting for a worker, approximately
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
#include <optional>
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
#include "expiry.hpp"
#include "handler.hpp"
#include "job_runner.hpp"
#include "pool_support.hpp"
#include "room.hpp"
#include "wait.hpp"
#include "worker_set.hpp"

namespace crew::detail {

enum pool_phase : std::uint32_t { phase_running = 0, phase_draining = 1, phase_aborting = 2 };

// How a worker loop ended: the worker left (shutdown), retired (elastic expiry), or handed its
// slot to a respawned successor.
enum class worker_end : unsigned char { exited, retired, respawned };

// A worker loop's own record of its idle period (elastic pools count free workers and time out
// idle ones). Lives on the worker's stack.
struct idle_period {
  bool idle = false;      // between "found nothing" and the next job
  bool at_floor = false;  // tried to expire at min_workers: waits without a timeout
  steady_time since{};
};

template <class Job>
class pool_runtime {
 public:
  using options_type = pool_options<Job>;

  // `options` are checked (checked_options). Producers blocked on a full pool are woken when it
  // is down to half its capacity.
  explicit pool_runtime(options_type options)
      : options_(std::move(options)),
        workers_(options_.workers, options_.min_workers.value_or(options_.workers),
                 options_.stack_size, options_.name),
        counters_(std::make_unique<worker_counters[]>(options_.workers)),
        worker_count_(options_.workers),
        elastic_(options_.min_workers.has_value()),
        expiry_(options_.max_queue_wait),
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

  // Starts `pool`'s first threads (min_workers of an elastic pool, else workers) and waits for
  // their start-ups; see worker_set::start_initial for the errors. From the constructor.
  template <class Pool>
  void start(Pool& pool) {
    workers_.start_initial(
        workers_.floor(), [&pool](std::size_t i) noexcept { pool.worker_main(i); },
        [&pool]() noexcept { pool.begin_shutdown(phase_aborting); });
  }

  // The life of one thread of slot i of `pool`: its identity and stop token, on_worker_start,
  // its handler (shared, or built by the per-worker factory on this thread), the pool's
  // `loop(handler, token)`, then the teardown in reverse (the handler destroyed, on_worker_stop)
  // and the slot's end as the loop says. A start-up that throws: during the constructor's wait
  // the constructor rethrows it; later it goes to on_error, the start is abandoned (the slot is
  // vacant again, and the next starts back off), and on_worker_stop runs only if
  // on_worker_start had returned. Worker i only.
  template <class Pool, class Handler, class Loop>
  void run_worker(Pool& pool, std::size_t i, handler_source<Handler>& source, Loop loop) noexcept {
    current_pool = &pool;
    const worker_info info = workers_.info(i);
    const std::stop_token token =
        workers_.first_start(i) ? workers_.adopt_stop_source(i) : workers_.stop_token(i);
    std::optional<Handler> own;
    Handler* handler = nullptr;
    bool hooked = false;
    try {
      if (options_.on_worker_start) options_.on_worker_start(info);
      hooked = true;
      handler = &source.acquire(own, info);
    } catch (...) {
      const std::exception_ptr failure = std::current_exception();
      if (hooked) stop_hook(info);
      if (workers_.kind(i) != start_kind::initial) {
        report_error(failure);
        start_failed();
      }
      workers_.started(i, failure);
      workers_.exited(i);
      return;
    }
    start_succeeded();
    const bool grown = workers_.kind(i) == start_kind::growth;
    workers_.started(i, nullptr);  // ends the start in flight: the next one may begin
    // A burst may have come while this start was in flight (its submits found one in flight):
    // if more jobs wait than free workers and this one can take, start the next (the ramp). The
    // flag's seq_cst store before the waiting count's load pairs with a submitter's push before
    // its failed compare-exchange of the flag: one of the two sees the other.
    if (grown) {
      const std::size_t waiting = pool.waiting_jobs();
      if (waiting > 1) grow_for(pool, waiting - 1);
    }
    const worker_end end = loop(*handler, token);
    own.reset();  // a per-worker handler dies on its own thread, before the stop hook
    stop_hook(info);
    if (end == worker_end::exited) workers_.exited(i);
    if (end == worker_end::retired) workers_.retired(i);
  }

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

  // shutdown(mode) of `pool`: see worker_pool::shutdown. A drain left without any worker (an
  // elastic pool whose last worker expired as the job came, or starts that fail) starts one as
  // a last resort; if that cannot be done, the jobs are handed back (an abort) rather than
  // waited for forever.
  template <class Value, class Pool>
  shutdown_report<Value> shutdown(Pool& pool, shutdown_mode mode) {
    shutdown_report<Value> report;
    pool.begin_shutdown(mode == shutdown_mode::abort ? phase_aborting : phase_draining);
    (void)settle_workers(pool, steady_time::max());
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
    if (!settle_workers(pool, deadline)) {
      pool.begin_shutdown(phase_aborting);
      // Idle and parked workers exit at once; only the ones inside a job stay.
      (void)workers_.wait_settled();
    }
    if (phase() == phase_aborting) pool.collect(report.handed_back);
    finish(pool, report);
    return report;
  }

  // ---- elastic size -----------------------------------------------------------------------------

  // After an accepted submit: one more worker when fewer than `workers` are live and the jobs
  // waiting (`waiting()`, read after the push: the producer's half of the expiry handshake in
  // worker_set.hpp) outnumber the free workers. At full size (every fixed pool that never lost a
  // worker) this is one load of a read-mostly line. Any thread (a submitter, or a worker
  // submitting into its own pool).
  template <class Pool, class Waiting>
  [[gnu::always_inline]] void after_accept(Pool& pool, Waiting waiting) noexcept {
    if (workers_.live() >= worker_count_) [[likely]] {
      return;
    }
    grow_for(pool, waiting());
  }

  // After a worker's claim or steal left jobs in its stash (scheduler::run_next's `stashed`):
  // unseen between the claim and the publish, they may have been missed by a retiree's
  // re-check, so the filler makes the producer's half of the handshake (after the scheduler's
  // fence). tests/model/elastic.pml, mutant no-stash-check. The filling worker only.
  template <class Pool>
  [[gnu::always_inline]] void after_stash(Pool& pool) noexcept {
    after_accept(pool, [&pool]() noexcept { return pool.waiting_jobs(); });
  }

  // A worker loop found nothing to run: true on the transition into an idle period (the loop
  // then tells wait_idle() callers). Elastic pools count the worker free and start its clock.
  // went_idle, went_busy, left_idle, park_deadline and expire: the worker that owns `p` only.
  bool went_idle(idle_period& p) noexcept {
    if (p.idle) return false;
    p.idle = true;
    if (elastic_) {
      workers_.became_free();
      p.since = std::chrono::steady_clock::now();
    }
    return true;
  }

  // A worker loop found a job (or leaves): the idle period ends. In an elastic pool below full
  // size the worker then looks at the jobs still waiting: a producer that counted it free just
  // before it took its job did not grow the pool (its push, then its free-count read; the
  // worker's decrement, then its waiting-count read: one of the two sees the other), so the
  // worker grows it instead (found by tests/fuzz/keyed_fuzz.cpp: a gate job waited behind two
  // busy workers of three). The growth, when there is one, delays this worker's job by one
  // thread start; only below full size, at the end of an idle period.
  template <class Pool>
  [[gnu::always_inline]] void went_busy(Pool& pool, idle_period& p) noexcept {
    if (!p.idle) [[likely]] {
      return;
    }
    p.idle = false;
    p.at_floor = false;
    if (elastic_) {
      workers_.became_busy();
      if (workers_.live() < worker_count_) grow_for(pool, pool.waiting_jobs());
    }
  }
  // The same when the worker leaves (no job: nothing to hand on).
  void left_idle(idle_period& p) noexcept {
    if (!p.idle) return;
    p.idle = false;
    if (elastic_) workers_.became_busy();
  }

  // Until when an idle worker may sleep before it should consider expiring.
  steady_time park_deadline(const idle_period& p) const noexcept {
    if (!elastic_ || p.at_floor) return steady_time::max();
    return p.since + options_.idle_timeout;
  }

  // Worker i, idle: true when it has expired and must end (worker_end::retired). See "Expiry"
  // in worker_set.hpp: the worker stops counting as free, lowers live() (not below
  // min_workers), then re-checks `has_work()` (seq_cst loads) and resumes if it finds any.
  template <class HasWork>
  bool expire(std::size_t i, idle_period& p, HasWork has_work) noexcept {
    if (!elastic_ || !p.idle || p.at_floor) return false;
    const steady_time now = std::chrono::steady_clock::now();
    if (now < p.since + options_.idle_timeout || phase() != phase_running) return false;
    workers_.became_busy();
    if (!workers_.retire(i)) {
      workers_.became_free();
      p.at_floor = true;
      return false;
    }
    if (has_work() && workers_.resume(i)) {
      workers_.became_free();
      p.since = now;
      return false;
    }
    p.idle = false;
    return true;
  }

  // ---- expiry -----------------------------------------------------------------------------------

  // Whether jobs are stamped at submit (latency tracking or expiry).
  bool stamps() const noexcept { return options_.track_latency || expiry_.on(); }

  // Runs `env` through `handler` on worker c's thread, or hands it to on_expire when it waited
  // past max_queue_wait. Expiry off: one predictable branch; on: one clock read here (and one at
  // submit, the stamp), which is the job's start time for latency tracking too. Worker c's own
  // thread only.
  template <class Handler>
  [[gnu::always_inline]] void run(Handler& handler, envelope<Job>&& env,
                                  const std::stop_token& token, worker_counters& c) noexcept {
    std::uint64_t now = 0;
    if (expiry_.on() && expiry_.exceeded(env.enqueued_ns, now)) [[unlikely]] {
      expire_job(std::move(env.job), c);
      return;
    }
    // With latency tracking on too, the expiry check's read is the job's start time.
    run_job(handler, std::move(env.job), env.enqueued_ns, token, c, options_.on_error,
            options_.track_latency, now);
  }
  // ---- jobs done ------------------------------------------------------------------------------

  std::uint64_t executed_total() const noexcept {
    std::uint64_t n = 0;
    for (std::size_t i = 0; i < worker_count_; ++i) n += counters_[i].executed_acquire();
    return n;
  }

  // Jobs done with: run or expired (acquire, as executed_total()).
  std::uint64_t completed_total() const noexcept {
    std::uint64_t n = executed_total();
    if (expiry_.on()) {
      for (std::size_t i = 0; i < worker_count_; ++i) n += counters_[i].expired_acquire();
    }
    return n;
  }

  // Whether every job accepted by the time of the call has run or been handed back. Completed
  // first, accepted second: both only grow and completed <= accepted, so equality means every
  // job accepted by the first read had completed then.
  template <class Pool>
  bool is_idle(const Pool& pool) const noexcept {
    const std::uint64_t done = handed_back_.load(std::memory_order_acquire) + completed_total();
    return done >= pool.accepted_count();
  }

  // wait_idle / wait_idle_for / wait_idle_until of `pool`. The fence in eventcount::await pairs
  // with the one in signal_idle(): either the waiter sees the last count, or the worker sees the
  // waiter and bumps the epoch after its read.
  // A pool left with no live worker (an elastic pool whose starts fail) is given a start
  // attempt every 10 ms while the caller waits, so the wait ends once a worker can start.
  template <class Pool>
  bool wait_idle(Pool& pool, steady_time deadline) {
    for (;;) {
      if (workers_.live() != 0) return idle_.await([&] { return is_idle(pool); }, deadline);
      if (is_idle(pool)) return true;
      grow_for(pool, 1);
      const steady_time slice = std::chrono::steady_clock::now() + std::chrono::milliseconds(10);
      if (idle_.await([&] { return is_idle(pool); }, deadline < slice ? deadline : slice)) {
        return true;
      }
      if (deadline <= slice) return false;
    }
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
    s.workers = workers_.live();
    s.worker_limit = worker_count_;
    s.blocked_producers = room_.blocked();
    s.rejected = rejected_.load(std::memory_order_relaxed);
    s.dropped = dropped_.load(std::memory_order_relaxed);
    s.handed_back = handed_back_.load(std::memory_order_relaxed);
    s.latency_enabled = options_.track_latency;
    for (std::size_t i = 0; i < worker_count_; ++i) {
      counters_[i].add_to(s, options_.track_latency);
      s.busy += workers_.state(i) == worker_state::running ? 1 : 0;
    }
    // The live count and the states are read at different instants: an elastic pool may have
    // started a worker in between (found by the chaos harness: busy 1 of 0 live). A running
    // worker is live, so the snapshot says at least that many.
    if (s.busy > s.workers) s.workers = s.busy;
    return s;
  }

  // Completes `s` with `accepted` (read last: accepted >= executed + handed_back in the
  // snapshot, as at every instant) and the queue depth it implies.
  static void settle(pool_stats& s, std::uint64_t accepted) noexcept {
    s.accepted = accepted;
    const std::uint64_t settled = s.executed + s.expired + s.handed_back + s.busy;
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

  // Waits (until `deadline`) for every worker to leave and no start to be in flight; a drain
  // found with jobs left and no worker gets up to two last-resort starts, then an abort. False
  // at the deadline.
  //
  // A start that neither starts nor fails lost a race, not a start: a retiring worker resuming
  // for a job (worker_set::resume raises the count, sees the shutdown, lowers it), or a growth
  // begun before the drain, held the count or the flag. Look again rather than abort (the keyed
  // fuzzer's CI find: a drain handed an accepted job back). Bounded: each race needs a worker
  // retiring or a start begun before the shutdown.
  template <class Pool>
  bool settle_workers(Pool& pool, steady_time deadline) {
    int last_resorts = 0;
    int races = 0;
    for (;;) {
      if (!workers_.wait_all_exited(deadline)) return false;
      while (workers_.start_in_flight())
        std::this_thread::sleep_for(std::chrono::microseconds(100));
      if (workers_.live() != 0) continue;
      if (phase() == phase_aborting || is_idle(pool)) return true;
      if (last_resorts < 2 && std::chrono::steady_clock::now() < deadline) {
        const growth g =
            workers_.grow([&pool](std::size_t i) noexcept { pool.worker_main(i); },
                          [this](std::exception_ptr e) noexcept { report_error(e); }, true);
        if (g == growth::started) {
          ++last_resorts;
          continue;
        }
        if (g != growth::failed && ++races < max_settle_races) {
          std::this_thread::yield();
          continue;
        }
      }
      pool.begin_shutdown(phase_aborting);  // no worker can drain it: hand the jobs back
      return true;
    }
  }
  static constexpr int max_settle_races = 1000;

  // One growth attempt for `waiting` jobs (see after_accept), unless the free workers cover
  // them, the pool is shutting down, or starts are backing off after a failure.
  template <class Pool>
  [[gnu::noinline]] void grow_for(Pool& pool, std::size_t waiting) noexcept {
    // Bounded: each retry needs a retire to have lowered live() since the last attempt.
    for (int attempt = 0; attempt < 64; ++attempt) {
      if (elastic_ && workers_.free_workers() >= waiting) return;
      if (phase() != phase_running) return;
      const std::uint64_t retry = retry_after_ns_.load(std::memory_order_relaxed);
      if (retry != 0 && now_ns() < retry) return;
      const growth g = workers_.grow([&pool](std::size_t i) noexcept { pool.worker_main(i); },
                                     [this](std::exception_ptr e) noexcept {
                                       report_error(e);
                                       start_failed();
                                     });
      if (g != growth::gave_up) return;  // started, in flight, or failed (backing off now)
      // This call held the start flag and gave it back: a submit that found the flag taken
      // meanwhile skipped its start, so look again (the flag's store, then the loads below,
      // pair with that submit's push, then its failed compare-exchange).
      if (workers_.live() >= worker_count_) return;
      waiting = pool.waiting_jobs();
    }
  }

  // Failed starts back off (1 ms, doubling to 1 s) so a factory that keeps throwing is not
  // retried on every submit. Relaxed: a hint for the next growers, nothing is published.
  void start_failed() noexcept {
    std::uint64_t b = backoff_ns_.load(std::memory_order_relaxed);
    b = b == 0 ? 1'000'000 : (b >= 500'000'000 ? 1'000'000'000 : b * 2);
    backoff_ns_.store(b, std::memory_order_relaxed);
    retry_after_ns_.store(now_ns() + b, std::memory_order_relaxed);
  }
  void start_succeeded() noexcept {
    if (backoff_ns_.load(std::memory_order_relaxed) != 0) {
      backoff_ns_.store(0, std::memory_order_relaxed);
      retry_after_ns_.store(0, std::memory_order_relaxed);
    }
  }

  // An exception from a hook, a factory or on_expire, to on_error (which must not throw).
  void report_error(std::exception_ptr e) const noexcept {
    if (!options_.on_error) return;
    try {
      options_.on_error(std::move(e));
    } catch (...) {  // NOLINT(bugprone-empty-catch): documented: on_error must not throw
    }
  }

  void stop_hook(const worker_info& info) const noexcept {
    if (!options_.on_worker_stop) return;
    try {
      options_.on_worker_stop(info);
    } catch (...) {
      report_error(std::current_exception());
    }
  }

  // An expired job goes to on_expire on this worker (its exception to on_error), then counts.
  void expire_job(Job&& job, worker_counters& c) noexcept {
    Job taken(std::move(job));
    if (options_.on_expire) {
      try {
        options_.on_expire(std::move(taken));
      } catch (...) {
        report_error(std::current_exception());
      }
    }
    bump(c.expired);
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
    // drained: nothing handed back, every accepted job ran (or expired, to on_expire).
    report.drained = report.still_running == 0 &&
                     handed_back_.load(std::memory_order_acquire) == 0 &&
                     completed_total() == pool.accepted_count();
  }

  options_type options_;
  worker_set workers_;
  std::unique_ptr<worker_counters[]> counters_;
  std::size_t worker_count_;
  bool elastic_;             // min_workers set
  queue_wait_limit expiry_;  // max_queue_wait
  room_gate room_;           // producers waiting for room (and the destructor's count of them)
  eventcount idle_;          // wait_idle() callers
  alignas(cache_line_size) std::atomic<std::uint32_t> phase_{phase_running};
  // Slow-path counters (refusals and hand-backs only). rejected_ and dropped_ are relaxed:
  // statistics. handed_back_ is release/acquire (see handed_back()).
  alignas(cache_line_size) std::atomic<std::uint64_t> rejected_{0};
  std::atomic<std::uint64_t> dropped_{0};
  std::atomic<std::uint64_t> handed_back_{0};
  std::atomic<std::uint64_t> backoff_ns_{0};  // after failed starts (relaxed: a hint)
  std::atomic<std::uint64_t> retry_after_ns_{0};
};

}  // namespace crew::detail
