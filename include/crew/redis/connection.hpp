#pragma once

// crew::redis::connection: one hiredis context, reconnected with backoff, whose socket timeout
// is set again after every connect.
//
// Protocol:
//  - A connection is used by one thread at a time (hiredis contexts are not thread-safe). The
//    consumer gives its fetch thread its own connection and never shares it.
//  - Every connect builds a fresh context (redisConnectWithTimeout) and then sets the socket
//    timeout (SO_RCVTIMEO/SO_SNDTIMEO) on it, then CLIENT SETNAME. hiredis 0.14's
//    redisReconnect forgets the timeout (hiredis#986), so a BLOCK read after a reconnect could
//    wait forever; a fresh context plus an explicit redisSetTimeout cannot forget it.
//  - Any I/O error (a reset, an EOF, a timed-out reply) kills the context: the next call
//    reconnects. A command whose reply was lost may still have run on the server; callers
//    treat "no reply" as "unknown" (the consumer recovers its own pending entries after every
//    reconnect, so entries delivered in a lost reply are not left pending).
//  - Backoff: exponential from backoff_min to backoff_max with full jitter, slept in slices
//    of at most 50 ms so a shutdown is not delayed by a long backoff.

#include <hiredis/hiredis.h>
#include <sys/time.h>

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <random>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

namespace crew::redis {

struct connection_options {
  std::string host = "127.0.0.1";
  int port = 6379;
  std::chrono::milliseconds connect_timeout{1000};
  // Applies to every read and write. A consumer requires it to exceed its BLOCK time.
  std::chrono::milliseconds socket_timeout{2000};
  std::chrono::milliseconds backoff_min{10};
  std::chrono::milliseconds backoff_max{1000};
  std::string client_name;  // CLIENT SETNAME after every connect; empty: none
};

namespace detail {
struct reply_deleter {
  void operator()(redisReply* r) const noexcept {
    if (r != nullptr) freeReplyObject(r);
  }
};
struct context_deleter {
  void operator()(redisContext* c) const noexcept {
    if (c != nullptr) redisFree(c);
  }
};

inline timeval to_timeval(std::chrono::milliseconds ms) noexcept {
  timeval tv{};
  tv.tv_sec = static_cast<decltype(tv.tv_sec)>(ms.count() / 1000);
  tv.tv_usec = static_cast<decltype(tv.tv_usec)>((ms.count() % 1000) * 1000);
  return tv;
}

inline bool is_valid_name(std::string_view s) noexcept {
  return std::ranges::none_of(s, [](char c) { return c == ' ' || c == '\n' || c == '\r'; });
}
}  // namespace detail

// An owned reply; null means "no reply" (I/O error: the connection is now closed).
using reply_ptr = std::unique_ptr<redisReply, detail::reply_deleter>;
// One command as its arguments (binary-safe: sent with redisAppendCommandArgv).
using command = std::vector<std::string>;

inline bool is_error(const redisReply* r) noexcept {
  return r == nullptr || r->type == REDIS_REPLY_ERROR;
}
inline std::string_view text_of(const redisReply* r) noexcept {
  if (r == nullptr || r->str == nullptr) return {};
  return {r->str, r->len};
}
// Whether an error reply starts with `code` (for example "NOGROUP", "BUSYGROUP").
inline bool is_error_code(const redisReply* r, std::string_view code) noexcept {
  return r != nullptr && r->type == REDIS_REPLY_ERROR && text_of(r).starts_with(code);
}

// Thread safety: none. A connection belongs to one thread at a time; move it between threads
// only with external synchronisation (a thread start or join).
class connection {
 public:
  // Validates options; does not connect (the first command or connect() does). Throws
  // std::invalid_argument naming the option when a timeout or backoff is not positive, when
  // backoff_max < backoff_min, when the port is outside [1, 65535] or the client name has a
  // space or a line break.
  explicit connection(connection_options options) : options_(std::move(options)) {
    const auto bad = [](const char* what) {
      throw std::invalid_argument(std::string("crew::redis::connection_options: ") + what);
    };
    if (options_.port < 1 || options_.port > 65535) bad("port must be in [1, 65535]");
    if (options_.connect_timeout.count() <= 0) bad("connect_timeout must be positive");
    if (options_.socket_timeout.count() <= 0) bad("socket_timeout must be positive");
    if (options_.backoff_min.count() <= 0) bad("backoff_min must be positive");
    if (options_.backoff_max < options_.backoff_min) bad("backoff_max must be >= backoff_min");
    if (!detail::is_valid_name(options_.client_name)) bad("client_name has a space or newline");
  }

