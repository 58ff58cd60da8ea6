// redis_jobs: a job queue on Redis Streams with crew::redis.
//
//   redis_jobs produce [--count N] [--ms M]        add N jobs that each take M ms
//   redis_jobs work [--workers N] [--name NAME]    run jobs until SIGTERM or SIGINT
// Common options: --host H (127.0.0.1) --port P (6379) --stream S (jobs) --group G (workers).
//
// `work` is one consumer of the group. Its name must be stable per process slot (default:
// <hostname>-<REDIS_JOBS_SLOT, default 1>): a restarted worker with the same name picks up
// its own unfinished jobs at once instead of waiting min_idle for another worker to claim
// them. Start as many as you like, on as many hosts as you like, each with its own name.
// SIGTERM: drain for --deadline-ms (default 20000), then hand the rest back. SIGINT: drain;
// a second SIGINT aborts (unstarted jobs go back to the group at once).
//
// Delivery is at-least-once: a job runs again if its worker dies after running it and before
// the acknowledgement reached Redis. Exactly-once is impossible; make jobs idempotent, keyed
// by message.id (and message.deliveries tells you it is a retry).

#include <crew/redis/consumer.hpp>  // crew::redis::consumer, message, to_prometheus

#include <unistd.h>

#include <chrono>
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <iostream>
#include <map>
#include <stop_token>
#include <string>
#include <thread>

namespace {

std::map<std::string, std::string> parse(int argc, char** argv) {
  std::map<std::string, std::string> out;
  for (int i = 2; i + 1 < argc; i += 2) out[argv[i]] = argv[i + 1];
  return out;
}

std::string get(const std::map<std::string, std::string>& o, const std::string& k,
                const std::string& fallback) {
  const auto it = o.find(k);
  return it == o.end() ? fallback : it->second;
}

std::string default_name() {
  std::string host(256, '\0');
  if (::gethostname(host.data(), host.size() - 1) != 0) host.clear();
  host.resize(host.find('\0') == std::string::npos ? host.size() : host.find('\0'));
  const char* slot = std::getenv("REDIS_JOBS_SLOT");  // NOLINT(concurrency-mt-unsafe): no setenv
  return (host.empty() ? std::string("host") : host) + "-" + (slot != nullptr ? slot : "1");
}

int produce(const std::map<std::string, std::string>& o, crew::redis::connection& conn) {
  const std::string stream = get(o, "--stream", "jobs");
  const long count = std::stol(get(o, "--count", "1000"));
  const std::string ms = get(o, "--ms", "10");
  std::vector<crew::redis::command> batch;
  long added = 0;
  for (long i = 0; i < count; ++i) {
    batch.push_back({"XADD", stream, "*", "job", std::to_string(i), "ms", ms});
    if (batch.size() == 500 || i + 1 == count) {
      const auto replies = conn.pipeline(batch);
      if (replies.empty()) {
        std::cerr << "redis: " << conn.last_error() << "\n";
        return 1;
      }
      added += static_cast<long>(batch.size());
      batch.clear();
    }
  }
  std::cout << "added " << added << " jobs to " << stream << "\n";
  return 0;
}

int work(const std::map<std::string, std::string>& o, crew::redis::connection_options conn) {
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);  // before any thread starts: sigwait below

  crew::redis::consumer_options opts;
  opts.connection = std::move(conn);
  opts.stream = get(o, "--stream", "jobs");
  opts.group = get(o, "--group", "workers");
  opts.consumer = get(o, "--name", default_name());
  opts.min_idle = std::chrono::milliseconds(std::stol(get(o, "--min-idle-ms", "30000")));
  const auto deadline = std::chrono::milliseconds(std::stol(get(o, "--deadline-ms", "20000")));

  crew::redis::consumer<> jobs{
      opts,
      [](crew::redis::message& m, const std::stop_token& stop) {
        const std::string* ms = m.find("ms");
        const auto until =
            std::chrono::steady_clock::now() + std::chrono::milliseconds(ms ? std::stol(*ms) : 10);
        while (std::chrono::steady_clock::now() < until && !stop.stop_requested()) {
          std::this_thread::sleep_for(std::chrono::milliseconds(1));
        }
      },
      {.workers = static_cast<std::size_t>(std::stoul(get(o, "--workers", "8")))}};
  std::cout << "consumer " << opts.consumer << " of group " << opts.group << " on " << opts.stream
            << ", " << jobs.workers() << " workers; SIGTERM drains for " << deadline.count()
            << " ms, SIGINT drains, a second SIGINT aborts" << std::endl;

  std::jthread reporter([&](const std::stop_token& stop) {
    // stats() is thread-safe: print progress every second while jobs flow.
    std::uint64_t last = 0;
    while (!stop.stop_requested()) {
      std::this_thread::sleep_for(std::chrono::seconds(1));
      const auto s = jobs.stats();
      if (s.acknowledged == last) continue;
      last = s.acknowledged;
      std::printf("acked %llu, in flight %llu, reclaimed %llu, dead-lettered %llu\n",
                  static_cast<unsigned long long>(s.acknowledged),
                  static_cast<unsigned long long>(s.in_flight),
                  static_cast<unsigned long long>(s.reclaimed),
                  static_cast<unsigned long long>(s.dead_lettered));
      std::fflush(stdout);
    }
  });

  int sig = 0;
  sigwait(&signals, &sig);
  crew::redis::consumer_report report;
  if (sig == SIGTERM) {
    report = jobs.shutdown_for(deadline);
  } else {
    std::cout << "draining; press Ctrl-C again to abort" << std::endl;
    std::jthread second([&](const std::stop_token& stop) {
      const timespec tick{0, 100000000};
      while (!stop.stop_requested()) {
        if (sigtimedwait(&signals, nullptr, &tick) > 0) {
          (void)jobs.shutdown(crew::shutdown_mode::abort);  // escalates the drain below
          return;
        }
      }
    });
    report = jobs.shutdown();
  }
  reporter.request_stop();
  std::cout << "executed " << report.executed << ", handed back " << report.returned
            << ", unacknowledged " << report.unacknowledged << (report.drained ? ", drained" : "")
            << "\n"
            << crew::redis::to_prometheus(jobs.stats(), "redis_jobs");
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  const std::string mode = argc > 1 ? argv[1] : "";
  if (mode != "produce" && mode != "work") {
    std::cerr << "usage: redis_jobs produce|work [--host H] [--port P] [--stream S] ...\n";
    return 2;
  }
  const auto o = parse(argc, argv);
  crew::redis::connection_options conn;
  conn.host = get(o, "--host", "127.0.0.1");
  conn.port = std::stoi(get(o, "--port", "6379"));
  try {
    if (mode == "produce") {
      crew::redis::connection c(conn);
      return produce(o, c);
    }
    return work(o, conn);
  } catch (const std::exception& e) {
    std::cerr << "redis_jobs: " << e.what() << "\n";
    return 1;
  }
}
