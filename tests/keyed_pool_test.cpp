// crew::keyed_pool: every row of DESIGN.md's "Keyed pools" contract. Order, exclusion and
// visibility under concurrent submitters; exact keys with a colliding hash; fairness; bounds per
// policy; every submit form; every shutdown mode with per-key hand-back order; exceptions; bad
// options; calls from inside a worker; statistics.

#include <crew/keyed_pool.hpp>

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "test_support.hpp"

namespace {

using namespace std::chrono_literals;
using crew::overflow_policy;
using crew::shutdown_mode;
using crew::submit_status;
using crew_test::eventually;
using crew_test::gate;

struct item {
  int producer = 0;
  int seq = 0;
  std::uint32_t key = 0;
};

// A hash that sends every key to one bucket: only KeyEqual tells keys apart.
struct colliding_hash {
  std::size_t operator()(std::uint32_t) const noexcept { return 42; }
};

// ---- order, exclusion, visibility -------------------------------------------------------------

// Per key: jobs run one at a time, each producer's jobs in its program order, and a plain
// (non-atomic) per-key counter written by every job is never torn or lost: the pool orders the
// jobs of a key (TSan checks the happens-before edges). Run with the default hash and with one
// that collides every key.
template <class Hash>
void check_order_and_exclusion(std::size_t workers, std::size_t key_budget) {
  constexpr int producers = 4;
  constexpr std::uint32_t keys = 64;
  const int per_producer = static_cast<int>(crew_test::scaled(20000));
  struct per_key {
    std::atomic<int> inside{0};
    std::atomic<int> overlaps{0};
    std::uint64_t count = 0;                     // plain: ordered by the pool
    int last_seq[producers] = {-1, -1, -1, -1};  // plain: ordered by the pool
    int out_of_order = 0;                        // plain
  };
  std::vector<per_key> state(keys);
  {
    crew::keyed_pool<std::uint32_t, item, crew::job_handler<item>, Hash> pool{
        [&](item&& it) {
          per_key& k = state[it.key];
          if (k.inside.fetch_add(1) != 0) k.overlaps.fetch_add(1);
          if (it.seq <= k.last_seq[it.producer]) ++k.out_of_order;
          k.last_seq[it.producer] = it.seq;
          ++k.count;
          k.inside.fetch_sub(1);
        },
        {.workers = workers, .queue_capacity = 256, .key_budget = key_budget}};
    std::vector<std::thread> threads;
    for (int p = 0; p < producers; ++p) {
      threads.emplace_back([&pool, p, per_producer] {
        std::uint64_t rng = 0x1234 + static_cast<std::uint64_t>(p);
        for (int s = 0; s < per_producer; ++s) {
          const auto key = static_cast<std::uint32_t>(crew::detail::splitmix64(rng) % keys);
          ASSERT_EQ(pool.submit(key, item{p, s, key}), submit_status::accepted);
        }
      });
    }
    for (auto& t : threads) t.join();
    pool.wait_idle();
    const crew::pool_stats s = pool.stats();
    EXPECT_EQ(s.executed, static_cast<std::uint64_t>(producers) * per_producer);
    EXPECT_EQ(s.queue_depth, 0U);
    // A holder gives its key up just after the key's last job returned (its next take() finds
    // the FIFO empty), so right after wait_idle() a key may still count for an instant.
    EXPECT_TRUE(eventually([&] { return pool.stats().active_keys == 0; }));
  }
  std::uint64_t total = 0;
  for (const per_key& k : state) {
    EXPECT_EQ(k.overlaps.load(), 0);
    EXPECT_EQ(k.out_of_order, 0);
    total += k.count;
  }
  EXPECT_EQ(total, static_cast<std::uint64_t>(producers) * per_producer);
}

TEST(KeyedPool, PerKeyOrderExclusionAndVisibility) {
  check_order_and_exclusion<std::hash<std::uint32_t>>(4, 16);
}

TEST(KeyedPool, PerKeyOrderWithEveryKeyColliding) {
  check_order_and_exclusion<colliding_hash>(3, 2);
}

TEST(KeyedPool, OrderWithBudgetOfOne) { check_order_and_exclusion<std::hash<std::uint32_t>>(2, 1); }

// Keys that collide in every hash bit are still separate lanes: a job of key 1 that waits for a
// job of key 2 completes, because key 2 runs on the other worker meanwhile.
TEST(KeyedPool, CollidingKeysDoNotShareALane) {
  gate second_ran;
  std::atomic<bool> first_saw_second{false};
  crew::keyed_pool<std::uint32_t, int, crew::job_handler<int>, colliding_hash> pool{
      [&](int v) {
        if (v == 1) {
          first_saw_second = eventually([&] { return second_ran.is_open(); }, 10s);
        } else {
          second_ran.open();
        }
      },
      {.workers = 2, .queue_capacity = 8}};
  ASSERT_EQ(pool.submit(1, 1), submit_status::accepted);
  ASSERT_EQ(pool.submit(2, 2), submit_status::accepted);
  pool.wait_idle();
  EXPECT_TRUE(first_saw_second.load());
}

// Work-conserving across keys: while key 1's long job runs, key 2's jobs all run on the other
// worker (none waits behind the running job).
TEST(KeyedPool, OtherKeysRunWhileOneKeyIsBusy) {
  gate release;
  std::atomic<int> key2_done{0};
  crew::keyed_pool<int, int> pool{[&](int v) {
                                    if (v < 0) {
                                      release.wait();
                                    } else {
                                      key2_done.fetch_add(1);
                                    }
                                  },
                                  {.workers = 2, .queue_capacity = 64}};
  ASSERT_EQ(pool.submit(1, -1), submit_status::accepted);
  for (int i = 0; i < 20; ++i) ASSERT_EQ(pool.submit(2, int{i}), submit_status::accepted);
  EXPECT_TRUE(eventually([&] { return key2_done.load() == 20; }));
  EXPECT_EQ(pool.stats().busy, 1U);
  release.open();
  pool.wait_idle();
}

// ---- fairness ---------------------------------------------------------------------------------

// One worker, a hot key with a backlog, then a cold key: the cold key's job runs after at most
// key_budget more hot jobs (the hot key goes behind the cold one), not after the whole backlog.
TEST(KeyedPool, HotKeyYieldsAfterItsBudget) {
  constexpr std::size_t budget = 4;
  gate release;
  std::mutex m;
  std::vector<int> order;  // guarded by m
  crew::keyed_pool<int, int> pool{[&](int v) {
                                    if (v == 0) release.wait();
                                    const std::lock_guard lock(m);
                                    order.push_back(v);
                                  },
                                  {.workers = 1, .queue_capacity = 256, .key_budget = budget}};
  ASSERT_EQ(pool.submit(1, 0), submit_status::accepted);  // holds the worker
  ASSERT_TRUE(eventually([&] { return pool.stats().busy == 1; }));
  for (int i = 1; i <= 100; ++i) ASSERT_EQ(pool.submit(1, int{i}), submit_status::accepted);
  ASSERT_EQ(pool.submit(2, 1000), submit_status::accepted);
  release.open();
  pool.wait_idle();
  const std::lock_guard lock(m);
  ASSERT_EQ(order.size(), 102U);
  const auto cold = std::find(order.begin(), order.end(), 1000) - order.begin();
  // The job holding the worker was the first of the hot key's turn: at most budget hot jobs
  // run before the cold one.
  EXPECT_LE(cold, static_cast<std::ptrdiff_t>(budget));
  EXPECT_GE(cold, 1);
  // The hot key's own jobs stay in order around it.
  std::vector<int> hot;
  for (int v : order)
    if (v != 1000) hot.push_back(v);
  EXPECT_TRUE(std::is_sorted(hot.begin(), hot.end()));
}

// ---- bounds -----------------------------------------------------------------------------------

// The pool: capacity() jobs queued across keys, then refusals, and queue_depth says capacity().
TEST(KeyedPool, GlobalBoundIsHonest) {
  gate release;
  crew::keyed_pool<int, int> pool{[&](int v) {
                                    if (v < 0) release.wait();
                                  },
                                  {.workers = 1, .queue_capacity = 8}};
  ASSERT_EQ(pool.capacity(), 8U);
  ASSERT_EQ(pool.submit(-1, -1), submit_status::accepted);
  ASSERT_TRUE(eventually([&] { return pool.stats().busy == 1; }));
  for (int i = 0; i < 8; ++i) ASSERT_EQ(pool.try_submit(i, int{i}), submit_status::accepted);
  EXPECT_EQ(pool.try_submit(100, 100), submit_status::rejected);
  EXPECT_EQ(pool.submit_for(101, 101, 5ms), submit_status::timed_out);
  const crew::pool_stats s = pool.stats();
  EXPECT_EQ(s.queue_depth, 8U);
  EXPECT_EQ(s.active_keys, 9U);
  EXPECT_EQ(s.rejected, 2U);
  release.open();
  pool.wait_idle();
  EXPECT_EQ(pool.stats().executed, 9U);
}

struct key_limit : ::testing::TestWithParam<overflow_policy> {};

// max_per_key: a key with max_per_key queued jobs gets its policy's answer; other keys are
// untouched; the running job does not count.
TEST_P(key_limit, FullKeyGetsItsPolicysAnswer) {
  const overflow_policy policy = GetParam();
  gate release;
  std::atomic<int> dropped{0};
  crew::pool_options<int> o{.workers = 2, .queue_capacity = 64, .on_full = policy};
  o.max_per_key = 3;
  o.on_drop = [&](int&&) { dropped.fetch_add(1); };
  crew::keyed_pool<int, int> pool{[&](int v) {
                                    if (v < 0) release.wait();
                                  },
                                  std::move(o)};
  ASSERT_EQ(pool.submit(1, -1), submit_status::accepted);  // running: not counted
  ASSERT_TRUE(eventually([&] { return pool.stats().busy == 1; }));
  for (int i = 0; i < 3; ++i) ASSERT_EQ(pool.try_submit(1, int{i}), submit_status::accepted);
  EXPECT_EQ(pool.try_submit(1, 3), submit_status::rejected);
  EXPECT_EQ(pool.try_submit(2, 3), submit_status::accepted);  // another key: untouched
  switch (policy) {
    case overflow_policy::reject: EXPECT_EQ(pool.submit(1, 4), submit_status::rejected); break;
    case overflow_policy::drop:
      EXPECT_EQ(pool.submit(1, 4), submit_status::dropped);
      EXPECT_EQ(dropped.load(), 1);
      break;
    case overflow_policy::block: {
      EXPECT_EQ(pool.submit_for(1, 4, 10ms), submit_status::timed_out);
      std::atomic<bool> done{false};
      std::thread waiter([&] {
        EXPECT_EQ(pool.submit(1, 5), submit_status::accepted);
        done = true;
      });
      std::this_thread::sleep_for(20ms);
      EXPECT_FALSE(done.load());  // still waiting for room in key 1
      release.open();             // key 1's queued jobs start: room
      waiter.join();
      EXPECT_TRUE(done.load());
      break;
    }
  }
  release.open();
  pool.wait_idle();
}

INSTANTIATE_TEST_SUITE_P(Policies, key_limit,
                         ::testing::Values(overflow_policy::block, overflow_policy::reject,
                                           overflow_policy::drop));

// A blocked producer waiting for a free slot is woken when jobs start.
TEST(KeyedPool, BlockedSubmitWaitsForAFreeSlot) {
  gate release;
  crew::keyed_pool<int, int> pool{[&](int v) {
                                    if (v < 0) release.wait();
                                  },
                                  {.workers = 1, .queue_capacity = 2}};
  ASSERT_EQ(pool.submit(0, -1), submit_status::accepted);
  ASSERT_TRUE(eventually([&] { return pool.stats().busy == 1; }));
  ASSERT_EQ(pool.submit(1, 1), submit_status::accepted);
  ASSERT_EQ(pool.submit(2, 2), submit_status::accepted);
  std::atomic<bool> done{false};
  std::thread producer([&] {
    EXPECT_EQ(pool.submit(3, 3), submit_status::accepted);
    done = true;
  });
  ASSERT_TRUE(eventually([&] { return pool.stats().blocked_producers == 1; }));
  EXPECT_FALSE(done.load());
  release.open();
  producer.join();
  pool.wait_idle();
  EXPECT_EQ(pool.stats().executed, 4U);
}

// ---- submit forms -----------------------------------------------------------------------------

TEST(KeyedPool, EverySubmitForm) {
  std::mutex m;
  std::map<int, std::vector<int>> seen;  // guarded by m
  crew::keyed_pool<int, int> pool{[&](int v) {
                                    const std::lock_guard lock(m);
                                    seen[v / 1000].push_back(v % 1000);
                                  },
                                  {.workers = 2, .queue_capacity = 64}};
  std::stop_source stop;
  EXPECT_EQ(pool.submit(1, 1000), submit_status::accepted);
  EXPECT_EQ(pool.try_submit(1, 1001), submit_status::accepted);
  EXPECT_EQ(pool.submit_for(1, 1002, 1s), submit_status::accepted);
  EXPECT_EQ(pool.submit_until(1, 1003, std::chrono::system_clock::now() + 1s),
            submit_status::accepted);
  EXPECT_EQ(pool.submit(1, 1004, stop.get_token()), submit_status::accepted);
  std::vector<int> run{1005, 1006, 1007};
  EXPECT_EQ(pool.submit_bulk(1, run), 3U);
  EXPECT_EQ(pool.try_submit_bulk(1, std::vector<int>{1008, 1009}), 2U);
  EXPECT_EQ(pool.submit_bulk(2, std::vector<int>{}), 0U);
  pool.wait_idle();
  const std::lock_guard lock(m);
  EXPECT_EQ(seen[1], (std::vector<int>{0, 1, 2, 3, 4, 5, 6, 7, 8, 9}));
}

// A bulk submit into a key stops at its bound and returns the accepted prefix; only that prefix
// is moved from.
TEST(KeyedPool, BulkStopsAtTheKeyBound) {
  gate release;
  crew::pool_options<std::unique_ptr<int>> o{.workers = 1, .queue_capacity = 64};
  o.max_per_key = 4;
  crew::keyed_pool<int, std::unique_ptr<int>> pool{[&](std::unique_ptr<int>&& p) {
                                                     if (*p < 0) release.wait();
                                                   },
                                                   std::move(o)};
  ASSERT_EQ(pool.submit(7, std::make_unique<int>(-1)), submit_status::accepted);
  ASSERT_TRUE(eventually([&] { return pool.stats().busy == 1; }));
  std::vector<std::unique_ptr<int>> jobs;
  for (int i = 0; i < 6; ++i) jobs.push_back(std::make_unique<int>(i));
  EXPECT_EQ(pool.try_submit_bulk(7, jobs), 4U);
  for (int i = 0; i < 4; ++i) EXPECT_EQ(jobs[static_cast<std::size_t>(i)], nullptr);
  EXPECT_NE(jobs[4], nullptr);
  EXPECT_NE(jobs[5], nullptr);
  release.open();
  pool.wait_idle();
}

TEST(KeyedPool, StopTokenCancelsAWaitingSubmit) {
  gate release;
  crew::keyed_pool<int, int> pool{[&](int v) {
                                    if (v < 0) release.wait();
                                  },
                                  {.workers = 1, .queue_capacity = 1}};
  ASSERT_EQ(pool.submit(0, -1), submit_status::accepted);
  ASSERT_TRUE(eventually([&] { return pool.stats().busy == 1; }));
  ASSERT_EQ(pool.submit(1, 1), submit_status::accepted);
  std::stop_source stop;
  std::thread canceller([&] {
    std::this_thread::sleep_for(10ms);
    stop.request_stop();
  });
  EXPECT_EQ(pool.submit(2, 2, stop.get_token()), submit_status::cancelled);
  canceller.join();
  EXPECT_EQ(pool.submit_until(2, 2, std::chrono::steady_clock::now() - 1s),
            submit_status::timed_out);  // a passed deadline: one attempt
  release.open();
  pool.wait_idle();
}

// ---- shutdown ---------------------------------------------------------------------------------

TEST(KeyedPool, DrainRunsEverything) {
  std::atomic<int> ran{0};
  crew::keyed_pool<int, int> pool{[&](int) { ran.fetch_add(1); },
                                  {.workers = 2, .queue_capacity = 1024}};
  for (int i = 0; i < 1000; ++i) ASSERT_EQ(pool.submit(i % 7, int{i}), submit_status::accepted);
  const auto report = pool.shutdown();
  EXPECT_TRUE(report.drained);
  EXPECT_EQ(report.executed, 1000U);
  EXPECT_TRUE(report.handed_back.empty());
  EXPECT_EQ(ran.load(), 1000);
  EXPECT_EQ(pool.submit(1, 1), submit_status::closed);
  EXPECT_EQ(pool.try_submit(1, 1), submit_status::closed);
}

// Abort hands back every unstarted job as {key, job}, each key's jobs in their order.
TEST(KeyedPool, AbortHandsBackInPerKeyOrder) {
  gate release;
  std::atomic<int> started{0};
  crew::keyed_pool<int, int> pool{[&](int v, std::stop_token) {
                                    started.fetch_add(1);
                                    if (v < 0) release.wait();
                                  },
                                  {.workers = 2, .queue_capacity = 256}};
  ASSERT_EQ(pool.submit(100, -1), submit_status::accepted);
  ASSERT_EQ(pool.submit(200, -2), submit_status::accepted);
  ASSERT_TRUE(eventually([&] { return started.load() == 2; }));
  for (int i = 0; i < 60; ++i) ASSERT_EQ(pool.submit(i % 5, int{i}), submit_status::accepted);
  for (int i = 0; i < 10; ++i) ASSERT_EQ(pool.submit(100, 1000 + i), submit_status::accepted);
  std::thread releaser([&] {
    std::this_thread::sleep_for(20ms);
    release.open();
  });
  const auto report = pool.shutdown(shutdown_mode::abort);
  releaser.join();
  EXPECT_FALSE(report.drained);
  EXPECT_EQ(report.still_running, 0U);
  EXPECT_EQ(report.executed, 2U);
  ASSERT_EQ(report.handed_back.size(), 70U);
  std::map<int, std::vector<int>> by_key;
  for (const auto& [key, job] : report.handed_back) by_key[key].push_back(job);
  ASSERT_EQ(by_key.size(), 6U);
  for (auto& [key, jobs] : by_key) {
    EXPECT_TRUE(std::is_sorted(jobs.begin(), jobs.end())) << "key " << key;
    if (key < 5) {
      EXPECT_EQ(jobs.size(), 12U);
      for (int j : jobs) EXPECT_EQ(j % 5, key);
    }
  }
  EXPECT_EQ(by_key[100].size(), 10U);
  const crew::pool_stats s = pool.stats();
  EXPECT_EQ(s.handed_back, 70U);
  EXPECT_EQ(s.accepted, s.executed + s.handed_back);
  EXPECT_EQ(s.queue_depth, 0U);
  EXPECT_EQ(s.active_keys, 0U);
}

// Deadline: drains until the deadline, then hands back the rest; a job that ignores its stop
// token is still running at return and is counted.
TEST(KeyedPool, DeadlineShutdownHandsBackTheRest) {
  gate release;
  std::atomic<int> started{0};
  auto pool = std::make_unique<crew::keyed_pool<int, int>>(
      [&](int v) {
        started.fetch_add(1);
        if (v < 0) release.wait();
      },
      crew::pool_options<int>{.workers = 1, .queue_capacity = 64});
  ASSERT_EQ(pool->submit(1, -1), submit_status::accepted);
  ASSERT_TRUE(eventually([&] { return started.load() == 1; }));
  for (int i = 0; i < 5; ++i) ASSERT_EQ(pool->submit(1, int{i}), submit_status::accepted);
  for (int i = 0; i < 5; ++i) ASSERT_EQ(pool->submit(2, 10 + i), submit_status::accepted);
  const auto t0 = std::chrono::steady_clock::now();
  const auto report = pool->shutdown_for(30ms);
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 5s);
  EXPECT_EQ(report.still_running, 1U);
  EXPECT_FALSE(report.drained);
  ASSERT_EQ(report.handed_back.size(), 10U);
  std::vector<int> k1;
  std::vector<int> k2;
  for (const auto& [key, job] : report.handed_back) (key == 1 ? k1 : k2).push_back(job);
  EXPECT_EQ(k1, (std::vector<int>{0, 1, 2, 3, 4}));
  EXPECT_EQ(k2, (std::vector<int>{10, 11, 12, 13, 14}));
  release.open();
  pool.reset();  // joins the worker that was still running
  EXPECT_EQ(started.load(), 1);
}

