#pragma once

// crew::keyed_pool<Key, Job, Handler, Hash, KeyEqual>: per-key FIFO on a shared set of workers.
// Jobs submitted under equal keys run one at a time, in the order their submits were accepted;
// jobs of different keys run in parallel. Bounded (queue_capacity jobs across all keys, plus
// max_per_key per key), exact keys (KeyEqual decides; a hash collision never makes two keys
// share a lane), fair (a worker runs at most key_budget jobs of one key in a row), and without
// allocation per job or per key: the storage is sized at construction.
//
// Thread safety: as crew::worker_pool. Construction and destruction are not thread-safe; every
// other member may be called from any thread concurrently. submit* and stats() may be called
// from the pool's own workers; shutdown*, wait_idle*() and the destructor may not.
//
// Visibility: everything one job of a key did is visible to the next job of that key (the key
// table's stripe lock orders them); everything a submitter did before an accepted submit is
// visible to the job; everything the jobs did is visible after wait_idle*() or shutdown*().
//
// Composition:
//   detail/key_table.hpp   exact keys and their FIFOs in a slab of job slots; the protocol by
//                          which a key is scheduled, held and given up (argued there, checked
//                          by tests/model/keyed.pml)
//   detail/scheduler.hpp   the run queue of keys: the ring, the workers' stealable stashes and
//                          their parking, as in worker_pool (so the pool is work-conserving
//                          across keys: while a worker is free, no scheduled key waits behind a
//                          running job)
//   detail/pool_runtime.hpp  options, threads, counters, phase, waiting producers, the
//                          destructor's drain, the shutdown forms, wait_idle, stats: shared
//                          with worker_pool
//   detail/job_runner.hpp, detail/room.hpp, detail/submit_range.hpp, detail/stash.hpp
//                          the handler call, waiting for room (in the pool, in a key), the
//                          submit forms, each worker's job stash
// What is this file's own: key-first submit forms, the holder's loop over one key's jobs, and
// the collection that hands back {key, job} pairs in each key's order.
//
// Errors: a submit throws what Hash, KeyEqual or Key's copy constructor throws, having changed
// nothing (the job is not moved from).

#include <algorithm>
#include <atomic>
#include <chrono>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <ranges>
#include <stdexcept>
#include <stop_token>
#include <string>
#include <thread>
#include <type_traits>
#include <utility>
#include <vector>

#include "detail/eventcount.hpp"
#include "detail/handler.hpp"
#include "detail/job_runner.hpp"
#include "detail/key_table.hpp"
#include "detail/pool_runtime.hpp"
#include "detail/pool_support.hpp"
#include "detail/room.hpp"
#include "detail/scheduler.hpp"
#include "detail/stash.hpp"
#include "detail/submit_range.hpp"
#include "detail/wait.hpp"
#include "detail/worker_set.hpp"
#include "options.hpp"
#include "stats.hpp"
#include "status.hpp"

namespace crew {

template <class Key, class Job, class Handler = job_handler<Job>, class Hash = std::hash<Key>,
          class KeyEqual = std::equal_to<Key>>
class keyed_pool {
  static_assert(std::is_object_v<Job> && !std::is_const_v<Job>,
                "crew::keyed_pool: Job must be a non-const object type stored by value.");
  static_assert(std::is_nothrow_move_constructible_v<Job>,
                "crew::keyed_pool: Job must be nothrow move constructible.");
  static_assert(std::is_copy_constructible_v<Key> && std::is_nothrow_destructible_v<Key>,
                "crew::keyed_pool: Key must be copy constructible (the table keeps a copy, and "
                "handed-back pairs carry one).");
  static_assert(std::is_invocable_r_v<std::size_t, const Hash&, const Key&>,
                "crew::keyed_pool: Hash must be callable as hash(key) -> std::size_t.");
  static_assert(std::is_invocable_r_v<bool, const KeyEqual&, const Key&, const Key&>,
                "crew::keyed_pool: KeyEqual must be callable as equal(a, b) -> bool.");
  static_assert(std::is_invocable_v<Handler&, Job&&, std::stop_token> ||
                    std::is_invocable_v<Handler&, Job&&>,
                "crew::keyed_pool: the handler must be callable as handler(std::move(job)) or "
                "handler(std::move(job), std::stop_token).");

