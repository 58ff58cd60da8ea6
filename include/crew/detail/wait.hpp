#pragma once

// Blocking on a 32-bit atomic word, with an optional deadline: the kernel half of crew's
// parking protocol (the eventcount in worker_pool.hpp is the user-space half).
//
// C++20's std::atomic<T>::wait has no timeout, and crew needs timed waits (submit_for,
// shutdown_until), so on Linux this calls futex(2) directly on the word; elsewhere it falls
// back to polling with short sleeps (correct, slower to wake). Callers keep their own count of
// sleepers and only call wake_* when someone sleeps, so the uncontended paths make no system
// call at all.

#include <atomic>
#include <chrono>
#include <climits>
#include <cstdint>
#include <thread>
#include <type_traits>

#if defined(__linux__)
#include <linux/futex.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <ctime>
#endif

namespace crew::detail {

static_assert(sizeof(std::atomic<std::uint32_t>) == sizeof(std::uint32_t) &&
                  std::atomic<std::uint32_t>::is_always_lock_free,
              "the futex word must be a plain, lock-free 32-bit atomic");

using steady_time = std::chrono::steady_clock::time_point;

#if defined(__linux__)
inline long futex_call(std::atomic<std::uint32_t>& word, int op, std::uint32_t value,
                       const ::timespec* timeout) noexcept {
  // The kernel only reads the word atomically; the atomic object has the layout of its value.
  // syscall() is variadic: that is the futex ABI.
  // NOLINTNEXTLINE(cppcoreguidelines-pro-type-vararg)
  return ::syscall(SYS_futex, reinterpret_cast<std::uint32_t*>(&word), op | FUTEX_PRIVATE_FLAG,
                   value, timeout, nullptr, 0);
}
#endif

// Blocks while `word` holds `expected`, until woken, or until `deadline` (steady clock) has
// passed. Returns false only when the deadline passed; true otherwise (woken, value changed, or
// spurious wake-up: callers re-check their condition in a loop). Thread-safe.
inline bool wait_until(std::atomic<std::uint32_t>& word, std::uint32_t expected,
                       steady_time deadline) noexcept {
#if defined(__linux__)
  for (;;) {
    // seq_cst: callers read `expected` as part of a Dekker handshake; re-reading it here must
    // not be reordered before their own check.
    if (word.load(std::memory_order_seq_cst) != expected) return true;
    const auto now = std::chrono::steady_clock::now();
    if (deadline != steady_time::max() && now >= deadline) return false;
    ::timespec ts{};
    const ::timespec* timeout = nullptr;
    if (deadline != steady_time::max()) {
      const auto left = std::chrono::duration_cast<std::chrono::nanoseconds>(deadline - now);
      const auto secs = std::chrono::duration_cast<std::chrono::seconds>(left);
      ts.tv_sec = secs.count() > INT_MAX ? INT_MAX : static_cast<time_t>(secs.count());
      ts.tv_nsec = static_cast<long>((left - secs).count());
      timeout = &ts;
    }
    // FUTEX_WAIT's timeout is relative and measured on CLOCK_MONOTONIC, as steady_clock is.
    const long r = futex_call(word, FUTEX_WAIT, expected, timeout);
    if (r == 0) return true;
    if (errno == EAGAIN) return true;  // the word changed before we slept
    if (errno == ETIMEDOUT) return std::chrono::steady_clock::now() < deadline;
    // EINTR: loop and re-check.
  }
#else
  for (unsigned spins = 0;; ++spins) {
    if (word.load(std::memory_order_seq_cst) != expected) return true;
    if (deadline != steady_time::max() && std::chrono::steady_clock::now() >= deadline)
      return false;
    if (spins < 64) {
      std::this_thread::yield();
    } else {
      std::this_thread::sleep_for(std::chrono::microseconds(50));
    }
  }
#endif
}

// Blocks while `word` holds `expected` (no deadline). Thread-safe.
inline void wait(std::atomic<std::uint32_t>& word, std::uint32_t expected) noexcept {
  (void)wait_until(word, expected, steady_time::max());
}

// Wakes up to `count` threads blocked in wait*/wait_until on `word`. Thread-safe.
inline void wake(std::atomic<std::uint32_t>& word, std::uint32_t count) noexcept {
#if defined(__linux__)
  const auto n =
      count > static_cast<std::uint32_t>(INT_MAX) ? static_cast<std::uint32_t>(INT_MAX) : count;
  (void)futex_call(word, FUTEX_WAKE, n, nullptr);
#else
  (void)word;
  (void)count;
#endif
}

inline void wake_all(std::atomic<std::uint32_t>& word) noexcept { wake(word, UINT32_MAX); }

// Bumps the epoch word and wakes up to `count` of its sleepers. seq_cst: the bump is the
// waker's half of the Dekker handshake described in worker_pool.hpp.
inline void notify(std::atomic<std::uint32_t>& epoch, std::uint32_t count) noexcept {
  epoch.fetch_add(1, std::memory_order_seq_cst);
  wake(epoch, count);
}

// A CPU hint for spin loops.
inline void cpu_relax() noexcept {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  asm volatile("yield" ::: "memory");
#else
  std::this_thread::yield();
#endif
}

// Polls `ready` for up to spin_for (or until `deadline`, if sooner) with a run of pauses between
// polls and a yield every few polls; true as soon as it holds. Workers poll for work before
// parking, blocked producers for room before sleeping. Spinning about as long as a park plus a
// wake-up costs keeps a thread awake through the short gaps of a steady stream: measured here
// (2 cores, trivial jobs, medians of 10 interleaved runs), a worker that spun ~250 pauses parked
// and was woken ~3,000 times per million jobs from one producer, this one ~200-800, at 1.7x the
// throughput. The yield matters on a machine with fewer cores than threads: the spinning thread
// gives its core to the thread it is waiting for. An idle thread pays this once per idle
// period, then sleeps. `every_yield` runs at each yield (a costlier check, e.g. other workers'
// stashes); it returns true to end the poll with success too.
inline constexpr std::chrono::nanoseconds spin_for{20'000};
inline constexpr int spin_pauses_per_poll = 32;
inline constexpr unsigned spin_polls_per_yield = 8;

// noexcept when the predicates are (an exception from one reaches the caller).
template <class Ready, class AtYield>
bool poll_briefly(Ready ready, AtYield every_yield,
                  steady_time deadline) noexcept(noexcept(ready()) && noexcept(every_yield())) {
  const steady_time now = std::chrono::steady_clock::now();
  if (deadline <= now) return ready();  // a passed deadline: look once, never wait
  const steady_time until = deadline < now + spin_for ? deadline : now + spin_for;
  for (unsigned polls = 1;; ++polls) {
    for (int i = 0; i < spin_pauses_per_poll; ++i) cpu_relax();
    if (ready()) return true;
    if (polls % spin_polls_per_yield == 0) {
      std::this_thread::yield();
      if (every_yield()) return true;
      if (std::chrono::steady_clock::now() >= until) return false;
    }
  }
}

template <class Ready>
bool poll_briefly(Ready ready, steady_time deadline) noexcept(noexcept(ready())) {
  return poll_briefly(
      ready, [] { return false; }, deadline);
}

// A deadline `d` from now on the steady clock (d <= 0: already passed), saturating at
// steady_time::max() (which wait_until treats as "no deadline").
template <class Rep, class Period>
steady_time deadline_after(const std::chrono::duration<Rep, Period>& d) noexcept {
  using namespace std::chrono;
  const auto now = steady_clock::now();
  // `!(d > 0)` rather than `d <= 0`: a NaN duration compares false both ways and must mean
  // "already passed", never reach the integer conversion below (undefined behaviour for NaN).
  if (!(d > d.zero())) return now - nanoseconds(1);
  if (duration_cast<duration<double>>(d).count() > 1e9) return steady_time::max();
  return now + ceil<steady_clock::duration>(d);
}

// Converts a deadline on any clock to the steady clock (once: a later jump of a wall clock is
// not followed), saturating at the ends.
template <class Clock, class Duration>
steady_time to_steady_deadline(const std::chrono::time_point<Clock, Duration>& tp) noexcept {
  using namespace std::chrono;
  if constexpr (std::is_same_v<Clock, steady_clock> &&
                std::is_same_v<Duration, steady_clock::duration>) {
    return tp;
  } else {
    // In double seconds, so that time_point::max() of a coarse duration cannot overflow.
    const duration<double> left =
        duration<double>(tp.time_since_epoch()) - duration<double>(Clock::now().time_since_epoch());
    return deadline_after(left);
  }
}

}  // namespace crew::detail