// A worker takes a run of its key's jobs at once (one lock). A deadline shutdown while the run's
// first job is still running hands back the rest of the run first, then the key's later jobs:
// the key's order holds across the worker's stash and the table.
TEST(KeyedPool, DeadlineHandsBackAHeldRunInOrder) {
  gate release;
  std::atomic<int> started{0};
  auto pool = std::make_unique<crew::keyed_pool<int, int>>(
      [&](int v) {
        started.fetch_add(1);
        if (v < 0) release.wait();
      },
      crew::pool_options<int>{.workers = 1, .queue_capacity = 64});
  // One admission under one lock: the worker's first take gets the whole run.
  ASSERT_EQ(pool->submit_bulk(1, std::vector<int>{-1, 0, 1, 2, 3}), 5U);
  ASSERT_TRUE(eventually([&] { return started.load() == 1; }));
  for (int i = 4; i < 7; ++i) ASSERT_EQ(pool->submit(1, int{i}), submit_status::accepted);
  EXPECT_EQ(pool->stats().queue_depth, 7U);
  const auto report = pool->shutdown_for(20ms);
  EXPECT_EQ(report.still_running, 1U);
  std::vector<int> back;
  for (const auto& [key, job] : report.handed_back) {
    EXPECT_EQ(key, 1);
    back.push_back(job);
  }
  EXPECT_EQ(back, (std::vector<int>{0, 1, 2, 3, 4, 5, 6}));
  release.open();
  pool.reset();
  EXPECT_EQ(started.load(), 1);  // nothing of the run ran after the hand-back
}

