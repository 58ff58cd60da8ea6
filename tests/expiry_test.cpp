// detail::queue_wait_limit (include/crew/detail/expiry.hpp), the check behind max_queue_wait:
// exact at the limit, off at zero, and the pool's expiry with a limit far above a clock tick.

#include <crew/detail/expiry.hpp>
#include <crew/worker_pool.hpp>

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <mutex>
#include <thread>
#include <vector>

namespace {

using namespace std::chrono_literals;
using crew::detail::now_ns;
using crew::detail::queue_wait_limit;

constexpr std::uint64_t ms = 1'000'000;

TEST(QueueWaitLimit, OffAtZeroOrBelow) {
  EXPECT_FALSE(queue_wait_limit(0ns).on());
  EXPECT_FALSE(queue_wait_limit(-1ms).on());
  EXPECT_TRUE(queue_wait_limit(1ns).on());
}

TEST(QueueWaitLimit, DecidesOnTheExactWait) {
  const std::uint64_t limit_ns = 1000 * ms;
  const queue_wait_limit limit{std::chrono::nanoseconds(limit_ns)};
  std::uint64_t now = 0;
  // 1 us past the limit: past it (a coarse clock, a tick behind, could not tell).
  EXPECT_TRUE(limit.exceeded(now_ns() - limit_ns - 1000, now));
  // 1 ms short of it: the answer follows the read (a preemption may age the job past it).
  const std::uint64_t stamp = now_ns() - limit_ns + 1 * ms;
  const bool answer = limit.exceeded(stamp, now);
  EXPECT_EQ(answer, now - stamp > limit_ns);
  EXPECT_FALSE(limit.exceeded(now_ns(), now));  // fresh
}

TEST(QueueWaitLimit, ReturnsTheReadAsTheStartTime) {
  const queue_wait_limit limit{1s};
  std::uint64_t now = 0;
  const std::uint64_t before = now_ns();
  EXPECT_FALSE(limit.exceeded(before, now));
  EXPECT_GE(now, before);
  EXPECT_LE(now, now_ns());
}

TEST(QueueWaitLimit, AStampAfterTheReadHasNotWaited) {
  const queue_wait_limit limit{1ns};
  std::uint64_t now = 0;
  EXPECT_FALSE(limit.exceeded(now_ns() + 1000 * ms, now));  // no unsigned wrap to "expired"
}

// A limit far above a clock tick: jobs that waited 300 ms behind a held worker expire, in
// order, a fresh one runs.
TEST(QueueWaitLimit, PoolExpiresJobsPastALongLimit) {
  std::atomic<bool> release{false};
  std::atomic<int> started{0};
  std::mutex m;
  std::vector<int> ran;
  std::vector<int> expired;
  crew::pool_options<int> o{.workers = 1};
  o.max_queue_wait = 100ms;
  o.on_expire = [&](int&& n) {
    const std::lock_guard lock(m);
    expired.push_back(n);
  };
  crew::worker_pool<int> pool{[&](int n) {
                                started.fetch_add(1);
                                while (n == 0 && !release.load()) std::this_thread::sleep_for(1ms);
                                const std::lock_guard lock(m);
                                ran.push_back(n);
                              },
                              o};
  ASSERT_EQ(pool.submit(0), crew::submit_status::accepted);
  while (started.load() == 0) std::this_thread::sleep_for(1ms);
  for (int i = 1; i <= 3; ++i) ASSERT_EQ(pool.submit(int{i}), crew::submit_status::accepted);
  std::this_thread::sleep_for(300ms);
  release.store(true);
  pool.wait_idle();
  ASSERT_EQ(pool.submit(4), crew::submit_status::accepted);
  pool.wait_idle();
  const std::lock_guard lock(m);
  EXPECT_EQ(ran, (std::vector<int>{0, 4}));
  EXPECT_EQ(expired, (std::vector<int>{1, 2, 3}));
  EXPECT_EQ(pool.stats().expired, 3U);
}

}  // namespace
