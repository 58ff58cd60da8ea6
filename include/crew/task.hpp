#pragma once

// crew::task, crew::task_pool, crew::task_group: closures on crew's pool.
//
//   crew::task_pool pool{{.workers = 4}};
//   pool.submit([&] { work(); });                        // no allocation when the closure fits
//   auto [status, result] = pool.submit_task([] { return 42; });  // std::future<int>
//   crew::task_group group{pool};
//   group.run([](std::stop_token stop) { scan(stop); }); // fail-fast: the first throw stops all
//   group.wait();                                        // rethrows the first exception
//
// task_pool *is* a worker_pool<task, ...> (derived, adding only closure overloads): every
// member, option, guarantee and thread-safety rule of worker_pool.hpp holds for it unchanged.

#include <atomic>
#include <chrono>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <exception>
#include <functional>
#include <future>
#include <new>
#include <optional>
#include <stdexcept>
#include <stop_token>
#include <type_traits>
#include <utility>

#include "detail/pool_runtime.hpp"
#include "detail/task_erasure.hpp"
#include "detail/wait.hpp"
#include "options.hpp"
#include "status.hpp"
#include "worker_pool.hpp"

namespace crew {

// A move-only `void()` callable. A callable of at most inline_size bytes, alignment at most
// inline_align and a noexcept move constructor is stored inside the task; any other costs one
// allocation, made when the task is built. Moving a task never throws (and, for callables that
// are trivially copyable or on the heap, is a fixed-size copy of bytes). Calling an empty (or
// moved-from) task throws std::bad_function_call.
//
// Thread safety: as for any object: distinct tasks may be used from distinct threads; one task
// must not be used from two threads at once.
class task {
 public:
  // Bytes of inline storage (the contract promises at least 48) and their alignment.
  static constexpr std::size_t inline_size = detail::task_inline_size;
  static constexpr std::size_t inline_align = detail::task_inline_align;

  // Whether a callable of type F is stored inline (no allocation).
  template <class F>
  static constexpr bool stored_inline = detail::task_fits_inline<std::decay_t<F>>;

  task() noexcept = default;
  // NOLINTNEXTLINE(google-explicit-constructor): implicit, like std::function
  task(std::nullptr_t) noexcept {}

  // Wraps a callable (copied from an lvalue, moved from an rvalue). Throws what that copy or move
  // throws, or std::bad_alloc for a callable stored on the heap.
  template <class F>
  requires(!std::same_as<std::remove_cvref_t<F>, task> &&
           !std::same_as<std::remove_cvref_t<F>, std::nullptr_t> &&
           std::is_invocable_r_v<void, std::decay_t<F>&> &&
           std::is_constructible_v<std::decay_t<F>, F&&>)
      // NOLINTNEXTLINE(google-explicit-constructor,bugprone-forwarding-reference-overload)
      task(F&& f)
  noexcept(stored_inline<F>&& std::is_nothrow_constructible_v<std::decay_t<F>, F&&>)
      : task(std::in_place_type<std::decay_t<F>>, std::forward<F>(f)) {}

  // Builds a callable of type T from `args` in place.
  template <class T, class... Args>
  requires(std::is_invocable_r_v<void, T&>&& std::is_constructible_v<T, Args&&...>) explicit task(
      std::in_place_type_t<T> /*type*/,
      Args&&... args) noexcept(detail::task_fits_inline<T>&&
                                   std::is_nothrow_constructible_v<T, Args&&...>) {
    static_assert(std::is_object_v<T> && !std::is_const_v<T>,
                  "crew::task: the callable must be a non-const object type");
    if constexpr (detail::task_fits_inline<T>) {
      ops_ = detail::task_build<T>(storage(), nullptr, std::forward<Args>(args)...);
    } else {
      T* memory = detail::task_allocate<T>();
      try {
        ops_ = detail::task_build<T>(storage(), memory, std::forward<Args>(args)...);
      } catch (...) {
        detail::task_deallocate<T>(memory);
        throw;
      }
    }
  }

  task(task&& other) noexcept : ops_(other.ops_) {
    relocate_from(other);
    other.ops_ = &detail::empty_vtable;
  }