// Jobs a worker has taken but not started still count against max_per_key.
TEST(KeyedPool, TakenJobsCountAgainstMaxPerKey) {
  gate release;
  crew::pool_options<int> o{.workers = 1, .queue_capacity = 64};
  o.max_per_key = 4;
  crew::keyed_pool<int, int> pool{[&](int v) {
                                    if (v < 0) release.wait();
                                  },
                                  std::move(o)};
  // One take hands all four to the worker: -1 runs, 0..2 wait in its stash (3 queued).
  ASSERT_EQ(pool.try_submit_bulk(1, std::vector<int>{-1, 0, 1, 2}), 4U);
  ASSERT_TRUE(eventually([&] { return pool.stats().busy == 1; }));
  EXPECT_EQ(pool.try_submit(1, 3), submit_status::accepted);  // the 4th queued
  EXPECT_EQ(pool.try_submit(1, 4), submit_status::rejected);
  release.open();
  pool.wait_idle();
  EXPECT_EQ(pool.try_submit(1, 4), submit_status::accepted);
  pool.wait_idle();
}

// Regression (found by the keyed chaos harness and fuzzer): an abort while a worker's job stash
// still held part of a run hung, the worker waiting for the stash to be copied out and the
// shutdown waiting for the worker to exit.
TEST(KeyedPool, AbortWithAStashedRunReturns) {
  std::atomic<bool> open{false};
  std::atomic<int> started{0};
  crew::keyed_pool<int, int> pool{[&](int v, std::stop_token t) {
                                    started.fetch_add(1);
                                    if (v == 0) {
                                      while (!open.load()) std::this_thread::sleep_for(100us);
                                    }
                                    if (v == 10) {
                                      while (!t.stop_requested()) {
                                        std::this_thread::sleep_for(100us);
                                      }
                                    }
                                  },
                                  {.workers = 1, .queue_capacity = 16, .key_budget = 16}};
  ASSERT_EQ(pool.submit(0, 0), submit_status::accepted);
  ASSERT_TRUE(eventually([&] { return started.load() == 1; }));
  for (int v : {10, 11, 12}) ASSERT_EQ(pool.submit(1, int{v}), submit_status::accepted);
  open = true;  // the worker takes key 1's run [10, 11, 12] into its stash and starts 10
  ASSERT_TRUE(eventually([&] { return started.load() == 2; }));
  std::atomic<bool> returned{false};
  std::thread watchdog([&] {
    if (!eventually([&] { return returned.load(); }, 20s)) {
      std::fputs("AbortWithAStashedRunReturns: shutdown(abort) hung\n", stderr);
      std::abort();
    }
  });
  const auto report = pool.shutdown(shutdown_mode::abort);
  returned = true;
  watchdog.join();
  std::vector<int> back;
  for (const auto& [key, job] : report.handed_back) back.push_back(job);
  EXPECT_EQ(back, (std::vector<int>{11, 12}));
  EXPECT_EQ(report.executed, 2U);
}

