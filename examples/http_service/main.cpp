// crew http_service: the shape of a production job service (an "image processor") on
// cpp-httplib, with a crew pool doing the work behind it.
//
//   POST /jobs       the body becomes a job: try_submit -> 202 Accepted {"id":N}, or
//                    429 Too Many Requests with Retry-After when the queue is full (the client
//                    backs off; the service never buffers without bound)
//   GET  /jobs/<id>  the job's state: queued, running, done, stopped or handed_back
//   GET  /metrics    crew::to_prometheus(pool.stats(), "http_jobs")
//   GET  /healthz    200 ok, 503 while shutting down
//
// On SIGTERM or SIGINT: new jobs get 503, the pool drains until a deadline (shutdown_for), the
// jobs still queued are handed back and written to a file (one line per job) so nothing accepted
// is lost, and the service prints "shutdown: accepted A executed E handed back H written W".
//
// Run: ./build/dev/examples/http_service/http_service --port 8080
//      curl -i -X POST --data 'resize cat.jpg 800x600' http://127.0.0.1:8080/jobs
// Options: --port P (0: any free port; the chosen one is printed), --workers N, --queue N,
//          --job-ms N (simulated work per job), --deadline-ms N, --handed-back FILE.

#include <crew.hpp>

#include <httplib.h>
#include <pthread.h>
#include <signal.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <mutex>
#include <stop_token>
#include <string>
#include <string_view>
#include <thread>
#include <unordered_map>

namespace {

using namespace std::chrono_literals;

struct job {
  std::uint64_t id = 0;
  std::string body;
};

enum class job_state : unsigned char { queued, running, done, stopped, handed_back };

std::string_view to_string(job_state s) {
  switch (s) {
    case job_state::queued: return "queued";
    case job_state::running: return "running";
    case job_state::done: return "done";
    case job_state::stopped: return "stopped";
    case job_state::handed_back: return "handed_back";
  }
  return "unknown";
}

// Job states by id. (A real service would expire finished entries; this one keeps them.)
class job_table {
 public:
  void set(std::uint64_t id, job_state s) {
    std::lock_guard lock{mutex_};
    states_[id] = s;
  }
  void erase(std::uint64_t id) {
    std::lock_guard lock{mutex_};
    states_.erase(id);
  }
  bool get(std::uint64_t id, job_state& s) const {
    std::lock_guard lock{mutex_};
    const auto it = states_.find(id);
    if (it == states_.end()) return false;
    s = it->second;
    return true;
  }

 private:
  mutable std::mutex mutex_;
  std::unordered_map<std::uint64_t, job_state> states_;
};

struct config {
  int port = 8080;
  std::size_t workers = 4;
  std::size_t queue = 256;
  int job_ms = 50;
  int deadline_ms = 1000;
  std::string handed_back_file = "handed_back.jobs";
};

config parse(int argc, char** argv) {
  config c;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string_view key = argv[i];
    const char* value = argv[i + 1];
    if (key == "--port")
      c.port = std::atoi(value);
    else if (key == "--workers")
      c.workers = std::strtoul(value, nullptr, 10);
    else if (key == "--queue")
      c.queue = std::strtoul(value, nullptr, 10);
    else if (key == "--job-ms")
      c.job_ms = std::atoi(value);
    else if (key == "--deadline-ms")
      c.deadline_ms = std::atoi(value);
    else if (key == "--handed-back")
      c.handed_back_file = value;
    else {
      std::fprintf(stderr, "unknown option %s\n", argv[i]);
      std::exit(2);
    }
  }
  return c;
}