  task& operator=(task&& other) noexcept {
    if (this != &other) {
      reset();
      ops_ = other.ops_;
      relocate_from(other);
      other.ops_ = &detail::empty_vtable;
    }
    return *this;
  }

  task(const task&) = delete;
  task& operator=(const task&) = delete;

  ~task() { reset(); }

  // Calls the callable; throws std::bad_function_call when empty, otherwise what it throws.
  void operator()() {
    if (ops_->loan) [[unlikely]] {
      task built(std::move(*this));  // a loan (only ever seen by an on_drop handler): build it
      *this = std::move(built);
    }
    ops_->call(storage());
  }

  explicit operator bool() const noexcept { return ops_ != &detail::empty_vtable; }

  friend void swap(task& a, task& b) noexcept {
    task t(std::move(a));
    a = std::move(b);
    b = std::move(t);
  }

 private:
  friend struct task_access;

  // Adopts `other`'s callable (ops_ already holds other's table).
  void relocate_from(task& other) noexcept {
    if (ops_->relocate == nullptr) {
      std::memcpy(storage(), other.storage(), inline_size);
    } else {
      ops_ = ops_->relocate(storage(), other.storage());
    }
  }

  void reset() noexcept {
    if (ops_->destroy != nullptr) ops_->destroy(storage());
    ops_ = &detail::empty_vtable;
  }

  void* storage() noexcept { return static_cast<void*>(&buf_); }

  alignas(inline_align) unsigned char buf_[inline_size]{};
  const detail::task_vtable* ops_ = &detail::empty_vtable;
};

static_assert(task::inline_size >= 48, "crew::task: the contract promises 48 inline bytes");
static_assert(sizeof(task) == 64, "crew::task is meant to be one cache line");
static_assert(std::is_nothrow_move_constructible_v<task> && std::is_nothrow_move_assignable_v<task>,
              "crew::task: moves must never throw (the pool moves jobs in noexcept paths)");

// What the pools need of a task beyond its public interface.
struct task_access {
  // Runs the task once and leaves it empty (the callable is destroyed also when it throws).
  static void consume(task& t) {
    const detail::task_vtable* ops = t.ops_;
    if (ops->loan) [[unlikely]] {
      t();
      t.reset();
      return;
    }
    t.ops_ = &detail::empty_vtable;
    ops->consume(t.storage());
  }
  // A task that borrows `loan` (see detail/task_erasure.hpp).
  template <class Loan>
  static task borrowing(Loan& loan) noexcept {
    task t;
    ::new (t.storage()) Loan*(&loan);
    t.ops_ = &Loan::vtable;
    return t;
  }
};

// A submit's status and, when the task was accepted (or dropped), the future of its result.
template <class R>
struct submitted {
  submit_status status;
  std::future<R> result;  // valid unless the submit was refused
};

namespace detail {

// The task_pool's handler: one indirect call per task (the task's own).
struct task_runner {
  void operator()(task&& t) const { task_access::consume(t); }
};

// The callable submit_task builds: f and the promise of its result. Destroyed without having
// run (an abort's hand-back, then destroyed), the promise is broken.
template <class F, class R>
class promise_call {
 public:
  template <class G>
  promise_call(G&& f, std::promise<R>&& p) noexcept(std::is_nothrow_constructible_v<F, G&&>)
      : f_(std::in_place, std::forward<G>(f)), promise_(std::move(p)) {}
  // Runs f once and sets the result after destroying f (so a ready future means the captured
  // state is gone); a second call throws std::future_error (promise_already_satisfied).
  void operator()() {
    if (!f_) throw std::future_error(std::future_errc::promise_already_satisfied);
    try {
      if constexpr (std::is_void_v<R>) {
        std::invoke(*f_);
        f_.reset();
        promise_.set_value();
      } else {
        R value = std::invoke(*f_);
        f_.reset();
        promise_.set_value(std::forward<R>(value));
      }
    } catch (...) {
      f_.reset();
      promise_.set_exception(std::current_exception());
    }
  }

