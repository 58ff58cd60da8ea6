#pragma once

// A redis-server the tests start themselves: a free loopback port, persistence off unless a
// test asks for it, stopped (SIGTERM, then SIGKILL) by the destructor. CREW_REDIS_SERVER is the
// binary's path (CMake's find_program). Also: a raw command helper for tests that play a
// second, misbehaving consumer, and a few queries (XPENDING counts, the dead-letter stream).

#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <map>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "crew/redis/connection.hpp"
#include "crew/redis/message.hpp"

#ifndef CREW_REDIS_SERVER
#define CREW_REDIS_SERVER "redis-server"
#endif

namespace crew_test {

// A port the kernel just handed out on 127.0.0.1 (bind to 0, read it back, close).
inline int free_loopback_port() {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) throw std::runtime_error("socket() failed");
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  socklen_t len = sizeof addr;
  if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 ||
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
    ::close(fd);
    throw std::runtime_error("bind/getsockname failed");
  }
  ::close(fd);
  return ntohs(addr.sin_port);
}

class redis_server {
 public:
  // `extra`: more redis-server arguments (e.g. {"--appendonly", "yes", "--dir", dir}).
  explicit redis_server(std::vector<std::string> extra = {})
      : port_(free_loopback_port()), extra_(std::move(extra)) {
    start();
  }
  redis_server(const redis_server&) = delete;
  redis_server& operator=(const redis_server&) = delete;
  ~redis_server() { stop(); }

  int port() const noexcept { return port_; }

  crew::redis::connection_options connection_options() const {
    crew::redis::connection_options o;
    o.port = port_;
    return o;
  }

  void start() {
    std::vector<std::string> args{
        CREW_REDIS_SERVER, "--port", std::to_string(port_),    "--bind", "127.0.0.1",  "--save", "",
        "--appendonly",    "no",     "--enable-debug-command", "local",  "--loglevel", "warning"};
    args.insert(args.end(), extra_.begin(), extra_.end());
    pid_ = ::fork();
    if (pid_ < 0) throw std::runtime_error("fork failed");
    if (pid_ == 0) {
      const int null_fd = ::open("/dev/null", O_WRONLY);
      if (null_fd >= 0) {
        ::dup2(null_fd, 1);
        ::dup2(null_fd, 2);
      }
      std::vector<char*> argv;
      for (std::string& a : args) argv.push_back(a.data());
      argv.push_back(nullptr);
      ::execvp(argv[0], argv.data());
      ::_exit(127);
    }
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while (std::chrono::steady_clock::now() < deadline) {
      crew::redis::connection c(connection_options());
      const crew::redis::reply_ptr r = c.run({"PING"});
      if (r != nullptr && !crew::redis::is_error(r.get())) return;
      int status = 0;
      if (::waitpid(pid_, &status, WNOHANG) == pid_) {
        pid_ = -1;
        throw std::runtime_error("redis-server exited at start (port taken?)");
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    throw std::runtime_error("redis-server did not answer PING within 10 s");
  }

  void stop() {
    if (pid_ <= 0) return;
    ::kill(pid_, SIGTERM);
    for (int i = 0; i < 500; ++i) {
      int status = 0;
      if (::waitpid(pid_, &status, WNOHANG) == pid_) {
        pid_ = -1;
        return;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    ::kill(pid_, SIGKILL);
    ::waitpid(pid_, nullptr, 0);
    pid_ = -1;
  }

 private:
  int port_;
  std::vector<std::string> extra_;
  pid_t pid_ = -1;
};

// The test binary's server, started on first use, stopped at exit.
inline redis_server& server() {
  static redis_server s;
  return s;
}

// A client for the test's own commands. Throws on an I/O error (a test needs its answers).
class raw_client {
 public:
  explicit raw_client(const redis_server& s) : conn_(s.connection_options()) {}
  explicit raw_client(crew::redis::connection_options o) : conn_(std::move(o)) {}

  crew::redis::reply_ptr run(const crew::redis::command& c) {
    crew::redis::reply_ptr r = conn_.run(c);
    if (r == nullptr) throw std::runtime_error("raw_client: I/O error: " + conn_.last_error());
    return r;
  }
  long long integer(const crew::redis::command& c) {
    const crew::redis::reply_ptr r = run(c);
    if (r->type != REDIS_REPLY_INTEGER) {
      throw std::runtime_error("raw_client: not an integer: " +
                               std::string(crew::redis::text_of(r.get())));
    }
    return r->integer;
  }
  // XADD key * f v ... (pipelined in batches): returns the ids.
  std::vector<std::string> produce(const std::string& stream, std::size_t n,
                                   const std::string& prefix = "m") {
    std::vector<std::string> ids;
    std::vector<crew::redis::command> batch;
    const auto flush = [&] {
      for (const auto& r : conn_.pipeline(batch)) ids.emplace_back(crew::redis::text_of(r.get()));
      batch.clear();
    };
    for (std::size_t i = 0; i < n; ++i) {
      batch.push_back({"XADD", stream, "*", "n", prefix + std::to_string(i)});
      if (batch.size() == 500) flush();
    }
    flush();
    if (ids.size() != n) throw std::runtime_error("raw_client: produce lost replies");
    return ids;
  }
  // XPENDING summary count of the group (0 when the group or stream is absent).
  long long pending(const std::string& stream, const std::string& group) {
    const crew::redis::reply_ptr r = run({"XPENDING", stream, group});
    if (r->type != REDIS_REPLY_ARRAY || r->elements < 1) return 0;
    return r->element[0]->integer;
  }
  std::vector<crew::redis::pending_entry> pending_of(const std::string& stream,
                                                     const std::string& group,
                                                     const std::string& consumer) {
    const crew::redis::reply_ptr r = run({"XPENDING", stream, group, "-", "+", "100000", consumer});
    return crew::redis::parse_pending(r.get());
  }
  std::vector<crew::redis::message> range(const std::string& stream) {
    const crew::redis::reply_ptr r = run({"XRANGE", stream, "-", "+"});
    std::vector<crew::redis::message> out;
    std::vector<std::string> deleted;
    crew::redis::parse_entries(r.get(), 0, out, deleted);
    return out;
  }
  crew::redis::connection& connection() noexcept { return conn_; }

 private:
  crew::redis::connection conn_;
};

// Records every execution of a handler: id -> the delivery counts it ran with.
struct recorder {
  std::mutex mu;
  std::map<std::string, std::vector<std::uint64_t>> runs;
  void add(const crew::redis::message& m) {
    const std::lock_guard lock(mu);
    runs[m.id].push_back(m.deliveries);
  }
  std::size_t distinct() {
    const std::lock_guard lock(mu);
    return runs.size();
  }
  std::size_t total() {
    const std::lock_guard lock(mu);
    std::size_t n = 0;
    for (const auto& [id, v] : runs) n += v.size();
    return n;
  }
  bool ran_all(const std::vector<std::string>& ids) {
    const std::lock_guard lock(mu);
    return std::ranges::all_of(ids, [&](const std::string& id) { return runs.count(id) != 0; });
  }
};

// Polls `pred` every 10 ms until it holds or `timeout` passes.
template <class Pred>
bool eventually(Pred pred, std::chrono::milliseconds timeout = std::chrono::seconds(20)) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    if (pred()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return pred();
}

}  // namespace crew_test
