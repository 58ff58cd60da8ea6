// Tests for crew::worker_pool: every row of DESIGN.md's submit and shutdown tables, bad
// options, exceptions, waiting from inside a worker, wait_idle, stats.

#include <crew/worker_pool.hpp>

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <ctime>
#include <list>
#include <memory>
#include <numeric>
#include <ranges>
#include <set>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "test_support.hpp"

namespace {

using namespace std::chrono_literals;
using crew::overflow_policy;
using crew::shutdown_mode;
using crew::submit_status;
using job_ptr = std::unique_ptr<int>;

using crew_test::full_pool;

// ---- bad options ----------------------------------------------------------------------------

TEST(WorkerPoolOptions, ZeroWorkersIsRejectedNamingTheOption) {
  try {
    crew::worker_pool<int> p{[](int&&) {}, {.workers = 0}};
    FAIL() << "0 workers accepted";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("workers"), std::string::npos) << e.what();
  }
}

TEST(WorkerPoolOptions, ZeroCapacityIsRejectedNamingTheOption) {
  try {
    crew::worker_pool<int> p{[](int&&) {}, {.workers = 1, .queue_capacity = 0}};
    FAIL() << "capacity 0 accepted";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("queue_capacity"), std::string::npos) << e.what();
  }
}

TEST(WorkerPoolOptions, UnallocatableCapacityIsRejectedNamingTheOption) {
  try {
    crew::worker_pool<int> p{[](int&&) {}, {.workers = 1, .queue_capacity = std::size_t{1} << 42}};
    FAIL() << "2^42 slots accepted";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("queue_capacity"), std::string::npos) << e.what();
  }
}

TEST(WorkerPoolOptions, AbsurdWorkerCountIsRejected) {
  EXPECT_THROW((crew::worker_pool<int>{[](int&&) {}, {.workers = 1'000'000}}),
               std::invalid_argument);
}

TEST(WorkerPoolOptions, DefaultsAreDocumentedValues) {
  crew::worker_pool<int> p{[](int&&) {}};
  EXPECT_EQ(p.workers(), crew::hardware_workers());
  EXPECT_EQ(p.capacity(), 1024U);
  EXPECT_EQ(p.options().on_full, overflow_policy::block);
  EXPECT_EQ(p.options().recycle_after, 65536U);
  EXPECT_EQ(p.options().recycle, crew::recycle_mode::respawn);
  crew::worker_pool<int> q{[](int&&) {}, {.workers = 1, .queue_capacity = 1000}};
  EXPECT_EQ(q.capacity(), 1024U) << "capacity is rounded up to a power of two";
  EXPECT_EQ(q.stats().capacity, 1024U);
}

// ---- submit table ---------------------------------------------------------------------------

