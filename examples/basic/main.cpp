// The first example in crew's README, compiled and run by ctest so it never rots.
#include <crew.hpp>  // crew::worker_pool, crew::submit_status, crew::shutdown_mode

#include <atomic>
#include <cstdio>
#include <string>

struct request {
  int id;
  std::string body;
};

int main() {
  std::atomic<int> handled{0};
  crew::worker_pool<request> pool{
      [&](request&& r) { handled += static_cast<int>(r.body.size() > 0); },
      {.workers = 4, .queue_capacity = 256, .on_full = crew::overflow_policy::reject}};
  int refused = 0;
  for (int i = 0; i < 1000; ++i) {
    request r{i, "payload"};
    if (pool.submit(std::move(r)) == crew::submit_status::rejected) ++refused;  // r is still ours
  }
  const auto report = pool.shutdown(crew::shutdown_mode::drain);
  std::printf("handled %d, refused %d, executed %llu, drained %s\n", handled.load(), refused,
              static_cast<unsigned long long>(report.executed), report.drained ? "yes" : "no");
  return handled + refused == 1000 && report.drained ? 0 : 1;
}
