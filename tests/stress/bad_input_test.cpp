// Bad input for crew::worker_pool, beyond what tests/worker_pool_test.cpp already covers (zero
// workers, zero or unallocatable capacity, passed deadlines, shutdown and wait_idle from a
// worker, submit after shutdown, shutdown twice, destroying the pool under blocked producers,
// non-std exceptions): extreme and non-finite timeouts and deadlines, empty bulk ranges, an
// on_drop that throws in the middle of a bulk drop, wait_idle after shutdown, and destroying the
// pool from one of its own workers. Each test states what the caller gets and that nothing is
// lost. (A Job whose move constructor may throw is refused at compile time by a static_assert
// in worker_pool, so it has no run-time test.)

#include <crew/worker_pool.hpp>

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cmath>
#include <functional>
#include <limits>
#include <memory>
#include <stdexcept>
#include <thread>
#include <vector>

#include "stress/watchdog.hpp"
#include "test_support.hpp"

namespace {

using namespace std::chrono_literals;
using crew::overflow_policy;
using crew::shutdown_mode;
using crew::submit_status;
using job_ptr = std::unique_ptr<int>;

using crew_test::full_pool;

// A timeout too large to add to now() saturates to "no deadline": the submit waits for room.
TEST(BadInput, HugeTimeoutsWaitInsteadOfOverflowing) {
  crew_test::watchdog dog{60s, "HugeTimeoutsWaitInsteadOfOverflowing"};
  full_pool f;
  dog.watch(*f.pool);
  std::vector<std::thread> producers;
  std::atomic<int> accepted{0};
  auto run = [&](auto submit) {
    producers.emplace_back([&, submit] {
      auto j = std::make_unique<int>(5);
      if (submit(j) == submit_status::accepted && j == nullptr) accepted++;
    });
  };
  auto& pool = *f.pool;
  run([&](job_ptr& j) { return pool.submit_for(std::move(j), std::chrono::nanoseconds::max()); });
  run([&](job_ptr& j) { return pool.submit_for(std::move(j), std::chrono::hours::max()); });
  run([&](job_ptr& j) {
    return pool.submit_for(std::move(j),
                           std::chrono::duration<double>(std::numeric_limits<double>::infinity()));
  });
  run([&](job_ptr& j) {
    return pool.submit_until(std::move(j), std::chrono::steady_clock::time_point::max());
  });
  run([&](job_ptr& j) {
    return pool.submit_until(std::move(j), std::chrono::system_clock::time_point::max());
  });
  ASSERT_TRUE(crew_test::eventually([&] { return pool.stats().blocked_producers == 5; }));
  std::this_thread::sleep_for(20ms);
  EXPECT_EQ(pool.stats().rejected, 0U) << "a huge timeout expired at once";
  f.release.open();
  for (auto& t : producers) t.join();
  EXPECT_EQ(accepted.load(), 5);
  const auto report = pool.shutdown_for(std::chrono::hours::max());
  EXPECT_TRUE(report.drained);
  EXPECT_EQ(f.ran.load(), 7);
  dog.unwatch();
}

// Negative and minimal timeouts, and deadlines at the far past end of any clock: one attempt,
// timed_out on a full queue, the job not moved from.
TEST(BadInput, NegativeAndMinimalDeadlinesMakeOneAttempt) {
  full_pool f;
  auto& pool = *f.pool;
  auto j = std::make_unique<int>(9);
  EXPECT_EQ(pool.submit_for(std::move(j), -1h), submit_status::timed_out);
  EXPECT_EQ(pool.submit_for(std::move(j), std::chrono::nanoseconds::min()),
            submit_status::timed_out);
  EXPECT_EQ(pool.submit_for(std::move(j), std::chrono::hours::min()), submit_status::timed_out);
  EXPECT_EQ(pool.submit_for(std::move(j), std::chrono::duration<double>(
                                              -std::numeric_limits<double>::infinity())),
            submit_status::timed_out);
  EXPECT_EQ(pool.submit_until(std::move(j), std::chrono::steady_clock::time_point::min()),
            submit_status::timed_out);
  EXPECT_EQ(pool.submit_until(std::move(j), std::chrono::system_clock::time_point::min()),
            submit_status::timed_out);
  ASSERT_NE(j, nullptr);
  EXPECT_EQ(*j, 9);
  EXPECT_EQ(pool.stats().rejected, 6U);
  f.release.open();
  const auto report = pool.shutdown(shutdown_mode::drain);
  EXPECT_TRUE(report.drained);
  EXPECT_EQ(f.ran.load(), 2);
}

// A NaN timeout is no wait at all: like a duration <= 0 it makes one attempt and never waits
// (found by this suite: detail::deadline_after converted NaN to an integer duration, undefined
// behaviour that clang's -fsanitize=float-cast-overflow reports; GCC's -fsanitize=undefined does
// not include that check). The queue is full, so the job stays with the caller.
TEST(BadInput, NaNTimeoutMakesOneAttempt) {
  crew_test::watchdog dog{60s, "NaNTimeoutMakesOneAttempt"};
  full_pool f;
  auto& pool = *f.pool;
  dog.watch(pool);
  auto j = std::make_unique<int>(4);
  const double nan = std::numeric_limits<double>::quiet_NaN();
  EXPECT_EQ(pool.submit_for(std::move(j), std::chrono::duration<double>(nan)),
            submit_status::timed_out);
  EXPECT_EQ(pool.submit_until(
                std::move(j),
                std::chrono::time_point<std::chrono::system_clock, std::chrono::duration<double>>(
                    std::chrono::duration<double>(nan))),
            submit_status::timed_out);
  ASSERT_NE(j, nullptr);
  EXPECT_EQ(*j, 4);
  f.release.open();
  (void)pool.shutdown();
  EXPECT_EQ(static_cast<std::uint64_t>(f.ran.load()), pool.stats().accepted);
  dog.unwatch();
}

// shutdown_for with absurd timeouts: a huge one drains, a negative one is an abort that returns
// at once; every accepted job is run or handed back, exactly once.
TEST(BadInput, ShutdownWithExtremeTimeouts) {
  for (int variant : {0, 1, 2, 3}) {
    std::atomic<int> ran{0};
    crew::worker_pool<int> pool{[&](int&&) { ran++; }, {.workers = 1, .queue_capacity = 64}};
    for (int i = 0; i < 50; ++i) ASSERT_EQ(pool.submit(int{i}), submit_status::accepted);
    crew::shutdown_report<int> r;
    switch (variant) {
      case 0: r = pool.shutdown_for(std::chrono::nanoseconds::max()); break;
      case 1: r = pool.shutdown_for(std::chrono::hours::min()); break;
      case 2:
        r = pool.shutdown_for(
            std::chrono::duration<double>(std::numeric_limits<double>::quiet_NaN()));
        break;
      default: r = pool.shutdown_until(std::chrono::system_clock::time_point::max()); break;
    }
    auto last = pool.shutdown();
    EXPECT_EQ(static_cast<std::size_t>(ran.load()) + r.handed_back.size() + last.handed_back.size(),
              50U)
        << "variant " << variant;
    if (variant == 0 || variant == 3) {  // 1 and 2 (NaN) are aborts
      EXPECT_TRUE(r.drained) << "variant " << variant;
    }
  }
}

// Empty ranges: 0 accepted, nothing counted, on every policy and form, open or closed.
TEST(BadInput, EmptyBulkRangesAreNoOps) {
  for (auto policy : {overflow_policy::block, overflow_policy::reject, overflow_policy::drop}) {
    crew::worker_pool<int> pool{[](int&&) {},
                                {.workers = 1, .queue_capacity = 1, .on_full = policy}};
    std::vector<int> none;
    EXPECT_EQ(pool.submit_bulk(none), 0U);
    EXPECT_EQ(pool.try_submit_bulk(none), 0U);
    EXPECT_EQ(pool.submit_bulk(std::views::iota(0, 0)), 0U);
    (void)pool.shutdown();
    EXPECT_EQ(pool.submit_bulk(none), 0U);
    const auto s = pool.stats();
    EXPECT_EQ(s.accepted + s.rejected + s.dropped, 0U);
  }
}

// on_drop throws while a bulk submit drops the rest of its range: the exception reaches the
// caller; the accepted prefix still runs, the element being dropped is consumed, and the
// elements after it are left untouched in the caller's range.
TEST(BadInput, OnDropThrowingInABulkDropLosesNothingElse) {
  std::atomic<int> drops{0};
  full_pool f(overflow_policy::drop, [&](job_ptr&&) {
    drops++;
    throw std::runtime_error("on_drop refuses");
  });
  std::vector<job_ptr> range;
  for (int i = 10; i < 15; ++i) range.push_back(std::make_unique<int>(i));
  EXPECT_THROW((void)f.pool->submit_bulk(range), std::runtime_error);
  EXPECT_EQ(drops.load(), 1);
  EXPECT_EQ(range[0], nullptr) << "the dropped element was consumed";
  for (std::size_t i = 1; i < range.size(); ++i) {
    ASSERT_NE(range[i], nullptr) << "element " << i
                                 << " was moved from but neither run nor dropped";
    EXPECT_EQ(*range[i], static_cast<int>(10 + i));
  }
  f.release.open();
  const auto report = f.pool->shutdown();
  EXPECT_TRUE(report.drained);
  EXPECT_EQ(f.ran.load(), 2);
  EXPECT_EQ(f.pool->stats().dropped, 1U);
}

// wait_idle after shutdown (either mode) returns at once: nothing can be queued any more.
TEST(BadInput, WaitIdleAfterShutdownReturns) {
  crew_test::watchdog dog{60s, "WaitIdleAfterShutdownReturns"};
  for (auto mode : {shutdown_mode::drain, shutdown_mode::abort}) {
    crew::worker_pool<int> pool{[](int&&) {}, {.workers = 2, .queue_capacity = 8}};
    dog.watch(pool);
    for (int i = 0; i < 8; ++i) (void)pool.try_submit(int{i});
    const auto r = pool.shutdown(mode);
    pool.wait_idle();
    pool.wait_idle();
    const auto s = pool.stats();
    EXPECT_EQ(s.accepted, s.executed + s.handed_back);
    EXPECT_EQ(s.handed_back, r.handed_back.size());
    dog.unwatch();
  }
}

// Destroying the pool from one of its own workers would wait for itself: the process terminates
// with a message instead of deadlocking or corrupting memory.
TEST(BadInputDeathTest, DestroyingThePoolFromItsOwnWorkerTerminates) {
  if (crew_test::under_tsan) GTEST_SKIP() << "fork-based death tests and TSan do not mix";
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_DEATH(
      {
        std::unique_ptr<crew::worker_pool<int>> pool;
        crew_test::gate go;
        pool = std::make_unique<crew::worker_pool<int>>(
            [&](int&&) {
              go.wait();
              pool.reset();
            },
            crew::pool_options<int>{.workers = 1, .queue_capacity = 1});
        (void)pool->submit(1);
        go.open();
        std::this_thread::sleep_for(10s);
      },
      "destroyed from one of its own workers");
}

}  // namespace