// Regression (found by the keyed chaos harness under ASan): a deadline shutdown copying the key
// of a still-running worker's stashed run read it after the worker, its job done, had removed
// the key's entry (heap-use-after-free; ASan reports it, and the copy below may read garbage).
// A key whose copy is slow once armed widens the window.
std::atomic<bool> g_slow_key_copies{false};
struct slow_key {
  std::string name;
  explicit slow_key(std::string n) : name(std::move(n)) {}
  slow_key(const slow_key& o) {
    if (g_slow_key_copies.load()) std::this_thread::sleep_for(50ms);
    name = o.name;
  }
  slow_key& operator=(const slow_key&) = default;
  bool operator==(const slow_key& o) const { return name == o.name; }
};
struct slow_key_hash {
  std::size_t operator()(const slow_key& k) const { return std::hash<std::string>{}(k.name); }
};

TEST(KeyedPool, DeadlineCollectReadsAKeyThatStays) {
  std::atomic<bool> open{false};
  std::atomic<bool> open10{false};
  std::atomic<int> started{0};
  auto pool = std::make_unique<crew::keyed_pool<slow_key, int, crew::job_handler<int>,
                                                slow_key_hash>>(
      [&](int v) {  // ignores its stop token
        started.fetch_add(1);
        if (v == 0) {
          while (!open.load()) std::this_thread::sleep_for(100us);
        }
        if (v == 10) {
          while (!open10.load()) std::this_thread::sleep_for(100us);
        }
      },
      crew::pool_options<int>{.workers = 1, .queue_capacity = 16, .key_budget = 16});
  const slow_key hold{"holder-key-with-a-long-name-on-the-heap"};
  const slow_key k{"a-key-whose-name-is-long-enough-to-be-on-the-heap"};
  ASSERT_EQ(pool->submit(hold, 0), submit_status::accepted);
  ASSERT_TRUE(eventually([&] { return started.load() == 1; }));
  for (int v : {10, 11, 12}) ASSERT_EQ(pool->submit(k, int{v}), submit_status::accepted);
  open = true;
  ASSERT_TRUE(eventually([&] { return started.load() == 2; }));  // 10 runs; 11, 12 stashed
  g_slow_key_copies = true;
  std::thread releaser([&] {
    std::this_thread::sleep_for(30ms);  // the collector is inside its first key copy
    open10 = true;                      // job 10 ends while the copy goes on
  });
  const auto report = pool->shutdown_for(5ms);
  releaser.join();
  g_slow_key_copies = false;
  ASSERT_EQ(report.handed_back.size(), 2U);
  for (const auto& [key, job] : report.handed_back) EXPECT_EQ(key.name, k.name);
  pool.reset();
}