  using table_type = detail::key_table<Key, Job, KeyEqual>;
  using envelope = detail::envelope<Job>;

 public:
  using key_type = Key;
  using job_type = Job;
  using handler_type = Handler;
  using options_type = pool_options<Job>;
  using value_type = std::pair<Key, Job>;  // what a shutdown hands back

  static constexpr std::size_t max_workers = 16384;

  // Builds the pool and starts its threads (options.workers, or options.min_workers of an
  // elastic pool). Throws std::invalid_argument naming the option for 0 workers (or more than
  // max_workers), a queue_capacity of 0 or one that cannot be allocated, a key_budget of 0,
  // min_workers above workers, a negative idle_timeout or max_queue_wait; std::system_error
  // when a thread cannot be started; what on_worker_start throws.
  explicit keyed_pool(Handler handler, options_type options = {}, Hash hash = Hash{},
                      KeyEqual equal = KeyEqual{})
      : keyed_pool(std::in_place, std::move(handler), std::move(options), std::move(hash),
                   std::move(equal)) {}

  // As above, with a handler per worker, built by each worker with factory(worker_info) on its
  // own thread (see crew::per_worker); what the factory throws during construction is thrown.
  template <class Factory>
  explicit keyed_pool(per_worker_factory<Factory> factory, options_type options = {},
                      Hash hash = Hash{}, KeyEqual equal = KeyEqual{})
      : keyed_pool(std::in_place, std::move(factory), std::move(options), std::move(hash),
                   std::move(equal)) {}

  keyed_pool(const keyed_pool&) = delete;
  keyed_pool& operator=(const keyed_pool&) = delete;
  keyed_pool(keyed_pool&&) = delete;
  keyed_pool& operator=(keyed_pool&&) = delete;

  // Drains (every queued job runs), then joins every thread. From one of the pool's own
  // workers: a message and std::terminate.
  ~keyed_pool() { rt_.destroy(*this, "crew::keyed_pool"); }

  // ---- submitting (each form as worker_pool's, with the key first) ----------------------------
  // Every submit form is thread-safe and may be called from the pool's own workers (a waiting
  // form then returns rejected instead of waiting). A job is moved from only when accepted (or
  // dropped). Each may throw what Hash, KeyEqual or Key's copy constructor throws, changing
  // nothing.

  // Submits `job` under `key`; when the queue or the key is full, does what options.on_full says
  // (block: wait for room in the pool and in the key; reject; drop). Thread-safe; from a worker
  // of this pool, block returns rejected instead of waiting.
  submit_status submit(const Key& key, Job&& job) {
    return detail::submit_with_policy(job, options_.on_full, key_ops{this, &key, hash_(key)});
  }

  // Submits if the pool and the key have room now: accepted, rejected or closed. Never waits.
  submit_status try_submit(const Key& key, Job&& job) {
    return detail::submit_once(job, key_ops{this, &key, hash_(key)});
  }

  // Waits up to `timeout` for room (in the pool and in the key): accepted, timed_out, closed.
  template <class Rep, class Period>
  submit_status submit_for(const Key& key, Job&& job,
                           const std::chrono::duration<Rep, Period>& timeout) {
    return detail::submit_waiting(job, key_ops{this, &key, hash_(key)},
                                  detail::deadline_after(timeout), nullptr);
  }

  // As submit_for, with a deadline on any clock.
  template <class Clock, class Duration>
  submit_status submit_until(const Key& key, Job&& job,
                             const std::chrono::time_point<Clock, Duration>& deadline) {
    return detail::submit_waiting(job, key_ops{this, &key, hash_(key)},
                                  detail::to_steady_deadline(deadline), nullptr);
  }

  // Waits for room until `token` is stopped: accepted, cancelled, closed.
  submit_status submit(const Key& key, Job&& job, std::stop_token token) {
    return detail::submit_waiting(job, key_ops{this, &key, hash_(key)}, detail::steady_time::max(),
                                  &token);
  }

  // One key's run of jobs, in order, as worker_pool::submit_bulk (a prefix is accepted; only
  // accepted or dropped elements are moved from). A forward range is admitted in runs, one lock
  // per run.
  template <std::ranges::input_range R>
  requires std::constructible_from<Job, std::ranges::range_rvalue_reference_t<R>> std::size_t
  submit_bulk(const Key& key, R&& range) {
    return detail::submit_range<Job>(range, options_.on_full, key_ops{this, &key, hash_(key)});
  }

