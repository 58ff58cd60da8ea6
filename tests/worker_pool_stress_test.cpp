// Concurrency stress for crew::worker_pool: every policy under concurrent producers, every
// shutdown mode racing with submits, and the wake-up paths (a worker parking as a job arrives,
// a producer parking as a slot frees). Sized for a 2-core machine; CREW_TEST_SCALE scales it.

#include <crew/worker_pool.hpp>

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <mutex>
#include <random>
#include <thread>
#include <vector>

#include "test_support.hpp"

namespace {

using namespace std::chrono_literals;
using crew::overflow_policy;
using crew::shutdown_mode;
using crew::submit_status;

// Burns roughly `n` iterations of CPU so jobs take a little while.
void spin(unsigned n) {
  volatile unsigned x = 0;
  for (unsigned i = 0; i < n; ++i) x = x + i;
}

struct tallies {
  std::atomic<std::uint64_t> accepted{0}, rejected{0}, dropped{0}, closed{0}, timed_out{0},
      cancelled{0};
  void count(submit_status s, std::uint64_t n = 1) {
    switch (s) {
      case submit_status::accepted: accepted += n; break;
      case submit_status::rejected: rejected += n; break;
      case submit_status::dropped: dropped += n; break;
      case submit_status::closed: closed += n; break;
      case submit_status::timed_out: timed_out += n; break;
      case submit_status::cancelled: cancelled += n; break;
    }
  }
};

class PolicyStress : public ::testing::TestWithParam<overflow_policy> {};

TEST_P(PolicyStress, ConcurrentProducersAgreeWithTheStats) {
  const overflow_policy policy = GetParam();
  constexpr int producers = 4;
  const int per_producer = static_cast<int>(crew_test::scaled(20'000));
  std::vector<std::atomic<int>> runs(static_cast<std::size_t>(producers * per_producer));
  std::atomic<std::uint64_t> on_drop_calls{0};
  tallies t;
  crew::pool_options<int> o{.workers = 2, .queue_capacity = 8, .on_full = policy};
  o.on_drop = [&](int&&) { on_drop_calls++; };
  {
    crew::worker_pool<int> pool{[&](int&& id) {
                                  spin(static_cast<unsigned>(id % 7) * 50);
                                  runs[static_cast<std::size_t>(id)]++;
                                },
                                std::move(o)};
    std::vector<std::thread> threads;
    for (int p = 0; p < producers; ++p) {
      threads.emplace_back([&, p] {
        for (int i = 0; i < per_producer; ++i) {
          const int id = p * per_producer + i;
          int job = id;
          t.count(pool.submit(std::move(job)));
        }
      });
    }
    for (auto& th : threads) th.join();
    pool.wait_idle();
    const auto s = pool.stats();
    EXPECT_EQ(s.accepted, t.accepted.load());
    EXPECT_EQ(s.rejected, t.rejected.load());
    EXPECT_EQ(s.dropped, t.dropped.load());
    EXPECT_EQ(on_drop_calls.load(), t.dropped.load());
    EXPECT_EQ(s.executed, s.accepted);
    EXPECT_EQ(t.accepted + t.rejected + t.dropped,
              static_cast<std::uint64_t>(producers * per_producer));
    if (policy == overflow_policy::block) {
      EXPECT_EQ(t.accepted.load(), static_cast<std::uint64_t>(producers * per_producer));
    }
  }
  std::uint64_t ran = 0;
  int twice = 0;
  for (auto& r : runs) {
    ran += static_cast<std::uint64_t>(r.load());
    twice += r.load() > 1;
  }
  EXPECT_EQ(twice, 0);
  EXPECT_EQ(ran, t.accepted.load());
}

INSTANTIATE_TEST_SUITE_P(AllPolicies, PolicyStress,
                         ::testing::Values(overflow_policy::block, overflow_policy::reject,
                                           overflow_policy::drop),
                         [](const auto& param_info) {
                           return std::string(crew::to_string(param_info.param));
                         });

// ---- shutdown racing with submits -------------------------------------------------------------

enum class closer { drain, abort, deadline_short, deadline_passed };

std::string closer_name(closer c) {
  switch (c) {
    case closer::drain: return "drain";
    case closer::abort: return "abort";
    case closer::deadline_short: return "deadline_short";
    case closer::deadline_passed: return "deadline_passed";
  }
  return "?";
}

class ShutdownRace : public ::testing::TestWithParam<closer> {};

TEST_P(ShutdownRace, AcceptedEqualsExecutedPlusHandedBack) {
  const closer how = GetParam();
  const int rounds = static_cast<int>(crew_test::scaled(40));
  std::mt19937 rng(12345);
  for (int round = 0; round < rounds; ++round) {
    constexpr int producers = 3;
    constexpr int per_producer = 4000;
    std::vector<std::atomic<int>> runs(producers * per_producer);
    std::vector<std::atomic<int>> accepted(producers * per_producer);
    std::mutex reports_mutex;
    std::vector<int> handed_back;
    bool drained_claimed = false;
    {
      crew::worker_pool<int> pool{
          [&](int&& id, std::stop_token st) {
            runs[static_cast<std::size_t>(id)]++;
            if (!st.stop_requested()) spin(200);
          },
          {.workers = 2,
           .queue_capacity = 32,
           .recycle_after = 16,
           .recycle = round % 2 ? crew::recycle_mode::trim : crew::recycle_mode::respawn}};
      std::atomic<bool> go{false};
      std::vector<std::thread> threads;
      for (int p = 0; p < producers; ++p) {
        threads.emplace_back([&, p] {
          while (!go) std::this_thread::yield();
          for (int i = 0; i < per_producer; ++i) {
            const int id = p * per_producer + i;
            int job = id;
            submit_status s;
            switch (i % 4) {
              case 0: s = pool.submit(std::move(job)); break;
              case 1: s = pool.try_submit(std::move(job)); break;
              case 2: s = pool.submit_for(std::move(job), 1ms); break;
              default: {
                std::vector<int> two{id};
                s = pool.submit_bulk(two) == 1 ? submit_status::accepted : submit_status::closed;
              }
            }
            if (s == submit_status::accepted) accepted[static_cast<std::size_t>(id)]++;
            if (s == submit_status::closed) break;
          }
        });
      }
      const int closers = 1 + round % 2;  // sometimes two threads shut down at once
      const auto delay = std::chrono::microseconds(rng() % 3000);
      for (int c = 0; c < closers; ++c) {
        threads.emplace_back([&] {
          while (!go) std::this_thread::yield();
          std::this_thread::sleep_for(delay);
          crew::shutdown_report<int> r;
          switch (how) {
            case closer::drain: r = pool.shutdown(shutdown_mode::drain); break;
            case closer::abort: r = pool.shutdown(shutdown_mode::abort); break;
            case closer::deadline_short: r = pool.shutdown_for(200us); break;
            case closer::deadline_passed:
              r = pool.shutdown_until(std::chrono::steady_clock::now() - 1s);
              break;
          }
          std::lock_guard lock(reports_mutex);
          handed_back.insert(handed_back.end(), r.handed_back.begin(), r.handed_back.end());
          if (r.drained) drained_claimed = true;
        });
      }
      go = true;
      for (auto& th : threads) th.join();
      // Collect whatever a deadline left with a worker that was still running.
      auto last = pool.shutdown();
      handed_back.insert(handed_back.end(), last.handed_back.begin(), last.handed_back.end());
      const auto s = pool.stats();
      EXPECT_EQ(s.accepted, s.executed + s.handed_back) << "round " << round;
      EXPECT_EQ(s.handed_back, handed_back.size()) << "round " << round;
    }
    std::vector<int> back_count(runs.size(), 0);
    for (int id : handed_back) back_count[static_cast<std::size_t>(id)]++;
    int bad = 0;
    for (std::size_t id = 0; id < runs.size(); ++id) {
      const int ran = runs[id].load();
      const int back = back_count[id];
      const int acc = accepted[id].load();
      // An accepted job ran once or came back once, never both; a refused one did neither.
      if (acc == 1 ? ran + back != 1 : ran + back != 0) ++bad;
    }
    EXPECT_EQ(bad, 0) << closer_name(how) << " round " << round;
    if (how == closer::drain) {
      EXPECT_TRUE(handed_back.empty()) << "a drain handed jobs back";
    }
    if (drained_claimed) {
      EXPECT_TRUE(handed_back.empty()) << "a report claimed drained";
    }
    if (HasFailure()) {
      std::printf("reproduce: seed 12345, round %d, %s\n", round, closer_name(how).c_str());
      return;
    }
  }
}

INSTANTIATE_TEST_SUITE_P(AllModes, ShutdownRace,
                         ::testing::Values(closer::drain, closer::abort, closer::deadline_short,
                                           closer::deadline_passed),
                         [](const auto& param_info) { return closer_name(param_info.param); });

// ---- wake-ups -------------------------------------------------------------------------------

// A worker parking just as a job arrives must still run it: submit one job at a time into an
// idle pool, at varying delays so the submit lands in every phase of the worker's way to sleep.
TEST(WakeupStress, NoLostWorkerWakeups) {
  std::atomic<std::uint64_t> ran{0};
  crew::worker_pool<int> pool{[&](int&&) { ran.fetch_add(1, std::memory_order_release); },
                              {.workers = 2, .queue_capacity = 4}};
  std::mt19937 rng(7);
  const int rounds = static_cast<int>(crew_test::scaled(3000));
  for (int i = 0; i < rounds; ++i) {
    ASSERT_EQ(pool.submit(int{i}), submit_status::accepted);
    const auto want = static_cast<std::uint64_t>(i + 1);
    // No sleep: a lost wake-up leaves the job queued forever and this fails after 30 s.
    ASSERT_TRUE(crew_test::eventually([&] { return ran.load(std::memory_order_acquire) == want; }))
        << "job " << i << " never ran: lost wake-up";
    const unsigned pause = rng() % 64;
    if (pause < 48) {
      spin(pause * 40);
    } else {
      std::this_thread::sleep_for(std::chrono::microseconds(pause));
    }
  }
}

// A producer parking just as a slot frees must still get in: a capacity-1 queue under block.
TEST(WakeupStress, NoLostProducerWakeups) {
  std::atomic<std::uint64_t> ran{0};
  crew::worker_pool<int> pool{[&](int&& i) {
                                if (i % 97 == 0) std::this_thread::sleep_for(50us);
                                ran++;
                              },
                              {.workers = 1, .queue_capacity = 1}};
  const int per_producer = static_cast<int>(crew_test::scaled(20'000));
  std::vector<std::thread> producers;
  for (int p = 0; p < 2; ++p) {
    producers.emplace_back([&] {
      for (int i = 0; i < per_producer; ++i)
        ASSERT_EQ(pool.submit(int{i}), submit_status::accepted);
    });
  }
  for (auto& t : producers) t.join();  // a lost producer wake-up hangs here (ctest timeout)
  pool.wait_idle();
  EXPECT_EQ(ran.load(), static_cast<std::uint64_t>(2 * per_producer));
}

// wait_idle from several threads while others submit: every waiter returns, and when it does
// every job submitted before its call has run.
TEST(WakeupStress, WaitIdleFromManyThreads) {
  std::atomic<std::uint64_t> ran{0};
  crew::worker_pool<int> pool{[&](int&&) { ran++; }, {.workers = 2, .queue_capacity = 16}};
  std::vector<std::thread> threads;
  std::atomic<int> violations{0};
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&] {
      for (int r = 0; r < static_cast<int>(crew_test::scaled(200)); ++r) {
        for (int i = 0; i < 10; ++i) ASSERT_EQ(pool.submit(int{i}), submit_status::accepted);
        const std::uint64_t submitted_by_now = pool.stats().accepted;
        pool.wait_idle();
        if (ran.load() < submitted_by_now) violations++;
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(violations.load(), 0);
}

}  // namespace
