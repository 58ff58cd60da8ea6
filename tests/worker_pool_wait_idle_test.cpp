// Tests for crew::worker_pool::wait_idle_for / wait_idle_until: wait_idle with a deadline,
// returning whether the pool became idle. (Added after review: the reviewed code had only the
// unbounded wait_idle, so this file did not compile against it.)

#include <crew/worker_pool.hpp>

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <ctime>
#include <mutex>
#include <stdexcept>
#include <thread>
#include <type_traits>

#include "test_support.hpp"

namespace {

using namespace std::chrono_literals;
using crew::submit_status;
using std::chrono::milliseconds;
using std::chrono::nanoseconds;
using std::chrono::steady_clock;

// A flag threads can wait for with a time limit (test_support.hpp). Thread-safe.
using bounded_gate = crew_test::gate;

// Wall and CPU time of one call, and thread CPU time (test_support.hpp).
using crew_test::call_cost;
using crew_test::measure;
using crew_test::ms;
using crew_test::thread_cpu_now;

// A pool with one job running until `release` opens (at most 10 s).
struct busy_pool {
  busy_pool()
      : pool{[this](int&&) {
               started.fetch_add(1);
               (void)release.wait_for(10s);
             },
             {.workers = 2, .queue_capacity = 8}} {
    EXPECT_EQ(pool.submit(int{0}), submit_status::accepted);
    EXPECT_TRUE(crew_test::eventually([&] { return started.load() == 1; }, 5s));
  }
  ~busy_pool() { release.open(); }
  busy_pool(const busy_pool&) = delete;
  busy_pool& operator=(const busy_pool&) = delete;
  busy_pool(busy_pool&&) = delete;
  busy_pool& operator=(busy_pool&&) = delete;

  bounded_gate release;
  std::atomic<int> started{0};
  crew::worker_pool<int> pool;
};

// A false return must come at the deadline (not before it, within `early` for a deadline on
// another clock), by the deadline plus slack, and asleep (under a quarter of the wall time in
// CPU: a sleeping waiter uses about none).
void expect_timed_out_at(const call_cost& c, milliseconds timeout, const char* what,
                         milliseconds early = 0ms) {
  std::printf("[ cost ] %s: %.1f ms wall, %.1f ms CPU\n", what, ms(c.wall), ms(c.cpu));
  EXPECT_GE(c.wall, timeout - early) << what << " gave up before its deadline";
  EXPECT_LE(c.wall, timeout + 1s) << what << " took " << ms(c.wall) << " ms";
  EXPECT_LT(c.cpu, c.wall / 4) << what << " used " << ms(c.cpu) << " ms of CPU in " << ms(c.wall)
                               << " ms: it spins instead of sleeping";
}

TEST(WorkerPoolWaitIdleFor, ReturnsBool) {
  crew::worker_pool<int> pool{[](int&&) {}, {.workers = 1, .queue_capacity = 4}};
  static_assert(std::is_same_v<decltype(pool.wait_idle_for(1s)), bool>);
  static_assert(std::is_same_v<decltype(pool.wait_idle_until(steady_clock::now())), bool>);
  static_assert(
      std::is_same_v<decltype(pool.wait_idle_until(std::chrono::system_clock::now())), bool>);
  EXPECT_TRUE(pool.wait_idle_for(1s));
}

TEST(WorkerPoolWaitIdleFor, FalseAtTheDeadlineWhileAJobRuns) {
  busy_pool f;
  bool idle = true;
  const call_cost c = measure([&] { idle = f.pool.wait_idle_for(200ms); });
  EXPECT_FALSE(idle) << "wait_idle_for returned true while a job was running";
  expect_timed_out_at(c, 200ms, "wait_idle_for(200 ms)");
  f.release.open();
  EXPECT_TRUE(f.pool.wait_idle_for(5s)) << "the released job did not finish within 5 s";
}

TEST(WorkerPoolWaitIdleFor, UntilFalseAtTheDeadlineWhileAJobRuns) {
  busy_pool f;
  bool idle = true;
  call_cost c = measure([&] { idle = f.pool.wait_idle_until(steady_clock::now() + 200ms); });
  EXPECT_FALSE(idle);
  expect_timed_out_at(c, 200ms, "wait_idle_until(steady now + 200 ms)");
  // Any clock's time point.
  idle = true;
  c = measure([&] { idle = f.pool.wait_idle_until(std::chrono::system_clock::now() + 200ms); });
  EXPECT_FALSE(idle);
  expect_timed_out_at(c, 200ms, "wait_idle_until(system now + 200 ms)", 10ms);
  f.release.open();
  EXPECT_TRUE(f.pool.wait_idle_until(steady_clock::now() + 5s));
}

TEST(WorkerPoolWaitIdleFor, PassedDeadlineLooksOnceAndNeverWaits) {
  busy_pool f;
  const auto start = steady_clock::now();
  EXPECT_FALSE(f.pool.wait_idle_for(0s));
  EXPECT_FALSE(f.pool.wait_idle_for(-5s));
  EXPECT_FALSE(f.pool.wait_idle_until(steady_clock::now() - 1s));
  EXPECT_LE(steady_clock::now() - start, 1s) << "a passed deadline waited";
}

TEST(WorkerPoolWaitIdleFor, TrueWhenIdleOrOnceTheJobsFinish) {
  std::atomic<int> ran{0};
  crew::worker_pool<int> pool{[&](int&&) {
                                std::this_thread::sleep_for(20ms);
                                ran.fetch_add(1);
                              },
                              {.workers = 2, .queue_capacity = 16}};
  EXPECT_TRUE(pool.wait_idle_for(0s)) << "a pool that never had a job is idle";
  EXPECT_TRUE(pool.wait_idle_until(steady_clock::now() - 1s));
  for (int i = 0; i < 8; ++i) ASSERT_EQ(pool.submit(int{i}), submit_status::accepted);
  const auto start = steady_clock::now();
  EXPECT_TRUE(pool.wait_idle_for(10s)) << "8 jobs of 20 ms on 2 workers took over 10 s";
  EXPECT_LT(steady_clock::now() - start, 10s);
  EXPECT_EQ(ran.load(), 8) << "wait_idle_for returned true before every job ran";
  EXPECT_TRUE(pool.wait_idle_for(0s));
  (void)pool.shutdown();
  EXPECT_TRUE(pool.wait_idle_for(0s)) << "a shut-down pool is idle";
}

// From inside one of the pool's workers they would wait for themselves: logic_error, like
// wait_idle.
TEST(WorkerPoolWaitIdleFor, FromAWorkerThrowsLogicError) {
  std::atomic<int> logic_errors{0};
  crew::worker_pool<int>* self = nullptr;
  crew::worker_pool<int> pool{[&](int&&) {
                                try {
                                  (void)self->wait_idle_for(1ms);
                                } catch (const std::logic_error&) {
                                  logic_errors.fetch_add(1);
                                }
                                try {
                                  (void)self->wait_idle_until(steady_clock::now() + 1ms);
                                } catch (const std::logic_error&) {
                                  logic_errors.fetch_add(1);
                                }
                              },
                              {.workers = 1, .queue_capacity = 4}};
  self = &pool;
  ASSERT_EQ(pool.submit(int{1}), submit_status::accepted);
  EXPECT_TRUE(pool.wait_idle_for(5s));
  EXPECT_EQ(logic_errors.load(), 2);
  EXPECT_FALSE(pool.is_shut_down());
}

}  // namespace
