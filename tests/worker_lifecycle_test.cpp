// Worker lifecycle (DESIGN.md "Worker lifecycle" and "Job expiry"): elastic size, per-worker
// handlers, start/stop hooks, their exception rules, and job expiry, for worker_pool and
// keyed_pool.

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <map>
#include <mutex>
#include <random>
#include <set>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "crew.hpp"
#include "test_support.hpp"

namespace {

using namespace std::chrono_literals;
using crew_test::eventually;
using crew_test::gate;

crew::pool_options<int> elastic(std::size_t min, std::size_t max,
                                std::chrono::milliseconds idle = 10s) {
  crew::pool_options<int> o;
  o.workers = max;
  o.min_workers = min;
  o.idle_timeout = idle;
  return o;
}

// Counts hooks: threads started and stopped, and the most that were alive at once.
struct hook_counts {
  std::atomic<int> started{0};
  std::atomic<int> stopped{0};
  std::atomic<int> alive{0};
  std::atomic<int> most_alive{0};
  void attach(crew::pool_options<int>& o) {
    o.on_worker_start = [this](const crew::worker_info&) {
      started.fetch_add(1);
      const int now = alive.fetch_add(1) + 1;
      int seen = most_alive.load();
      while (now > seen && !most_alive.compare_exchange_weak(seen, now)) {
      }
    };
    o.on_worker_stop = [this](const crew::worker_info&) {
      alive.fetch_sub(1);
      stopped.fetch_add(1);
    };
  }
};

// Opens a gate when the test leaves its scope (declared after the pool: before the pool's
// destructor drains), so a failed assertion cannot leave workers waiting at it forever.
struct open_at_exit {
  gate& g;
  explicit open_at_exit(gate& to_open) : g(to_open) {}
  open_at_exit(const open_at_exit&) = delete;
  open_at_exit& operator=(const open_at_exit&) = delete;
  open_at_exit(open_at_exit&&) = delete;
  open_at_exit& operator=(open_at_exit&&) = delete;
  ~open_at_exit() { g.open(); }
};

// ---- elastic size -------------------------------------------------------------------------------

TEST(Elastic, MinZeroPoolHoldsNoThreadUntilTheFirstSubmit) {
  crew_test::start_sanitizer_threads();
  const long before = crew_test::thread_count();
  std::atomic<int> ran{0};
  crew::worker_pool<int> pool{[&](int) { ran.fetch_add(1); }, elastic(0, 4)};
  EXPECT_EQ(crew_test::thread_count(), before);
  EXPECT_EQ(pool.stats().workers, 0U);
  EXPECT_EQ(pool.stats().worker_limit, 4U);
  EXPECT_EQ(pool.workers(), 4U);
  ASSERT_EQ(pool.submit(1), crew::submit_status::accepted);
  pool.wait_idle();
  EXPECT_EQ(ran.load(), 1);
  EXPECT_GE(pool.stats().workers, 1U);
}

TEST(Elastic, GrowsWhenNoWorkerIsFreeLongBeforeTheQueueFills) {
  gate release;
  std::atomic<int> inside{0};
  crew::worker_pool<int> pool{[&](int) {
                                inside.fetch_add(1);
                                release.wait();
                              },
                              elastic(1, 4)};
  const open_at_exit guard{release};
  for (int i = 0; i < 4; ++i) ASSERT_EQ(pool.submit(int{i}), crew::submit_status::accepted);
  // Four jobs in a queue of 1,024: a pool that grew only on a full queue would run one.
  EXPECT_TRUE(eventually([&] { return inside.load() == 4; }, 10s)) << inside.load();
  EXPECT_EQ(pool.stats().workers, 4U);
  release.open();
  pool.wait_idle();
}

TEST(Elastic, NeverMoreWorkersThanTheLimitUnderBurstsFromSeveralProducers) {
  hook_counts hooks;
  auto o = elastic(0, 3, 1ms);
  hooks.attach(o);
  std::atomic<int> ran{0};
  std::atomic<std::size_t> most_live{0};
  {
    crew::worker_pool<int> pool{[&](int n) {
                                  if (n % 7 == 0) std::this_thread::sleep_for(200us);
                                  ran.fetch_add(1);
                                },
                                o};
    std::vector<std::thread> producers;
    producers.reserve(3);
    for (int p = 0; p < 3; ++p) {
      producers.emplace_back([&, p] {
        for (int burst = 0; burst < 20; ++burst) {
          for (int i = 0; i < 50; ++i) (void)pool.submit(p * 100000 + burst * 100 + i);
          std::this_thread::sleep_for(8ms);  // let workers expire between bursts
          const std::size_t live = pool.stats().workers;
          std::size_t seen = most_live.load();
          while (live > seen && !most_live.compare_exchange_weak(seen, live)) {
          }
        }
      });
    }
    for (auto& t : producers) t.join();
    pool.wait_idle();
    EXPECT_LE(pool.stats().workers, 3U);
  }
  EXPECT_EQ(ran.load(), 3 * 20 * 50);
  EXPECT_LE(most_live.load(), 3U);
  EXPECT_LE(hooks.most_alive.load(), 3) << "more worker threads alive than workers";
  EXPECT_GT(hooks.started.load(), 3) << "the pool never expired and regrew a worker";
  EXPECT_EQ(hooks.started.load(), hooks.stopped.load());
}

TEST(Elastic, IdleWorkersExpireBackToMinWorkersAndTheThreadBaseline) {
  for (const std::size_t floor : {std::size_t{1}, std::size_t{0}}) {
    crew_test::start_sanitizer_threads();
    const long before = crew_test::thread_count();
    gate release;
    std::atomic<int> inside{0};
    crew::worker_pool<int> pool{[&](int) {
                                  inside.fetch_add(1);
                                  release.wait();
                                },
                                elastic(floor, 4, 30ms)};
    const open_at_exit guard{release};
    for (int i = 0; i < 4; ++i) ASSERT_EQ(pool.submit(int{i}), crew::submit_status::accepted);
    ASSERT_TRUE(eventually([&] { return inside.load() == 4; }, 10s));
    EXPECT_EQ(crew_test::thread_count(), before + 4);
    release.open();
    pool.wait_idle();
    EXPECT_TRUE(eventually([&] { return pool.stats().workers == floor; }, 10s))
        << "floor " << floor << ": " << pool.stats().workers << " live";
    // An exited thread leaves /proc an instant after it counted itself out.
    EXPECT_TRUE(eventually(
        [&] { return crew_test::thread_count() == before + static_cast<long>(floor); }, 10s))
        << "floor " << floor << ": threads " << crew_test::thread_count() << ", baseline "
        << before;
    // And it grows again for the next job.
    release.open();
    ASSERT_EQ(pool.submit(9), crew::submit_status::accepted);
    pool.wait_idle();
  }
}

TEST(Elastic, AFixedPoolIsNotElastic) {
  crew::worker_pool<int> pool{[](int) {}, {.workers = 3, .idle_timeout = 1ms}};
  std::this_thread::sleep_for(30ms);
  EXPECT_EQ(pool.stats().workers, 3U);
  EXPECT_EQ(pool.stats().worker_limit, 3U);
}

// Growth and expiry racing every shutdown mode: each accepted job ran or came back, once.
TEST(Elastic, GrowthAndExpiryRacingShutdownLoseNothing) {
  std::mt19937 rng(12345);
  const int rounds = crew_test::under_tsan || crew_test::under_asan ? 30 : 120;
  for (int round = 0; round < rounds; ++round) {
    const int mode = round % 3;
    std::vector<std::atomic<int>> seen(4000);
    std::atomic<std::uint64_t> accepted{0};
    auto o = elastic(static_cast<std::size_t>(round % 2), 3, std::chrono::milliseconds(round % 3));
    crew::shutdown_report<int> report;
    {
      crew::worker_pool<int> pool{[&](int n, const std::stop_token&) {
                                    seen[static_cast<std::size_t>(n)].fetch_add(1);
                                    if (n % 13 == 0) std::this_thread::sleep_for(50us);
                                  },
                                  o};
      std::thread producer([&] {
        for (int i = 0; i < 4000; ++i) {
          if (pool.submit(int{i}) == crew::submit_status::accepted) accepted.fetch_add(1);
          if (i % 300 == 0) std::this_thread::sleep_for(std::chrono::microseconds(rng() % 3000));
        }
      });
      std::this_thread::sleep_for(std::chrono::microseconds(500 + (round * 37) % 3000));
      if (mode == 0) report = pool.shutdown(crew::shutdown_mode::drain);
      if (mode == 1) report = pool.shutdown(crew::shutdown_mode::abort);
      if (mode == 2) report = pool.shutdown_for(1ms);
      producer.join();
      const auto rest = pool.shutdown(crew::shutdown_mode::abort);
      report.handed_back.insert(report.handed_back.end(), rest.handed_back.begin(),
                                rest.handed_back.end());
    }
    for (const int n : report.handed_back) seen[static_cast<std::size_t>(n)].fetch_add(1);
    std::uint64_t once = 0;
    for (auto& s : seen) {
      ASSERT_LE(s.load(), 1) << "round " << round << ": a job ran or came back twice";
      once += static_cast<std::uint64_t>(s.load());
    }
    ASSERT_EQ(once, accepted.load()) << "round " << round << " mode " << mode;
    if (mode == 0) {
      EXPECT_TRUE(report.handed_back.empty()) << "a drain handed jobs back";
    }
  }
}

// A drain that finds no live worker while an elastic worker is retiring: the retiring worker,
// seeing the second job, resumes (raises the live count), then sees the shutdown and leaves
// again; the drain's last-resort start, racing it for the count, gave up, and the drain turned
// into an abort that handed the job back (found by the keyed fuzzer in CI: pool of one worker,
// min_workers 0, idle_timeout 0). Each round: the first job starts the one worker, the second
// arrives about when it retires, the drain right after. Every job must run, none come back.
TEST(Elastic, ADrainRacingARetiringWorkerHandsNothingBack) {
  std::mt19937 rng(2026);
  const int rounds = crew_test::under_tsan || crew_test::under_asan ? 400 : 3000;
  for (int round = 0; round < rounds; ++round) {
    std::atomic<int> ran{0};
    crew::shutdown_report<int> report;
    {
      crew::worker_pool<int> pool{[&](int) { ran.fetch_add(1); }, elastic(0, 1, 0ms)};
      ASSERT_EQ(pool.submit(1), crew::submit_status::accepted);
      const auto pause = std::chrono::nanoseconds(rng() % 40'000);
      const auto until = std::chrono::steady_clock::now() + pause;
      while (std::chrono::steady_clock::now() < until) {
      }
      ASSERT_EQ(pool.submit(2), crew::submit_status::accepted);
      report = pool.shutdown(crew::shutdown_mode::drain);
    }
    ASSERT_TRUE(report.handed_back.empty())
        << "round " << round << ": a drain handed back " << report.handed_back.size() << " job(s)";
    ASSERT_TRUE(report.drained) << "round " << round;
    ASSERT_EQ(ran.load(), 2) << "round " << round;
  }
}

// ---- per-worker handlers ------------------------------------------------------------------------

// A handler with unsynchronised state: TSan reports a race if two threads ever call one instance.
struct own_state {
  std::thread::id home;
  std::uint64_t calls = 0;  // not atomic on purpose
  std::size_t index;
  std::atomic<int>* wrong_thread;
  std::atomic<int>* destroyed_elsewhere;
  std::atomic<int>* live_instances;
  own_state(std::size_t i, std::atomic<int>* wrong, std::atomic<int>* elsewhere,
            std::atomic<int>* live)
      : home(std::this_thread::get_id()),
        index(i),
        wrong_thread(wrong),
        destroyed_elsewhere(elsewhere),
        live_instances(live) {
    live_instances->fetch_add(1);
  }
  own_state(const own_state&) = delete;
  own_state& operator=(const own_state&) = delete;
  own_state(own_state&&) = delete;
  own_state& operator=(own_state&&) = delete;
  ~own_state() {
    if (std::this_thread::get_id() != home) destroyed_elsewhere->fetch_add(1);
    live_instances->fetch_sub(1);
  }
  void operator()(int /*job*/) {
    ++calls;
    if (std::this_thread::get_id() != home) wrong_thread->fetch_add(1);
  }
};

TEST(PerWorker, EachWorkerBuildsUsesAndDestroysItsOwnHandlerOnItsThread) {
  std::atomic<int> wrong{0};
  std::atomic<int> elsewhere{0};
  std::atomic<int> live{0};
  std::atomic<int> built{0};
  std::mutex m;
  std::set<std::pair<std::size_t, std::uint64_t>> identities;
  {
    crew::worker_pool<int, own_state> pool{crew::per_worker([&](const crew::worker_info& w) {
                                             built.fetch_add(1);
                                             {
                                               const std::lock_guard lock(m);
                                               identities.insert({w.index, w.generation});
                                             }
                                             return own_state{w.index, &wrong, &elsewhere, &live};
                                           }),
                                           {.workers = 3, .recycle_after = 5}};
    EXPECT_EQ(built.load(), 3);
    for (int i = 0; i < 3000; ++i) (void)pool.submit(int{i});
    pool.wait_idle();
    EXPECT_LE(live.load(), 3);
  }
  EXPECT_EQ(wrong.load(), 0);
  EXPECT_EQ(elsewhere.load(), 0);
  EXPECT_EQ(live.load(), 0) << "a per-worker handler was never destroyed";
  EXPECT_GT(built.load(), 3) << "a respawned worker did not build a new handler";
  for (const auto& [index, generation] : identities) EXPECT_LT(index, 3U);
  EXPECT_EQ(identities.size(), static_cast<std::size_t>(built.load()))
      << "two threads had the same (index, generation)";
}

TEST(PerWorker, TrimKeepsTheHandler) {
  std::atomic<int> built{0};
  crew::worker_pool<int> pool{
      crew::per_worker([&](const crew::worker_info&) {
        built.fetch_add(1);
        return [](int) {};
      }),
      {.workers = 2, .recycle_after = 2, .recycle = crew::recycle_mode::trim}};
  for (int i = 0; i < 200; ++i) (void)pool.submit(int{i});
  pool.wait_idle();
  EXPECT_EQ(built.load(), 2);
  EXPECT_GT(pool.stats().recycled, 0U);
}

TEST(PerWorker, KeyedPoolWorkersHaveTheirOwnHandlers) {
  std::atomic<int> wrong{0};
  std::atomic<int> elsewhere{0};
  std::atomic<int> live{0};
  {
    crew::keyed_pool<int, int, own_state> pool{
        crew::per_worker([&](const crew::worker_info& w) {
          return own_state{w.index, &wrong, &elsewhere, &live};
        }),
        {.workers = 2, .min_workers = 0, .idle_timeout = 1ms}};
    for (int i = 0; i < 2000; ++i) (void)pool.submit(i % 17, int{i});
    pool.wait_idle();
  }
  EXPECT_EQ(wrong.load(), 0);
  EXPECT_EQ(elsewhere.load(), 0);
  EXPECT_EQ(live.load(), 0);
}

// ---- hooks --------------------------------------------------------------------------------------

TEST(Hooks, RunInPairsOnTheWorkerThreadAroundTheHandler) {
  std::mutex m;
  std::map<std::thread::id, std::vector<std::string>> events;
  auto log = [&](const std::string& what) {
    const std::lock_guard lock(m);
    events[std::this_thread::get_id()].push_back(what);
  };
  struct logging_handler {
    std::function<void(const std::string&)> log;
    explicit logging_handler(std::function<void(const std::string&)> l) : log(std::move(l)) {
      log("built");
    }
    logging_handler(logging_handler&& o) noexcept : log(std::move(o.log)) {}
    logging_handler(const logging_handler&) = delete;
    logging_handler& operator=(const logging_handler&) = delete;
    logging_handler& operator=(logging_handler&&) = delete;
    ~logging_handler() {
      if (log) log("destroyed");
    }
    void operator()(int /*job*/) const {}
  };
  {
    crew::pool_options<int> o{.workers = 2, .recycle_after = 3};
    o.on_worker_start = [&](const crew::worker_info& w) {
      EXPECT_LT(w.index, 2U);
      log("start");
    };
    o.on_worker_stop = [&](const crew::worker_info&) { log("stop"); };
    crew::worker_pool<int, logging_handler> pool{
        crew::per_worker([&](const crew::worker_info&) { return logging_handler{log}; }), o};
    for (int i = 0; i < 100; ++i) (void)pool.submit(int{i});
    pool.wait_idle();  // recycling happens only while the pool runs, not during a drain
    (void)pool.shutdown();
    // Every thread's on_worker_stop has finished when shutdown returns.
    const std::lock_guard lock(m);
    EXPECT_GT(events.size(), 2U) << "no respawn happened";
    // (A later thread may reuse an exited one's id: its events follow the earlier ones.)
    const std::vector<std::string> pair{"start", "built", "destroyed", "stop"};
    for (const auto& [id, list] : events) {
      ASSERT_EQ(list.size() % 4, 0U);
      for (std::size_t k = 0; k < list.size(); k += 4) {
        EXPECT_EQ(std::vector<std::string>(list.begin() + static_cast<std::ptrdiff_t>(k),
                                           list.begin() + static_cast<std::ptrdiff_t>(k + 4)),
                  pair);
      }
    }
  }
}

// ---- exception rules ----------------------------------------------------------------------------

TEST(Hooks, AFactoryThatThrowsAtConstructionIsThrownFromTheConstructor) {
  hook_counts hooks;
  crew::pool_options<int> o{.workers = 4};
  hooks.attach(o);
  crew_test::start_sanitizer_threads();  // TSan starts a background thread at the first one
  const long before = crew_test::thread_count();
  EXPECT_THROW((crew::worker_pool<int>{crew::per_worker([](const crew::worker_info& w) {
                                         if (w.index == 2)
                                           throw std::runtime_error("no connection");
                                         return [](int) {};
                                       }),
                                       o}),
               std::runtime_error);
  EXPECT_EQ(hooks.started.load(), 4);
  EXPECT_EQ(hooks.stopped.load(), 4) << "the started workers were not stopped in pairs";
  EXPECT_TRUE(eventually([&] { return crew_test::thread_count() <= before; }, 5s));
}

TEST(Hooks, AStartHookThatThrowsAtConstructionIsThrownFromTheConstructor) {
  std::atomic<int> stops{0};
  crew::pool_options<int> o{.workers = 3};
  o.on_worker_start = [](const crew::worker_info& w) {
    if (w.index == 0) throw std::logic_error("bad start");
  };
  o.on_worker_stop = [&](const crew::worker_info&) { stops.fetch_add(1); };
  EXPECT_THROW((crew::worker_pool<int>{[](int) {}, o}), std::logic_error);
  EXPECT_EQ(stops.load(), 2) << "stop runs only where start returned";
  EXPECT_THROW((crew::keyed_pool<int, int>{[](int) {}, o}), std::logic_error);
}

TEST(Hooks, ALaterStartThatFailsGoesToOnErrorAndLosesNoJob) {
  // One worker, respawned after every job; the factory fails for the respawns of slot 0 once,
  // then works again: the failure reaches on_error and every job still runs.
  std::atomic<int> errors{0};
  std::atomic<int> ran{0};
  std::atomic<int> failures_left{1};
  crew::pool_options<int> o{.workers = 1, .recycle_after = 1};
  o.on_error = [&](const std::exception_ptr&) { errors.fetch_add(1); };
  crew::worker_pool<int> pool{crew::per_worker([&](const crew::worker_info& w) {
                                if (w.generation > 0 && failures_left.fetch_sub(1) > 0) {
                                  throw std::runtime_error("flaky");
                                }
                                return [&](int) { ran.fetch_add(1); };
                              }),
                              o};
  for (int i = 0; i < 20; ++i) {
    ASSERT_EQ(pool.submit(int{i}), crew::submit_status::accepted);
    std::this_thread::sleep_for(2ms);
  }
  EXPECT_TRUE(pool.wait_idle_for(20s)) << "ran " << ran.load();
  EXPECT_EQ(ran.load(), 20);
  EXPECT_EQ(errors.load(), 1);
}

TEST(Hooks, APoolThatCannotStartAnyWorkerHandsItsJobsBackInsteadOfHanging) {
  std::atomic<int> errors{0};
  crew::pool_options<int> o{.workers = 2, .recycle_after = 1};
  o.on_error = [&](const std::exception_ptr&) { errors.fetch_add(1); };
  crew::worker_pool<int> pool{crew::per_worker([](const crew::worker_info& w) {
                                if (w.generation > 0) throw std::runtime_error("gone");
                                return [](int) {};
                              }),
                              o};
  // The first job of each worker runs, then the respawn fails: no worker is left.
  for (int i = 0; i < 2; ++i) ASSERT_EQ(pool.submit(int{i}), crew::submit_status::accepted);
  ASSERT_TRUE(eventually([&] { return pool.stats().workers == 0; }, 10s));
  for (int i = 0; i < 5; ++i) EXPECT_EQ(pool.submit(10 + i), crew::submit_status::accepted);
  EXPECT_FALSE(pool.wait_idle_for(50ms)) << "no worker can run them";
  const auto report = pool.shutdown(crew::shutdown_mode::drain);
  EXPECT_EQ(report.handed_back.size(), 5U);
  EXPECT_FALSE(report.drained);
  EXPECT_GE(errors.load(), 2);
  const auto s = pool.stats();
  EXPECT_EQ(s.accepted, s.executed + s.handed_back);
}

TEST(Hooks, AThrowingStopHookGoesToOnError) {
  std::atomic<int> errors{0};
  {
    crew::pool_options<int> o{.workers = 2};
    o.on_error = [&](const std::exception_ptr&) { errors.fetch_add(1); };
    o.on_worker_stop = [](const crew::worker_info&) { throw std::runtime_error("stop"); };
    crew::worker_pool<int> pool{[](int) {}, o};
  }
  EXPECT_EQ(errors.load(), 2);
}

// ---- job expiry ---------------------------------------------------------------------------------

// The expiry tests' bound, and how long they let the jobs meant to expire wait. The bound must
// exceed any wait of the jobs meant to run (a parked worker's wake-up included): under TSan on a
// loaded 2-core machine, with a bound of 1 ms, the first job of
// OnExpireThatThrowsGoesToOnErrorAndTheJobStillCounts expired before its worker woke.
constexpr auto expiry_bound = 50ms;
constexpr auto past_expiry = 200ms;

TEST(Expiry, JobsThatWaitedTooLongGoToOnExpireAndAreCounted) {
  gate release;
  std::atomic<int> started{0};
  std::vector<int> ran;
  std::vector<int> expired;
  std::mutex m;
  crew::pool_options<int> o{.workers = 1};
  o.max_queue_wait = expiry_bound;
  o.on_expire = [&](int&& n) {
    const std::lock_guard lock(m);
    expired.push_back(n);
  };
  crew::worker_pool<int> pool{[&](int n) {
                                started.fetch_add(1);
                                if (n == 0) release.wait();
                                const std::lock_guard lock(m);
                                ran.push_back(n);
                              },
                              o};
  const open_at_exit guard{release};
  ASSERT_EQ(pool.submit(0), crew::submit_status::accepted);
  ASSERT_TRUE(eventually([&] { return started.load() == 1; }));
  for (int i = 1; i <= 5; ++i) ASSERT_EQ(pool.submit(int{i}), crew::submit_status::accepted);
  std::this_thread::sleep_for(past_expiry);  // they wait past max_queue_wait behind job 0
  release.open();
  pool.wait_idle();
  ASSERT_EQ(pool.submit(6), crew::submit_status::accepted);  // a fresh one runs
  pool.wait_idle();
  const auto s = pool.stats();
  const std::lock_guard lock(m);
  EXPECT_EQ(ran, (std::vector<int>{0, 6}));
  EXPECT_EQ(expired, (std::vector<int>{1, 2, 3, 4, 5}));
  EXPECT_EQ(s.expired, 5U);
  EXPECT_EQ(s.executed, 2U);
  EXPECT_EQ(s.accepted, s.executed + s.expired + s.handed_back + s.queue_depth + s.busy);
  EXPECT_NE(crew::to_prometheus(s, "crew").find("\ncrew_expired_total 5\n"), std::string::npos);
}

TEST(Expiry, OnExpireThatThrowsGoesToOnErrorAndTheJobStillCounts) {
  gate release;
  std::atomic<int> errors{0};
  std::atomic<int> started{0};
  crew::pool_options<int> o{.workers = 1};
  o.max_queue_wait = expiry_bound;
  o.on_expire = [](int&&) { throw std::runtime_error("expire"); };
  o.on_error = [&](const std::exception_ptr&) { errors.fetch_add(1); };
  crew::worker_pool<int> pool{[&](int n) {
                                started.fetch_add(1);
                                if (n == 0) release.wait();
                              },
                              o};
  const open_at_exit guard{release};
  ASSERT_EQ(pool.submit(0), crew::submit_status::accepted);
  ASSERT_TRUE(eventually([&] { return started.load() == 1; }));
  ASSERT_EQ(pool.submit(1), crew::submit_status::accepted);
  std::this_thread::sleep_for(past_expiry);
  release.open();
  const auto report = pool.shutdown();
  EXPECT_TRUE(report.drained);
  EXPECT_EQ(report.executed, 1U);
  EXPECT_EQ(errors.load(), 1);
  EXPECT_EQ(pool.stats().expired, 1U);
}

TEST(Expiry, KeyedExpiryKeepsTheKeysOrder) {
  gate release;
  std::atomic<int> started{0};
  std::mutex m;
  std::vector<std::string> order;
  crew::pool_options<int> o{.workers = 2};
  o.max_queue_wait = expiry_bound;
  o.on_expire = [&](int&& n) {
    const std::lock_guard lock(m);
    order.push_back("x" + std::to_string(n));
  };
  crew::keyed_pool<int, int> pool{[&](int n) {
                                    started.fetch_add(1);
                                    if (n == 0) release.wait();
                                    const std::lock_guard lock(m);
                                    order.push_back("r" + std::to_string(n));
                                  },
                                  o};
  const open_at_exit guard{release};
  ASSERT_EQ(pool.submit(7, 0), crew::submit_status::accepted);
  ASSERT_TRUE(eventually([&] { return started.load() == 1; }));
  for (int i = 1; i <= 3; ++i) ASSERT_EQ(pool.submit(7, int{i}), crew::submit_status::accepted);
  std::this_thread::sleep_for(past_expiry);
  for (int i = 4; i <= 5; ++i) ASSERT_EQ(pool.submit(7, int{i}), crew::submit_status::accepted);
  release.open();
  pool.wait_idle();
  const std::lock_guard lock(m);
  // 1-3 waited past the limit; 4 and 5 were submitted just before the release: in order.
  EXPECT_EQ(order, (std::vector<std::string>{"r0", "x1", "x2", "x3", "r4", "r5"}));
  EXPECT_EQ(pool.stats().expired, 3U);
}

TEST(Expiry, OffByDefault) {
  crew::worker_pool<int> pool{[](int) { std::this_thread::sleep_for(1ms); }, {.workers = 1}};
  for (int i = 0; i < 20; ++i) (void)pool.submit(int{i});
  pool.wait_idle();
  EXPECT_EQ(pool.stats().expired, 0U);
  EXPECT_EQ(pool.stats().executed, 20U);
}

// ---- bad options --------------------------------------------------------------------------------

template <class Make>
void expect_invalid(Make make, const std::string& option) {
  try {
    make();
    ADD_FAILURE() << "no exception for " << option;
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find(option), std::string::npos) << e.what();
  }
}

TEST(LifecycleOptions, BadValuesAreRejectedByNameByBothPools) {
  crew::pool_options<int> above{.workers = 2};
  above.min_workers = 3;
  crew::pool_options<int> idle{.workers = 2};
  idle.idle_timeout = -1ms;
  crew::pool_options<int> wait{.workers = 2};
  wait.max_queue_wait = -1ns;
  expect_invalid([&] { crew::worker_pool<int> p{[](int) {}, above}; }, "options.min_workers");
  expect_invalid([&] { crew::worker_pool<int> p{[](int) {}, idle}; }, "options.idle_timeout");
  expect_invalid([&] { crew::worker_pool<int> p{[](int) {}, wait}; }, "options.max_queue_wait");
  expect_invalid([&] { crew::keyed_pool<int, int> p{[](int) {}, above}; }, "options.min_workers");
  expect_invalid([&] { crew::keyed_pool<int, int> p{[](int) {}, idle}; }, "options.idle_timeout");
  expect_invalid([&] { crew::keyed_pool<int, int> p{[](int) {}, wait}; }, "options.max_queue_wait");
  // min_workers == workers is a valid (if pointless) elastic pool; 0 is valid too.
  auto ok = elastic(2, 2);
  crew::worker_pool<int> p{[](int) {}, ok};
  EXPECT_EQ(p.stats().workers, 2U);
}

}  // namespace
