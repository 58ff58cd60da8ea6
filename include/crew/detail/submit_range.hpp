#pragma once

// crew::detail::submit_once, submit_with_policy: a pool's try_submit and submit(Job&&).
//
// crew::detail::submit_waiting: a pool's single waiting submit (submit under block, the timed and
// stop-token forms): one attempt, then, unless called from the pool's own worker, wait for room
// and retry until accepted, closed, or the wait gives up (timed_out, cancelled). The job is
// moved from only when accepted. Ops as below, with wait(deadline, token, retry).
//
// crew::detail::submit_range: a pool's bulk submit (submit_bulk / try_submit_bulk) over any
// input range, in order, under an overflow policy, as DESIGN.md's submit table says: it stops
// at the first element refused (block: waits for room; reject: stops when full; drop: accepts
// what fits and drops the rest) or at closed, returns how many were accepted (always a prefix),
// and moves from accepted (or dropped) elements only. The pool supplies the operations (Ops):
//   push(Job&) -> push_result      one attempt, moves only when accepted
//   push_run(It, n) -> size_t      a run straight from the range with one tail claim
//   closed(), drop(Job&&), may_wait(), refused(),
//   wait(steady_time deadline, const std::stop_token*, bool retry) -> room_result
//   inside_count()                 the destructor's count of producers inside a waiting submit

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <iterator>
#include <optional>
#include <ranges>
#include <stop_token>
#include <type_traits>
#include <utility>

#include "../options.hpp"
#include "../status.hpp"
#include "pool_support.hpp"
#include "room.hpp"

namespace crew::detail {

// One attempt's outcome. key_full: a keyed pool's key is at max_per_key (the pool has room).
enum class push_result { accepted, full, key_full, closed };

// One attempt, never waiting: accepted, closed, or rejected (counted through ops.refused()).
template <class Job, class Ops>
[[gnu::always_inline]] inline submit_status submit_once(Job& job, const Ops& ops) noexcept(
    noexcept(ops.push(job))) {
  const push_result r = ops.push(job);
  if (r == push_result::accepted) return submit_status::accepted;
  if (r == push_result::closed) return submit_status::closed;
  ops.refused();
  return submit_status::rejected;
}

// submit_waiting's slow path, after a first attempt found no room (kept out of line: the fast
// path is inlined into every submit, as a pool's own member function would be; out of line it
// cost ~20% of single-producer trivial throughput here).
template <class Job, class Ops>
[[gnu::noinline]] submit_status submit_wait_for_room(Job& job, const Ops& ops, steady_time deadline,
                                                     const std::stop_token* token) {
  if (!ops.may_wait()) {
    ops.refused();
    return submit_status::rejected;
  }
  for (bool retry = false;; retry = true) {
    const room_result w = ops.wait(deadline, token, retry);
    const push_result r = ops.push(job);  // one more attempt whatever the wait said
    if (r == push_result::accepted) return submit_status::accepted;
    if (r == push_result::closed) return submit_status::closed;
    if (w != room_result::room) {
      ops.refused();
      return w == room_result::cancelled ? submit_status::cancelled
             : w == room_result::closed  ? submit_status::closed
                                         : submit_status::timed_out;
    }
  }
}

template <class Job, class Ops>
[[gnu::always_inline]] inline submit_status submit_waiting(Job& job, const Ops& ops,
                                                           steady_time deadline,
                                                           const std::stop_token* token) {
  // Counted from the start of the call, so a pool's destructor never frees the pool under a
  // producer that is about to wait.
  const blocked_scope inside(ops.inside_count());
  const push_result r = ops.push(job);
  if (r == push_result::accepted) return submit_status::accepted;
  if (r == push_result::closed) return submit_status::closed;
  return submit_wait_for_room(job, ops, deadline, token);
}

// submit(Job&&) under `policy`: block waits for room (submit_waiting), reject refuses at once,
// drop hands the job that did not fit to ops.drop().
template <class Job, class Ops>
[[gnu::always_inline]] inline submit_status submit_with_policy(Job& job, overflow_policy policy,
                                                               const Ops& ops) {
  switch (policy) {
    case overflow_policy::block: return submit_waiting(job, ops, steady_time::max(), nullptr);
    case overflow_policy::reject: return submit_once(job, ops);
    case overflow_policy::drop: break;
  }
  const push_result r = ops.push(job);
  if (r == push_result::accepted) return submit_status::accepted;
  if (r == push_result::closed) return submit_status::closed;
  ops.drop(std::move(job));
  return submit_status::dropped;
}

template <class Job, class R, class Ops>
std::size_t submit_range(R& range, overflow_policy policy, const Ops& ops) {
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
  std::optional<blocked_scope> inside;  // counted from the start, as single waiting submits
  if (policy == overflow_policy::block) inside.emplace(ops.inside_count());
  std::size_t accepted = 0;
  [[maybe_unused]] std::size_t remaining = 0;
  if constexpr (runs) remaining = static_cast<std::size_t>(std::ranges::distance(it, end));
  std::optional<Job> made;
  bool retry = false;
  while (it != end) {
    push_result r = push_result::full;
    if constexpr (runs) {
      const std::size_t n = ops.push_run(it, remaining);
      if (n != 0) {
        std::ranges::advance(it, static_cast<std::ranges::range_difference_t<R>>(n));
        remaining -= n;
        accepted += n;
        retry = false;
        continue;
      }
      if (ops.closed()) r = push_result::closed;
    } else if constexpr (in_place) {
      r = ops.push(*it);
    } else {
      if (!made) made.emplace(std::ranges::iter_move(it));
      r = ops.push(*made);
    }
    if (r == push_result::accepted) {
      made.reset();
      ++accepted;
      ++it;
      retry = false;
      continue;
    }
    if (r == push_result::closed) break;
    // The next element does not fit.
    if (policy == overflow_policy::drop) {
      if (made) {
        ops.drop(std::move(*made));
        made.reset();
        ++it;
      }
      for (; it != end; ++it) ops.drop(Job(std::ranges::iter_move(it)));
      break;
    }
    if (policy == overflow_policy::reject || !ops.may_wait()) {
      ops.refused();
      break;
    }
    if (ops.wait(steady_time::max(), nullptr, retry) == room_result::closed) break;
    retry = true;
  }
  return accepted;
}

}  // namespace crew::detail