  // As submit_bulk, never waiting: stops at the first job that does not fit.
  template <std::ranges::input_range R>
  requires std::constructible_from<Job, std::ranges::range_rvalue_reference_t<R>> std::size_t
  try_submit_bulk(const Key& key, R&& range) {
    return detail::submit_range<Job>(range, overflow_policy::reject,
                                     key_ops{this, &key, hash_(key)});
  }

  // ---- shutting down ------------------------------------------------------------------------
  // Every shutdown and wait_idle form is thread-safe (concurrent shutdowns each hand back a
  // disjoint part; an abort escalates a drain in progress) and throws std::logic_error, changing
  // nothing, when called from one of this pool's workers.

  // As worker_pool::shutdown; handed_back holds {key, job} pairs, each key's jobs in their order
  // (so a restart can resubmit them as they come). Throws std::logic_error from a worker.
  shutdown_report<value_type> shutdown(shutdown_mode mode = shutdown_mode::drain) {
    ensure_not_in_worker("shutdown");
    return rt_.template shutdown<value_type>(*this, mode);
  }

  // As worker_pool::shutdown_until: drains until the deadline, then aborts.
  template <class Clock, class Duration>
  shutdown_report<value_type> shutdown_until(
      const std::chrono::time_point<Clock, Duration>& deadline) {
    ensure_not_in_worker("shutdown_until");
    return rt_.template shutdown_by<value_type>(*this, detail::to_steady_deadline(deadline));
  }

  template <class Rep, class Period>
  shutdown_report<value_type> shutdown_for(const std::chrono::duration<Rep, Period>& timeout) {
    ensure_not_in_worker("shutdown_for");
    return rt_.template shutdown_by<value_type>(*this, detail::deadline_after(timeout));
  }

  // Blocks until no job is queued or running. Throws std::logic_error from a worker.
  void wait_idle() {
    ensure_not_in_worker("wait_idle");
    (void)rt_.wait_idle(*this, detail::steady_time::max());
  }

  template <class Rep, class Period>
  bool wait_idle_for(const std::chrono::duration<Rep, Period>& timeout) {
    ensure_not_in_worker("wait_idle_for");
    return rt_.wait_idle(*this, detail::deadline_after(timeout));
  }

  template <class Clock, class Duration>
  bool wait_idle_until(const std::chrono::time_point<Clock, Duration>& deadline) {
    ensure_not_in_worker("wait_idle_until");
    return rt_.wait_idle(*this, detail::to_steady_deadline(deadline));
  }

  // ---- observing ----------------------------------------------------------------------------

  // As worker_pool::stats(), plus active_keys (keys with a queued or running job). Thread-safe.
  pool_stats stats() const noexcept {
    pool_stats s = rt_.stats();
    s.capacity = table_.capacity();
    s.active_keys = table_.active_keys();
    rt_.settle(s, table_.accepted());
    return s;
  }

  // The following are thread-safe (read-only after construction, or one atomic load).
  std::size_t workers() const noexcept { return rt_.worker_count(); }
  // queue_capacity rounded up to a power of two: the jobs the pool holds across all keys.
  std::size_t capacity() const noexcept { return table_.capacity(); }
  const options_type& options() const noexcept { return options_; }
  bool is_shut_down() const noexcept { return table_.closed(); }

 private:
  using push_result = detail::push_result;
  using room_result = detail::room_result;
  using runtime = detail::pool_runtime<Job>;
  template <class>
  friend class detail::pool_runtime;  // the runtime's interface below, and worker_main

  // The public constructors' common part (see worker_pool's).
  template <class Source>
  keyed_pool(std::in_place_t /*tag*/, Source&& source, options_type options, Hash hash,
             KeyEqual equal)
      : handlers_(std::forward<Source>(source)),
        rt_(checked(std::move(options))),
        options_(rt_.options()),
        hash_(std::move(hash)),
        table_(options_.queue_capacity, options_.workers, std::move(equal),
               options_.max_per_key != 0, "crew::keyed_pool"),
        sched_(table_.capacity() + options_.workers, options_.workers, "crew::keyed_pool"),
        job_stashes_(std::make_unique<worker_jobs[]>(options_.workers)),
        key_room_(0, rt_.room()) {
    rt_.start(*this);
  }