 private:
  std::optional<F> f_;
  std::promise<R> promise_;
};

// Submits a callable of type T built from `args` through `submit(task&&)`. When building T
// cannot throw, the pool receives a loan and T is built only if the submit is accepted or
// dropped: a refused submit leaves `args` untouched. Otherwise T is built first (its exception
// reaches the caller, nothing is submitted), so a refused submit has consumed `args`. Returns the
// status and whether T was built (then T's destructor has the last word on it).
template <class T, class Submit, class... Args>
std::pair<submit_status, bool> submit_built(Submit&& submit, Args&&... args) {
  if constexpr (std::is_nothrow_constructible_v<T, Args&&...>) {
    task_loan<T, Args...> loan(std::forward<Args>(args)...);
    const submit_status s = submit(task_access::borrowing(loan));
    return {s, loan.consumed()};
  } else {
    const submit_status s = submit(task(std::in_place_type<T>, std::forward<Args>(args)...));
    return {s, true};
  }
}

template <class F>
concept closure =
    !std::same_as<std::remove_cvref_t<F>, task> && std::is_invocable_r_v<void, std::decay_t<F>&> &&
    std::is_constructible_v<std::decay_t<F>, F&&>;

}  // namespace detail

// A worker_pool of tasks: every worker_pool member, option and guarantee (the task overloads are
// worker_pool's own), plus closure overloads of the submit forms and submit_task. Thread safety:
// as worker_pool's (every submit form is thread-safe, also from the pool's own workers).
//
// Closures: submit(f), try_submit(f), submit(f, token), submit_for(f, d), submit_until(f, t)
// wrap f into a task and submit it as worker_pool's submits do; a closure whose decayed type
// task::stored_inline allows costs no allocation. A refused submit leaves f untouched, except
// when building f's copy cannot be done without a possible exception (an rvalue whose move
// constructor may throw, an lvalue whose copy constructor may): then the task is built first,
// and a refusal destroys the built copy (an lvalue is still untouched; an rvalue has been moved
// from). A closure's exception goes to options.on_error and counts in stats().failed.
class task_pool : public worker_pool<task, detail::task_runner> {
  using base = worker_pool<task, detail::task_runner>;

 public:
  using options_type = pool_options<task>;

  // Builds the pool from options alone; throws what worker_pool's constructor throws.
  explicit task_pool(options_type options = {}) : base(detail::task_runner{}, std::move(options)) {}

  using base::submit;
  using base::submit_for;
  using base::submit_until;
  using base::try_submit;

  // As worker_pool::submit(Job&&) (overflow policy, statuses), for a closure.
  template <detail::closure F>
  submit_status submit(F&& f) {
    return submit_closure([this](task&& t) { return base::submit(std::move(t)); },
                          std::forward<F>(f));
  }
  // As worker_pool::try_submit, for a closure.
  template <detail::closure F>
  submit_status try_submit(F&& f) {
    return submit_closure([this](task&& t) { return base::try_submit(std::move(t)); },
                          std::forward<F>(f));
  }
  // As worker_pool::submit(Job&&, std::stop_token), for a closure.
  template <detail::closure F>
  submit_status submit(F&& f, std::stop_token token) {
    return submit_closure([&](task&& t) { return base::submit(std::move(t), std::move(token)); },
                          std::forward<F>(f));
  }
  // As worker_pool::submit_for, for a closure.
  template <detail::closure F, class Rep, class Period>
  submit_status submit_for(F&& f, const std::chrono::duration<Rep, Period>& timeout) {
    return submit_closure([&](task&& t) { return base::submit_for(std::move(t), timeout); },
                          std::forward<F>(f));
  }
  // As worker_pool::submit_until, for a closure.
  template <detail::closure F, class Clock, class Duration>
  submit_status submit_until(F&& f, const std::chrono::time_point<Clock, Duration>& deadline) {
    return submit_closure([&](task&& t) { return base::submit_until(std::move(t), deadline); },
                          std::forward<F>(f));
  }

