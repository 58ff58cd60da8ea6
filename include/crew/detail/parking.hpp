#pragma once

// crew::detail::worker_parking: idle workers sleep, and whoever makes work available wakes
// exactly one of them, with no system call while no worker sleeps.
//
// Protocol. A worker about to sleep reads its own wake word, sets its bit in the parked mask and
// counts itself in parked_ (seq_cst RMWs), re-checks for work (seq_cst loads, supplied by the
// caller), and only then sleeps on its wake word. Whoever makes work available (a producer's
// push: a seq_cst RMW on the ring's tail; a worker's stash fill: a release store and a seq_cst
// fence) then reads parked_ (seq_cst load): either the worker's re-check sees the work, or the
// waker sees the count (a Dekker pair). A waker that sees parked workers claims one by clearing
// its bit (fetch_and) and bumps that worker's wake word: each parked worker is woken at most once
// per park however many wakers see it, and wakers that find every bit claimed make no system
// call. After waking, the worker withdraws its bit and its count.
//
// Invariants:
//   - a bit is set only by its own worker, between reading its wake word and sleeping;
//   - a wake word is bumped only after its bit was claimed (or by wake_all, at shutdown), so a
//     bump after the read ends the sleep at once;
//   - parked() over-counts only while woken workers get going (a needless scan, never a lost
//     wake-up).

#include <atomic>
#include <bit>
#include <cstddef>
#include <cstdint>
#include <memory>

#include "cache_line.hpp"
#include "wait.hpp"

namespace crew::detail {

class worker_parking {
 public:
  explicit worker_parking(std::size_t workers)
      : words_((workers + 63) / 64),
        masks_(std::make_unique<padded_word[]>(words_)),
        wake_(std::make_unique<padded_wake[]>(workers)),
        workers_(workers) {}

  // How many workers are (about to be) asleep. seq_cst: the waker's half of the handshake.
  std::uint32_t parked() const noexcept { return parked_.load(std::memory_order_seq_cst); }

  // Wakes one parked worker that nobody claimed yet; false when there is none. Thread-safe.
  bool wake_one() noexcept {
    if (parked() == 0) return false;
    for (std::size_t word = 0; word < words_; ++word) {
      // relaxed: a hint; the fetch_and below decides.
      std::uint64_t mask = masks_[word].bits.load(std::memory_order_relaxed);
      while (mask != 0) {
        const std::uint64_t bit = mask & (~mask + 1);
        const std::uint64_t before = masks_[word].bits.fetch_and(~bit, std::memory_order_seq_cst);
        if ((before & bit) != 0) {
          notify(wake_[word * 64 + static_cast<std::size_t>(std::countr_zero(bit))].word, 1);
          return true;
        }
        mask = before & ~bit;  // someone else claimed that one: try the others
      }
    }
    return false;
  }

  // Wakes up to `n` parked workers (a bulk submit: one wake each, not a chain). Thread-safe.
  void wake(std::size_t n) noexcept {
    for (std::size_t i = 0; i < n && wake_one(); ++i) {
    }
  }

  // Wakes every worker, parked or about to park (shutdown). Thread-safe.
  void wake_all() noexcept {
    for (std::size_t i = 0; i < workers_; ++i) notify(wake_[i].word, 1);
  }

  // Parks worker `index` unless `has_work()` (seq_cst loads, the worker's half of the
  // handshake) says there is something to do after it announced itself. Returns when woken, at
  // `deadline` (an elastic pool's idle timeout), or at once. Only worker `index` calls this for
  // its index.
  template <class HasWork>
  void park(std::size_t index, HasWork has_work,
            steady_time deadline = steady_time::max()) noexcept {
    // Read the wake word before announcing: a waker that claims our bit bumps it afterwards.
    const std::uint32_t seen = wake_[index].word.load(std::memory_order_seq_cst);
    std::atomic<std::uint64_t>& mask = masks_[index / 64].bits;
    const std::uint64_t bit = std::uint64_t{1} << (index % 64);
    mask.fetch_or(bit, std::memory_order_seq_cst);  // the bit before the count: see wake_one()
    parked_.fetch_add(1, std::memory_order_seq_cst);
    if (!has_work()) (void)wait_until(wake_[index].word, seen, deadline);
    parked_.fetch_sub(1, std::memory_order_seq_cst);
    // Withdraw the bit if no waker claimed it (if one did, its bump may still arrive: a
    // spurious wake-up at the next park, which re-checks and sleeps again). A worker that timed
    // out after a waker claimed it still finds the waker's work: the push came before the claim,
    // and the worker looks for work again after this.
    mask.fetch_and(~bit, std::memory_order_seq_cst);
  }

 private:
  struct alignas(cache_line_size) padded_word {
    std::atomic<std::uint64_t> bits{0};  // bit i: worker i is parked and unclaimed
  };
  struct alignas(cache_line_size) padded_wake {
    std::atomic<std::uint32_t> word{0};
  };

  alignas(cache_line_size) std::atomic<std::uint32_t> parked_{0};
  std::size_t words_;
  std::unique_ptr<padded_word[]> masks_;
  std::unique_ptr<padded_wake[]> wake_;
  std::size_t workers_;
};

}  // namespace crew::detail