  static options_type checked(options_type o) {
    o = detail::checked_options(std::move(o), max_workers, "crew::keyed_pool");
    if (o.key_budget == 0) {
      throw std::invalid_argument("crew::keyed_pool: options.key_budget must be at least 1, got 0");
    }
    if (o.max_per_key > 0xFFFFFFF0U) {
      throw std::invalid_argument("crew::keyed_pool: options.max_per_key is too large");
    }
    return o;
  }

  // ---- submit internals ---------------------------------------------------------------------

  static push_result to_push(detail::admit_result a) noexcept {
    switch (a) {
      case detail::admit_result::accepted: return push_result::accepted;
      case detail::admit_result::full: return push_result::full;
      case detail::admit_result::key_full: return push_result::key_full;
      case detail::admit_result::closed: break;
    }
    return push_result::closed;
  }

  // A key's entry created by an admit goes on the run queue (K2 of detail/key_table.hpp). The
  // ring has room for every entry and is never closed, so a push fails only while a worker is
  // between claiming the slot's previous lap and releasing it: retry.
  void schedule(std::uint32_t e) noexcept {
    while (!sched_.push(std::uint32_t{e})) std::this_thread::yield();
  }

  std::uint64_t stamp() const noexcept { return rt_.stamps() ? detail::now_ns() : 0; }

  // A key newly put on the run queue may find no free worker: grow an elastic pool.
  void scheduled(std::uint32_t e) {
    schedule(e);
    rt_.after_accept(*this, [this] { return sched_.ring().size_approx(); });
  }

  // One key's side of detail::submit_once, submit_waiting, submit_with_policy and submit_range.
  // `last` remembers why the last attempt failed, so a wait waits for the right kind of room.
  struct key_ops {
    keyed_pool* pool = nullptr;
    const Key* key = nullptr;
    std::size_t hash = 0;
    mutable push_result last = push_result::full;

    push_result push(Job& job) const {
      std::uint32_t e = detail::no_index;
      last = to_push(
          pool->table_.admit(hash, *key, job, pool->stamp(), pool->options_.max_per_key, e));
      if (e != detail::no_index) pool->scheduled(e);
      return last;
    }
    template <class It>
    std::size_t push_run(It it, std::size_t n) const {
      std::uint32_t e = detail::no_index;
      std::size_t admitted = 0;
      last = to_push(pool->table_.admit_run(hash, *key, it, n, pool->stamp(),
                                            pool->options_.max_per_key, e, admitted));
      if (e != detail::no_index) pool->scheduled(e);
      return admitted;
    }
    bool closed() const noexcept { return pool->table_.closed(); }
    void drop(Job&& job) const { pool->rt_.drop(std::move(job)); }
    bool may_wait() const noexcept { return !runtime::in_worker(pool); }
    void refused() const noexcept { pool->rt_.refused(); }
    room_result wait(detail::steady_time deadline, const std::stop_token* token, bool retry) const {
      const auto closed_now = [this] { return pool->table_.closed(); };
      if (last == push_result::key_full) {
        return pool->key_room_.wait_for(
            deadline, token, retry,
            [this] { return pool->table_.key_has_room(hash, *key, pool->options_.max_per_key); },
            closed_now);
      }
      return pool->rt_.room().wait(
          deadline, token, retry, [this] { return pool->table_.used_slots(); }, closed_now);
    }
    std::atomic<std::uint32_t>& inside_count() const noexcept {
      return pool->rt_.room().inside_count();
    }
  };

  // ---- worker internals ---------------------------------------------------------------------

  void ensure_not_in_worker(const char* what) const {
    runtime::ensure_not_in_worker(this, "crew::keyed_pool", what);
  }

  // A thread of slot i: the runtime's start-up and teardown around work().
  void worker_main(std::size_t i) noexcept {
    rt_.run_worker(*this, i, handlers_,
                   [this, i](Handler& handler, const std::stop_token& token) noexcept {
                     return work(i, handler, token);
                   });
  }

