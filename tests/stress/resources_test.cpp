// Resource proofs for crew::worker_pool: building and destroying many small pools leaves the
// thread count, the open file descriptors and the resident set where they started (within the
// bounds stated below). LeakSanitizer (the asan preset) checks the heap at exit.
//
// 10,000 pools normally; fewer under the sanitizers (crew_test::scaled), more with
// CREW_TEST_SCALE.

#include <crew/worker_pool.hpp>

#include <dirent.h>
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>

#include "stress/watchdog.hpp"
#include "test_support.hpp"

namespace {

using namespace std::chrono_literals;
using crew::submit_status;

long open_fd_count() {
  DIR* dir = opendir("/proc/self/fd");
  if (dir == nullptr) return -1;
  long n = 0;
  while (readdir(dir) != nullptr) ++n;
  closedir(dir);
  return n - 3;  // ".", ".." and the directory's own descriptor
}

// Bounds: no thread and no descriptor may be left behind; the resident set may grow by at most
// 8 MiB over the whole loop (allocator caches and stacks the C library keeps for reuse), which
// is under 1 KiB per pool: a leak of one thread stack (>= 8 KiB resident) or one queue per pool
// would exceed it many times over.
constexpr long rss_bound_kib = 8 * 1024;

TEST(Resources, TenThousandPoolsLeaveThreadsFdsAndRssWhereTheyStarted) {
  crew_test::start_sanitizer_threads();
  const std::uint64_t pools = crew_test::scaled(10'000);
  crew_test::watchdog dog{crew_test::under_tsan ? 300s : 120s, "resources: pool churn"};
  // Warm up: the first pools fault in code, allocator arenas and thread stacks the C library
  // caches; the baseline is taken after them.
  auto one_pool = [](std::uint64_t i) {
    std::atomic<std::uint64_t> ran{0};
    crew::pool_options<std::uint64_t> o{
        .workers = 1 + i % 2,
        .queue_capacity = 1 + i % 64,
        .on_full = crew::overflow_policy::block,
        .recycle_after = i % 3 == 0 ? std::uint64_t{1} : std::uint64_t{0},
        .recycle = i % 2 == 0 ? crew::recycle_mode::respawn : crew::recycle_mode::trim};
    crew::worker_pool<std::uint64_t> pool{[&](std::uint64_t&&) { ran++; }, std::move(o)};
    const std::uint64_t jobs = i % 4;
    for (std::uint64_t j = 0; j < jobs; ++j) {
      if (pool.submit(std::uint64_t{j}) != submit_status::accepted) std::abort();
    }
    if (i % 5 == 0)
      (void)pool.shutdown(i % 10 == 0 ? crew::shutdown_mode::abort : crew::shutdown_mode::drain);
    return jobs;
  };
  for (std::uint64_t i = 0; i < 50; ++i) (void)one_pool(i);
  // A joined thread can still be counted in /proc for an instant (its kernel exit runs after
  // join returns): take the baseline once the count has stopped falling (seen once under load:
  // a baseline of 3 and an end of 2).
  long threads0 = crew_test::thread_count();
  for (int settle = 0; settle < 100; ++settle) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
    const long now = crew_test::thread_count();
    if (now == threads0) break;
    threads0 = now;
  }
  const long fds0 = open_fd_count();
  const long rss0 = crew_test::rss_kib();
  std::uint64_t submitted = 0;
  for (std::uint64_t i = 0; i < pools; ++i) submitted += one_pool(i);
  ASSERT_TRUE(crew_test::eventually([&] { return crew_test::thread_count() <= threads0; }, 10s));
  const long threads1 = crew_test::thread_count();
  const long fds1 = open_fd_count();
  const long rss1 = crew_test::rss_kib();
  std::printf(
      "resources: %llu pools (%llu jobs): threads %ld -> %ld, fds %ld -> %ld, "
      "rss %ld KiB -> %ld KiB (%+ld KiB; bound %ld KiB)\n",
      static_cast<unsigned long long>(pools), static_cast<unsigned long long>(submitted), threads0,
      threads1, fds0, fds1, rss0, rss1, rss1 - rss0, rss_bound_kib);
  EXPECT_EQ(threads1, threads0) << "a pool left a thread alive";
  EXPECT_EQ(fds1, fds0) << "a pool left a file descriptor open";
  if (!crew_test::under_asan && !crew_test::under_tsan) {
    // The sanitizers' allocators keep freed memory in quarantine: RSS says nothing there, and
    // LeakSanitizer does the heap check instead.
    EXPECT_LE(rss1 - rss0, rss_bound_kib) << "resident set grew: a leak per pool?";
  }
}

}  // namespace