// One line per job: "<id> <body>", with backslash and newline escaped.
std::string escape(const std::string& s) {
  std::string out;
  out.reserve(s.size());
  for (const char c : s) {
    if (c == '\\')
      out += "\\\\";
    else if (c == '\n')
      out += "\\n";
    else
      out += c;
  }
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  const config cfg = parse(argc, argv);

  // Block SIGTERM and SIGINT before any thread starts, so every thread inherits the mask and
  // only the signal thread below (sigwait) ever sees them.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  job_table table;
  const auto job_time = std::chrono::milliseconds{cfg.job_ms};
  crew::worker_pool<job> pool{[&](job&& j, std::stop_token stop) {
                                table.set(j.id, job_state::running);
                                // The "work": job_ms of processing in 5 ms steps, giving up when
                                // stop is requested (a deadline shutdown reached it).
                                const auto end = std::chrono::steady_clock::now() + job_time;
                                while (std::chrono::steady_clock::now() < end) {
                                  if (stop.stop_requested()) {
                                    table.set(j.id, job_state::stopped);
                                    return;
                                  }
                                  std::this_thread::sleep_for(std::min<std::chrono::nanoseconds>(
                                      5ms, end - std::chrono::steady_clock::now()));
                                }
                                table.set(j.id, job_state::done);
                              },
                              {.workers = cfg.workers,
                               .queue_capacity = cfg.queue,
                               .on_full = crew::overflow_policy::reject,
                               .name = "http-job",
                               .track_latency = true}};

  std::atomic<bool> stopping{false};
  std::atomic<std::uint64_t> next_id{1};
  httplib::Server server;
  server.new_task_queue = [] { return new httplib::ThreadPool(16); };

  server.Post("/jobs", [&](const httplib::Request& req, httplib::Response& res) {
    if (stopping.load()) {
      res.status = 503;
      res.set_header("Connection", "close");
      res.set_content("shutting down\n", "text/plain");
      return;
    }
    const std::uint64_t id = next_id.fetch_add(1);
    table.set(id, job_state::queued);  // before the submit: the worker may start at once
    switch (pool.try_submit(job{id, req.body})) {
      case crew::submit_status::accepted:
        res.status = 202;
        res.set_header("Location", "/jobs/" + std::to_string(id));
        res.set_content("{\"id\":" + std::to_string(id) + "}\n", "application/json");
        return;
      case crew::submit_status::rejected: {
        table.erase(id);
        // Retry when the queue ahead has had time to drain: depth x job time / workers.
        const auto s = pool.stats();
        const auto ms = static_cast<long long>(s.queue_depth) * cfg.job_ms /
                        static_cast<long long>(s.workers ? s.workers : 1);
        res.status = 429;
        res.set_header("Retry-After", std::to_string(std::max(1LL, (ms + 999) / 1000)));
        res.set_content("queue full\n", "text/plain");
        return;
      }
      default:  // closed: the pool is shutting down
        table.erase(id);
        res.status = 503;
        res.set_content("shutting down\n", "text/plain");
        return;
    }
  });

  server.Get(R"(/jobs/(\d+))", [&](const httplib::Request& req, httplib::Response& res) {
    const std::uint64_t id = std::strtoull(req.matches[1].str().c_str(), nullptr, 10);
    job_state s{};
    if (!table.get(id, s)) {
      res.status = 404;
      res.set_content("{\"error\":\"no such job\"}\n", "application/json");
      return;
    }
    res.set_content(
        "{\"id\":" + std::to_string(id) + ",\"state\":\"" + std::string(to_string(s)) + "\"}\n",
        "application/json");
  });

  server.Get("/metrics", [&](const httplib::Request&, httplib::Response& res) {
    res.set_content(crew::to_prometheus(pool.stats(), "http_jobs"), "text/plain; version=0.0.4");
  });

  server.Get("/healthz", [&](const httplib::Request&, httplib::Response& res) {
    if (stopping.load()) {
      res.status = 503;
      res.set_content("stopping\n", "text/plain");
    } else {
      res.set_content("ok\n", "text/plain");
    }
  });

  const int port = cfg.port == 0 ? server.bind_to_any_port("127.0.0.1")
                   : server.bind_to_port("127.0.0.1", cfg.port) ? cfg.port
                                                                : -1;
  if (port <= 0) {
    std::fprintf(stderr, "cannot listen on 127.0.0.1:%d\n", cfg.port);
    return 1;
  }
  std::printf("listening on 127.0.0.1:%d  (%zu workers, queue %zu, %d ms per job)\n", port,
              cfg.workers, pool.stats().capacity, cfg.job_ms);
  std::fflush(stdout);

  bool accounted = false;
  std::thread signal_thread{[&] {
    int sig = 0;
    sigwait(&signals, &sig);
    // 1. Stop accepting: POST /jobs and /healthz answer 503 from now on.
    stopping = true;
    std::printf("signal %d: stopping; draining for up to %d ms\n", sig, cfg.deadline_ms);
    std::fflush(stdout);
    // 2. Drain until the deadline; running jobs see a stop request there.
    auto report = pool.shutdown_for(std::chrono::milliseconds{cfg.deadline_ms});
    // Jobs running at the deadline have been asked to stop; shutdown_for does not wait for
    // them. A second (idempotent) shutdown joins them, so `executed` is final, and hands back
    // anything a worker returned after the first call.
    const std::size_t running_at_deadline = report.still_running;
    auto final_report = pool.shutdown();
    for (job& j : final_report.handed_back) report.handed_back.push_back(std::move(j));
    report.executed = final_report.executed;
    report.still_running = final_report.still_running;
    // 3. Write what was handed back, so nothing accepted is lost.
    std::size_t written = 0;
    {
      std::ofstream out{cfg.handed_back_file, std::ios::trunc};
      for (const job& j : report.handed_back) {
        table.set(j.id, job_state::handed_back);
        out << j.id << ' ' << escape(j.body) << '\n';
        if (out) ++written;
      }
    }
    const auto stats = pool.stats();
    accounted = stats.accepted == report.executed + report.handed_back.size() &&
                written == report.handed_back.size();
    std::printf(
        "shutdown: accepted %llu executed %llu handed back %zu written %zu to %s "
        "(running at the deadline %zu, stopped) rejected %llu: %s\n",
        static_cast<unsigned long long>(stats.accepted),
        static_cast<unsigned long long>(report.executed), report.handed_back.size(), written,
        cfg.handed_back_file.c_str(), running_at_deadline,
        static_cast<unsigned long long>(stats.rejected),
        accounted ? "every accepted job accounted for" : "MISMATCH");
    std::fflush(stdout);
    server.stop();
  }};

  server.listen_after_bind();
  signal_thread.join();
  return accounted ? 0 : 1;
}