TEST(KeyedPool, PassedDeadlineIsAnAbort) {
  crew::keyed_pool<int, int> pool{[](int) {}, {.workers = 1, .queue_capacity = 8}};
  const auto report = pool.shutdown_until(std::chrono::steady_clock::now() - 1s);
  EXPECT_EQ(report.still_running, 0U);
  EXPECT_EQ(pool.submit(1, 1), submit_status::closed);
}

// ---- exceptions, bad input, calls from a worker -------------------------------------------------

TEST(KeyedPool, ExceptionsGoToOnErrorAndTheKeyGoesOn) {
  std::atomic<int> errors{0};
  std::atomic<int> ran{0};
  crew::pool_options<int> o{.workers = 2, .queue_capacity = 64};
  o.on_error = [&](std::exception_ptr e) {
    try {
      std::rethrow_exception(e);
    } catch (const std::runtime_error&) {
      errors.fetch_add(1);
    }
  };
  crew::keyed_pool<int, int> pool{[&](int v) {
                                    ran.fetch_add(1);
                                    if (v % 2 == 0) throw std::runtime_error("even");
                                  },
                                  std::move(o)};
  for (int i = 0; i < 20; ++i) ASSERT_EQ(pool.submit(3, int{i}), submit_status::accepted);
  pool.wait_idle();
  EXPECT_EQ(ran.load(), 20);
  EXPECT_EQ(errors.load(), 10);
  EXPECT_EQ(pool.stats().failed, 10U);
  EXPECT_EQ(pool.stats().executed, 20U);
}

