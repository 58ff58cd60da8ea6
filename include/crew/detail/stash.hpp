#pragma once

// crew::detail::stash<T, N>: a worker's claimed-but-unstarted jobs, which other workers may
// steal. This is how crew claims jobs in batches (fast for trivial jobs) and stays
// work-conserving (DESIGN.md, "Work conservation and honest refusals"): a worker moves a batch
// out of the shared ring at claim time, so the batch holds no ring slot, and keeps the jobs it
// has not started here, where an idle worker can take them.
//
// Protocol (after tokio's local run queue, simplified: only the owner fills, and only the
// owner's pops and the thieves' claims remove):
//
//   tail_   (32 bits, written by the owner only): one past the last filled slot.
//   head_   (64 bits: steal head << 32 | real head): `real` is the next job to hand out; `steal`
//           equals `real` except while a thief copies jobs out: [steal, real) are slots a thief
//           has claimed and is still reading.
//
//   Owner pop:     CAS head (real -> real + 1; steal follows when no steal is in progress), then
//                  move the job out of slot `real`. The CAS decides: a thief and the owner never
//                  get the same job.
//   Owner fill:    only when its stash is empty (real == tail); writes slots [tail, tail + k)
//                  with k <= N - (tail - steal) (never over a slot a thief still reads), then
//                  publishes tail + k (release).
//   Thief steal:   read head; give up if a steal is in progress (steal != real); read tail
//                  (acquire); claim ceil(available / 2) with one CAS that advances real but keeps
//                  steal (marking the steal in progress); move the jobs out; then CAS steal up to
//                  the current real (release: its reads of the slots happen before the owner's
//                  next fill, which reads steal with acquire).
//   Take all:      a thief's claim of everything available (shutdown hand-back).
//
// Invariants (checked exhaustively for small cases by tests/model/stash.pml):
//   - steal <= real <= tail, tail - steal <= N (32-bit wrapping arithmetic);
//   - each job put in the stash is taken exactly once: by one owner pop or one thief claim;
//   - a slot is written by the owner only when no thief reads it;
//   - ceil(available / 2) >= 1 whenever a job is available, so one job behind a long one is
//     always stealable (the point of the whole exercise).
//
// Parking: empty() and steal_in_progress() are what a worker re-checks after announcing that it
// is about to park; the owner, after publishing a fill, issues a seq_cst fence and then reads the
// parked count (detail::worker_parking): the Dekker pair that keeps a stashed job from waiting
// while a worker sleeps.

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <new>
#include <thread>
#include <type_traits>
#include <utility>

#include "../bounded_queue.hpp"

namespace crew::detail {

template <class T, std::uint32_t N>
class stash {
  static_assert(N >= 2 && (N & (N - 1)) == 0, "a stash holds a power of two of at least 2 jobs");
  static_assert(std::is_nothrow_move_constructible_v<T> && std::is_nothrow_destructible_v<T>,
                "stashed jobs are moved between threads after they are claimed: that must not "
                "fail");

 public:
  static constexpr std::uint32_t capacity = N;

  // The cells are raw storage: a job lives in one only between its fill and its pop or steal.
  // NOLINTNEXTLINE(cppcoreguidelines-pro-type-member-init)
  stash() = default;
  stash(const stash&) = delete;
  stash& operator=(const stash&) = delete;
  stash(stash&&) = delete;
  stash& operator=(stash&&) = delete;
  // Destroys the jobs still inside. No other call may run concurrently.
  ~stash() {
    const std::uint64_t h = head_.load(std::memory_order_relaxed);
    const std::uint32_t t = tail_.load(std::memory_order_relaxed);
    for (std::uint32_t i = real_of(h); i != t; ++i) at(i)->~T();
  }

  // ---- owner only -------------------------------------------------------------------------

  // How many jobs the owner may fill now: 0 unless the stash is empty; otherwise the slots no
  // thief is still reading. Owner only.
  std::uint32_t fill_room() const noexcept {
    // acquire: pairs with a thief's release of the steal head, so its reads of the slots we
    // are about to overwrite happened before.
    const std::uint64_t h = head_.load(std::memory_order_acquire);
    const std::uint32_t t = tail_.load(std::memory_order_relaxed);  // our own writes
    if (real_of(h) != t) return 0;
    return N - (t - steal_of(h));
  }

  // Fills the stash: `source(put)` calls `put(T&&)` at most fill_room() times (nothrow) and
  // returns how many it put; the jobs are then published. The caller then runs the parking
  // handshake (a seq_cst fence and a read of the parked count). Owner only.
  template <class Source>
  std::uint32_t fill(Source&& source) noexcept {
    const std::uint32_t t = tail_.load(std::memory_order_relaxed);
    std::uint32_t k = 0;
    auto put = [this, t, &k](T&& job) noexcept {
      ::new (static_cast<void*>(at(t + k))) T(std::move(job));
      ++k;
    };
    const std::uint32_t n = source(put);
    (void)n;
    // (1) release publishes the jobs to thieves that acquire the tail.
    if (k != 0) tail_.store(t + k, std::memory_order_release);
    return k;
  }