TEST(WorkerPoolSubmit, RunsEveryAcceptedJobOnce) {
  std::vector<std::atomic<int>> runs(10'000);
  {
    crew::worker_pool<int> pool{[&](int&& i) { runs[static_cast<std::size_t>(i)].fetch_add(1); },
                                {.workers = 2, .queue_capacity = 64}};
    for (int i = 0; i < 10'000; ++i) ASSERT_EQ(pool.submit(int{i}), submit_status::accepted);
  }
  for (auto& r : runs) ASSERT_EQ(r.load(), 1);
}

TEST(WorkerPoolSubmit, BlockPolicyWaitsForRoomThenAccepts) {
  full_pool f(overflow_policy::block);
  std::atomic<int> result{-1};
  std::thread producer(
      [&] { result = static_cast<int>(f.pool->submit(std::make_unique<int>(2))); });
  std::this_thread::sleep_for(50ms);
  EXPECT_EQ(result.load(), -1) << "submit under block returned while the queue was full";
  EXPECT_EQ(f.pool->stats().blocked_producers, 1U);
  f.release.open();
  producer.join();
  EXPECT_EQ(result.load(), static_cast<int>(submit_status::accepted));
  f.pool->wait_idle();
  EXPECT_EQ(f.sum.load(), 3);
}

TEST(WorkerPoolSubmit, RejectPolicyLeavesTheJobWithTheCaller) {
  full_pool f(overflow_policy::reject);
  auto job = std::make_unique<int>(7);
  EXPECT_EQ(f.pool->submit(std::move(job)), submit_status::rejected);
  ASSERT_NE(job, nullptr) << "a rejected job was moved from";
  EXPECT_EQ(*job, 7);
  EXPECT_EQ(f.pool->stats().rejected, 1U);
}

TEST(WorkerPoolSubmit, DropPolicyHandsTheIncomingJobToOnDrop) {
  std::vector<int> dropped;
  full_pool f(overflow_policy::drop, [&](job_ptr&& j) { dropped.push_back(*j); });
  auto job = std::make_unique<int>(7);
  EXPECT_EQ(f.pool->submit(std::move(job)), submit_status::dropped);
  EXPECT_EQ(job, nullptr) << "a dropped job is consumed";
  ASSERT_EQ(dropped, std::vector<int>{7}) << "on_drop did not receive the incoming job";
  EXPECT_EQ(f.pool->stats().dropped, 1U);
  f.release.open();
  f.pool->wait_idle();
  EXPECT_EQ(f.sum.load(), 1) << "drop must never drop a queued job";
}

TEST(WorkerPoolSubmit, DropWithoutOnDropIsCountedAndDestroyed) {
  full_pool f(overflow_policy::drop);
  EXPECT_EQ(f.pool->submit(std::make_unique<int>(7)), submit_status::dropped);
  EXPECT_EQ(f.pool->stats().dropped, 1U);
}

TEST(WorkerPoolSubmit, OnDropExceptionReachesTheCaller) {
  full_pool f(overflow_policy::drop, [](job_ptr&&) { throw std::runtime_error("from on_drop"); });
  EXPECT_THROW((void)f.pool->submit(std::make_unique<int>(7)), std::runtime_error);
}

TEST(WorkerPoolSubmit, TrySubmitRejectsAtOnceWhenFull) {
  full_pool f(overflow_policy::block);
  auto job = std::make_unique<int>(5);
  EXPECT_EQ(f.pool->try_submit(std::move(job)), submit_status::rejected);
  ASSERT_NE(job, nullptr);
}

TEST(WorkerPoolSubmit, SubmitForTimesOutWithoutMovingTheJob) {
  full_pool f(overflow_policy::block);
  auto job = std::make_unique<int>(5);
  const auto t0 = std::chrono::steady_clock::now();
  EXPECT_EQ(f.pool->submit_for(std::move(job), 30ms), submit_status::timed_out);
  EXPECT_GE(std::chrono::steady_clock::now() - t0, 30ms) << "returned before its deadline";
  ASSERT_NE(job, nullptr);
  EXPECT_EQ(f.pool->submit_for(std::move(job), 0ms), submit_status::timed_out);
  EXPECT_EQ(f.pool->submit_for(std::move(job), -5s), submit_status::timed_out);
  ASSERT_NE(job, nullptr);
  EXPECT_EQ(f.pool->stats().rejected, 3U) << "timed-out submits count as refused";
}

TEST(WorkerPoolSubmit, SubmitForAcceptsWhenRoomComesBeforeTheDeadline) {
  full_pool f(overflow_policy::block);
  std::thread opener([&] {
    std::this_thread::sleep_for(20ms);
    f.release.open();
  });
  EXPECT_EQ(f.pool->submit_for(std::make_unique<int>(2), 30s), submit_status::accepted);
  opener.join();
}

TEST(WorkerPoolSubmit, ZeroTimeoutWithRoomIsAccepted) {
  crew::worker_pool<int> pool{[](int&&) {}, {.workers = 1, .queue_capacity = 4}};
  EXPECT_EQ(pool.submit_for(1, 0ms), submit_status::accepted);
  EXPECT_EQ(pool.submit_until(2, std::chrono::steady_clock::now() - 1h), submit_status::accepted);
}

TEST(WorkerPoolSubmit, SubmitUntilPastDeadlineNeverWaits) {
  full_pool f(overflow_policy::block);
  auto job = std::make_unique<int>(5);
  EXPECT_EQ(f.pool->submit_until(std::move(job), std::chrono::steady_clock::now() - 1s),
            submit_status::timed_out);
  EXPECT_EQ(f.pool->submit_until(std::move(job), std::chrono::system_clock::now() - 1s),
            submit_status::timed_out);
  ASSERT_NE(job, nullptr);
  const auto t0 = std::chrono::steady_clock::now();
  EXPECT_EQ(f.pool->submit_until(std::move(job), std::chrono::system_clock::now() + 20ms),
            submit_status::timed_out);
  EXPECT_GE(std::chrono::steady_clock::now() - t0, 15ms);
  ASSERT_NE(job, nullptr);
}

TEST(WorkerPoolSubmit, StopTokenCancelsAWaitingSubmit) {
  full_pool f(overflow_policy::block);
  std::stop_source source;
  auto job = std::make_unique<int>(5);
  std::atomic<int> result{-1};
  std::thread producer(
      [&] { result = static_cast<int>(f.pool->submit(std::move(job), source.get_token())); });
  std::this_thread::sleep_for(30ms);
  EXPECT_EQ(result.load(), -1);
  source.request_stop();
  producer.join();
  EXPECT_EQ(result.load(), static_cast<int>(submit_status::cancelled));
  ASSERT_NE(job, nullptr) << "a cancelled job was moved from";
}

TEST(WorkerPoolSubmit, AlreadyStoppedTokenCancelsOnlyWaiting) {
  std::stop_source stopped;
  stopped.request_stop();
  {
    crew::worker_pool<int> pool{[](int&&) {}, {.workers = 1, .queue_capacity = 4}};
    EXPECT_EQ(pool.submit(1, stopped.get_token()), submit_status::accepted);
  }
  full_pool f(overflow_policy::block);
  auto job = std::make_unique<int>(5);
  EXPECT_EQ(f.pool->submit(std::move(job), stopped.get_token()), submit_status::cancelled);
  ASSERT_NE(job, nullptr);
}

TEST(WorkerPoolSubmit, EveryFormReturnsClosedAfterShutdownAndKeepsTheJob) {
  crew::worker_pool<job_ptr> pool{[](job_ptr&&) {}, {.workers = 1, .queue_capacity = 4}};
  (void)pool.shutdown();
  auto job = std::make_unique<int>(1);
  EXPECT_EQ(pool.submit(std::move(job)), submit_status::closed);
  EXPECT_EQ(pool.try_submit(std::move(job)), submit_status::closed);
  EXPECT_EQ(pool.submit_for(std::move(job), 1s), submit_status::closed);
  EXPECT_EQ(pool.submit_until(std::move(job), std::chrono::steady_clock::now() + 1s),
            submit_status::closed);
  std::stop_source s;
  EXPECT_EQ(pool.submit(std::move(job), s.get_token()), submit_status::closed);
  ASSERT_NE(job, nullptr);
  std::vector<job_ptr> many;
  many.push_back(std::make_unique<int>(2));
  EXPECT_EQ(pool.submit_bulk(many), 0U);
  EXPECT_EQ(pool.try_submit_bulk(many), 0U);
  ASSERT_NE(many[0], nullptr);
  EXPECT_TRUE(pool.is_shut_down());
}

TEST(WorkerPoolSubmit, BlockedProducersWakeWithClosedOnShutdown) {
  auto f = std::make_unique<full_pool>(overflow_policy::block);
  std::vector<std::thread> producers;
  std::vector<int> results(3, -1);
  std::vector<job_ptr> jobs;
  for (int i = 0; i < 3; ++i) jobs.push_back(std::make_unique<int>(10 + i));
  auto* pool = f->pool.get();
  for (int i = 0; i < 3; ++i) {
    producers.emplace_back([&, i] {
      auto k = static_cast<std::size_t>(i);
      results[k] = static_cast<int>(
          i == 0   ? pool->submit(std::move(jobs[k]))
          : i == 1 ? pool->submit_for(std::move(jobs[k]), 1h)
                   : pool->submit(std::move(jobs[k]), std::stop_source().get_token()));
    });
  }
  ASSERT_TRUE(crew_test::eventually([&] { return pool->stats().blocked_producers == 3; }));
  std::thread closer([&] {
    auto r = pool->shutdown(shutdown_mode::abort);
    EXPECT_EQ(r.handed_back.size(), 1U);
  });
  for (auto& p : producers) p.join();
  for (int r : results) EXPECT_EQ(r, static_cast<int>(submit_status::closed));
  for (auto& j : jobs) EXPECT_NE(j, nullptr) << "a job refused with closed was moved from";
  f->release.open();
  closer.join();
}

TEST(WorkerPoolSubmit, DestroyingThePoolWhileProducersBlockReturnsClosed) {
  auto f = std::make_unique<full_pool>(overflow_policy::block);
  std::atomic<int> result{-1};
  auto job = std::make_unique<int>(3);
  auto* pool = f->pool.get();
  std::thread producer([&] { result = static_cast<int>(pool->submit(std::move(job))); });
  ASSERT_TRUE(crew_test::eventually([&] { return pool->stats().blocked_producers == 1; }));
  f->release.open();
  std::thread destroyer([&] { f.reset(); });
  producer.join();
  destroyer.join();
  // The producer either got in once the gate opened (then the job ran) or saw closed.
  EXPECT_TRUE(result.load() == static_cast<int>(submit_status::accepted) ||
              (result.load() == static_cast<int>(submit_status::closed) && job != nullptr));
}

// ---- bulk -----------------------------------------------------------------------------------

TEST(WorkerPoolBulk, TrySubmitBulkAcceptsAPrefixAndLeavesTheRest) {
  full_pool f(overflow_policy::reject);
  f.release.open();  // let the queue drain, then hold it full again below
  f.pool->wait_idle();
  crew_test::gate hold;
  std::atomic<int> ran{0};
  crew::worker_pool<job_ptr> pool{[&](job_ptr&&) {
                                    hold.wait();
                                    ran.fetch_add(1);
                                  },
                                  {.workers = 1, .queue_capacity = 4}};
  ASSERT_EQ(pool.try_submit(std::make_unique<int>(0)), submit_status::accepted);
  ASSERT_TRUE(crew_test::eventually([&] { return pool.stats().busy == 1; }));
  std::vector<job_ptr> jobs;
  for (int i = 1; i <= 6; ++i) jobs.push_back(std::make_unique<int>(i));
  EXPECT_EQ(pool.try_submit_bulk(jobs), 4U);
  for (int i = 0; i < 4; ++i) EXPECT_EQ(jobs[static_cast<std::size_t>(i)], nullptr);
  EXPECT_NE(jobs[4], nullptr);
  EXPECT_NE(jobs[5], nullptr);
  hold.open();
  pool.wait_idle();
  EXPECT_EQ(ran.load(), 5);
}

TEST(WorkerPoolBulk, SubmitBulkUnderBlockWaitsAndAcceptsEverything) {
  std::atomic<long> sum{0};
  crew::worker_pool<int> pool{[&](int&& i) { sum += i; }, {.workers = 2, .queue_capacity = 8}};
  std::vector<int> v(10'000);
  std::iota(v.begin(), v.end(), 1);
  EXPECT_EQ(pool.submit_bulk(v), v.size());
  std::list<int> l(100, 1);  // a forward, non-sized-in-O(1) range
  EXPECT_EQ(pool.submit_bulk(l), 100U);
  pool.wait_idle();
  EXPECT_EQ(sum.load(), 10'000L * 10'001 / 2 + 100);
}

TEST(WorkerPoolBulk, SubmitBulkFromAnInputRangeOfValues) {
  std::atomic<long> sum{0};
  crew::worker_pool<long> pool{[&](long&& i) { sum += i; }, {.workers = 1, .queue_capacity = 2}};
  auto values = std::views::iota(1, 1001) | std::views::transform([](int i) { return long{i}; });
  EXPECT_EQ(pool.submit_bulk(values), 1000U);
  pool.wait_idle();
  EXPECT_EQ(sum.load(), 1000L * 1001 / 2);
}

TEST(WorkerPoolBulk, SubmitBulkUnderDropAcceptsWhatFitsAndDropsTheRest) {
  std::vector<int> dropped;
  full_pool f(overflow_policy::drop, [&](job_ptr&& j) { dropped.push_back(*j); });
  std::vector<job_ptr> jobs;
  for (int i = 1; i <= 3; ++i) jobs.push_back(std::make_unique<int>(100 + i));
  EXPECT_EQ(f.pool->submit_bulk(jobs), 0U);
  EXPECT_EQ(dropped, (std::vector<int>{101, 102, 103}));
  EXPECT_EQ(f.pool->stats().dropped, 3U);
}

TEST(WorkerPoolBulk, SubmitBulkStopsAtClosed) {
  crew::worker_pool<int> pool{[](int&&) {}, {.workers = 1, .queue_capacity = 8}};
  (void)pool.shutdown();
  std::vector<int> v(5, 1);
  EXPECT_EQ(pool.submit_bulk(v), 0U);
}

// ---- waiting from inside a worker -------------------------------------------------------------

TEST(WorkerPoolReentrancy, WaitingFormsFromAWorkerReturnRejectedWhenFull) {
  crew_test::gate proceed;
  std::vector<submit_status> seen;
  std::size_t bulk_accepted = 99;
  std::atomic<bool> done{false};
  crew::worker_pool<int>* self = nullptr;
  crew::worker_pool<int> pool{
      [&](int&& i) {
        if (i != 0) return;
        proceed.wait();
        // The queue (capacity 1) holds job 1: it is full.
        seen.push_back(self->submit(2));
        seen.push_back(self->submit_for(3, 1h));
        seen.push_back(self->submit_until(4, std::chrono::steady_clock::now() + 1h));
        seen.push_back(self->submit(5, std::stop_source().get_token()));
        std::vector<int> more{6, 7};
        bulk_accepted = self->submit_bulk(more);
        done = true;
      },
      {.workers = 1, .queue_capacity = 1}};
  self = &pool;
  ASSERT_EQ(pool.submit(0), submit_status::accepted);
  ASSERT_TRUE(crew_test::eventually([&] { return pool.stats().busy == 1; }));
  ASSERT_EQ(pool.submit(1), submit_status::accepted);
  proceed.open();
  ASSERT_TRUE(crew_test::eventually([&] { return done.load(); }))
      << "a worker deadlocked submitting to its own pool";
  pool.wait_idle();
  EXPECT_EQ(seen, std::vector<submit_status>(4, submit_status::rejected));
  EXPECT_EQ(bulk_accepted, 0U);
}

TEST(WorkerPoolReentrancy, ShutdownAndWaitIdleFromAWorkerThrowLogicError) {
  std::atomic<int> logic_errors{0};
  crew::worker_pool<int>* self = nullptr;
  crew::worker_pool<int> pool{[&](int&&) {
                                try {
                                  (void)self->shutdown();
                                } catch (const std::logic_error&) {
                                  logic_errors++;
                                }
                                try {
                                  self->wait_idle();
                                } catch (const std::logic_error&) {
                                  logic_errors++;
                                }
                                try {
                                  (void)self->shutdown_for(1s);
                                } catch (const std::logic_error&) {
                                  logic_errors++;
                                }
                                try {
                                  (void)self->shutdown_until(std::chrono::steady_clock::now());
                                } catch (const std::logic_error&) {
                                  logic_errors++;
                                }
                              },
                              {.workers = 1, .queue_capacity = 4}};
  self = &pool;
  ASSERT_EQ(pool.submit(1), submit_status::accepted);
  pool.wait_idle();
  EXPECT_EQ(logic_errors.load(), 4);
  EXPECT_FALSE(pool.is_shut_down()) << "a refused shutdown changed the pool";
  EXPECT_EQ(pool.submit(2), submit_status::accepted);
  pool.wait_idle();
}

TEST(WorkerPoolReentrancy, SubmitFromAWorkerWithRoomIsAccepted) {
  std::atomic<int> ran{0};
  crew::worker_pool<int>* self = nullptr;
  crew::worker_pool<int> pool{[&](int&& depth) {
                                ran++;
                                if (depth < 100) {
                                  EXPECT_EQ(self->submit(depth + 1), submit_status::accepted);
                                }
                              },
                              {.workers = 2, .queue_capacity = 16}};
  self = &pool;
  ASSERT_EQ(pool.submit(0), submit_status::accepted);
  ASSERT_TRUE(crew_test::eventually([&] { return ran.load() == 101; }));
  pool.wait_idle();
}

// ---- shutdown table -------------------------------------------------------------------------

TEST(WorkerPoolShutdown, DrainRunsEveryQueuedJob) {
  std::atomic<int> ran{0};
  crew_test::gate hold;
  crew::worker_pool<int> pool{[&](int&&) {
                                hold.wait();
                                ran++;
                              },
                              {.workers = 2, .queue_capacity = 64}};
  for (int i = 0; i < 50; ++i) ASSERT_EQ(pool.submit(int{i}), submit_status::accepted);
  std::thread opener([&] {
    std::this_thread::sleep_for(10ms);
    hold.open();
  });
  auto r = pool.shutdown(shutdown_mode::drain);
  opener.join();
  EXPECT_EQ(ran.load(), 50);
  EXPECT_EQ(r.executed, 50U);
  EXPECT_TRUE(r.handed_back.empty());
  EXPECT_EQ(r.still_running, 0U);
  EXPECT_TRUE(r.drained);
}

TEST(WorkerPoolShutdown, AbortHandsBackQueuedJobsAndStopsRunningOnes) {
  std::atomic<int> ran{0};
  std::atomic<bool> saw_stop{false};
  crew::worker_pool<int> pool{[&](int&&, std::stop_token st) {
                                ran++;
                                while (!st.stop_requested()) std::this_thread::sleep_for(100us);
                                saw_stop = true;
                              },
                              {.workers = 1, .queue_capacity = 64}};
  for (int i = 0; i < 20; ++i) ASSERT_EQ(pool.submit(int{i}), submit_status::accepted);
  ASSERT_TRUE(crew_test::eventually([&] { return ran.load() == 1; }));
  auto r = pool.shutdown(shutdown_mode::abort);
  EXPECT_TRUE(saw_stop.load()) << "the running job did not see a stop request";
  EXPECT_EQ(ran.load(), 1);
  EXPECT_EQ(r.executed, 1U);
  ASSERT_EQ(r.handed_back.size(), 19U);
  for (int i = 0; i < 19; ++i)
    EXPECT_EQ(r.handed_back[static_cast<std::size_t>(i)], i + 1) << "handed back out of order";
  EXPECT_FALSE(r.drained);
  EXPECT_EQ(pool.stats().handed_back, 19U);
}

TEST(WorkerPoolShutdown, DeadlineReturnsByTheDeadlineWhenAJobIgnoresItsToken) {
  crew_test::gate release;
  std::atomic<int> started{0};
  auto pool = std::make_unique<crew::worker_pool<int>>(
      [&](int&&) {
        started++;
        release.wait();  // ignores the stop token
      },
      crew::pool_options<int>{.workers = 1, .queue_capacity = 64});
  for (int i = 0; i < 10; ++i) ASSERT_EQ(pool->submit(int{i}), submit_status::accepted);
  ASSERT_TRUE(crew_test::eventually([&] { return started.load() == 1; }));
  const auto t0 = std::chrono::steady_clock::now();
  auto r = pool->shutdown_for(50ms);
  const auto took = std::chrono::steady_clock::now() - t0;
  EXPECT_GE(took, 45ms);
  EXPECT_LT(took, 20s) << "shutdown_for did not return while a job ignored its token";
  EXPECT_EQ(r.still_running, 1U);
  EXPECT_FALSE(r.drained);
  EXPECT_EQ(r.executed, 0U);
  // The worker had claimed a batch: the jobs it holds come back once its job returns.
  const std::size_t first = r.handed_back.size();
  release.open();
  auto later = pool->shutdown();
  EXPECT_EQ(later.still_running, 0U);
  EXPECT_EQ(first + later.handed_back.size(), 9U) << "each unstarted job comes back exactly once";
  EXPECT_EQ(later.executed, 1U);
  pool.reset();
}

TEST(WorkerPoolShutdown, DeadlineDrainsWhenThereIsTime) {
  std::atomic<int> ran{0};
  crew::worker_pool<int> pool{[&](int&&) { ran++; }, {.workers = 2, .queue_capacity = 64}};
  for (int i = 0; i < 50; ++i) ASSERT_EQ(pool.submit(int{i}), submit_status::accepted);
  auto r = pool.shutdown_until(std::chrono::steady_clock::now() + 30s);
  EXPECT_TRUE(r.drained);
  EXPECT_EQ(r.executed, 50U);
  EXPECT_EQ(ran.load(), 50);
  EXPECT_TRUE(r.handed_back.empty());
}

TEST(WorkerPoolShutdown, PassedDeadlineIsAnAbortThatReturnsAtOnce) {
  crew_test::gate hold;
  std::atomic<int> ran{0};
  crew::worker_pool<int> pool{[&](int&&, std::stop_token st) {
                                ran++;
                                while (!st.stop_requested() && !hold.is_open())
                                  std::this_thread::sleep_for(100us);
                              },
                              {.workers = 1, .queue_capacity = 64}};
  for (int i = 0; i < 10; ++i) ASSERT_EQ(pool.submit(int{i}), submit_status::accepted);
  ASSERT_TRUE(crew_test::eventually([&] { return ran.load() == 1; }));
  auto r = pool.shutdown_for(0s);
  auto again = pool.shutdown_until(std::chrono::system_clock::now() - 1h);
  auto last = pool.shutdown();
  EXPECT_EQ(r.handed_back.size() + again.handed_back.size() + last.handed_back.size(), 9U);
  EXPECT_EQ(last.executed, 1U);
  EXPECT_EQ(ran.load(), 1);
}

TEST(WorkerPoolShutdown, DestructorDrains) {
  std::atomic<int> ran{0};
  {
    crew::worker_pool<int> pool{[&](int&&) {
                                  std::this_thread::sleep_for(100us);
                                  ran++;
                                },
                                {.workers = 2, .queue_capacity = 256}};
    for (int i = 0; i < 200; ++i) ASSERT_EQ(pool.submit(int{i}), submit_status::accepted);
  }
  EXPECT_EQ(ran.load(), 200);
}

TEST(WorkerPoolShutdown, IsIdempotent) {
  crew::worker_pool<int> pool{[](int&&) {}, {.workers = 2, .queue_capacity = 8}};
  for (int i = 0; i < 5; ++i) ASSERT_EQ(pool.submit(int{i}), submit_status::accepted);
  auto a = pool.shutdown();
  auto b = pool.shutdown(shutdown_mode::abort);
  auto c = pool.shutdown_for(1s);
  EXPECT_TRUE(a.drained);
  EXPECT_TRUE(b.drained) << "nothing was left to abort: every accepted job ran";
  EXPECT_TRUE(c.drained);
  EXPECT_EQ(a.executed, 5U);
  EXPECT_EQ(b.executed, 5U);
  EXPECT_TRUE(b.handed_back.empty());
}

TEST(WorkerPoolShutdown, ConcurrentAbortsHandEachJobBackExactlyOnce) {
  for (int round = 0; round < 20; ++round) {
    crew_test::gate hold;
    crew::worker_pool<int> pool{[&](int&&, std::stop_token st) {
                                  while (!st.stop_requested()) std::this_thread::yield();
                                },
                                {.workers = 2, .queue_capacity = 1024}};
    for (int i = 0; i < 1000; ++i) ASSERT_EQ(pool.submit(int{i}), submit_status::accepted);
    std::vector<crew::shutdown_report<int>> reports(4);
    std::vector<std::thread> threads;
    for (std::size_t t = 0; t < reports.size(); ++t) {
      threads.emplace_back([&, t] {
        reports[t] = t % 2 == 0 ? pool.shutdown(shutdown_mode::abort) : pool.shutdown_for(0ms);
      });
    }
    for (auto& t : threads) t.join();
    std::multiset<int> back;
    for (auto& r : reports) back.insert(r.handed_back.begin(), r.handed_back.end());
    const std::uint64_t executed = pool.stats().executed;
    EXPECT_EQ(back.size() + executed, 1000U);
    EXPECT_EQ(std::set<int>(back.begin(), back.end()).size(), back.size())
        << "a job was handed back twice";
  }
}

TEST(WorkerPoolShutdown, AbortEscalatesADrainInProgress) {
  std::atomic<int> ran{0};
  crew::worker_pool<int> pool{[&](int&&, std::stop_token st) {
                                ran++;
                                for (int i = 0; i < 200 && !st.stop_requested(); ++i)
                                  std::this_thread::sleep_for(1ms);
                              },
                              {.workers = 1, .queue_capacity = 256}};
  for (int i = 0; i < 200; ++i) ASSERT_EQ(pool.submit(int{i}), submit_status::accepted);
  crew::shutdown_report<int> drain_report;
  std::thread drainer([&] { drain_report = pool.shutdown(shutdown_mode::drain); });
  ASSERT_TRUE(crew_test::eventually([&] { return ran.load() >= 1; }));
  std::this_thread::sleep_for(5ms);
  auto abort_report = pool.shutdown(shutdown_mode::abort);
  drainer.join();
  EXPECT_LT(ran.load(), 200) << "the abort did not escalate the drain";
  EXPECT_EQ(static_cast<std::uint64_t>(ran.load()) + drain_report.handed_back.size() +
                abort_report.handed_back.size(),
            200U);
  EXPECT_FALSE(drain_report.drained);
}

// ---- wait_idle ------------------------------------------------------------------------------

TEST(WorkerPoolWaitIdle, WaitsForQueuedAndRunningJobs) {
  std::atomic<int> ran{0};
  crew::worker_pool<int> pool{[&](int&&) {
                                std::this_thread::sleep_for(200us);
                                ran++;
                              },
                              {.workers = 2, .queue_capacity = 128}};
  for (int i = 0; i < 100; ++i) ASSERT_EQ(pool.submit(int{i}), submit_status::accepted);
  pool.wait_idle();
  EXPECT_EQ(ran.load(), 100) << "wait_idle returned before every job ran";
  pool.wait_idle();  // idle already: returns at once
  EXPECT_EQ(pool.stats().busy, 0U);
}

TEST(WorkerPoolWaitIdle, ConcurrentWaitersAndShutdownAllReturn) {
  for (int round = 0; round < 10; ++round) {
    std::atomic<int> ran{0};
    crew::worker_pool<int> pool{[&](int&&) { ran++; }, {.workers = 2, .queue_capacity = 64}};
    std::vector<std::thread> threads;
    for (int t = 0; t < 3; ++t) {
      threads.emplace_back([&] {
        for (int i = 0; i < 200; ++i) (void)pool.submit(int{i});
        pool.wait_idle();
      });
    }
    threads.emplace_back([&] { pool.wait_idle(); });
    threads.emplace_back([&] {
      std::this_thread::sleep_for(std::chrono::microseconds(round * 100));
      (void)pool.shutdown(round % 2 == 0 ? shutdown_mode::drain : shutdown_mode::abort);
    });
    for (auto& t : threads) t.join();  // a lost wake-up hangs here (the ctest timeout fails it)
    auto s = pool.stats();
    EXPECT_EQ(s.accepted, s.executed + s.handed_back);
  }
}

// ---- exceptions -----------------------------------------------------------------------------

TEST(WorkerPoolExceptions, HandlerExceptionsAreCountedReportedAndSurvived) {
  std::atomic<int> errors_seen{0};
  std::atomic<int> std_errors{0};
  std::atomic<int> ran{0};
  crew::pool_options<int> o{.workers = 1, .queue_capacity = 64};
  o.on_error = [&](std::exception_ptr e) {
    errors_seen++;
    try {
      std::rethrow_exception(e);
    } catch (const std::runtime_error&) {
      std_errors++;
    } catch (...) {
    }
  };
  crew::worker_pool<int> pool{[&](int&& i) {
                                ran++;
                                if (i % 3 == 0) throw std::runtime_error("boom");
                                if (i % 3 == 1) throw 42;  // not a std::exception
                              },
                              std::move(o)};
  for (int i = 0; i < 30; ++i) ASSERT_EQ(pool.submit(int{i}), submit_status::accepted);
  pool.wait_idle();
  const auto s = pool.stats();
  EXPECT_EQ(ran.load(), 30) << "a throwing handler killed its worker";
  EXPECT_EQ(s.executed, 30U);
  EXPECT_EQ(s.failed, 20U);
  EXPECT_EQ(errors_seen.load(), 20);
  EXPECT_EQ(std_errors.load(), 10);
}

TEST(WorkerPoolExceptions, ThrowingOnErrorIsContained) {
  crew::pool_options<int> o{.workers = 1, .queue_capacity = 8};
  o.on_error = [](std::exception_ptr) { throw std::logic_error("on_error threw"); };
  crew::worker_pool<int> pool{[](int&&) { throw 1; }, std::move(o)};
  for (int i = 0; i < 5; ++i) ASSERT_EQ(pool.submit(int{i}), submit_status::accepted);
  pool.wait_idle();
  EXPECT_EQ(pool.stats().failed, 5U);
}

// ---- handler forms --------------------------------------------------------------------------

struct counting_handler {
  std::atomic<int>* count;
  void operator()(int&& v) const { count->fetch_add(v); }
};

TEST(WorkerPoolHandler, ConcreteHandlerType) {
  std::atomic<int> count{0};
  {
    crew::worker_pool<int, counting_handler> pool{counting_handler{&count}, {.workers = 2}};
    for (int i = 0; i < 100; ++i) ASSERT_EQ(pool.submit(1), submit_status::accepted);
  }
  EXPECT_EQ(count.load(), 100);
}

TEST(WorkerPoolHandler, StopTokenFormWinsWhenBothAreAccepted) {
  struct both {
    std::atomic<int>* token_calls;
    std::atomic<int>* plain_calls;
    void operator()(int&&) const { plain_calls->fetch_add(1); }
    void operator()(int&&, std::stop_token) const { token_calls->fetch_add(1); }
  };
  std::atomic<int> with_token{0};
  std::atomic<int> plain{0};
  {
    crew::worker_pool<int> pool{both{&with_token, &plain}, {.workers = 1}};
    for (int i = 0; i < 10; ++i) ASSERT_EQ(pool.submit(1), submit_status::accepted);
  }
  EXPECT_EQ(with_token.load(), 10);
  EXPECT_EQ(plain.load(), 0);
}

TEST(WorkerPoolHandler, MoveOnlyJobsAndMoveOnlyHandlerState) {
  auto state = std::make_unique<std::atomic<int>>(0);
  auto* raw = state.get();
  {
    crew::worker_pool<job_ptr> pool{[s = std::move(state)](job_ptr&& j) { s->fetch_add(*j); },
                                    {.workers = 2}};
    for (int i = 0; i < 100; ++i)
      ASSERT_EQ(pool.submit(std::make_unique<int>(2)), submit_status::accepted);
    pool.wait_idle();
    EXPECT_EQ(raw->load(), 200);
  }
}

// ---- stats ----------------------------------------------------------------------------------

TEST(WorkerPoolStats, CountersMatchWhatHappened) {
  crew_test::gate hold;
  crew::pool_options<int> o{.workers = 1, .queue_capacity = 2, .on_full = overflow_policy::reject};
  o.track_latency = true;
  crew::worker_pool<int> pool{[&](int&& i) {
                                if (i == 0) hold.wait();
                                if (i == 2) throw std::runtime_error("x");
                              },
                              std::move(o)};
  ASSERT_EQ(pool.submit(0), submit_status::accepted);
  ASSERT_TRUE(crew_test::eventually([&] { return pool.stats().busy == 1; }));
  ASSERT_EQ(pool.submit(1), submit_status::accepted);
  ASSERT_EQ(pool.submit(2), submit_status::accepted);
  EXPECT_EQ(pool.submit(3), submit_status::rejected);
  EXPECT_EQ(pool.try_submit(4), submit_status::rejected);
  auto s = pool.stats();
  EXPECT_EQ(s.workers, 1U);
  EXPECT_EQ(s.busy, 1U);
  EXPECT_EQ(s.queue_depth, 2U);
  EXPECT_EQ(s.capacity, 2U);
  EXPECT_EQ(s.accepted, 3U);
  EXPECT_EQ(s.rejected, 2U);
  hold.open();
  pool.wait_idle();
  s = pool.stats();
  EXPECT_EQ(s.executed, 3U);
  EXPECT_EQ(s.failed, 1U);
  EXPECT_EQ(s.queue_depth, 0U);
  EXPECT_EQ(s.busy, 0U);
  EXPECT_TRUE(s.latency_enabled);
  EXPECT_EQ(s.queue_wait.count, 3U);
  EXPECT_EQ(s.run_time.count, 3U);
  const std::string text = crew::to_prometheus(s, "test_pool");
  EXPECT_NE(text.find("test_pool_executed_total 3"), std::string::npos) << text;
  EXPECT_NE(text.find("test_pool_rejected_total 2"), std::string::npos) << text;
}

TEST(WorkerPoolStats, LatencyOffLeavesHistogramsEmpty) {
  crew::worker_pool<int> pool{[](int&&) {}, {.workers = 1}};
  for (int i = 0; i < 10; ++i) ASSERT_EQ(pool.submit(int{i}), submit_status::accepted);
  pool.wait_idle();
  auto s = pool.stats();
  EXPECT_FALSE(s.latency_enabled);
  EXPECT_EQ(s.queue_wait.count, 0U);
  EXPECT_EQ(s.run_time.count, 0U);
}

TEST(WorkerPoolLifecycle, NoThreadOutlivesThePool) {
  crew_test::start_sanitizer_threads();
  const long before = crew_test::thread_count();
  for (int i = 0; i < 20; ++i) {
    crew::worker_pool<int> pool{[](int&&) {}, {.workers = 3, .recycle_after = 4}};
    for (int j = 0; j < 100; ++j) ASSERT_EQ(pool.submit(int{j}), submit_status::accepted);
  }
  EXPECT_TRUE(crew_test::eventually([&] { return crew_test::thread_count() == before; }))
      << "threads before " << before << ", after " << crew_test::thread_count();
}

TEST(WorkerPoolLifecycle, IdleWorkersPark) {
  crew::worker_pool<int> pool{[](int&&) {}, {.workers = 2}};
  ASSERT_EQ(pool.submit(1), submit_status::accepted);
  pool.wait_idle();
  EXPECT_TRUE(crew_test::eventually([&] {
    return pool.state_of(0) == crew::worker_state::parked &&
           pool.state_of(1) == crew::worker_state::parked;
  })) << "idle workers did not park";
}

TEST(WorkerPoolLifecycle, IdlePoolBurnsNoCpu) {
  crew::worker_pool<int> pool{[](int&&) {}, {.workers = 2}};
  ASSERT_EQ(pool.submit(1), submit_status::accepted);
  pool.wait_idle();
  ASSERT_TRUE(crew_test::eventually([&] {
    return pool.state_of(0) == crew::worker_state::parked &&
           pool.state_of(1) == crew::worker_state::parked;
  }));
  // Process CPU time counts only this process's threads, so a busy machine does not disturb it;
  // a worker that spins instead of sleeping would burn the whole 300 ms.
  const auto cpu_now = [] {
    timespec ts{};
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return std::chrono::seconds(ts.tv_sec) + std::chrono::nanoseconds(ts.tv_nsec);
  };
  const auto before = cpu_now();
  std::this_thread::sleep_for(300ms);
  const auto used = cpu_now() - before;
  std::printf("[ idle cpu ] %.3f ms of CPU in 300 ms idle\n",
              std::chrono::duration<double, std::milli>(used).count());
  EXPECT_LT(used, 30ms) << "an idle pool burns CPU: its workers are not sleeping";
}

}  // namespace