  // Submits f() under options.on_full, as submit(f). `result` is the future of f's value or
  // exception (f's exception goes there, not to on_error); it is valid when the status is
  // accepted or dropped (a dropped or handed-back task destroyed unrun breaks its promise:
  // std::future_error with broken_promise), and not valid when the submit was refused, which
  // leaves f untouched (with the exception described on the class). Allocates what std::promise
  // allocates (libstdc++: its shared state and its result, two blocks), plus one block for a
  // callable too large to be stored inline beside its promise (24 bytes). Thread-safe.
  template <class F>
  requires std::invocable < std::decay_t<F>
  & > &&std::is_constructible_v<std::decay_t<F>, F&&>
          submitted<std::invoke_result_t<std::decay_t<F>&>> submit_task(F&& f) {
    using R = std::invoke_result_t<std::decay_t<F>&>;
    std::promise<R> promise;
    std::future<R> result = promise.get_future();
    const auto [status, built] = detail::submit_built<detail::promise_call<std::decay_t<F>, R>>(
        [this](task&& t) { return base::submit(std::move(t)); }, std::forward<F>(f),
        std::move(promise));
    if (status == submit_status::accepted || status == submit_status::dropped) {
      return {status, std::move(result)};
    }
    return {status, std::future<R>{}};
  }

  // Whether the calling thread is one of this pool's workers (where wait_idle, shutdown and
  // task_group::wait throw std::logic_error). Thread-safe.
  bool in_worker() const noexcept {
    return detail::pool_runtime<task>::in_worker(static_cast<const base*>(this));
  }

 private:
  template <class Submit, class F>
  static submit_status submit_closure(Submit&& submit, F&& f) {
    return detail::submit_built<std::decay_t<F>>(submit, std::forward<F>(f)).first;
  }
};

// ---- task_group -------------------------------------------------------------------------------

// A fail-fast group of tasks on a task_pool (Go's errgroup with its context built in).
//
//   run(f)     submits f (callable as f() or f(std::stop_token)) under the pool's overflow policy
//              and returns the status; cancelled at once, without submitting, when the group's
//              stop has been requested.
//   a task     that starts after the group's stop was requested is skipped: not run, counted by
//              skipped(); one that throws records its exception (failed() counts them all; the
//              first is kept) and requests the group's stop, which running tasks see through the
//              token they were given (the group's: get_token()).
//   wait()     blocks until every task of the group the pool accepted has run or been skipped,
//              then rethrows the first exception, if any, and ends the round: the kept exception
//              is cleared and a stopped group gets a fresh stop state, so the group can be used
//              again (tokens handed out before keep their state). failed() and skipped() count
//              over the group's whole life.
//
// A task handed back by the pool's abort (shutdown_report::handed_back) still belongs to the group
// until it is run or destroyed; destroyed unrun, it counts as skipped. A group's task costs no
// allocation when its closure fits in a task beside the group's pointer and an engaged flag
// (sizeof <= task::inline_size - 16 = 40 bytes for 8-byte alignment, with a noexcept move; static
// member task_group::stored_inline<F> says); it is never moved from when run() refuses it (with
// the exception task_pool describes).
//
// Counting protocol (one 32-bit word, pending_ = 2 x outstanding tasks + a "someone sleeps" bit).
// A task is outstanding from the moment run() decides to submit it until it has finished (run,
// skipped, or refused by the pool). run() adds 2 before the submit; the task subtracts 2 as its
// very last access to the group; run() subtracts 2 itself when the pool refused the task (it was
// never built, so nobody else will). wait() loads the word; while the count is not 0 it sets the
// bit (a CAS from the value it saw) and sleeps on the futex while the word holds that value. The
// subtraction that takes the count from 1 to 0 with the bit set wakes the sleepers.
//   - No lost wake-up: every step is an RMW on the same word, and the kernel compares the word
//     before sleeping. If the bit was set before the last subtraction (in the word's modification
//     order), that subtraction sees it and wakes; if after, the CAS expected a non-zero count
//     that is gone, fails, and the waiter re-reads 0. No fence or second variable is involved.
//   - No early return: the count cannot reach 0 while a task is outstanding, because each task's
//     +2 precedes its own -2 (run() adds before submitting; the task runs only after the submit
//     published it), and the +2 of a task submitted by a running task of the group precedes that
//     parent's -2 in the parent's own thread.
//   - No use after free: after its subtraction a task touches nothing of the group but the
//     futex word's address (a wake system call reads no memory), so a waiter that returns and
//     destroys the group at once is safe.
//   - Visibility: everything a task did (its exception stored in first_, the counters) precedes
//     its release subtraction; subtractions are RMWs, so they extend one release sequence, and
//     the waiter's acquire load that reads 0 synchronises with every one of them.
//   - Re-use: wait() resets the round only after the count is 0; by the contract no run() from
//     outside the group's tasks races it, and no task of the group can be running then (it would
//     hold the count above 0), so the reset races no reader of the stop state.
//   Checked exhaustively for small cases (2-3 tasks, a nested run, 1-2 waiters, spurious
//   wake-ups) by tests/model/group.pml, with three mutants that must fail.
//
// Thread safety: run(), get_token(), request_stop(), failed() and skipped() may be called from
// any thread at once, including the group's own tasks and the pool's workers. wait() may be
// called from any thread that is not a worker of the group's pool (there it throws
// std::logic_error: it would wait for itself), by one thread at a time, and not concurrently with
// run(), get_token() or request_stop() from outside the group's own tasks (the end of a round
// replaces the stop state). Everything a task did is visible to the thread returning from
// wait(). The group must outlive its tasks: destroy it only after wait() returned (its destructor
// does not wait), and the pool must outlive the group's use.
class task_group {
 public:
  explicit task_group(task_pool& pool) : pool_(pool) {}

