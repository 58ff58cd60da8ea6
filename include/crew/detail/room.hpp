#pragma once

// crew::detail::room_gate: producers waiting for room in a full pool, asleep, each with its own
// deadline or stop token; and the workers' side that wakes them.
//
// Protocol: a producer whose push failed polls briefly (~20 us) for "room or done", then counts
// itself in the eventcount (detail/eventcount.hpp), re-checks, and sleeps until woken or its
// deadline passes. "Room" is the ring down to its low-water mark (half the capacity), so
// producers refill in bursts instead of waking per freed slot. A worker, after each ring claim
// (a seq_cst RMW on the ring's head), calls after_claim(): a seq_cst load of the waiter count
// and, only when someone waits and the ring is at the mark, one wake of all of them. Shutdown and
// stop requests wake everyone (wake_all). Every wait carries the caller's deadline, so every
// timed form returns by it; a push that fails right after "room" was seen (a worker between
// claiming a slot and releasing it) sleeps retry_sleep instead of spinning.
//
// Also here: the counts a pool's destructor and stats() need (producers inside a waiting submit,
// producers blocked), each on its own cache line, away from the waiter count every claim reads.

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <stop_token>
#include <thread>

#include "cache_line.hpp"
#include "eventcount.hpp"
#include "pool_support.hpp"
#include "wait.hpp"

namespace crew::detail {

enum class room_result { room, closed, timed_out, cancelled };

class room_gate {
 public:
  static constexpr std::chrono::microseconds retry_sleep{20};

  explicit room_gate(std::size_t low_water) noexcept
      : low_water_(low_water), blocked_(own_blocked_) {}
  // A gate whose blocked producers count in `shared`'s count (a keyed pool's key gate, in the
  // pool's gate): a producer that moves from one gate's wait to the other's is counted once,
  // so a snapshot never counts it twice (reading two counts, one before it left the first and
  // one after it entered the second, did). `shared` must outlive this gate.
  room_gate(std::size_t low_water, room_gate& shared) noexcept
      : low_water_(low_water), blocked_(shared.own_blocked_) {}
  room_gate(const room_gate&) = delete;
  room_gate& operator=(const room_gate&) = delete;
  room_gate(room_gate&&) = delete;
  room_gate& operator=(room_gate&&) = delete;
  ~room_gate() = default;

  // Waits (polling briefly, then asleep) until `size()` <= the low-water mark, `closed()`, the
  // deadline passes or the token is stopped. `size` and `closed` must be seq_cst loads (the
  // producer's half of the handshake). `retry`: the last push failed although room was seen.
  // Thread-safe.
  template <class Size, class Closed>
  room_result wait(steady_time deadline, const std::stop_token* token, bool retry, Size size,
                   Closed closed) {
    return wait_for(
        deadline, token, retry, [&] { return size() <= low_water_; }, closed);
  }

  // As wait(), for any notion of room: waits until `room()` holds (a keyed pool's key below its
  // bound), `closed()`, the deadline or the token. The notifier calls notify() after making room
  // (whatever `room()` reads must be ordered before its has_waiters load: a seq_cst RMW or a
  // lock release the waiter's `room()` acquires). Thread-safe.
  template <class Room, class Closed>
  room_result wait_for(steady_time deadline, const std::stop_token* token, bool retry, Room room,
                       Closed closed) {
    struct waker {
      room_gate* gate;
      void operator()() const noexcept { gate->wake_all(); }
    };
    std::optional<std::stop_callback<waker>> on_stop;
    if (token != nullptr && token->stop_possible()) on_stop.emplace(*token, waker{this});
    const blocked_scope blocked(blocked_);
    if (retry) {
      const steady_time now = std::chrono::steady_clock::now();
      if (now >= deadline) return room_result::timed_out;
      std::this_thread::sleep_until(std::min(deadline, now + retry_sleep));
    }
    const auto stopped = [token] { return token != nullptr && token->stop_requested(); };
    const auto ready = [&] { return room() || closed() || stopped(); };
    const auto verdict = [&] {
      if (closed()) return room_result::closed;
      return stopped() ? room_result::cancelled : room_result::room;
    };
    // Poll first: at full speed the workers free half the ring in microseconds, sooner than a
    // sleep and a wake-up would take. A passed deadline: one look.
    if (poll_briefly(ready, deadline)) return verdict();
    return waiters_.await(ready, deadline) ? verdict() : room_result::timed_out;
  }

  // Worker, after a ring claim (a seq_cst RMW): wakes the waiting producers when the ring is
  // down to the mark. has_waiters() is the seq_cst load of the handshake. Thread-safe.
  template <class Size>
  void after_claim(Size size) noexcept {
    if (waiters_.has_waiters() && size() <= low_water_) waiters_.notify_all();
  }

  // After making room of the kind wait_for() waits for: wakes the waiters if there are any.
  // Thread-safe.
  void notify() noexcept {
    if (waiters_.has_waiters()) waiters_.notify_all();
  }

  // Wakes every waiting producer (shutdown, a stop request). Thread-safe.
  void wake_all() noexcept { waiters_.notify_all(); }

  // Counts a producer inside a waiting submit, from the start of the call: the destructor waits
  // until none is inside. Thread-safe.
  std::atomic<std::uint32_t>& inside_count() noexcept { return inside_; }
  std::uint32_t producers_inside() const noexcept {
    return inside_.load(std::memory_order_seq_cst);
  }

  // Producers blocked right now, in this gate and any gate sharing its count (stats; relaxed: a
  // snapshot). Thread-safe.
  std::uint32_t blocked() const noexcept { return blocked_.load(std::memory_order_relaxed); }

 private:
  std::size_t low_water_;
  eventcount waiters_;  // on its own line: every claim reads it
  alignas(cache_line_size) std::atomic<std::uint32_t> own_blocked_{0};
  std::atomic<std::uint32_t>& blocked_;  // own_blocked_, or the sharing gate's
  alignas(cache_line_size) std::atomic<std::uint32_t> inside_{0};
};

}  // namespace crew::detail
