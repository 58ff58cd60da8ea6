// crew demo: a pool under overload with each policy, then a drain and an abort shutdown.
// Run it with `cmake --workflow --preset demo`. It exits non-zero if a report does not add up,
// so ctest can check it.

#include <crew.hpp>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <thread>
#include <vector>

namespace {

using namespace std::chrono_literals;

struct request {
  int id;
};

// A job that waits on "I/O" for a while.
void handle(const request&) { std::this_thread::sleep_for(2ms); }

bool overload(crew::overflow_policy policy) {
  std::atomic<int> dropped_seen{0};
  crew::pool_options<request> options{.workers = 4, .queue_capacity = 64, .on_full = policy};
  options.on_drop = [&](request&&) { dropped_seen++; };
  crew::worker_pool<request> pool{[](request&& r) { handle(r); }, std::move(options)};
  int accepted = 0;
  int rejected = 0;
  int dropped = 0;
  const auto t0 = std::chrono::steady_clock::now();
  for (int i = 0; i < 1000; ++i) {  // 1000 requests arrive at once: 4 workers, 64 queue slots
    switch (pool.submit(request{i})) {
      case crew::submit_status::accepted: ++accepted; break;
      case crew::submit_status::rejected: ++rejected; break;
      case crew::submit_status::dropped: ++dropped; break;
      default: break;
    }
  }
  const auto submit_ms =
      std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  const auto report = pool.shutdown();
  std::printf(
      "  %-7s accepted %4d   rejected %4d   dropped %4d   submitting took %7.1f ms   ran %4llu\n",
      std::string(crew::to_string(policy)).c_str(), accepted, rejected, dropped, submit_ms,
      static_cast<unsigned long long>(report.executed));
  return report.executed == static_cast<std::uint64_t>(accepted) &&
         dropped == dropped_seen.load() && accepted + rejected + dropped == 1000;
}

bool shutdown_demo(crew::shutdown_mode mode) {
  crew::worker_pool<request> pool{[](request&& r, std::stop_token stop) {
                                    for (int i = 0; i < 5 && !stop.stop_requested(); ++i) handle(r);
                                  },
                                  {.workers = 2, .queue_capacity = 256}};
  for (int i = 0; i < 200; ++i) (void)pool.submit(request{i});
  std::this_thread::sleep_for(20ms);
  const auto t0 = std::chrono::steady_clock::now();
  const auto report = pool.shutdown(mode);
  const auto ms =
      std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  std::printf("  %-7s executed %4llu   handed back %4zu   drained %-5s   took %7.1f ms\n",
              std::string(crew::to_string(mode)).c_str(),
              static_cast<unsigned long long>(report.executed), report.handed_back.size(),
              report.drained ? "yes" : "no", ms);
  return report.executed + report.handed_back.size() == 200;
}

}  // namespace

int main() {
  bool ok = true;
  std::printf("crew %s demo on %zu usable CPUs\n\n", CREW_VERSION_STRING, crew::hardware_workers());
  std::printf("Overload: 1000 requests of 2 ms each at once into 4 workers and 64 queue slots\n");
  for (auto policy :
       {crew::overflow_policy::block, crew::overflow_policy::reject, crew::overflow_policy::drop}) {
    ok = overload(policy) && ok;
  }
  std::printf("\nShutdown with 200 jobs of up to 10 ms queued on 2 workers\n");
  for (auto mode : {crew::shutdown_mode::drain, crew::shutdown_mode::abort})
    ok = shutdown_demo(mode) && ok;
  std::printf("\n%s\n",
              ok ? "every report adds up: nothing lost" : "MISMATCH: a report does not add up");
  return ok ? 0 : 1;
}