  task_group(const task_group&) = delete;
  task_group& operator=(const task_group&) = delete;
  task_group(task_group&&) = delete;
  task_group& operator=(task_group&&) = delete;
  ~task_group() = default;

  // Submits f as a task of the group (see the class comment). Thread-safe.
  template <class F>
  requires(std::is_invocable_v<std::decay_t<F>&, std::stop_token> ||
           std::is_invocable_v<std::decay_t<F>&>) &&
      std::is_constructible_v<std::decay_t<F>, F&&> submit_status run(F&& f) {
    if (stop_.stop_requested()) return submit_status::cancelled;
    // relaxed: only the RMW's place in pending_'s modification order matters (the argument
    // above); the submit that follows publishes the task, and with it this increment.
    pending_.fetch_add(2, std::memory_order_relaxed);
    const auto [status, built] = detail::submit_built<member<std::decay_t<F>>>(
        [this](task&& t) { return pool_.submit(std::move(t)); }, this, std::forward<F>(f));
    if (!built) finish();
    return status;
  }

  // Waits for the round's tasks, rethrows its first exception, ends the round (see the class
  // comment). Throws std::logic_error, changing nothing, from a worker of the group's pool.
  void wait() {
    if (pool_.in_worker()) {
      throw std::logic_error(
          "crew::task_group::wait called from one of the pool's own workers: it would wait for "
          "itself");
    }
    // acquire: the load that reads a count of 0 synchronises with every task's release
    // subtraction (see the protocol).
    std::uint32_t v = pending_.load(std::memory_order_acquire);
    while ((v >> 1) != 0) {
      if ((v & 1) == 0) {
        // acquire, like the load above: a failed CAS is the loop's next read of the word.
        if (!pending_.compare_exchange_weak(v, v | 1, std::memory_order_acquire,
                                            std::memory_order_acquire)) {
          continue;
        }
        v |= 1;
      }
      detail::wait(pending_, v);
      v = pending_.load(std::memory_order_acquire);
    }
    // The sleepers' bit is left only when no task is outstanding; clear it so the next round's
    // last task skips its wake-up call (a failure means a new round began: it keeps the bit).
    if (v == 1) (void)pending_.compare_exchange_strong(v, 0, std::memory_order_relaxed);
    std::exception_ptr first = std::move(first_);
    first_ = nullptr;
    // relaxed: no task is running (pending_ is 0) and no run() races this (the contract).
    error_taken_.store(false, std::memory_order_relaxed);
    if (stop_.stop_requested()) stop_ = std::stop_source{};
    if (first) std::rethrow_exception(first);
  }

