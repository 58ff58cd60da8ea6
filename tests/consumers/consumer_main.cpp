// crew consumer check, shared by the three routes (add_subdirectory, FetchContent,
// find_package). It must compile against crew::crew alone and exit 0 only when crew behaves:
// any wrong result returns non-zero, so a broken packaging route fails its ctest.

#include <crew.hpp>

#include <atomic>
#include <cstdio>

#ifndef CREW_CONSUMER_ROUTE
#define CREW_CONSUMER_ROUTE "unknown"
#endif

int main() {
  std::printf("crew %s via %s\n", CREW_VERSION_STRING, CREW_CONSUMER_ROUTE);

  crew::bounded_queue<int> q(8);
  for (int i = 1; i <= 8; ++i) {
    if (!q.try_push(int{i})) {
      std::fprintf(stderr, "try_push(%d) failed on a queue of capacity 8\n", i);
      return 1;
    }
  }
  int sum = 0;
  for (int value = 0; q.try_pop(value);) sum += value;
  if (sum != 36) {
    std::fprintf(stderr, "queue: popped items summing to %d, want 36\n", sum);
    return 1;
  }

  std::atomic<long> total{0};
  crew::worker_pool<int> pool{[&](int&& v) { total.fetch_add(v); },
                              {.workers = 2, .queue_capacity = 16}};
  for (int i = 1; i <= 1000; ++i) {
    if (pool.submit(int{i}) != crew::submit_status::accepted) {
      std::fprintf(stderr, "submit(%d) was not accepted\n", i);
      return 1;
    }
  }
  const auto report = pool.shutdown();
  if (total.load() != 500500 || report.executed != 1000 || !report.drained) {
    std::fprintf(stderr, "pool: total %ld, executed %llu, drained %d; want 500500, 1000, 1\n",
                 total.load(), static_cast<unsigned long long>(report.executed), report.drained);
    return 1;
  }
  // A keyed pool: per-key order, checked by each key's running total of sequence numbers.
  long last[4] = {-1, -1, -1, -1};  // plain: the pool orders each key's jobs
  long out_of_order = 0;
  crew::keyed_pool<int, long> keyed{[&](long&& v) {
                                      const auto k = static_cast<std::size_t>(v % 4);
                                      if (v <= last[k]) ++out_of_order;
                                      last[k] = v;
                                    },
                                    {.workers = 2, .queue_capacity = 16}};
  for (long i = 0; i < 1000; ++i) {
    if (keyed.submit(static_cast<int>(i % 4), long{i}) != crew::submit_status::accepted) {
      std::fprintf(stderr, "keyed submit(%ld) was not accepted\n", i);
      return 1;
    }
  }
  const auto keyed_report = keyed.shutdown();
  if (keyed_report.executed != 1000 || out_of_order != 0 || last[3] != 999) {
    std::fprintf(stderr, "keyed pool: executed %llu, %ld out of order\n",
                 static_cast<unsigned long long>(keyed_report.executed), out_of_order);
    return 1;
  }
  std::printf("queue sum %d, pool total %ld over %llu jobs, keyed pool in order\n", sum,
              total.load(), static_cast<unsigned long long>(report.executed));
  return 0;
}