TEST(KeyedPool, BadOptionsNameTheOption) {
  const auto message = [](crew::pool_options<int> o) -> std::string {
    try {
      crew::keyed_pool<int, int> pool{[](int) {}, std::move(o)};
    } catch (const std::invalid_argument& e) {
      return e.what();
    }
    return "";
  };
  EXPECT_NE(message({.workers = 0}).find("options.workers"), std::string::npos);
  EXPECT_NE(message({.workers = 1, .queue_capacity = 0}).find("options.queue_capacity"),
            std::string::npos);
  EXPECT_NE(message({.workers = 1, .key_budget = 0}).find("options.key_budget"), std::string::npos);
  EXPECT_NE(message({.workers = 1, .queue_capacity = std::size_t{1} << 40})
                .find("options.queue_capacity"),
            std::string::npos);
}

// A throwing Hash, KeyEqual or Key copy leaves the job with the caller and the pool unchanged.
struct picky_key {
  std::string name;
  bool operator==(const picky_key& o) const {
    if (o.name == "boom" || name == "boom") throw std::runtime_error("compare");
    return name == o.name;
  }
};
struct picky_hash {
  std::size_t operator()(const picky_key& k) const {
    if (k.name == "nohash") throw std::runtime_error("hash");
    return 7;  // every key in one chain, so the compare runs
  }
};

