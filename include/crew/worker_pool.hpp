#pragma once

// crew::worker_pool<Job, Handler>: a fixed set of long-lived worker threads fed from a bounded
// lock-free queue of jobs stored by value.
//
// Thread safety: construction and destruction are not thread-safe (as for any object); every
// other member function may be called from any thread, concurrently. submit* and stats() may
// also be called from the pool's own workers; shutdown*, wait_idle() and the destructor may
// not (they would wait for themselves: logic_error, or std::terminate for the destructor).
//
// Visibility: for any threads P and W, everything P did before a submit that returned
// `accepted` is visible to the handler that runs that job on W; everything a handler did is
// visible to the thread that returns from a wait_idle() or shutdown*() that waited for it.
//
// Hazards (documented, not hidden): a handler that submits into its own full pool under the
// block policy would deadlock if every worker did it, so waiting submits from a worker return
// `rejected` instead of waiting. A handler that never returns keeps its worker forever: abort
// and deadline shutdowns request a stop through the std::stop_token, which the handler must
// poll; C++ cannot kill a thread.
//
// How it works, in short:
//  - Jobs live in a crew::bounded_queue of envelopes (the job plus an enqueue timestamp used
//    only when latency tracking is on). No allocation per job.
//  - Closing: shutdown closes the queue by setting a bit in its tail ticket (see
//    bounded_queue::close), so a submit either claimed its slot before the close (its job is
//    accepted and will be drained or handed back) or gets `closed`. No submit can be lost
//    between "accepted" and the shutdown's drain.
//  - Parking workers: an idle worker polls for ~20 us (yielding now and then), then sets its
//    bit in idle_masks_, counts itself in idle_count_ (seq_cst RMW), re-checks the queue (seq_cst
//    loads) and only then sleeps on its own wake word. A producer's successful push is a seq_cst
//    RMW on the queue's tail, after which it reads idle_count_ (seq_cst load): either the worker's
//    re-check sees the push or the producer sees the count (a Dekker pair), so no wake-up is lost.
//    A producer that sees idle workers claims one by clearing its bit (fetch_and) and wakes exactly
//    that worker: each parked worker is woken at most once, and a submit makes no system call while
//    no worker is parked, or once the parked ones have all been claimed.
//  - Parking producers (block policy, timed and cancellable submits): after polling for ~20 us
//    (as workers do), a producer sets the "sleepers" bit of room_word_ (seq_cst RMW), re-checks
//    the queue and sleeps until it is down to half its capacity. A worker, after its claim (a
//    seq_cst RMW on the head), reads room_word_ and, when the bit is set and the queue is at most
//    half full, clears the bit with the epoch bump and wakes all sleepers: one system call per
//    refill, not per job.
//  - Workers claim up to max_batch jobs with one head update and run them back to back.
//  - Counters are per worker (one writer each), summed on read; accepted is the queue's tail.

#include <algorithm>
#include <atomic>
#include <bit>
#include <chrono>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <exception>
#include <iterator>
#include <memory>
#include <mutex>
#include <optional>
#include <random>
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
#include "detail/handler.hpp"
#include "detail/stack.hpp"
#include "detail/thread.hpp"
#include "detail/wait.hpp"
#include "options.hpp"
#include "stats.hpp"
#include "status.hpp"

namespace crew {

namespace detail {

// The pool whose worker the calling thread is, or nullptr: how the pool recognises calls made
// from its own workers. Mutable per-thread identity, by design.
// NOLINTNEXTLINE(cppcoreguidelines-avoid-non-const-global-variables)
inline thread_local const void* current_pool = nullptr;

inline std::uint64_t now_ns() noexcept {
  return static_cast<std::uint64_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(
                                        std::chrono::steady_clock::now().time_since_epoch())
                                        .count());
}

// Single-writer counter increment: a plain load and store (no lock prefix). Release, so that a
// reader's acquire load of the counter sees everything the writer did before counting.
inline void bump(std::atomic<std::uint64_t>& counter) noexcept {
  counter.store(counter.load(std::memory_order_relaxed) + 1, std::memory_order_release);
}

inline std::uint64_t splitmix64(std::uint64_t& state) noexcept {
  std::uint64_t z = (state += 0x9E3779B97F4A7C15ULL);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
  return z ^ (z >> 31);
}

}  // namespace detail

