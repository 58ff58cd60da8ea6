// One consumer process for the multi-process tests (redis_kill_test): runs a
// crew::redis::consumer and records every execution with write(2) to an O_APPEND log, so the
// record survives a SIGKILL at any instant:
//   S <id> <CLOCK_MONOTONIC ns>     the handler started
//   D <id> <CLOCK_MONOTONIC ns>     the handler returned
//   R <executed> <returned> <still_running> <unacked> <drained>   after a shutdown
// Arguments (key=value): port stream group name log workers job_us min_idle_ms dead_after
// shutdown=drain|abort|deadline deadline_ms keys=N (N > 0: a keyed pool, key = hash(id) % N)
// poison=<field value of n that is poison> poison_mode=throw|abort.
// SIGTERM (or SIGINT): shut down in the given mode, write the R line, exit 0.

#include <fcntl.h>
#include <signal.h>
#include <time.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <map>
#include <stdexcept>
#include <string>
#include <thread>

#include "crew/redis/consumer.hpp"

namespace {

std::map<std::string, std::string> args;

std::string arg(const std::string& k, const std::string& fallback = "") {
  const auto it = args.find(k);
  return it == args.end() ? fallback : it->second;
}
long long num(const std::string& k, long long fallback) {
  const auto it = args.find(k);
  return it == args.end() ? fallback : std::stoll(it->second);
}

int log_fd = -1;

void record(char what, const std::string& id) {
  timespec ts{};
  ::clock_gettime(CLOCK_MONOTONIC, &ts);
  char line[96];
  const long long ns = static_cast<long long>(ts.tv_sec) * 1000000000LL + ts.tv_nsec;
  const int n = std::snprintf(line, sizeof line, "%c %s %lld\n", what, id.c_str(), ns);
  if (n > 0 && ::write(log_fd, line, static_cast<std::size_t>(n)) != n) std::abort();
}

struct hash_key {
  std::size_t keys = 1;
  std::size_t operator()(const crew::redis::message& m) const noexcept {
    return std::hash<std::string>{}(m.id) % keys;
  }
};

template <class Consumer>
int serve(Consumer& c, const sigset_t& set) {
  int sig = 0;
  sigwait(&set, &sig);
  const std::string mode = arg("shutdown", "drain");
  crew::redis::consumer_report r;
  if (mode == "abort") {
    r = c.shutdown(crew::shutdown_mode::abort);
  } else if (mode == "deadline") {
    r = c.shutdown_for(std::chrono::milliseconds(num("deadline_ms", 100)));
  } else {
    r = c.shutdown();
  }
  char line[160];
  const int n = std::snprintf(line, sizeof line, "R %llu %zu %zu %zu %d\n",
                              static_cast<unsigned long long>(r.executed), r.returned,
                              r.still_running, r.unacknowledged, r.drained ? 1 : 0);
  if (n > 0) (void)!::write(log_fd, line, static_cast<std::size_t>(n));
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    const auto eq = a.find('=');
    if (eq != std::string::npos) args[a.substr(0, eq)] = a.substr(eq + 1);
  }
  log_fd = ::open(arg("log").c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (log_fd < 0) return 2;

  // Block the shutdown signals before any thread starts, so only sigwait sees them.
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);

  crew::redis::consumer_options o;
  o.connection.port = static_cast<int>(num("port", 6379));
  o.connection.socket_timeout = std::chrono::milliseconds(1000);
  o.stream = arg("stream");
  o.group = arg("group", "g");
  o.consumer = arg("name");
  o.block = std::chrono::milliseconds(50);
  o.min_idle = std::chrono::milliseconds(num("min_idle_ms", 500));
  o.dead_letter_after = static_cast<std::uint64_t>(num("dead_after", 3));
  const auto job = std::chrono::microseconds(num("job_us", 100));
  const std::string poison = arg("poison");
  const bool poison_aborts = arg("poison_mode", "throw") == "abort";

  auto handler = [&](crew::redis::message& m, std::stop_token stop) {
    record('S', m.id);
    const std::string* n = m.find("n");
    if (!poison.empty() && n != nullptr && *n == poison) {
      if (poison_aborts) std::abort();
      throw std::runtime_error("poison");
    }
    const auto until = std::chrono::steady_clock::now() + job;
    while (std::chrono::steady_clock::now() < until && !stop.stop_requested()) {
      std::this_thread::sleep_for(
          std::min<std::chrono::nanoseconds>(job, std::chrono::milliseconds(1)));
    }
    record('D', m.id);
  };
  const crew::pool_options<crew::redis::message> pool{
      .workers = static_cast<std::size_t>(num("workers", 4)), .queue_capacity = 64};
  const long long keys = num("keys", 0);
  if (keys > 0) {
    crew::redis::consumer<crew::redis::keyed_pool_adaptor<std::size_t, hash_key>> c(
        o, handler, pool, hash_key{static_cast<std::size_t>(keys)});
    return serve(c, set);
  }
  crew::redis::consumer<> c(o, handler, pool);
  return serve(c, set);
}