  // Takes the oldest job and hands it to `use(T&&)` (which may throw: the job has left the
  // stash by then); false when the stash is empty. Owner only.
  template <class Use>
  bool pop(Use&& use) {
    std::uint64_t h = head_.load(std::memory_order_relaxed);
    const std::uint32_t t = tail_.load(std::memory_order_relaxed);  // our own writes
    std::uint32_t real = 0;
    for (;;) {
      real = real_of(h);
      if (real == t) return false;
      const std::uint32_t steal = steal_of(h);
      const std::uint64_t next = pack(steal == real ? real + 1 : steal, real + 1);
      // seq_cst RMW (a lock-prefixed instruction on x86 whatever the order): the CAS against
      // the thieves' claims decides who takes slot `real`. We wrote the slot ourselves, so no
      // acquire is needed for its contents; relaxed on failure (nothing claimed).
      if (head_.compare_exchange_weak(h, next, std::memory_order_seq_cst,
                                      std::memory_order_relaxed)) {
        break;
      }
    }
    T* slot = at(real);
    T job(std::move(*slot));
    slot->~T();
    use(std::move(job));
    return true;
  }

  // ---- any thread --------------------------------------------------------------------------

  // Claims half (rounded up) of the available jobs, or all of them when `all`, at most `limit`,
  // and hands each to `sink(T&&)` (nothrow) in FIFO order. Returns how many; 0 when the stash
  // is empty or another steal is in progress (then `busy` is set). Any thread but the owner.
  // `left` receives how many jobs the claim left behind in this stash.
  template <class Sink>
  std::uint32_t steal(Sink&& sink, bool all, std::uint32_t limit, bool& busy,
                      std::uint32_t& left) noexcept {
    busy = false;
    left = 0;
    // acquire: see the latest claims before reading the tail.
    std::uint64_t h = head_.load(std::memory_order_acquire);
    std::uint32_t real = 0;
    std::uint32_t n = 0;
    for (;;) {
      real = real_of(h);
      if (steal_of(h) != real) {
        busy = true;
        return 0;
      }
      // (1) acquire pairs with the owner's release of the tail: the filled slots are visible.
      const std::uint32_t available = tail_.load(std::memory_order_acquire) - real;
      if (available == 0) return 0;
      n = all ? available : available - available / 2;
      if (n > limit) n = limit;
      if (n == 0) return 0;
      // Advance real, keep steal: the slots [steal, real + n) stay reserved while we read.
      if (head_.compare_exchange_weak(h, pack(steal_of(h), real + n), std::memory_order_seq_cst,
                                      std::memory_order_acquire)) {
        left = available - n;
        break;
      }
    }
    for (std::uint32_t i = 0; i < n; ++i) {
      T* job = at(real + i);
      sink(std::move(*job));
      job->~T();
    }
    // (2) release: our reads of the slots happen before the owner's next fill_room() sees the
    // steal head move. The owner may have popped meanwhile (real moved on): steal catches up.
    h = head_.load(std::memory_order_relaxed);
    while (!head_.compare_exchange_weak(h, pack(real_of(h), real_of(h)), std::memory_order_seq_cst,
                                        std::memory_order_relaxed)) {
    }
    return n;
  }

  // A shutdown's collection: steals every job, `reserve(N)` (may throw, before anything is
  // taken) and then `sink(T&&)` (nothrow) for each run of at most N, waiting (yielding) while a
  // thief is still copying a run out (that run lands in the thief's stash). Returns how many.
  // Any thread but the owner while the owner may still pop.
  template <class Reserve, class Sink>
  std::uint32_t take_all(Reserve&& reserve, Sink&& sink) {
    std::uint32_t taken = 0;
    for (;;) {
      reserve(N);
      bool busy = false;
      std::uint32_t left = 0;
      const std::uint32_t n = steal(sink, true, N, busy, left);
      taken += n;
      if (n == 0 && !busy) return taken;
      if (busy) std::this_thread::yield();
    }
  }

  // Whether no job is available and no steal is copying jobs out (a steal in progress means
  // jobs in flight to another stash). seq_cst loads: the parker's half of the handshake.
  bool idle() const noexcept {
    const std::uint64_t h = head_.load(std::memory_order_seq_cst);
    return steal_of(h) == real_of(h) && real_of(h) == tail_.load(std::memory_order_seq_cst);
  }

  // Jobs available to take (a racy snapshot). Thread-safe.
  std::uint32_t size_approx() const noexcept {
    const std::uint64_t h = head_.load(std::memory_order_relaxed);
    return tail_.load(std::memory_order_relaxed) - real_of(h);
  }

 private:
  static constexpr std::uint32_t real_of(std::uint64_t h) noexcept {
    return static_cast<std::uint32_t>(h);
  }
  static constexpr std::uint32_t steal_of(std::uint64_t h) noexcept {
    return static_cast<std::uint32_t>(h >> 32);
  }
  static constexpr std::uint64_t pack(std::uint32_t steal, std::uint32_t real) noexcept {
    return (std::uint64_t{steal} << 32) | real;
  }
  T* at(std::uint32_t i) noexcept {
    // The index is masked into range.
    // NOLINTNEXTLINE(cppcoreguidelines-pro-bounds-constant-array-index)
    return std::launder(reinterpret_cast<T*>(storage_[i & (N - 1)].bytes));
  }

  struct cell {
    alignas(T) unsigned char bytes[sizeof(T)];
  };

  // Claims: written by the owner per pop and by thieves; its own line.
  alignas(cache_line_size) std::atomic<std::uint64_t> head_{0};
  // Fills: written by the owner only.
  alignas(cache_line_size) std::atomic<std::uint32_t> tail_{0};
  alignas(cache_line_size) cell storage_[N];
};

}  // namespace crew::detail