  // Worker i's loop: hold the keys the run queue gives it, recycle after the threshold, go idle
  // (an elastic pool's idle worker may expire), leave at shutdown.
  detail::worker_end work(std::size_t i, Handler& handler, const std::stop_token& token) noexcept {
    detail::worker_counters& c = rt_.counters(i);
    detail::worker_set& workers = rt_.workers();
    std::uint64_t threshold = c.draw_threshold(options_.recycle_after);
    std::uint64_t since_recycle = 0;
    detail::idle_period idle;
    auto hold = [&](std::uint32_t&& e) noexcept {
      rt_.went_busy(*this, idle);  // before the key's jobs: they must not count as a free worker
      since_recycle += hold_key(i, handler, c, e, token);
    };
    auto after_claim = []() noexcept {};  // the ring of keys never refuses: nobody waits on it
    // Keys left in this worker's stash: an elastic pool below full size may grow.
    auto stashed = [this]() noexcept { rt_.after_stash(*this); };
    detail::worker_end end = detail::worker_end::exited;
    for (;;) {
      // relaxed: a hint, as in worker_pool; stop_waiting()'s seq_cst load orders the exit.
      if (rt_.phase_hint() == detail::phase_aborting) break;
      if (sched_.run_next(i, hold, after_claim, stashed)) {
        if (options_.recycle_after != 0 && since_recycle >= threshold) {
          since_recycle = 0;
          threshold = c.draw_threshold(options_.recycle_after);
          // respawned: the new thread carries on
          if (rt_.recycle(i, [this](std::size_t w) noexcept { worker_main(w); })) {
            return detail::worker_end::respawned;
          }
        }
        continue;
      }
      if (rt_.went_idle(idle)) rt_.signal_idle();
      if (stop_waiting()) break;
      if (rt_.expire(i, idle, [this] { return sched_.has_work(); })) {
        end = detail::worker_end::retired;
        break;
      }
      sched_.idle(
          i, [this]() noexcept { return stop_waiting(); },
          [&workers, i](bool parked) noexcept {
            workers.set_state(i, parked ? worker_state::parked : worker_state::idle);
          },
          rt_.park_deadline(idle));
    }
    rt_.left_idle(idle);
    // The last job of a drain may have been this worker's: the others may be parked on a check
    // that came before it (tests/model/keyed.pml, mutant no-exit-wake: the drain never ends).
    // wake_all bumps every wake word (a seq_cst RMW); a parker reads its word (seq_cst) before
    // its re-check: either its futex wait sees the bumped word, or its read comes after the
    // bump, and then its re-check sees this worker's executed count.
    sched_.wake_all();
    rt_.signal_idle();
    return end;
  }

  // Worker i holds key entry `e` (taken off the run queue): it takes runs of the key's jobs into
  // its own job stash (K3) and runs them in order, up to key_budget, then gives the key up as
  // take() says (K4). The stash is what a shutdown collects from a worker that stopped in the
  // middle of a run (abort, deadline): its jobs are the key's oldest. Returns how many jobs ran.
  std::uint64_t hold_key(std::size_t i, Handler& handler, detail::worker_counters& c,
                         std::uint32_t e, const std::stop_token& token) noexcept {
    job_stash& own = job_stashes_[i].jobs;
    // Relaxed: read by a collector only after it acquired the jobs the fill below publishes.
    job_stashes_[i].entry.store(e, std::memory_order_relaxed);
    std::uint64_t ran = 0;
    auto run = [&](envelope&& env) noexcept {
      table_.started(e);  // a store only with max_per_key set
      // Only a max_per_key pool has producers waiting for room in a key (one load otherwise).
      if (options_.max_per_key != 0) key_room_.notify();
      rt_.workers().set_state(i, worker_state::running);
      rt_.run(handler, std::move(env), token, c);  // or on_expire: the key's order holds
      rt_.workers().set_state(i, worker_state::idle);
      ++ran;
    };
    for (;;) {
      // relaxed: a hint, as in the worker loop; an abort leaves the rest of the run stashed.
      const bool aborting = rt_.phase_hint() == detail::phase_aborting;
      if (aborting) {
        // The rest of the run stays stashed for the shutdown to collect (which it does after
        // this worker has exited, or settled inside a job): leave, do not wait for it.
        if (!own.idle()) return ran;
      } else if (own.pop(run)) {
        continue;
      }
      const std::uint32_t room = own.fill_room();
      if (room == 0) {  // a shutdown is copying the stash out: let it finish
        std::this_thread::yield();
        continue;
      }
      const std::uint64_t budget_left = options_.key_budget > ran ? options_.key_budget - ran : 0;
      const auto most = static_cast<std::uint32_t>(std::min<std::uint64_t>(room, budget_left));
      auto what = table_type::step::left;
      (void)own.fill([&](auto put) noexcept {
        const auto t = table_.take(e, most, aborting, put);
        what = t.what;
        return t.count;
      });
      if (what == table_type::step::requeue) schedule(e);
      if (what != table_type::step::run) return ran;
      rt_.room().after_claim([this] { return table_.used_slots(); });
    }
  }

