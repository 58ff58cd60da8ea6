// crew demo: first the mission side by side (the same burst of I/O-like jobs run with one
// std::thread per job and with a crew pool, each in its own child process so each peak RSS is its
// own), then a pool under overload with each policy, then a drain and an abort shutdown.
// Run it with `cmake --workflow --preset demo`. It exits non-zero if a contender fails or a
// report does not add up, so ctest can check it.

#include <crew.hpp>

#include <poll.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <string_view>
#include <system_error>
#include <thread>
#include <vector>

namespace {

using namespace std::chrono_literals;

struct request {
  int id;
};

// A job that waits on "I/O" for a while.
void handle(const request&) { std::this_thread::sleep_for(2ms); }

// ---- The mission: one thread per job vs a pool, each in a child process ---------------------

constexpr int burst_jobs = 20000;  // each sleeps 1 ms: I/O-like
constexpr std::size_t burst_pool_workers = 64;

// Child side: runs the burst one way, writes "progress <done>" lines while it runs and
// "done <ms> <completed> <spawn failures>" at the end to stdout (a pipe to the parent).
int run_burst(std::string_view contender) {
  std::atomic<int> done{0};
  std::atomic<bool> finished{false};
  std::thread reporter{[&] {
    while (!finished.load()) {
      std::printf("progress %d\n", done.load());
      std::fflush(stdout);
      std::this_thread::sleep_for(100ms);
    }
  }};
  auto job = [&done] {
    std::this_thread::sleep_for(1ms);
    done.fetch_add(1, std::memory_order_relaxed);
  };
  int spawn_failures = 0;
  const auto t0 = std::chrono::steady_clock::now();
  if (contender == "threads") {
    // What people write first: a thread per job, joined at the end.
    std::vector<std::thread> threads;
    threads.reserve(burst_jobs);
    for (int i = 0; i < burst_jobs; ++i) {
      try {
        threads.emplace_back(job);
      } catch (const std::system_error&) {  // out of threads or memory: join what we have, retry
        ++spawn_failures;
        for (auto& t : threads) t.join();
        threads.clear();
        --i;
      }
    }
    for (auto& t : threads) t.join();
  } else {
    crew::worker_pool<int> pool{[&](int&&) { job(); },
                                {.workers = burst_pool_workers, .queue_capacity = 1024}};
    for (int i = 0; i < burst_jobs; ++i)
      if (pool.submit(int{i}) != crew::submit_status::accepted) return 1;
    (void)pool.shutdown();
  }
  const double ms =
      std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  finished = true;
  reporter.join();
  std::printf("done %.1f %d %d\n", ms, done.load(), spawn_failures);
  std::fflush(stdout);
  return 0;
}

// Parent side: re-executes this program as `demo --burst <contender>`, shows its progress, and
// takes its peak RSS from wait4 (that child's own ru_maxrss).
bool mission(const char* self, const char* contender, const char* label) {
  int fds[2];
  if (::pipe(fds) != 0) return false;
  const pid_t pid = ::fork();
  if (pid < 0) return false;
  if (pid == 0) {
    ::dup2(fds[1], STDOUT_FILENO);
    ::close(fds[0]);
    ::close(fds[1]);
    ::execl(self, self, "--burst", contender, static_cast<char*>(nullptr));
    std::_Exit(127);
  }
  ::close(fds[1]);
  const bool tty = ::isatty(STDOUT_FILENO) != 0;
  std::string buffer;
  double ms = 0;
  int completed = 0;
  int spawn_failures = 0;
  char chunk[4096];
  for (;;) {
    const ssize_t n = ::read(fds[0], chunk, sizeof chunk);
    if (n <= 0) break;
    buffer.append(chunk, static_cast<std::size_t>(n));
    for (std::size_t eol; (eol = buffer.find('\n')) != std::string::npos;
         buffer.erase(0, eol + 1)) {
      const std::string line = buffer.substr(0, eol);
      int progress = 0;
      if (std::sscanf(line.c_str(), "progress %d", &progress) == 1) {
        if (tty) {
          std::printf("\r  %-26s %5d / %d jobs done", label, progress, burst_jobs);
          std::fflush(stdout);
        }
      } else {
        (void)std::sscanf(line.c_str(), "done %lf %d %d", &ms, &completed, &spawn_failures);
      }
    }
  }
  ::close(fds[0]);
  int status = 0;
  rusage usage{};
  if (::wait4(pid, &status, 0, &usage) != pid) return false;
  const bool ok = WIFEXITED(status) && WEXITSTATUS(status) == 0 && completed == burst_jobs;
  if (tty) std::printf("\r%60s\r", "");
  std::printf("  %-26s %5d jobs in %7.0f ms   peak RSS %7.1f MiB%s\n", label, completed, ms,
              static_cast<double>(usage.ru_maxrss) / 1024.0,
              spawn_failures ? "   (thread creation failed, retried)" : "");
  std::fflush(stdout);
  return ok;
}

// ---- Overload and shutdown ------------------------------------------------------------------

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

int main(int argc, char** argv) {
  if (argc == 3 && std::string_view{argv[1]} == "--burst") return run_burst(argv[2]);
  bool ok = true;
  std::printf("crew %s demo on %zu usable CPUs\n\n", CREW_VERSION_STRING, crew::hardware_workers());
  std::printf(
      "The mission: %d I/O-like jobs (each sleeps 1 ms) at once, each contender in its own "
      "process\n",
      burst_jobs);
  std::fflush(stdout);
  const char* self = "/proc/self/exe";
  ok = mission(self, "threads", "one std::thread per job") && ok;
  ok = mission(self, "pool", "crew pool of 64 workers") && ok;
  std::printf("\n");
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
