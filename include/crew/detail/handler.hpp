#pragma once

// crew::job_handler<Job>: the default, type-erased handler of worker_pool<Job>; crew::per_worker:
// a handler built by each worker for itself; detail::handler_source<Handler>: which of the two a
// pool has, and the building of a worker's own.

#include <concepts>
#include <memory>
#include <optional>
#include <stop_token>
#include <type_traits>
#include <utility>

#include "../options.hpp"

namespace crew {

// Holds any callable that accepts `Job&&` (and optionally a std::stop_token) behind one
// function pointer: one indirect call per job, one allocation when the pool is built, none per
// job. Move-only, so handlers may own move-only state.
//
// Thread safety: the pool calls the wrapped callable from all its workers at once; the callable
// must be safe to call concurrently (as any handler is).
template <class Job>
class job_handler {
 public:
  template <class F>
  requires(!std::same_as<std::remove_cvref_t<F>, job_handler> &&
           (std::is_invocable_v<std::decay_t<F>&, Job&&, std::stop_token> ||
            std::is_invocable_v<std::decay_t<F>&, Job&&>))
      // Implicit, so a lambda converts where a pool wants a handler; constrained not to hide the
      // move constructor.
      // NOLINTNEXTLINE(google-explicit-constructor,bugprone-forwarding-reference-overload)
      job_handler(F&& f)
      : object_(new std::decay_t<F>(std::forward<F>(f)), &destroy<std::decay_t<F>>),
        call_(&invoke<std::decay_t<F>>) {}

  job_handler(job_handler&&) noexcept = default;
  job_handler& operator=(job_handler&&) noexcept = default;
  job_handler(const job_handler&) = delete;
  job_handler& operator=(const job_handler&) = delete;
  ~job_handler() = default;

  // Calls the wrapped callable with the job, passing the token when it accepts one (the token
  // form wins when it accepts both).
  void operator()(Job&& job, const std::stop_token& token) {
    call_(object_.get(), std::move(job), token);
  }

 private:
  template <class F>
  static void destroy(void* p) noexcept {
    delete static_cast<F*>(p);
  }
  template <class F>
  static void invoke(void* p, Job&& job, const std::stop_token& token) {
    F& f = *static_cast<F*>(p);
    if constexpr (std::is_invocable_v<F&, Job&&, std::stop_token>) {
      f(std::move(job), token);
    } else {
      f(std::move(job));
    }
  }

  std::unique_ptr<void, void (*)(void*)> object_;
  void (*call_)(void*, Job&&, const std::stop_token&);
};

// A pool built from per_worker(factory) gives each worker its own handler: the worker calls
// factory(const worker_info&) on its own thread before its first job, owns what it returns (a
// Handler, or something a Handler is constructible from) and destroys it on that thread when it
// stops (exit, respawn, expiry). A handler then runs on one thread only and needs no locking.
// The factory itself is called from several workers at once: it must be safe to call
// concurrently. per_worker() itself is a plain function (thread-safe: it only moves `factory`).
template <class Factory>
struct per_worker_factory {
  Factory factory;
};

template <class Factory>
per_worker_factory<std::decay_t<Factory>> per_worker(Factory&& factory) {
  return {std::forward<Factory>(factory)};
}

namespace detail {

// A pool's handler: one shared by every worker, or a factory each worker builds its own from.
// Thread safety: shared() and acquire() may be called from every worker at once (the factory's
// own contract applies).
template <class Handler>
class handler_source {
 public:
  explicit handler_source(Handler handler) : shared_(std::in_place, std::move(handler)) {}

  template <class F>
  requires std::is_invocable_v<F&, const worker_info&>
  explicit handler_source(per_worker_factory<F> f)
      : factory_(new F(std::move(f.factory)), &destroy<F>), build_(&build<F>) {}

  // The handler worker `info` runs its jobs with: the shared one, or one built into `own` (on
  // the calling worker's thread). Throws what the factory throws.
  Handler& acquire(std::optional<Handler>& own, const worker_info& info) {
    if (build_ == nullptr) return *shared_;
    build_(factory_.get(), info, own);
    return *own;
  }

 private:
  template <class F>
  static void destroy(void* p) noexcept {
    delete static_cast<F*>(p);
  }
  // Builds in place from the factory's result (a prvalue Handler needs no move).
  template <class F>
  static void build(void* p, const worker_info& info, std::optional<Handler>& own) {
    struct from_factory {
      F& f;
      const worker_info& info;
      // NOLINTNEXTLINE(google-explicit-constructor): the conversion optional::emplace uses
      operator Handler() const { return Handler(f(info)); }
    };
    own.emplace(from_factory{*static_cast<F*>(p), info});
  }
  static void no_factory(void* /*unused*/) noexcept {}

  std::optional<Handler> shared_;
  std::unique_ptr<void, void (*)(void*)> factory_{nullptr, &no_factory};
  void (*build_)(void*, const worker_info&, std::optional<Handler>&) = nullptr;
};

}  // namespace detail
}  // namespace crew