  // Whether a worker may leave: aborting, or draining with every accepted job run (the table is
  // closed before the phase says draining, so the accepted count is final by then).
  bool stop_waiting() const noexcept {
    const std::uint32_t phase = rt_.phase();
    if (phase == detail::phase_aborting) return true;
    return phase == detail::phase_draining && rt_.completed_total() >= table_.accepted();
  }

  // ---- the runtime's interface (detail/pool_runtime.hpp) --------------------------------------

  std::size_t waiting_jobs() const noexcept { return sched_.waiting(); }

  std::uint64_t accepted_count() const noexcept { return table_.accepted(); }

  void begin_shutdown(std::uint32_t target) noexcept {
    table_.close();  // first: "draining" must mean that no admit can still be in flight
    rt_.raise_phase(target);
    sched_.wake_all();
    rt_.room().wake_all();
    key_room_.wake_all();
  }

  // Hands back every unstarted job: first the runs left in the workers' job stashes (each the
  // oldest jobs of its key), then the table's FIFOs. A Key copy that throws leaves what was not
  // handed back for the next call.
  void collect(std::vector<value_type>& out) {
    const std::lock_guard lock(collect_mutex_);
    for (std::size_t i = 0; i < rt_.worker_count(); ++i) {
      // Relaxed: the owner stored it before the fill whose jobs the steal acquires.
      const auto e = job_stashes_[i].entry.load(std::memory_order_relaxed);
      (void)job_stashes_[i].jobs.take_all(
          [this](std::size_t n) { stolen_.reserve(stolen_.size() + n); },
          [&](envelope&& env) noexcept { stolen_.emplace_back(e, std::move(env.job)); });
    }
    // The entries stay while aborting (K4: a holder leaves its entry then), so key_of() is safe.
    out.reserve(out.size() + (stolen_.size() - stolen_done_));
    const std::size_t first = stolen_done_;
    try {
      for (; stolen_done_ < stolen_.size(); ++stolen_done_) {
        auto& [e, job] = stolen_[stolen_done_];
        out.emplace_back(table_.key_of(e), std::move(job));
      }
    } catch (...) {
      rt_.handed_back(stolen_done_ - first);  // the rest stays for the next call
      throw;
    }
    const std::size_t converted = stolen_done_ - first;
    stolen_.clear();
    stolen_done_ = 0;
    rt_.handed_back(converted + table_.collect(out, rt_.workers().live() == 0));
  }

  // Each worker's job stash: the run of one key's jobs it took and has not started (K3), and
  // that key's entry. Only the owner fills and pops; a shutdown steals what is left.
  using job_stash = detail::stash<envelope, table_type::max_take>;
  struct alignas(detail::cache_line_size) worker_jobs {
    job_stash jobs;
    std::atomic<std::uint32_t> entry{detail::no_index};
  };

  detail::handler_source<Handler> handlers_;  // the shared handler, or the per-worker factory
  runtime rt_;  // options, threads, counters, phase, waiting producers, wait_idle callers
  const options_type& options_;
  Hash hash_;
  table_type table_;
  detail::scheduler<std::uint32_t> sched_;  // the run queue of key entries
  std::unique_ptr<worker_jobs[]> job_stashes_;
  // Producers waiting for room in their key (max_per_key), counted as blocked in rt_.room().
  detail::room_gate key_room_;
  std::mutex collect_mutex_;  // shutdowns collecting at once
  // Jobs collected from the job stashes, with their entries; those before stolen_done_ are
  // handed back already (a Key copy threw after them). Guarded by collect_mutex_.
  std::vector<std::pair<std::uint32_t, Job>> stolen_;
  std::size_t stolen_done_ = 0;
};

}  // namespace crew
