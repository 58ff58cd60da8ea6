#pragma once

// Helpers for the multi-process tests: spawn redis_test_worker processes, read their
// START/DONE logs, and query the group.

#include <signal.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "redis_server.hpp"

#ifndef CREW_REDIS_WORKER
#define CREW_REDIS_WORKER "redis_test_worker"
#endif

namespace crew_test {

inline std::int64_t monotonic_ns() {
  timespec ts{};
  ::clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<std::int64_t>(ts.tv_sec) * 1000000000LL + ts.tv_nsec;
}

inline std::string make_temp_dir(const std::string& tag) {
  std::string tmpl = "/tmp/crew-redis-" + tag + "-XXXXXX";
  if (::mkdtemp(tmpl.data()) == nullptr) throw std::runtime_error("mkdtemp failed");
  return tmpl;
}

inline pid_t spawn_worker(const std::vector<std::string>& kv) {
  std::vector<std::string> args{CREW_REDIS_WORKER};
  args.insert(args.end(), kv.begin(), kv.end());
  const pid_t pid = ::fork();
  if (pid < 0) throw std::runtime_error("fork failed");
  if (pid == 0) {
    const rlimit no_core{0, 0};  // the poison test aborts processes: no core files
    ::setrlimit(RLIMIT_CORE, &no_core);
    std::vector<char*> argv;
    for (std::string& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    ::execv(argv[0], argv.data());
    ::_exit(127);
  }
  return pid;
}

// Waits up to `timeout` for `pid`; returns its wait status, or -1 if still running.
inline int wait_for_exit(pid_t pid, std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  do {
    int status = 0;
    if (::waitpid(pid, &status, WNOHANG) == pid) return status;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  } while (std::chrono::steady_clock::now() < deadline);
  return -1;
}

struct log_event {
  char what;  // 'S' or 'D'
  std::string id;
  std::int64_t ns;
  int source;  // which log
};

struct run_log {
  std::vector<log_event> events;
  std::vector<std::string> reports;  // R lines
};

inline void read_log(const std::string& path, int source, run_log& out) {
  std::ifstream in(path);
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty()) continue;
    if (line[0] == 'R') {
      out.reports.push_back(line);
      continue;
    }
    std::istringstream ls(line);
    log_event e{};
    ls >> e.what >> e.id >> e.ns;
    e.source = source;
    if (ls) out.events.push_back(std::move(e));
  }
}

inline std::size_t count_lines(const std::string& path) {
  std::ifstream in(path);
  std::size_t n = 0;
  std::string line;
  while (std::getline(in, line)) ++n;
  return n;
}

// The ids with at least one DONE.
inline std::set<std::string> done_ids(const run_log& log) {
  std::set<std::string> out;
  for (const auto& e : log.events) {
    if (e.what == 'D') out.insert(e.id);
  }
  return out;
}

// Whether the group has delivered `last_id` and nothing is pending.
inline bool all_acknowledged(raw_client& raw, const std::string& stream,
                             const std::string& last_id) {
  if (raw.pending(stream, "g") != 0) return false;
  const auto r = raw.run({"XINFO", "GROUPS", stream});
  if (r->type != REDIS_REPLY_ARRAY || r->elements != 1) return false;
  const redisReply* g = r->element[0];
  for (std::size_t i = 0; i + 1 < g->elements; i += 2) {
    if (crew::redis::text_of(g->element[i]) == "last-delivered-id") {
      return crew::redis::text_of(g->element[i + 1]) == last_id;
    }
  }
  return false;
}

}  // namespace crew_test