  // Tasks that threw, over the group's life. Thread-safe (a count being updated).
  std::size_t failed() const noexcept { return failed_.load(std::memory_order_relaxed); }
  // Tasks not run because the group's stop had been requested when they would have started (or
  // destroyed unrun), over the group's life. Thread-safe (a count being updated).
  std::size_t skipped() const noexcept { return skipped_.load(std::memory_order_relaxed); }
  // The token the group's tasks see. Thread-safe (see wait()).
  std::stop_token get_token() const noexcept { return stop_.get_token(); }
  // Requests the group's stop: later run() calls return cancelled, tasks not started yet are
  // skipped, running ones see it through their token. Thread-safe (see wait()).
  void request_stop() noexcept { (void)stop_.request_stop(); }

 private:
  // The callable of one group task: the group (null once run or moved from) and f, destroyed
  // before the task counts itself out (so wait() returns after the captured state is gone).
  template <class F>
  class member {
   public:
    template <class G>
    member(task_group* g, G&& f) noexcept(std::is_nothrow_constructible_v<F, G&&>)
        : group_(g), f_(std::in_place, std::forward<G>(f)) {}
    // As F's: a throwing move puts the task on the heap, where it is never moved again.
    // NOLINTNEXTLINE(performance-noexcept-move-constructor)
    member(member&& o) noexcept(std::is_nothrow_move_constructible_v<F>)
        : group_(std::exchange(o.group_, nullptr)), f_(std::move(o.f_)) {}
    member(const member&) = delete;
    member& operator=(const member&) = delete;
    member& operator=(member&&) = delete;
    ~member() {
      if (task_group* g = std::exchange(group_, nullptr)) {  // destroyed unrun
        f_.reset();
        g->skipped_.fetch_add(1, std::memory_order_relaxed);  // relaxed: see execute
        g->finish();
      }
    }
    void operator()() {
      task_group* g = std::exchange(group_, nullptr);
      if (g == nullptr) return;  // already run
      g->execute(*f_);
      f_.reset();
      g->finish();
    }

   private:
    task_group* group_;
    std::optional<F> f_;
  };

 public:
  // Whether a group task of closure type F is stored inside its task (no allocation).
  template <class F>
  static constexpr bool stored_inline = task::stored_inline<member<std::decay_t<F>>>;

 private:
  // Runs f with the group's token, or skips it when the group's stop was requested; records an
  // exception. The caller then destroys f and calls finish().
  template <class F>
  void execute(F& f) noexcept {
    if (stop_.stop_requested()) {
      // relaxed: a statistic, published to wait() by the subtraction in finish().
      skipped_.fetch_add(1, std::memory_order_relaxed);
      return;
    }
    try {
      if constexpr (std::is_invocable_v<F&, std::stop_token>) {
        std::invoke(f, stop_.get_token());
      } else {
        std::invoke(f);
      }
    } catch (...) {
      // relaxed: a statistic, published as skipped_ is.
      failed_.fetch_add(1, std::memory_order_relaxed);
      // relaxed: the RMW alone elects one writer of first_; the write reaches wait() through
      // this task's release subtraction.
      if (!error_taken_.exchange(true, std::memory_order_relaxed)) {
        first_ = std::current_exception();
      }
      (void)stop_.request_stop();
    }
  }

  // The task's last access to the group: after the subtraction, wait() may return and the group
  // may be destroyed, so only the word's address is used after it (the wake system call).
  // release: publishes the task's effects to wait() (see the protocol).
  void finish() noexcept {
    std::atomic<std::uint32_t>* word = &pending_;
    if (word->fetch_sub(2, std::memory_order_release) == 3) detail::wake_all(*word);
  }

  task_pool& pool_;
  std::atomic<std::uint32_t> pending_{0};  // 2 x outstanding tasks + the sleepers' bit
  std::atomic<std::size_t> failed_{0};
  std::atomic<std::size_t> skipped_{0};
  std::atomic<bool> error_taken_{false};
  std::exception_ptr first_;
  std::stop_source stop_;
};

}  // namespace crew
