// The price of worker recycling (stack reset): trivial-job throughput of a 2-worker pool with
// recycling off, and with recycle_after = 2^4, 2^10, 2^13 and 2^16 in each mode. The cost of one
// recycle is (time with recycling - time without) / recycles, from the same run; the
// `recycles` counter gives recycles per iteration.
//
// Run:  build/bench/bench/recycle_bench --benchmark_repetitions=5
//         --benchmark_report_aggregates_only=true --benchmark_format=json
// The machine has 2 cores: one producer and two workers share them.

#include <crew/worker_pool.hpp>

#include <benchmark/benchmark.h>

#include <atomic>
#include <cstdint>
#include <string>
#include <vector>

namespace {

constexpr std::size_t jobs_per_iteration = 1 << 18;

void recycle_throughput(benchmark::State& state, crew::recycle_mode mode,
                        std::uint64_t recycle_after) {
  std::atomic<std::uint64_t> sink{0};
  crew::worker_pool<std::uint32_t> pool{
      [&sink](std::uint32_t&& v) { sink.fetch_add(v, std::memory_order_relaxed); },
      {.workers = 2, .queue_capacity = 1024, .recycle_after = recycle_after, .recycle = mode}};
  std::vector<std::uint32_t> chunk(256, 1);
  std::uint64_t recycles = 0;
  for (auto _ : state) {
    const std::uint64_t before = pool.stats().recycled;
    for (std::size_t sent = 0; sent < jobs_per_iteration; sent += chunk.size()) {
      if (pool.submit_bulk(chunk) != chunk.size()) state.SkipWithError("submit_bulk refused jobs");
    }
    pool.wait_idle();
    recycles += pool.stats().recycled - before;
  }
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations() * jobs_per_iteration));
  state.counters["recycles"] =
      benchmark::Counter(static_cast<double>(recycles) / static_cast<double>(state.iterations()));
  benchmark::DoNotOptimize(sink.load());
}

const int registered = [] {
  benchmark::RegisterBenchmark("BM_Recycle/off", recycle_throughput, crew::recycle_mode::respawn,
                               std::uint64_t{0})
      ->UseRealTime()
      ->Unit(benchmark::kMillisecond);
  for (auto mode : {crew::recycle_mode::respawn, crew::recycle_mode::trim}) {
    for (unsigned shift : {4U, 10U, 13U, 16U}) {
      const std::string name =
          "BM_Recycle/" + std::string(crew::to_string(mode)) + "/2^" + std::to_string(shift);
      benchmark::RegisterBenchmark(name.c_str(), recycle_throughput, mode,
                                   std::uint64_t{1} << shift)
          ->UseRealTime()
          ->Unit(benchmark::kMillisecond);
    }
  }
  return 0;
}();

}  // namespace

BENCHMARK_MAIN();
