#pragma once

// crew::detail::scheduler<T>: who may take which job. The shared bounded ring (crew's admission
// bound), one stealable stash per worker (detail/stash.hpp) and the parking of idle workers
// (detail/parking.hpp), composed into the two questions a pool asks: "put this job where a
// worker will find it" and "worker i: what do I run next?".
//
// Finding work (worker i, in this order):
//   1. its own stash (the jobs it claimed and has not started);
//   2. the ring: claim what is ready, up to stash_size jobs, with one head update (a trickle
//      claims one; a deep queue of trivial jobs a whole batch). The first job runs now, the
//      rest go to the stash at once, so the claim holds no ring slot (honest refusals), and when
//      a worker is parked it is woken to steal them (work conservation);
//   3. the other workers' stashes: steal half (rounded up) into its own, run the first.
// The ring comes before stealing so that workers of a busy pool do not fight over each other's
// stashes; a stashed job therefore waits at most for its owner's current job, and only while
// every other worker is busy with the ring.
//
// Why work conservation holds: a job is either in the ring (where every worker that looks for
// work finds it), or in a stash whose owner runs a job (then idle workers steal it: a spinning
// worker checks the stashes at every yield of its poll, and a parking worker re-checks them
// after announcing itself, while the owner reads the parked count after publishing its fill, the
// Dekker pair of detail/parking.hpp), or in flight between two of those places (a claim or a
// steal being copied, which counts as work for the parking re-check).

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "../bounded_queue.hpp"
#include "parking.hpp"
#include "stash.hpp"
#include "wait.hpp"

namespace crew::detail {

template <class T>
class scheduler {
 public:
  // Jobs a worker claims from the ring with one head update at most; its stash holds the rest.
  static constexpr std::uint32_t stash_size = 16;
  using stash_type = stash<T, stash_size>;

  // Throws std::invalid_argument naming `<owner>: options.queue_capacity` for a capacity the
  // ring cannot have (see bounded_queue's constructor).
  scheduler(std::size_t capacity, std::size_t workers, const char* owner) try
      : ring_(capacity),
        stashes_(std::make_unique<stash_type[]>(workers)),
        parking_(workers),
        workers_(workers) {
  } catch (const std::invalid_argument& e) {
    throw std::invalid_argument(std::string(owner) + ": options.queue_capacity: " + e.what());
  }

  // ---- producers --------------------------------------------------------------------------

  // Emplaces one job in the ring and wakes a parked worker; false when full or closed (`args`
  // untouched). The tail claim is a seq_cst RMW: the producer's half of the parking handshake.
  template <class... Args>
  bool push(Args&&... args) noexcept {
    if (!ring_.try_emplace(std::forward<Args>(args)...)) return false;
    (void)parking_.wake_one();
    return true;
  }

  // Moves up to `count` jobs from `first` into the ring with one tail claim; wakes one parked
  // worker per job pushed (up to the number parked). Returns how many were pushed.
  template <class It>
  std::size_t push_bulk(It first, std::size_t count) noexcept {
    const std::size_t n = ring_.try_push_bulk(first, count);
    if (n != 0) parking_.wake(n);
    return n;
  }

  // ---- workers ----------------------------------------------------------------------------

  // Finds the next job for worker `i` and hands it to `run(T&&)`; false when there is none
  // anywhere. `after_claim()` runs after a ring claim (for the producers' room handshake);
  // `stashed()` after a claim or a steal left jobs in worker i's stash, once they are published
  // and the parking handshake's fence is issued: between the claim and the publish those jobs
  // were in neither the ring nor a stash, invisible to has_work() and waiting(), so an elastic
  // pool's retiring worker may have missed them (the pool looks at its size again: see
  // pool_runtime::after_stash). Both run before `run`. Only worker i calls this for its i.
  template <class Run, class AfterClaim, class Stashed>
  bool run_next(std::size_t i, Run&& run, AfterClaim&& after_claim, Stashed&& stashed) {
    stash_type& own = stashes_[i];
    if (own.pop(run)) return true;
    if (claim_from_ring(own, run, after_claim, stashed)) return true;
    return steal_for(i, run, stashed);
  }

  // Polls briefly for work (the ring's front, and at each yield the stashes), then parks
  // worker i until woken or `deadline` (an elastic pool's idle timeout), unless `stop()` or work
  // shows up; `on_park(bool)` is told when the worker goes to sleep and when it wakes. Only
  // worker i calls this.
  template <class Stop, class OnPark>
  void idle(std::size_t i, Stop stop, OnPark on_park,
            steady_time deadline = steady_time::max()) noexcept {
    if (poll_briefly([this] { return ring_.front_ready(); },
                     [this, &stop] { return stop() || !stashes_idle(); }, deadline)) {
      return;
    }
    if (deadline <= std::chrono::steady_clock::now()) return;
    on_park(true);
    // seq_cst loads (size_approx, stashes_idle, and the caller's stop()): the parker's half of
    // the handshake with pushes, stash fills and shutdown.
    parking_.park(
        i, [this, &stop] { return stop() || ring_.size_approx() != 0 || !stashes_idle(); },
        deadline);
    on_park(false);
  }

  // ---- shutdown ---------------------------------------------------------------------------

