// Worker recycling (stack reset): a deep job inflates a worker's resident stack; after the
// worker recycles, in either mode, the memory is back. And no job is lost or run twice across
// thousands of recycles under concurrent submits.

#include <crew/detail/stack.hpp>
#include <crew/worker_pool.hpp>

#include <gtest/gtest.h>

#include <atomic>
#include <cstdint>
#include <thread>
#include <vector>

#include "test_support.hpp"

namespace {

using crew::recycle_mode;
using crew::submit_status;

constexpr std::size_t kib = 1024;
constexpr std::size_t mib = 1024 * kib;

// Recurses through about depth * 4 KiB of stack, touching every frame's page.
[[gnu::noinline]] int deep_recursion(int depth) {
  volatile char frame[4000];
  frame[0] = static_cast<char>(depth);
  frame[sizeof(frame) - 1] = static_cast<char>(depth);
  if (depth == 0) return frame[0];
  return deep_recursion(depth - 1) + frame[sizeof(frame) - 1];  // not a tail call
}

enum class kind { trivial, deep, probe };

struct job {
  kind what = kind::trivial;
};

struct probe_log {
  std::atomic<std::size_t> last_resident{0};
  std::atomic<int> deep_runs{0};
};

crew::worker_pool<job> make_pool(probe_log& log, recycle_mode mode, std::uint64_t recycle_after,
                                 std::size_t stack_limit = 0) {
  crew::pool_options<job> o{.workers = 1,
                            .queue_capacity = 64,
                            .recycle_after = recycle_after,
                            .recycle = mode,
                            .stack_size = 16 * mib,
                            .recycle_stack_limit = stack_limit};
  return crew::worker_pool<job>(
      [&log](job&& j) {
        if (j.what == kind::deep) {
          (void)deep_recursion(1024);  // ~4 MiB
          log.deep_runs++;
        } else if (j.what == kind::probe) {
          log.last_resident = crew::detail::resident_stack_bytes();
        }
      },
      std::move(o));
}

std::size_t probe(crew::worker_pool<job>& pool, probe_log& log) {
  EXPECT_EQ(pool.submit(job{kind::probe}), submit_status::accepted);
  pool.wait_idle();
  return log.last_resident.load();
}

void stack_comes_back(recycle_mode mode) {
  probe_log log;
  // Thresholds are drawn from [8, 16): the first three jobs below cannot trigger a recycle.
  auto pool = make_pool(log, mode, 8);
  const std::size_t before = probe(pool, log);
  const long rss_before = crew_test::rss_kib();
  ASSERT_EQ(pool.submit(job{kind::deep}), submit_status::accepted);
  pool.wait_idle();
  const std::size_t inflated = probe(pool, log);
  const long rss_inflated = crew_test::rss_kib();
  EXPECT_EQ(pool.stats().recycled, 0U);
  EXPECT_GE(inflated, before + 3 * mib) << "the deep job did not inflate the stack";
  for (int i = 0; i < 20; ++i) ASSERT_EQ(pool.submit(job{}), submit_status::accepted);
  pool.wait_idle();
  ASSERT_GE(pool.stats().recycled, 1U) << "the worker did not recycle after 23 jobs";
  const std::size_t after = probe(pool, log);
  const long rss_after = crew_test::rss_kib();
  std::printf(
      "[ recycle  ] %s: resident stack %zu KiB -> %zu KiB after the deep job -> %zu KiB "
      "after recycling; process RSS %ld -> %ld -> %ld KiB\n",
      std::string(crew::to_string(mode)).c_str(), before / kib, inflated / kib, after / kib,
      rss_before, rss_inflated, rss_after);
  EXPECT_LT(after, 1 * mib) << "the recycled worker's stack is still resident";
  EXPECT_LE(after, before + 256 * kib);
  // ThreadSanitizer keeps its own shadow of the stack resident, and ASan's shadow of the deep
  // frames stays too: the process-RSS half of the proof only holds without sanitizers.
  if (!crew_test::under_tsan && !crew_test::under_asan) {
    EXPECT_GE(rss_inflated, rss_before + 3 * 1024L);
    EXPECT_LE(rss_after, rss_before + 1024L) << "process RSS did not fall back";
  }
}

TEST(WorkerPoolRecycle, RespawnGivesTheStackBack) { stack_comes_back(recycle_mode::respawn); }
TEST(WorkerPoolRecycle, TrimGivesTheStackBack) { stack_comes_back(recycle_mode::trim); }

TEST(WorkerPoolRecycle, StackLimitSkipsRecyclingSmallStacks) {
  for (recycle_mode mode : {recycle_mode::respawn, recycle_mode::trim}) {
    probe_log log;
    auto pool = make_pool(log, mode, 4, 1 * mib);
    for (int i = 0; i < 200; ++i) ASSERT_EQ(pool.submit(job{}), submit_status::accepted);
    pool.wait_idle();
    EXPECT_EQ(pool.stats().recycled, 0U) << "recycled below recycle_stack_limit";
    ASSERT_EQ(pool.submit(job{kind::deep}), submit_status::accepted);
    for (int i = 0; i < 20; ++i) ASSERT_EQ(pool.submit(job{}), submit_status::accepted);
    pool.wait_idle();
    EXPECT_GE(pool.stats().recycled, 1U) << "did not recycle above recycle_stack_limit";
    EXPECT_LT(probe(pool, log), 1 * mib);
  }
}

TEST(WorkerPoolRecycle, RecycleAfterZeroNeverRecycles) {
  probe_log log;
  auto pool = make_pool(log, recycle_mode::respawn, 0);
  for (int i = 0; i < 500; ++i) ASSERT_EQ(pool.submit(job{}), submit_status::accepted);
  pool.wait_idle();
  EXPECT_EQ(pool.stats().recycled, 0U);
}

TEST(WorkerPoolRecycle, ThresholdsAreJitteredInNTo2N) {
  // With N = 64 and one job per batch, each worker recycles after 64..127 jobs: over 2000 jobs a
  // worker recycles between 2000/128 and 2000/64 times.
  crew::worker_pool<int> pool{
      [](int&&) {},
      {.workers = 1, .queue_capacity = 1, .recycle_after = 64, .recycle = recycle_mode::trim}};
  for (int i = 0; i < 2000; ++i) ASSERT_EQ(pool.submit(int{i}), submit_status::accepted);
  pool.wait_idle();
  const auto r = pool.stats().recycled;
  EXPECT_GE(r, 2000U / 128 - 1);
  EXPECT_LE(r, 2000U / 64 + 1);
}

// Thousands of recycles while producers submit: every job runs exactly once, and the thread
// count returns to where it was.
void no_job_lost(recycle_mode mode) {
  crew_test::start_sanitizer_threads();
  const long threads_before = crew_test::thread_count();
  const int per_producer =
      static_cast<int>(crew_test::scaled(mode == recycle_mode::respawn ? 1500 : 6000));
  constexpr int producers = 3;
  std::vector<std::atomic<int>> runs(static_cast<std::size_t>(per_producer * producers));
  std::uint64_t recycled = 0;
  {
    crew::worker_pool<int> pool{
        [&](int&& id) { runs[static_cast<std::size_t>(id)].fetch_add(1); },
        {.workers = 2, .queue_capacity = 16, .recycle_after = 1, .recycle = mode}};
    std::vector<std::thread> threads;
    for (int p = 0; p < producers; ++p) {
      threads.emplace_back([&, p] {
        for (int i = 0; i < per_producer; ++i) {
          ASSERT_EQ(pool.submit(p * per_producer + i), submit_status::accepted);
        }
      });
    }
    for (auto& t : threads) t.join();
    pool.wait_idle();
    const auto s = pool.stats();
    recycled = s.recycled;
    EXPECT_EQ(s.executed, runs.size());
    // Every batch ends in a recycle at recycle_after = 1; a batch holds at most max_batch jobs.
    EXPECT_GE(s.recycled, runs.size() / crew::worker_pool<int>::max_batch);
  }
  int wrong = 0;
  for (auto& r : runs) wrong += (r.load() != 1);
  EXPECT_EQ(wrong, 0) << "jobs lost or run twice across " << recycled << " recycles";
  EXPECT_TRUE(crew_test::eventually([&] { return crew_test::thread_count() == threads_before; }))
      << "threads before " << threads_before << ", after " << crew_test::thread_count();
  std::printf("[ recycle  ] %s: %zu jobs, %llu recycles, none lost or duplicated\n",
              std::string(crew::to_string(mode)).c_str(), runs.size(),
              static_cast<unsigned long long>(recycled));
}

TEST(WorkerPoolRecycle, RespawnLosesNoJobUnderConcurrentSubmits) {
  no_job_lost(recycle_mode::respawn);
}
TEST(WorkerPoolRecycle, TrimLosesNoJobUnderConcurrentSubmits) { no_job_lost(recycle_mode::trim); }

TEST(WorkerPoolRecycle, WorkerStackSizeOptionIsApplied) {
  // glibc may hand a new thread a cached stack up to 4x the requested size, so ask for more than
  // any earlier test's threads used (16 MiB): the stack must then be exactly the request,
  // rounded up to a page.
  std::atomic<std::size_t> size{0};
  crew::worker_pool<int> pool{[&](int&&) {
                                const auto r = crew::detail::current_stack();
                                size = r.high - r.low;
                              },
                              {.workers = 1, .stack_size = 48 * mib + 5}};
  ASSERT_EQ(pool.submit(1), submit_status::accepted);
  pool.wait_idle();
  EXPECT_GE(size.load(), 48 * mib + 5);
  EXPECT_LT(size.load(), 48 * mib + 64 * kib);
}

}  // namespace