TEST(KeyedPool, ThrowingHashOrEqualChangesNothing) {
  std::atomic<int> ran{0};
  gate release;
  crew::keyed_pool<picky_key, std::unique_ptr<int>, crew::job_handler<std::unique_ptr<int>>,
                   picky_hash>
      pool{[&](std::unique_ptr<int>&& p) {
             if (*p == 2) release.wait();  // key "a" keeps its entry while this runs
             ran.fetch_add(1);
           },
           {.workers = 1, .queue_capacity = 8}};
  auto job = std::make_unique<int>(1);
  EXPECT_THROW((void)pool.submit(picky_key{"nohash"}, std::move(job)), std::runtime_error);
  EXPECT_NE(job, nullptr);
  ASSERT_EQ(pool.submit(picky_key{"a"}, std::make_unique<int>(2)), submit_status::accepted);
  // "boom" must be compared with "a" (same hash, same chain): the compare throws.
  EXPECT_THROW((void)pool.try_submit(picky_key{"boom"}, std::move(job)), std::runtime_error);
  EXPECT_NE(job, nullptr);
  release.open();
  pool.wait_idle();
  EXPECT_EQ(pool.stats().accepted, 1U);
  EXPECT_EQ(ran.load(), 1);
  EXPECT_EQ(pool.submit(picky_key{"b"}, std::move(job)), submit_status::accepted);
  pool.wait_idle();
  EXPECT_EQ(ran.load(), 2);
}

