#pragma once

// A joinable POSIX thread with a chosen stack size and name. std::thread cannot set either, and
// worker stacks are part of crew's memory story (pool_options::stack_size).

#include <pthread.h>
#include <unistd.h>

#include <climits>
#include <cstddef>
#include <memory>
#include <string>
#include <system_error>
#include <type_traits>
#include <utility>

namespace crew::detail {

class native_thread {
 public:
  native_thread() noexcept = default;

  // Starts a thread running f(). `stack_size` 0 means the platform default; otherwise it is
  // rounded up to a page and to PTHREAD_STACK_MIN. `name` (at most 15 bytes are kept, the
  // Linux limit) names the thread for debuggers and `top -H`. Throws std::system_error when the
  // thread cannot be created. f must not throw (an escaping exception terminates, as with
  // std::thread).
  template <class F>
  static native_thread start(F&& f, std::size_t stack_size, std::string name) {
    struct payload {
      std::decay_t<F> fn;
      std::string name;
    };
    auto p = std::make_unique<payload>(payload{std::forward<F>(f), std::move(name)});
    pthread_attr_t attr;
    if (int rc = ::pthread_attr_init(&attr); rc != 0) {
      throw std::system_error(rc, std::generic_category(), "crew: pthread_attr_init");
    }
    struct attr_guard {
      explicit attr_guard(pthread_attr_t* attr_to_destroy) noexcept : a(attr_to_destroy) {}
      pthread_attr_t* a;
      attr_guard(const attr_guard&) = delete;
      attr_guard& operator=(const attr_guard&) = delete;
      attr_guard(attr_guard&&) = delete;
      attr_guard& operator=(attr_guard&&) = delete;
      ~attr_guard() { ::pthread_attr_destroy(a); }
    } guard(&attr);
    if (stack_size != 0) {
      const long page_l = ::sysconf(_SC_PAGESIZE);
      const std::size_t page = page_l > 0 ? static_cast<std::size_t>(page_l) : 4096;
      std::size_t size = (stack_size + page - 1) / page * page;
      if (size < static_cast<std::size_t>(PTHREAD_STACK_MIN)) {
        size = static_cast<std::size_t>(PTHREAD_STACK_MIN);
      }
      if (int rc = ::pthread_attr_setstacksize(&attr, size); rc != 0) {
        throw std::system_error(rc, std::generic_category(), "crew: pthread_attr_setstacksize");
      }
    }
    native_thread t;
    auto entry = [](void* arg) -> void* {
      std::unique_ptr<payload> own(static_cast<payload*>(arg));
#if defined(__linux__)
      if (!own->name.empty()) {
        (void)::pthread_setname_np(::pthread_self(), own->name.substr(0, 15).c_str());
      }
#endif
      own->fn();
      return nullptr;
    };
    if (int rc = ::pthread_create(&t.id_, &attr, entry, p.get()); rc != 0) {
      throw std::system_error(rc, std::generic_category(), "crew: pthread_create");
    }
    (void)p.release();  // owned by the new thread now
    t.joinable_ = true;
    return t;
  }

  native_thread(native_thread&& other) noexcept
      : id_(other.id_), joinable_(std::exchange(other.joinable_, false)) {}
  native_thread& operator=(native_thread&& other) noexcept {
    if (this != &other) {
      join();
      id_ = other.id_;
      joinable_ = std::exchange(other.joinable_, false);
    }
    return *this;
  }
  native_thread(const native_thread&) = delete;
  native_thread& operator=(const native_thread&) = delete;

  // Joins the thread if it was not joined yet (unlike std::thread, destroying a joinable handle
  // joins instead of terminating: a pool must never leave a thread behind).
  ~native_thread() { join(); }

  bool joinable() const noexcept { return joinable_; }

  // Waits for the thread to finish. Not thread-safe on the same handle; never call it from the
  // thread itself.
  void join() noexcept {
    if (joinable_) {
      (void)::pthread_join(id_, nullptr);
      joinable_ = false;
    }
  }

 private:
  pthread_t id_{};
  bool joinable_ = false;
};

}  // namespace crew::detail