// What a worker is doing, as stats() and diagnostics see it.
enum class worker_state : std::uint8_t { starting, idle, running, parked, exited };

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

  static constexpr bool handler_takes_token = std::is_invocable_v<Handler&, Job&&, std::stop_token>;

 public:
  using job_type = Job;
  using handler_type = Handler;
  using options_type = pool_options<Job>;

  // Jobs a worker claims with one queue operation at most. Larger batches amortise the claim
  // for trivial jobs; a batch's jobs not yet started are handed back by an abort once the
  // running job returns.
  static constexpr std::size_t max_batch = 16;
  // The largest worker count accepted; more is a configuration error, not a pool.
  static constexpr std::size_t max_workers = 16384;

  // Builds the pool and starts options.workers threads.
  // Throws std::invalid_argument naming the option when workers is 0 or above max_workers, or
  // when queue_capacity is 0 or cannot be allocated; std::system_error when a thread cannot be
  // started (the threads already started are stopped and joined first).
  explicit worker_pool(Handler handler, options_type options = {})
      : handler_(std::move(handler)), options_(std::move(options)) {
    if (options_.workers == 0) {
      throw std::invalid_argument("crew::worker_pool: options.workers must be at least 1, got 0");
    }
    if (options_.workers > max_workers) {
      throw std::invalid_argument("crew::worker_pool: options.workers is " +
                                  std::to_string(options_.workers) + ", more than the " +
                                  std::to_string(max_workers) + " a pool accepts");
    }
    if (options_.queue_capacity == 0) {
      throw std::invalid_argument(
          "crew::worker_pool: options.queue_capacity must be at least 1, got 0");
    }
    try {
      queue_.emplace(options_.queue_capacity);
    } catch (const std::invalid_argument& e) {
      throw std::invalid_argument(std::string("crew::worker_pool: options.queue_capacity: ") +
                                  e.what());
    }
    capacity_ = queue_->capacity();
    low_water_ = capacity_ / 2;
    worker_count_ = options_.workers;
    track_latency_ = options_.track_latency;
    recycle_after_ = options_.recycle_after;
    workers_ = std::make_unique<worker_slot[]>(worker_count_);
    idle_words_ = (worker_count_ + 63) / 64;
    idle_masks_ = std::make_unique<padded_mask[]>(idle_words_);
    std::random_device seed_source;
    const std::uint64_t seed =
        (std::uint64_t{seed_source()} << 32) ^ seed_source() ^ detail::now_ns();
    live_workers_.store(static_cast<std::uint32_t>(worker_count_), std::memory_order_relaxed);
    std::size_t started = 0;
    try {
      std::lock_guard lock(threads_mutex_);
      for (; started < worker_count_; ++started) {
        worker_slot& w = workers_[started];
        w.index = started;
        w.rng = seed + started * 0x9E3779B97F4A7C15ULL;
        w.thread = start_thread(w, false);
      }
    } catch (...) {
      // Workers that never started will never decrement the live count: account for them, then
      // stop the ones that did start.
      live_workers_.fetch_sub(static_cast<std::uint32_t>(worker_count_ - started),
                              std::memory_order_acq_rel);
      begin_shutdown(phase_aborting);
      (void)wait_for_workers(detail::steady_time::max());
      join_all();
      throw;
    }
  }

  worker_pool(const worker_pool&) = delete;
  worker_pool& operator=(const worker_pool&) = delete;
  worker_pool(worker_pool&&) = delete;
  worker_pool& operator=(worker_pool&&) = delete;

  // Drains: runs every queued job, then joins every thread the pool started (including workers
  // a deadline shutdown left running: this blocks until their jobs return). Jobs that a worker
  // hands back after the last shutdown call returned are destroyed here; call shutdown() again
  // before destruction to collect them. Destroying the pool from one of its own workers is a
  // programming error: it prints a message and calls std::terminate.
  ~worker_pool() {
    if (in_own_worker()) {
      std::fputs(
          "crew::worker_pool destroyed from one of its own workers: it would wait for itself\n",
          stderr);
      std::terminate();
    }
    try {
      (void)shutdown(shutdown_mode::drain);
    } catch (...) {  // NOLINT(bugprone-empty-catch): only bad_alloc building a report nobody reads
      (void)wait_for_workers(detail::steady_time::max());
    }
    join_all();
    // Producers that were blocked in a waiting submit have been woken with `closed`; let them
    // leave the pool's code before its members go away. (Only waiting producers are covered:
    // starting a call after destruction began is a bug, as for any object.)
    while (producers_waiting_.load(std::memory_order_acquire) != 0) std::this_thread::yield();
  }

  // ---- submitting ---------------------------------------------------------------------------

  // Submits a job; when the queue is full, does what options.on_full says: block (wait for
  // room), reject, or drop (the job goes to on_drop on this thread). Returns accepted, rejected,
  // dropped or closed. The job is moved from only when accepted or dropped. Thread-safe; from a
  // worker of this pool, the block policy returns rejected instead of waiting.
  submit_status submit(Job&& job) {
    switch (options_.on_full) {
      case overflow_policy::block:
        return submit_waiting(job, detail::steady_time::max(), nullptr, submit_status::timed_out);
      case overflow_policy::reject: return try_submit(std::move(job));
      case overflow_policy::drop: break;
    }
    const push_result r = push(job);
    if (r != push_result::full) return to_status(r);
    drop(std::move(job));
    return submit_status::dropped;
  }

  // Submits a job if there is room now: accepted, rejected (full) or closed. Never waits. The
  // job is moved from only when accepted. Thread-safe.
  submit_status try_submit(Job&& job) noexcept {
    const push_result r = push(job);
    if (r != push_result::full) return to_status(r);
    rejected_.fetch_add(1, std::memory_order_relaxed);
    return submit_status::rejected;
  }

  // Submits a job, waiting up to `timeout` for room: accepted, timed_out or closed (a shutdown
  // also wakes the waiter). A timeout <= 0 makes one attempt and never waits. The job is moved
  // from only when accepted. Thread-safe; from a worker of this pool, a full queue gives
  // rejected at once.
  template <class Rep, class Period>
  submit_status submit_for(Job&& job, const std::chrono::duration<Rep, Period>& timeout) {
    return submit_waiting(job, detail::deadline_after(timeout), nullptr, submit_status::timed_out);
  }

  // As submit_for, with a deadline on any clock (a passed deadline: one attempt, no wait).
  template <class Clock, class Duration>
  submit_status submit_until(Job&& job, const std::chrono::time_point<Clock, Duration>& deadline) {
    return submit_waiting(job, detail::to_steady_deadline(deadline), nullptr,
                          submit_status::timed_out);
  }

  // Submits a job, waiting for room until `token` is stopped: accepted, cancelled or closed. A
  // token already stopped cancels only the waiting: if there is room, the job is accepted. The
  // job is moved from only when accepted. Thread-safe; from a worker of this pool, a full queue
  // gives rejected at once.
  submit_status submit(Job&& job, std::stop_token token) {
    return submit_waiting(job, detail::steady_time::max(), &token, submit_status::timed_out);
  }

  // Submits the elements of `range` in order, each as submit(Job&&) would under options.on_full,
  // stopping at the first one refused (block: waits for room; reject: stops when full; drop:
  // accepts what fits and drops the rest of the range, each to on_drop) or at closed. Returns
  // how many were accepted: always a prefix of the range. Only accepted (or dropped) elements
  // are moved from. Forward ranges of Job are claimed in runs with one queue operation per run.
  // Thread-safe; from a worker of this pool, it does not wait (stops at a full queue).
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
    shutdown_report<Job> report;
    begin_shutdown(mode == shutdown_mode::abort ? phase_aborting : phase_draining);
    if (mode == shutdown_mode::abort) collect_queue(report.handed_back);
    (void)wait_for_workers(detail::steady_time::max());
    finish(report);
    return report;
  }

  // Closes the pool and drains until `deadline` (any clock); then, if jobs remain, aborts: the
  // queued jobs are handed back, running jobs are asked to stop, and the call returns at once.
  // Returns by the deadline (plus the time to hand back the queue); still_running counts the
  // workers whose job had not returned. A passed deadline is an abort that returns at once.
  // Same thread-safety and errors as shutdown().
  template <class Clock, class Duration>
  shutdown_report<Job> shutdown_until(const std::chrono::time_point<Clock, Duration>& deadline) {
    ensure_not_in_worker("shutdown_until");
    return shutdown_by(detail::to_steady_deadline(deadline));
  }

  // As shutdown_until(now + timeout); a timeout <= 0 is an abort that returns at once.
  template <class Rep, class Period>
  shutdown_report<Job> shutdown_for(const std::chrono::duration<Rep, Period>& timeout) {
    ensure_not_in_worker("shutdown_for");
    return shutdown_by(detail::deadline_after(timeout));
  }

  // Blocks until no job is queued and none is running (every accepted job has run or been
  // handed back), without closing the pool. Jobs submitted meanwhile extend the wait. Safe from
  // many threads at once and concurrently with shutdown. Throws std::logic_error when called
  // from one of this pool's workers.
  void wait_idle() {
    ensure_not_in_worker("wait_idle");
    idle_waiters_.fetch_add(1, std::memory_order_seq_cst);
    for (;;) {
      const std::uint32_t epoch = idle_epoch_.load(std::memory_order_seq_cst);
      // Pairs with the fence in signal_idle(): either we see the worker's last count, or it
      // sees idle_waiters_ and bumps the epoch after our read of it.
      std::atomic_thread_fence(std::memory_order_seq_cst);
      if (is_idle()) break;
      detail::wait(idle_epoch_, epoch);
    }
    idle_waiters_.fetch_sub(1, std::memory_order_relaxed);  // only a hint for signal_idle()
  }

  // ---- observing ----------------------------------------------------------------------------

  // A snapshot of the pool's counters and gauges. Each value is read atomically; the values are
  // not read at one instant (counting must not serialise workers), so under load they can
  // disagree slightly. Thread-safe, wait-free, allocation-free.
  pool_stats stats() const noexcept {
    pool_stats s;
    s.workers = worker_count_;
    s.capacity = capacity_;

    s.blocked_producers = blocked_producers_.load(std::memory_order_relaxed);
    s.rejected = rejected_.load(std::memory_order_relaxed);
    s.dropped = dropped_.load(std::memory_order_relaxed);
    s.handed_back = handed_back_.load(std::memory_order_relaxed);
    s.latency_enabled = track_latency_;
    for (std::size_t i = 0; i < worker_count_; ++i) {
      const worker_slot& w = workers_[i];
      s.executed += w.executed.load(std::memory_order_relaxed);
      s.failed += w.failed.load(std::memory_order_relaxed);
      s.recycled += w.recycled.load(std::memory_order_relaxed);
      s.busy += w.state.load(std::memory_order_relaxed) == worker_state::running ? 1 : 0;
      if (track_latency_) {
        w.queue_wait.add_to(s.queue_wait);
        w.run_time.add_to(s.run_time);
      }
    }
    // Read last: accepted >= executed + handed_back in the snapshot, as at every instant.
    s.accepted = queue_->pushed_count();
    // Queued = accepted - completed - running, which counts jobs a worker has claimed in a batch
    // but not started (the queue's own head/tail difference would not).
    const std::uint64_t settled = s.executed + s.handed_back + s.busy;
    s.queue_depth = s.accepted > settled ? static_cast<std::size_t>(s.accepted - settled) : 0;
    return s;
  }

  // What worker `i` (< workers()) is doing now (racy snapshot). Thread-safe.
  worker_state state_of(std::size_t i) const noexcept {
    return workers_[i].state.load(std::memory_order_relaxed);
  }

  // The configured number of workers. Thread-safe.
  std::size_t workers() const noexcept { return worker_count_; }

  // The real queue capacity: options.queue_capacity rounded up to a power of two. Thread-safe.
  std::size_t capacity() const noexcept { return capacity_; }

  // The options the pool was built with. Thread-safe (read-only after construction).
  const options_type& options() const noexcept { return options_; }

  // Whether shutdown has begun. Thread-safe.
  bool is_shut_down() const noexcept { return queue_->is_closed(); }

 private:
  enum : std::uint32_t { phase_running = 0, phase_draining = 1, phase_aborting = 2 };
  enum class push_result { accepted, full, closed };

  // A queued job and, when latency tracking is on, when it was submitted.
  struct envelope {
    template <class U>
    requires std::constructible_from<Job, U&&> envelope(U&& u, std::uint64_t ts)
    noexcept(std::is_nothrow_constructible_v<Job, U&&>)
        : job(std::forward<U>(u)), enqueued_ns(ts) {}
    Job job;
    std::uint64_t enqueued_ns;
  };

  // Presents a range's iterator to bounded_queue::try_push_bulk as a source of envelopes, so a
  // run of jobs is moved straight from the caller's range into the slots.
  template <class It>
  struct stamping_iterator {
    using value_type = envelope;
    using difference_type = std::ptrdiff_t;
    using iterator_concept = std::input_iterator_tag;
    envelope operator*() const noexcept { return envelope(std::ranges::iter_move(it), ts); }
    stamping_iterator& operator++() {
      ++it;
      return *this;
    }
    void operator++(int) { ++it; }
    It it;
    std::uint64_t ts;
  };

  struct alignas(detail::cache_line_size) worker_slot {
    // executed: written by this worker's current thread only, so detail::bump's plain
    // load+store suffices; release, so wait_idle's acquire read sees the jobs' effects.
    std::atomic<std::uint64_t> executed{0};
    // failed and recycled: rare, fetch_add (an old and a new thread touch recycled around a
    // respawn). Relaxed: statistics only, nothing is published through them.
    std::atomic<std::uint64_t> failed{0};
    std::atomic<std::uint64_t> recycled{0};
    // Relaxed stores and loads: a diagnostic snapshot (stats().busy, state_of()); no decision
    // that needs ordering is taken on it.
    std::atomic<worker_state> state{worker_state::starting};
    // Bumped (and futex-woken) by whoever claims this worker's idle bit, and by shutdown.
    std::atomic<std::uint32_t> wake_word{0};
    std::uint64_t rng = 0;  // the worker's own jitter generator
    std::size_t index = 0;
    detail::histogram_recorder queue_wait;
    detail::histogram_recorder run_time;
    // One stop source per worker: copying its token per job touches only this worker's state.
    std::stop_source stop;
    detail::native_thread thread;       // the current thread; guarded by threads_mutex_
    detail::native_thread predecessor;  // a respawned worker's old thread, joined by the new one
  };

  struct alignas(detail::cache_line_size) padded_mask {
    std::atomic<std::uint64_t> bits{0};
  };

  // ---- submit internals ---------------------------------------------------------------------

  static submit_status to_status(push_result r) noexcept {
    return r == push_result::accepted ? submit_status::accepted : submit_status::closed;
  }

  std::uint64_t stamp() const noexcept { return track_latency_ ? detail::now_ns() : 0; }

  // One attempt to queue `job`; moves from it only when accepted.
  push_result push(Job& job) noexcept {
    if (queue_->try_emplace(std::move(job), stamp())) {
      wake_worker();
      return push_result::accepted;
    }
    return queue_->is_closed() ? push_result::closed : push_result::full;
  }

  // After jobs were pushed: wake one parked worker, if any. The seq_cst load of idle_count_ is
  // the producer's half of the parking handshake (the push's tail claim was a seq_cst RMW).
  // Claiming the worker's bit decides who wakes it, so every parked worker is woken at most
  // once however many producers see it; a producer that finds every bit already claimed (the
  // count is stale while woken workers get going) makes no system call. A woken worker wakes
  // the next one itself when it leaves work behind.
  void wake_worker() noexcept {
    if (idle_count_.load(std::memory_order_seq_cst) == 0) return;
    for (std::size_t word = 0; word < idle_words_; ++word) {
      // relaxed: a hint; the fetch_and below is what decides.
      std::uint64_t mask = idle_masks_[word].bits.load(std::memory_order_relaxed);
      while (mask != 0) {
        const std::uint64_t bit = mask & (~mask + 1);
        // acq_rel: reads the worker's fetch_or (release), so its wake-word read happened before.
        const std::uint64_t before =
            idle_masks_[word].bits.fetch_and(~bit, std::memory_order_acq_rel);
        if ((before & bit) != 0) {
          worker_slot& w = workers_[word * 64 + static_cast<std::size_t>(std::countr_zero(bit))];
          detail::notify(w.wake_word, 1);
          return;
        }
        mask = before & ~bit;  // someone else claimed that one: try the others
      }
    }
  }

  // Consumes a dropped job: the caller's object is moved from whether or not on_drop takes it.
  void drop(Job&& job) {
    dropped_.fetch_add(1, std::memory_order_relaxed);
    Job taken(std::move(job));
    if (options_.on_drop) options_.on_drop(std::move(taken));
  }

  enum class room_result { room, closed, timed_out, cancelled };

  // Parks the calling producer until the queue has room, is closed, the deadline passes or the
  // token is stopped.
  room_result wait_for_room(detail::steady_time deadline, const std::stop_token* token) {
    struct waker {
      worker_pool* pool;
      void operator()() const noexcept { pool->wake_all_producers(); }
    };
    std::optional<std::stop_callback<waker>> on_stop;
    if (token != nullptr && token->stop_possible()) on_stop.emplace(*token, waker{this});
    blocked_producers_.fetch_add(1, std::memory_order_relaxed);  // for stats only
    // Poll first: at full speed the workers free half the queue in microseconds, sooner than a
    // sleep and a wake-up would take (seq_cst loads inside, as in sleep_for_room). Closed and
    // cancelled end the poll too; sleep_for_room reports them without sleeping.
    const bool room = poll_briefly(
        [&] {
          return queue_->size_approx() <= low_water_ || queue_->is_closed() || stopped(token);
        },
        deadline);
    const room_result result = room && !queue_->is_closed() && !stopped(token)
                                   ? room_result::room
                                   : sleep_for_room(deadline, token);
    blocked_producers_.fetch_sub(1, std::memory_order_relaxed);
    return result;
  }

  static bool stopped(const std::stop_token* token) noexcept {
    return token != nullptr && token->stop_requested();
  }

  // The sleeping half of wait_for_room: room, closed, cancelled or timed_out.
  room_result sleep_for_room(detail::steady_time deadline, const std::stop_token* token) {
    for (;;) {
      // Announce a sleeper (seq_cst RMW) and read the epoch before checking, so a wake-up
      // between the check and the sleep is seen.
      const std::uint32_t word =
          room_word_.fetch_or(room_sleepers, std::memory_order_seq_cst) | room_sleepers;
      if (queue_->is_closed()) return room_result::closed;
      if (stopped(token)) return room_result::cancelled;
      // seq_cst head load: pairs with the workers' seq_cst claim then load of room_word_.
      // Sleep until the queue is down to its low-water mark, not just one slot: producers then
      // refill in bursts instead of waking per freed slot.
      if (queue_->size_approx() <= low_water_) return room_result::room;
      if (!detail::wait_until(room_word_, word, deadline)) return room_result::timed_out;
    }
  }

  // Counts a producer inside the waiting slow path for the destructor; the decrement is the
  // producer's last access to the pool.
  struct waiting_scope {
    explicit waiting_scope(std::atomic<std::uint32_t>& c) noexcept : count(c) {
      count.fetch_add(1, std::memory_order_relaxed);
    }
    ~waiting_scope() { count.fetch_sub(1, std::memory_order_release); }
    waiting_scope(const waiting_scope&) = delete;
    waiting_scope& operator=(const waiting_scope&) = delete;
    waiting_scope(waiting_scope&&) = delete;
    waiting_scope& operator=(waiting_scope&&) = delete;
    std::atomic<std::uint32_t>& count;
  };

  submit_status submit_waiting(Job& job, detail::steady_time deadline, const std::stop_token* token,
                               submit_status on_deadline) {
    push_result r = push(job);
    if (r != push_result::full) return to_status(r);
    if (in_own_worker()) {
      rejected_.fetch_add(1, std::memory_order_relaxed);
      return submit_status::rejected;
    }
    const waiting_scope scope(producers_waiting_);
    // No spinning for single slots: a producer that refilled each slot as it freed would run
    // in lockstep with the workers and, on a small machine, take the CPU they need. It waits
    // (polling briefly, then asleep) until the queue is half empty, then refills in a burst.
    for (;;) {
      const room_result w = wait_for_room(deadline, token);
      r = push(job);  // one more attempt whatever the wait said: room may have come at the end
      if (r != push_result::full) return to_status(r);
      if (w != room_result::room) {
        rejected_.fetch_add(1, std::memory_order_relaxed);
        return w == room_result::cancelled ? submit_status::cancelled : on_deadline;
      }
      std::this_thread::yield();  // room seen, slot not yet released by its consumer
    }
  }

  template <class R>
  std::size_t submit_range(R& range, overflow_policy policy) {
    auto it = std::ranges::begin(range);
    const auto end = std::ranges::end(range);
    using rvalue_ref = std::ranges::range_rvalue_reference_t<R>;
    // Runs: a forward range whose elements become jobs without a chance of throwing is pushed
    // a run at a time straight from the range (one tail claim per run).
    constexpr bool runs =
        std::ranges::forward_range<R> && std::is_nothrow_constructible_v<Job, rvalue_ref>;
    // Otherwise element by element: an element that is a Job lvalue is pushed in place (moved
    // only when accepted); any other element is first made into a Job, kept across waits.
    constexpr bool in_place = std::is_same_v<std::ranges::range_reference_t<R>, Job&>;
    std::size_t accepted = 0;
    [[maybe_unused]] std::size_t remaining = 0;
    if constexpr (runs) remaining = static_cast<std::size_t>(std::ranges::distance(it, end));
    std::optional<Job> made;
    std::optional<waiting_scope>
        waiting;  // set at the first wait; nothing after it touches the pool
    while (it != end) {
      push_result r = push_result::full;
      if constexpr (runs) {
        using base_it = std::remove_cvref_t<decltype(it)>;
        const std::size_t n =
            queue_->try_push_bulk(stamping_iterator<base_it>{it, stamp()}, remaining);
        if (n != 0) {
          wake_worker();
          std::ranges::advance(it, static_cast<std::ranges::range_difference_t<R>>(n));
          remaining -= n;
          accepted += n;
          continue;
        }
        if (queue_->is_closed()) r = push_result::closed;
      } else if constexpr (in_place) {
        r = push(*it);
      } else {
        if (!made) made.emplace(std::ranges::iter_move(it));
        r = push(*made);
      }
      if (r == push_result::accepted) {
        made.reset();
        ++accepted;
        ++it;
        continue;
      }
      if (r == push_result::closed) break;
      // The next element does not fit.
      if (policy == overflow_policy::drop) {
        if (made) {
          drop(std::move(*made));
          made.reset();
          ++it;
        }
        drop_rest(it, end);
        break;
      }
      if (policy == overflow_policy::reject || in_own_worker()) {
        rejected_.fetch_add(1, std::memory_order_relaxed);
        break;
      }
      if (!waiting) {
        waiting.emplace(producers_waiting_);
      } else {
        std::this_thread::yield();  // room was seen, but its slot was not free yet: let it go
      }
      if (wait_for_room(detail::steady_time::max(), nullptr) == room_result::closed) break;
    }
    return accepted;
  }

  template <class It, class End>
  void drop_rest(It& it, const End& end) {
    for (; it != end; ++it) drop(Job(std::ranges::iter_move(it)));
  }

  // ---- worker internals ---------------------------------------------------------------------

  bool in_own_worker() const noexcept { return detail::current_pool == this; }

  void ensure_not_in_worker(const char* what) const {
    if (in_own_worker()) {
      throw std::logic_error(std::string("crew::worker_pool::") + what +
                             " called from one of the pool's own workers: it would wait for "
                             "itself");
    }
  }

  detail::native_thread start_thread(worker_slot& w, bool successor) {
    return detail::native_thread::start(
        [this, &w, successor]() noexcept {
          if (successor) w.predecessor.join();
          worker_main(w);
        },
        options_.stack_size, options_.name + "-" + std::to_string(w.index));
  }

  std::uint64_t draw_threshold(worker_slot& w) noexcept {
    if (recycle_after_ == 0) return 0;
    // Uniform in [N, 2N) (modulo bias is negligible for N << 2^64).
    return recycle_after_ + detail::splitmix64(w.rng) % recycle_after_;
  }

  void worker_main(worker_slot& w) noexcept {
    detail::current_pool = this;
    const std::stop_token token = w.stop.get_token();
    std::uint64_t threshold = draw_threshold(w);
    std::uint64_t since_recycle = 0;
    bool idle_signalled = false;
    w.state.store(worker_state::idle, std::memory_order_relaxed);
    for (;;) {
      // A fair share of what is queued, so one worker never sits on jobs another could start
      // (and an abort finds them in the queue): a deep queue of trivial jobs is claimed in
      // batches, a trickle one job at a time.
      const std::size_t share =
          std::clamp<std::size_t>(queue_->size_approx() / worker_count_, 1, max_batch);
      auto batch = queue_->try_pop_batch(share);
      if (batch.size() != 0) {
        idle_signalled = false;
        // seq_cst: the claim above was a seq_cst RMW on the head; this load is the worker's
        // half of the producer-parking handshake (see wait_for_room).
        wake_producers();
        // Work left behind and a worker asleep: wake it (a producer wakes only one at a time).
        if (batch.size() == share && queue_->size_approx() != 0) wake_worker();
        w.state.store(worker_state::running, std::memory_order_relaxed);
        since_recycle += run_batch(w, batch, token);
        w.state.store(worker_state::idle, std::memory_order_relaxed);
        if (recycle_after_ != 0 && since_recycle >= threshold) {
          since_recycle = 0;
          if (recycle(w, threshold)) return;  // respawned: the new thread carries on
        }
        continue;
      }
      if (!idle_signalled) {
        idle_signalled = true;
        signal_idle();
      }
      if (queue_->is_closed()) {
        if (phase_.load(std::memory_order_seq_cst) == phase_aborting || queue_->is_drained()) break;
        std::this_thread::yield();  // a producer is still writing a claimed slot
        continue;
      }
      if (spin_for_work()) continue;
      park(w);
    }
    w.state.store(worker_state::exited, std::memory_order_relaxed);
    // release: everything this worker did is visible to a shutdown that sees the count drop.
    live_workers_.fetch_sub(1, std::memory_order_release);
    detail::wake_all(live_workers_);
    signal_idle();
  }

  // Runs the claimed jobs in order; once an abort has begun, hands the rest back instead.
  std::size_t run_batch(worker_slot& w, typename bounded_queue<envelope>::batch& batch,
                        const std::stop_token& token) noexcept {
    std::size_t ran = 0;
    while (!batch.empty()) {
      // relaxed: a hint; a job that starts just as the abort begins counts as running.
      if (phase_.load(std::memory_order_relaxed) == phase_aborting) {
        hand_back(batch);
        break;
      }
      envelope env = batch.pop();
      run_one(w, env, token);
      ++ran;
    }
    return ran;
  }

  // Inlined into run_batch's loop: as a call it cost ~18 of the worker's ~76 instructions per
  // trivial job (saving and restoring registers around the try block); callgrind counts 58.5
  // instructions per job with it inlined.
  [[gnu::always_inline]] inline void run_one(worker_slot& w, envelope& env,
                                             const std::stop_token& token) noexcept {
    std::uint64_t start = 0;
    if (track_latency_) {
      start = detail::now_ns();
      w.queue_wait.record(start > env.enqueued_ns ? start - env.enqueued_ns : 0);
    }
    try {
      if constexpr (handler_takes_token) {
        handler_(std::move(env.job), token);
      } else {
        handler_(std::move(env.job));
      }
    } catch (...) {
      w.failed.fetch_add(1, std::memory_order_relaxed);
      if (options_.on_error) {
        try {
          options_.on_error(std::current_exception());
        } catch (...) {  // NOLINT(bugprone-empty-catch): documented: on_error must not throw
        }
      }
    }
    if (track_latency_) w.run_time.record(detail::now_ns() - start);
    detail::bump(w.executed);
  }

  void hand_back(typename bounded_queue<envelope>::batch& batch) noexcept {
    const std::size_t n = batch.remaining();
    std::lock_guard lock(handback_mutex_);
    handback_.reserve(handback_.size() + n);  // bad_alloc here terminates: noexcept worker
    while (!batch.empty()) handback_.push_back(std::move(batch.pop().job));
    handed_back_.fetch_add(n, std::memory_order_release);
  }

  // After a claim: producers blocked on a full queue sleep until it is down to low_water_;
  // wake them all then. The seq_cst load pairs with their seq_cst fetch_or (the claim was a
  // seq_cst RMW on the head). Clearing the sleepers bit with the epoch bump makes the next
  // claims skip the system call until a producer announces itself again.
  void wake_producers() noexcept {
    std::uint32_t word = room_word_.load(std::memory_order_seq_cst);
    if ((word & room_sleepers) == 0 || queue_->size_approx() > low_water_) return;
    while ((word & room_sleepers) != 0) {
      if (room_word_.compare_exchange_weak(word, (word + room_epoch_step) & ~room_sleepers,
                                           std::memory_order_seq_cst)) {
        detail::wake_all(room_word_);
        return;
      }
    }
  }

  // Wakes every blocked producer (shutdown, a stop request): bump the epoch, keep the bit.
  void wake_all_producers() noexcept {
    room_word_.fetch_add(room_epoch_step, std::memory_order_seq_cst);
    detail::wake_all(room_word_);
  }

  // Polls `ready` for up to spin_ns (or until `deadline`, if sooner) with a run of pauses
  // between polls and a yield every few polls; true as soon as it holds. Workers poll for work
  // before parking, blocked producers for room before sleeping. Spinning about as long as a
  // park plus a wake-up costs keeps a thread awake through the short gaps of a steady stream:
  // measured here (2 cores, trivial jobs, medians of 10 interleaved runs), a worker that spun
  // ~250 pauses parked and was woken ~3,000 times per million jobs from one producer, this one
  // ~200-800, at 1.7x the throughput; a bulk producer that slept at once on a full queue made
  // ~2,000-2,500 futex calls per million jobs, polling first 35-90, at 1.7x. The yield matters on a
  // machine with fewer cores than threads: the spinning thread gives its core to the thread
  // it is waiting for (without it the same 20 us spin gained little). An idle pool pays this
  // once per idle period, then sleeps.
  template <class Ready>
  static bool poll_briefly(Ready ready, detail::steady_time deadline) noexcept {
    const detail::steady_time now = std::chrono::steady_clock::now();
    if (deadline <= now) return ready();  // a passed deadline: look once, never wait
    const detail::steady_time until = std::min(deadline, now + spin_ns);
    for (unsigned polls = 1;; ++polls) {
      for (int i = 0; i < spin_pauses_per_poll; ++i) detail::cpu_relax();
      if (ready()) return true;
      if (polls % spin_polls_per_yield == 0) {
        std::this_thread::yield();
        if (std::chrono::steady_clock::now() >= until) return false;
      }
    }
  }

  // Polls front_ready(), not size_approx(): the tail is the line every push updates, and two
  // polling workers reading it slowed the producers down by 1.4-1.7x here. A shutdown that
  // begins meanwhile is seen within spin_ns, by park()'s re-check.
  bool spin_for_work() const noexcept {
    return poll_briefly([this] { return queue_->front_ready(); }, detail::steady_time::max());
  }

  void park(worker_slot& w) noexcept {
    w.state.store(worker_state::parked, std::memory_order_relaxed);
    // Read the wake word before announcing: a producer that claims this worker bumps it after
    // its claim, so the sleep below cannot miss that bump.
    const std::uint32_t seen = w.wake_word.load(std::memory_order_seq_cst);
    std::atomic<std::uint64_t>& mask = idle_masks_[w.index / 64].bits;
    const std::uint64_t bit = std::uint64_t{1} << (w.index % 64);
    mask.fetch_or(bit, std::memory_order_seq_cst);  // the bit before the count: see wake_worker()
    idle_count_.fetch_add(1, std::memory_order_seq_cst);
    // seq_cst loads of the tail inside: the other half of the handshake with wake_worker().
    if (queue_->size_approx() == 0 && !queue_->is_closed()) detail::wait(w.wake_word, seen);
    idle_count_.fetch_sub(1, std::memory_order_seq_cst);
    // Withdraw the bit if no producer claimed it (if one did, its bump may still arrive: a
    // spurious wake-up at the next park, which re-checks and sleeps again).
    mask.fetch_and(~bit, std::memory_order_seq_cst);
    w.state.store(worker_state::idle, std::memory_order_relaxed);
  }

  // Tells wait_idle() callers to re-check. The fence pairs with the one in wait_idle().
  void signal_idle() noexcept {
    std::atomic_thread_fence(std::memory_order_seq_cst);
    if (idle_waiters_.load(std::memory_order_relaxed) != 0) detail::notify(idle_epoch_, UINT32_MAX);
  }

  std::uint64_t executed_total() const noexcept {
    std::uint64_t sum = 0;
    for (std::size_t i = 0; i < worker_count_; ++i) {
      sum += workers_[i].executed.load(std::memory_order_acquire);
    }
    return sum;
  }

  bool is_idle() const noexcept {
    // Completed first, accepted second: both only grow and completed <= accepted, so equality
    // means every job accepted by the time of the first read had completed then.
    const std::uint64_t done = executed_total() + handed_back_.load(std::memory_order_acquire);
    return done >= queue_->pushed_count();
  }

  // Recycles the calling worker. Returns true when a new thread now runs this worker (the
  // caller must return without touching the worker's state again).
  bool recycle(worker_slot& w, std::uint64_t& threshold) noexcept {
    threshold = draw_threshold(w);
    if (phase_.load(std::memory_order_relaxed) != phase_running) return false;
    if (options_.recycle_stack_limit != 0 &&
        detail::resident_stack_bytes() <= options_.recycle_stack_limit) {
      return false;
    }
    if (options_.recycle == recycle_mode::trim) {
      (void)detail::trim_stack();
      w.recycled.fetch_add(1, std::memory_order_relaxed);
      return false;
    }
    std::lock_guard lock(threads_mutex_);
    // Shutdown may join threads once the live count reaches zero; no new thread after it began.
    if (phase_.load(std::memory_order_seq_cst) != phase_running) return false;
    w.predecessor = std::move(w.thread);
    w.recycled.fetch_add(1, std::memory_order_relaxed);
    try {
      w.thread = start_thread(w, true);
    } catch (...) {
      // Could not start a replacement (out of threads or memory): keep this one.
      w.thread = std::move(w.predecessor);
      w.recycled.fetch_sub(1, std::memory_order_relaxed);
      return false;
    }
    return true;
  }

  // ---- shutdown internals -------------------------------------------------------------------

  void begin_shutdown(std::uint32_t target) noexcept {
    std::uint32_t current = phase_.load(std::memory_order_seq_cst);
    while (current < target &&
           !phase_.compare_exchange_weak(current, target, std::memory_order_seq_cst)) {
    }
    if (target == phase_aborting) {
      for (std::size_t i = 0; i < worker_count_; ++i) workers_[i].stop.request_stop();
    }
    // After the phase: a worker that sees the queue closed also sees the phase.
    (void)queue_->close();
    for (std::size_t i = 0; i < worker_count_; ++i) detail::notify(workers_[i].wake_word, 1);
    wake_all_producers();
  }

  // Takes every job left in the (closed) queue, for a report.
  void collect_queue(std::vector<Job>& out) {
    std::size_t taken = 0;
    for (;;) {
      out.reserve(out.size() + max_batch);  // before claiming, so the moves below cannot fail
      auto batch = queue_->try_pop_batch(max_batch);
      if (batch.size() == 0) {
        if (queue_->is_drained()) break;
        std::this_thread::yield();  // a producer is still writing a claimed slot
        continue;
      }
      taken += batch.size();
      while (!batch.empty()) out.push_back(std::move(batch.pop().job));
    }
    handed_back_.fetch_add(taken, std::memory_order_release);
    signal_idle();
  }

  bool wait_for_workers(detail::steady_time deadline) noexcept {
    for (;;) {
      // acquire: pairs with the workers' release decrement.
      const std::uint32_t live = live_workers_.load(std::memory_order_acquire);
      if (live == 0) return true;
      if (!detail::wait_until(live_workers_, live, deadline)) {
        return live_workers_.load(std::memory_order_acquire) == 0;
      }
    }
  }

  shutdown_report<Job> shutdown_by(detail::steady_time deadline) {
    shutdown_report<Job> report;
    begin_shutdown(phase_draining);
    if (!wait_for_workers(deadline)) {
      begin_shutdown(phase_aborting);
      collect_queue(report.handed_back);
    }
    finish(report);
    return report;
  }

  void finish(shutdown_report<Job>& report) {
    report.still_running = live_workers_.load(std::memory_order_acquire);
    {
      std::lock_guard lock(handback_mutex_);
      if (!handback_.empty()) {
        // Jobs a worker had claimed are older than what was left in the queue: put them first.
        handback_.reserve(handback_.size() + report.handed_back.size());
        for (Job& job : report.handed_back) handback_.push_back(std::move(job));
        report.handed_back.swap(handback_);
        handback_.clear();
      }
    }
    if (report.still_running == 0) join_all();
    report.executed = executed_total();
    report.drained = report.still_running == 0 &&
                     handed_back_.load(std::memory_order_acquire) == 0 &&
                     report.executed == queue_->pushed_count();
  }

  void join_all() noexcept {
    std::lock_guard lock(threads_mutex_);
    for (std::size_t i = 0; i < worker_count_; ++i) workers_[i].thread.join();
  }

  static constexpr std::uint32_t room_sleepers = 1;
  static constexpr std::uint32_t room_epoch_step = 2;
  static constexpr std::chrono::nanoseconds spin_ns{20'000};  // see poll_briefly()
  static constexpr int spin_pauses_per_poll = 32;
  static constexpr unsigned spin_polls_per_yield = 8;

  // Read-mostly configuration and the handler.
  Handler handler_;
  options_type options_;
  std::optional<bounded_queue<envelope>> queue_;
  std::unique_ptr<worker_slot[]> workers_;
  std::size_t worker_count_ = 0;
  std::size_t capacity_ = 0;
  std::size_t low_water_ = 0;  // blocked producers sleep until the queue is down to this
  std::uint64_t recycle_after_ = 0;
  bool track_latency_ = false;

  // Worker parking: written when workers park or unpark, read by every submit.
  // Worker parking: idle_count_ is read by every submit, written when workers park or wake.
  alignas(detail::cache_line_size) std::atomic<std::uint32_t> idle_count_{0};
  std::unique_ptr<padded_mask[]> idle_masks_;  // bit i: worker i is parked and unclaimed
  std::size_t idle_words_ = 0;
  // Producer parking.
  alignas(detail::cache_line_size) std::atomic<std::uint32_t> blocked_producers_{0};  // stats
  // Producer parking: bit 0 = a producer may be asleep; the rest is an epoch.
  std::atomic<std::uint32_t> room_word_{0};
  std::atomic<std::uint32_t> producers_waiting_{0};  // inside a waiting submit's slow path
  // wait_idle parking.
  alignas(detail::cache_line_size) std::atomic<std::uint32_t> idle_waiters_{0};
  std::atomic<std::uint32_t> idle_epoch_{0};
  // Lifecycle.
  alignas(detail::cache_line_size) std::atomic<std::uint32_t> phase_{phase_running};
  std::atomic<std::uint32_t> live_workers_{0};
  // Slow-path counters (refusals and hand-backs only). rejected_ and dropped_ are relaxed:
  // statistics, nothing is published through them. handed_back_ is release/acquire because
  // wait_idle() and finish() compare it with the executed counts.
  alignas(detail::cache_line_size) std::atomic<std::uint64_t> rejected_{0};
  std::atomic<std::uint64_t> dropped_{0};
  std::atomic<std::uint64_t> handed_back_{0};
  std::mutex handback_mutex_;
  std::vector<Job> handback_;  // handed back by workers during an abort; guarded by handback_mutex_
  std::mutex threads_mutex_;   // guards worker_slot::thread and respawn decisions
};

}  // namespace crew