TEST(KeyedPool, CallsFromInsideAWorker) {
  std::atomic<int> checks{0};
  crew::keyed_pool<int, int>* self = nullptr;
  gate ready;
  crew::pool_options<int> o{.workers = 1, .queue_capacity = 4};
  o.max_per_key = 1;
  crew::keyed_pool<int, int> pool{[&](int v) {
                                    if (v != 0) return;
                                    ready.wait();
                                    EXPECT_THROW(self->wait_idle(), std::logic_error);
                                    EXPECT_THROW((void)self->shutdown(), std::logic_error);
                                    EXPECT_THROW((void)self->wait_idle_for(1ms), std::logic_error);
                                    // key 5 holds max_per_key queued jobs: a blocking submit from
                                    // a worker does not wait
                                    EXPECT_EQ(self->submit(5, 2), submit_status::rejected);
                                    EXPECT_EQ(self->submit_for(5, 2, 1s), submit_status::rejected);
                                    EXPECT_EQ(self->submit(6, 3), submit_status::accepted);
                                    checks.fetch_add(1);
                                  },
                                  std::move(o)};
  self = &pool;
  ASSERT_EQ(pool.submit(0, 0), submit_status::accepted);
  ASSERT_EQ(pool.submit(5, 1), submit_status::accepted);
  ready.open();
  pool.wait_idle();
  EXPECT_EQ(checks.load(), 1);
  EXPECT_EQ(pool.stats().executed, 3U);
}

// Shutdown wakes producers waiting for room in a key (closed), and a later submit is closed.
TEST(KeyedPool, ShutdownWakesKeyWaiters) {
  gate release;
  crew::pool_options<int> o{.workers = 1, .queue_capacity = 8};
  o.max_per_key = 1;
  crew::keyed_pool<int, int> pool{[&](int v) {
                                    if (v < 0) release.wait();
                                  },
                                  std::move(o)};
  ASSERT_EQ(pool.submit(1, -1), submit_status::accepted);
  ASSERT_TRUE(eventually([&] { return pool.stats().busy == 1; }));
  ASSERT_EQ(pool.submit(1, 1), submit_status::accepted);
  std::atomic<int> result{-1};
  std::thread waiter([&] { result = static_cast<int>(pool.submit(1, 2)); });
  ASSERT_TRUE(eventually([&] { return pool.stats().blocked_producers == 1; }));
  std::thread releaser([&] {
    std::this_thread::sleep_for(10ms);
    release.open();
  });
  const auto report = pool.shutdown(shutdown_mode::abort);
  waiter.join();
  releaser.join();
  EXPECT_EQ(result.load(), static_cast<int>(submit_status::closed));
  EXPECT_EQ(report.handed_back.size(), 1U);
}

TEST(KeyedPool, WaitIdleForTimesOutWhileAKeyRuns) {
  gate release;
  crew::keyed_pool<int, int> pool{[&](int) { release.wait(); },
                                  {.workers = 1, .queue_capacity = 4}};
  ASSERT_EQ(pool.submit(1, 1), submit_status::accepted);
  EXPECT_FALSE(pool.wait_idle_for(10ms));
  release.open();
  EXPECT_TRUE(pool.wait_idle_for(10s));
}

// Recycling works in a keyed pool too: workers respawn mid-stream, order holds.
TEST(KeyedPool, RecyclingKeepsOrder) {
  std::vector<int> last(8, -1);  // plain: ordered per key by the pool
  std::atomic<int> bad{0};
  crew::keyed_pool<int, std::pair<int, int>> pool{
      [&](std::pair<int, int>&& j) {
        if (j.second <= last[static_cast<std::size_t>(j.first)]) bad.fetch_add(1);
        last[static_cast<std::size_t>(j.first)] = j.second;
      },
      {.workers = 2, .queue_capacity = 64, .recycle_after = 50}};
  for (int i = 0; i < 4000; ++i) {
    ASSERT_EQ(pool.submit(i % 8, std::pair<int, int>{i % 8, i}), submit_status::accepted);
  }
  pool.wait_idle();
  EXPECT_EQ(bad.load(), 0);
  EXPECT_GT(pool.stats().recycled, 0U);
}

}  // namespace
