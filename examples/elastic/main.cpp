// An elastic pool for I/O-bound jobs: load comes in bursts, the pool grows to its limit for each
// one and gives its threads back in between. Each worker owns a log file and a scratch buffer
// through a per-worker handler (no locking, no thread_local). Prints the live workers, the
// process's threads and its RSS every 100 ms.
//
// Sizing by Little's law: workers = arrival rate x time per job. A burst of 4,000 jobs/s of
// 2 ms each needs 8 workers busy; the limit is 16 for headroom, the floor 0.

#include <crew.hpp>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

namespace {

using namespace std::chrono_literals;

long status_field(const char* key) {
  std::ifstream in("/proc/self/status");
  std::string line;
  const std::string prefix = std::string(key) + ":";
  while (std::getline(in, line)) {
    if (line.rfind(prefix, 0) == 0) return std::strtol(line.c_str() + prefix.size(), nullptr, 10);
  }
  return -1;
}

struct request {
  std::uint64_t id;
};

// One worker's own state: its log file (opened on its thread by the factory) and a scratch
// buffer. Used by that worker only, so it needs no lock.
class log_writer {
 public:
  log_writer(const std::filesystem::path& dir, const crew::worker_info& w)
      : file_(std::fopen((dir / ("worker-" + std::to_string(w.index) + "-" +
                                 std::to_string(w.generation) + ".log"))
                             .c_str(),
                         "w")),
        scratch_(4096) {
    if (file_ == nullptr) throw std::runtime_error("cannot open a worker log in " + dir.string());
  }
  log_writer(const log_writer&) = delete;
  log_writer& operator=(const log_writer&) = delete;
  log_writer(log_writer&& other) noexcept
      : file_(std::exchange(other.file_, nullptr)), scratch_(std::move(other.scratch_)) {}
  log_writer& operator=(log_writer&&) = delete;
  ~log_writer() {
    if (file_ != nullptr) (void)std::fclose(file_);
  }

  void operator()(request&& r) {
    std::this_thread::sleep_for(2ms);  // the I/O the job waits for
    const int n = std::snprintf(scratch_.data(), scratch_.size(), "%llu\n",
                                static_cast<unsigned long long>(r.id));
    (void)std::fwrite(scratch_.data(), 1, static_cast<std::size_t>(n), file_);
  }

 private:
  std::FILE* file_;
  std::vector<char> scratch_;
};

}  // namespace

int main() {
  const auto dir = std::filesystem::temp_directory_path() /
                   ("crew-elastic-example-" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  const long threads_before = status_field("Threads");

  std::atomic<int> starts{0};
  std::atomic<int> stops{0};
  crew::pool_options<request> options;
  options.workers = 16;
  options.min_workers = 0;
  options.idle_timeout = 200ms;
  options.queue_capacity = 4096;
  options.on_worker_start = [&](const crew::worker_info&) { starts.fetch_add(1); };
  options.on_worker_stop = [&](const crew::worker_info&) { stops.fetch_add(1); };

  std::size_t most_workers = 0;
  bool quiet_had_no_thread = false;
  std::uint64_t submitted = 0;
  crew::shutdown_report<request> report;
  {
    crew::worker_pool<request, log_writer> pool{crew::per_worker([&](const crew::worker_info& w) {
                                                  return log_writer{dir, w};
                                                }),
                                                options};
    std::printf("  time   phase   live workers  threads  RSS KiB\n");
    const auto begin = std::chrono::steady_clock::now();
    auto print = [&](const char* phase) {
      const auto s = pool.stats();
      most_workers = std::max(most_workers, s.workers);
      const auto t = std::chrono::duration_cast<std::chrono::milliseconds>(
          std::chrono::steady_clock::now() - begin);
      std::printf("%5lld ms  %-6s  %2zu of %2zu      %4ld     %6ld\n",
                  static_cast<long long>(t.count()), phase, s.workers, s.worker_limit,
                  status_field("Threads") - threads_before, status_field("VmRSS"));
    };
    for (int cycle = 0; cycle < 2; ++cycle) {
      // A burst: 4,000 jobs/s for 600 ms.
      const auto burst_end = std::chrono::steady_clock::now() + 600ms;
      auto next_print = std::chrono::steady_clock::now();
      while (std::chrono::steady_clock::now() < burst_end) {
        for (int k = 0; k < 4; ++k) {
          if (pool.submit(request{submitted}) == crew::submit_status::accepted) ++submitted;
        }
        std::this_thread::sleep_for(1ms);
        if (std::chrono::steady_clock::now() >= next_print) {
          print("burst");
          next_print += 100ms;
        }
      }
      // Quiet: nothing submitted for 800 ms; the idle workers expire after 200 ms.
      for (int k = 0; k < 8; ++k) {
        std::this_thread::sleep_for(100ms);
        print("quiet");
      }
      if (pool.stats().workers == 0) quiet_had_no_thread = true;
    }
    report = pool.shutdown();
  }

  // Every job is in exactly one worker's log.
  std::vector<int> seen(submitted, 0);
  std::size_t files = 0;
  for (const auto& entry : std::filesystem::directory_iterator(dir)) {
    ++files;
    std::ifstream in(entry.path());
    for (unsigned long long id = 0; in >> id;) {
      if (id < submitted) ++seen[id];
    }
  }
  std::filesystem::remove_all(dir);
  std::size_t once = 0;
  for (const int n : seen) once += n == 1 ? 1 : 0;
  std::printf(
      "%llu jobs, %zu logged once, in %zu worker logs; %d worker threads started and %d "
      "stopped; at most %zu live\n",
      static_cast<unsigned long long>(submitted), once, files, starts.load(), stops.load(),
      most_workers);
  const bool ok = report.drained && once == submitted && starts.load() == stops.load() &&
                  most_workers >= 8 && quiet_had_no_thread;
  std::printf("%s\n", ok ? "OK: grew for each burst, no thread when quiet, every job logged once"
                         : "FAILED");
  return ok ? 0 : 1;
}