  // Closes the ring (see bounded_queue::close): every later push fails. Thread-safe.
  void close() noexcept { (void)ring_.close(); }
  bool closed() const noexcept { return ring_.is_closed(); }

  // Whether nothing more will ever be run: the ring closed and drained, every stash idle (no
  // job, no steal in flight). Thread-safe.
  bool drained() const noexcept { return ring_.is_drained() && stashes_idle(); }

  // Moves every job still held (stashes first: they are older than the ring's) into `out`,
  // reserving before each claim so the moves cannot fail; may throw bad_alloc before taking
  // anything of a claim. Call after close(). Returns how many. Thread-safe against workers.
  std::size_t collect(std::vector<T>& out) {
    std::size_t taken = 0;
    // push_back cannot reallocate (reserved) and T's move is nothrow: the sink cannot throw.
    auto sink = [&](T&& job) noexcept { out.push_back(std::move(job)); };
    for (std::size_t i = 0; i < workers_; ++i) {
      taken += stashes_[i].take_all([&out](std::size_t n) { out.reserve(out.size() + n); }, sink);
    }
    for (;;) {
      out.reserve(out.size() + stash_size);
      auto batch = ring_.try_pop_batch(stash_size);
      if (batch.size() == 0) {
        if (ring_.is_drained()) break;
        std::this_thread::yield();  // a producer is still writing a claimed slot
        continue;
      }
      taken += batch.size();
      while (!batch.empty()) out.push_back(batch.pop());
    }
    return taken;
  }

  // Wakes every worker (shutdown: they re-check the phase). Thread-safe.
  void wake_all() noexcept { parking_.wake_all(); }

  // Jobs waiting to start, approximately: the ring's and the stashes' (relaxed hints, O(workers);
  // for an elastic pool's growth decisions, which tolerate a stale count). Thread-safe.
  std::size_t waiting() const noexcept {
    std::size_t n = ring_.size_approx();
    for (std::size_t i = 0; i < workers_; ++i) n += stashes_[i].size_approx();
    return n;
  }

  // Whether any job is waiting anywhere (the ring or a stash). seq_cst loads: a retiring
  // worker's re-check (detail/worker_set.hpp, "Expiry"). Thread-safe.
  bool has_work() const noexcept { return ring_.size_approx() != 0 || !stashes_idle(); }

  // ---- observing --------------------------------------------------------------------------

  const bounded_queue<T>& ring() const noexcept { return ring_; }
  std::size_t capacity() const noexcept { return ring_.capacity(); }

 private:
  template <class Run, class AfterClaim, class Stashed>
  bool claim_from_ring(stash_type& own, Run& run, AfterClaim& after_claim, Stashed& stashed) {
    const std::uint32_t room = own.fill_room();
    auto batch = ring_.try_pop_batch(room + 1 > stash_size ? stash_size : room + 1);
    if (batch.size() == 0) return false;
    // Move the claimed jobs out of the ring now: their slots are free again before any of them
    // runs (honest refusals), and all but the first wait where others may take them.
    T first(batch.pop());
    const bool filled = !batch.empty();
    if (filled) {
      (void)own.fill([&batch](auto put) noexcept {
        std::uint32_t k = 0;
        for (; !batch.empty(); ++k) put(batch.pop());
        return k;
      });
      announce_stashed();
    }
    after_claim();
    if (filled) stashed();  // after the producers' room handshake: it may start a thread
    run(std::move(first));
    return true;
  }

  // Steals from the other workers' stashes into worker i's own, then runs the first stolen job.
  template <class Run, class Stashed>
  bool steal_for(std::size_t i, Run& run, Stashed& stashed) {
    stash_type& own = stashes_[i];
    const std::uint32_t room = own.fill_room();
    if (room == 0) return false;  // a thief is still copying out of our own stash
    for (std::size_t k = 1; k < workers_; ++k) {
      stash_type& victim = stashes_[(i + k) % workers_];
      if (victim.size_approx() == 0) continue;  // relaxed hint; the steal's CAS decides
      bool busy = false;
      std::uint32_t left = 0;
      const std::uint32_t n =
          own.fill([&](auto put) noexcept { return victim.steal(put, false, room, busy, left); });
      if (n == 0) continue;
      // The rest stays stealable from us, and what we left in the victim's stash from it: each
      // needs its own wake-up, or with three workers or more a parked one could sleep while a
      // job waits behind the victim's running job (found by tests/model/park.pml, config w3).
      // The stolen jobs were also out of sight from the victim's release to our fill's publish
      // (the ones left behind never were): `stashed`.
      if (left != 0) announce_stashed();
      if (n > 1) {
        announce_stashed();
        stashed();
      }
      return own.pop(run);
    }
    return false;
  }

  // After a fill left jobs in a stash: the filler's half of the parking handshake (the fill's
  // release store, then a seq_cst fence, then the parked count read by wake_one).
  void announce_stashed() noexcept {
    std::atomic_thread_fence(std::memory_order_seq_cst);
    (void)parking_.wake_one();
  }

  bool stashes_idle() const noexcept {
    for (std::size_t i = 0; i < workers_; ++i) {
      if (!stashes_[i].idle()) return false;
    }
    return true;
  }

  bounded_queue<T> ring_;
  std::unique_ptr<stash_type[]> stashes_;
  worker_parking parking_;
  std::size_t workers_;
};

}  // namespace crew::detail