  const connection_options& options() const noexcept { return options_; }
  bool connected() const noexcept { return ctx_ != nullptr; }
  // The last connect or I/O error, for logs and the consumer's stats.
  const std::string& last_error() const noexcept { return last_error_; }
  // Successful connects after the first one.
  std::uint64_t reconnects() const noexcept { return connects_ > 0 ? connects_ - 1 : 0; }
  // I/O errors seen (lost connections and lost replies).
  std::uint64_t io_errors() const noexcept { return io_errors_; }

  void disconnect() noexcept { ctx_.reset(); }

  // One connect attempt: a fresh context, then the socket timeout, then CLIENT SETNAME.
  bool connect() {
    ctx_.reset();
    std::unique_ptr<redisContext, detail::context_deleter> ctx{redisConnectWithTimeout(
        options_.host.c_str(), options_.port, detail::to_timeval(options_.connect_timeout))};
    if (ctx == nullptr) return fail("cannot allocate a hiredis context");
    if (ctx->err != 0) return fail(static_cast<const char*>(ctx->errstr));
    // (hiredis#986) set on every new socket: a reconnect never inherits it.
    if (redisSetTimeout(ctx.get(), detail::to_timeval(options_.socket_timeout)) != REDIS_OK) {
      return fail(static_cast<const char*>(ctx->errstr));
    }
    ctx_ = std::move(ctx);
    if (!options_.client_name.empty()) {
      const reply_ptr r = run({"CLIENT", "SETNAME", options_.client_name});
      if (r == nullptr) return false;
    }
    ++connects_;
    failures_in_row_ = 0;
    return true;
  }

  // Connects, retrying with backoff, until it succeeds (true) or give_up() returns true
  // (false). give_up is polled at least every 50 ms.
  bool connect_with_backoff(const std::function<bool()>& give_up) {
    while (!give_up()) {
      if (connect()) return true;
      const auto cap = std::min<std::int64_t>(
          options_.backoff_max.count(), options_.backoff_min.count()
                                            << std::min<std::uint32_t>(failures_in_row_, 20U));
      ++failures_in_row_;
      std::uniform_int_distribution<std::int64_t> jitter(options_.backoff_min.count(), cap);
      auto left = std::chrono::milliseconds(jitter(rng_));
      while (left.count() > 0 && !give_up()) {
        const auto step = std::min(left, std::chrono::milliseconds(50));
        std::this_thread::sleep_for(step);
        left -= step;
      }
    }
    return false;
  }

  // Sends every command in one write and reads every reply, in order. Returns an empty
  // vector and closes the connection on an I/O error (connecting first when needed, once,
  // without backoff). Error replies are returned as replies: check them with is_error().
  std::vector<reply_ptr> pipeline(std::span<const command> commands) {
    std::vector<reply_ptr> replies;
    if (commands.empty()) return replies;
    if (!connected() && !connect()) return replies;
    std::vector<const char*> argv;
    std::vector<std::size_t> lens;
    for (const command& cmd : commands) {
      argv.clear();
      lens.clear();
      for (const std::string& a : cmd) {
        argv.push_back(a.data());
        lens.push_back(a.size());
      }
      if (redisAppendCommandArgv(ctx_.get(), static_cast<int>(argv.size()), argv.data(),
                                 lens.data()) != REDIS_OK) {
        io_failure();
        return {};
      }
    }
    replies.reserve(commands.size());
    for (std::size_t i = 0; i < commands.size(); ++i) {
      void* raw = nullptr;
      if (redisGetReply(ctx_.get(), &raw) != REDIS_OK || raw == nullptr) {
        io_failure();
        return {};
      }
      replies.emplace_back(static_cast<redisReply*>(raw));
    }
    return replies;
  }

  // One command; null on an I/O error (the connection is then closed).
  reply_ptr run(const command& cmd) {
    std::vector<reply_ptr> r = pipeline(std::span<const command>(&cmd, 1));
    return r.empty() ? nullptr : std::move(r.front());
  }

 private:
  bool fail(const char* why) {
    last_error_ = why;
    ctx_.reset();
    return false;
  }
  void io_failure() {
    last_error_ =
        ctx_ != nullptr && ctx_->err != 0 ? static_cast<const char*>(ctx_->errstr) : "I/O error";
    ++io_errors_;
    ctx_.reset();
  }

  connection_options options_;
  std::unique_ptr<redisContext, detail::context_deleter> ctx_;
  std::string last_error_;
  std::uint64_t connects_ = 0;
  std::uint64_t io_errors_ = 0;
  std::uint32_t failures_in_row_ = 0;
  std::minstd_rand rng_{std::random_device{}()};
};

}  // namespace crew::redis
