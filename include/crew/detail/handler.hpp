#pragma once

// crew::job_handler<Job>: the default, type-erased handler of worker_pool<Job>.

#include <concepts>
#include <memory>
#include <stop_token>
#include <type_traits>
#include <utility>

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

}  // namespace crew
