#pragma once

// crew::detail: the type erasure behind crew::task. A task is a buffer of inline storage and a
// pointer to a constant table of operations for the callable type it holds (`task_vtable`). One
// table per stored type and placement:
//   inline_vtable<T>  T lives in the buffer (it fits, its alignment fits, its move is noexcept);
//   heap_vtable<T>    the buffer holds a T* (one allocation when the task was made);
//   loan_vtable<L>    the buffer holds a task_loan* (see below): nothing is built yet;
//   empty_vtable      no callable: calling throws std::bad_function_call.
// `relocate` moves a callable from one buffer into another and destroys the source; it is null
// when copying the buffer's bytes is a correct relocation (trivially copyable inline types, every
// heap pointer, empty), so moving most tasks is a fixed-size memcpy with no indirect call.
// `destroy` is null when there is nothing to destroy. `consume` calls and then destroys (also when
// the call throws): the pool's one indirect call per task.
//
// Loans: the pools' "a job that was not accepted is not moved from" guarantee is about the Job,
// here the task; a closure wrapped into a task eagerly would be moved from even when the submit
// is refused. So the task_pool submits a *loan*: a task whose buffer points at a task_loan in the
// submitting frame, which holds references to the constructor arguments of the callable to build
// (and, for a callable stored on the heap, its memory, allocated before the submit so that the
// build itself cannot fail). The pool moves its job exactly once, into a claimed slot, and only
// when the submit is accepted (or dropped); that move is the loan's relocation, which builds the
// callable in the destination from the referenced arguments and marks the loan consumed. A
// refused submit never moves the task: the arguments are untouched, and the loan's destructor
// gives the memory back. Relocation is noexcept, so a loan is used only when building the
// callable cannot throw; otherwise the task_pool builds the callable before submitting (see
// task.hpp for what that means for a refusal).

#include <cstddef>
#include <cstring>
#include <functional>
#include <new>
#include <tuple>
#include <type_traits>
#include <utility>

namespace crew::detail {

struct task_vtable {
  void (*call)(void* buf);     // may throw; null only for loans (task materialises them first)
  void (*consume)(void* buf);  // call, then destroy (also when the call throws)
  // Moves the callable from `src` into `dst`, destroys the source, returns dst's table; null:
  // copying the buffer's bytes relocates.
  const task_vtable* (*relocate)(void* dst, void* src) noexcept;
  void (*destroy)(void* buf) noexcept;  // null: nothing to destroy
  bool loan;                            // a loan: relocate before calling
};

// Bytes of inline storage and their alignment (the task's layout: 56 + an 8-byte table pointer
// is 64 bytes, one cache line; the pool's ring slot is two lines whatever the task's size
// between 41 and 88 bytes, so the extra 8 bytes over the contract's 48 cost nothing).
inline constexpr std::size_t task_inline_size = 56;
inline constexpr std::size_t task_inline_align = alignof(std::max_align_t);

template <class T>
inline constexpr bool task_fits_inline =
    sizeof(T) <= task_inline_size &&
    alignof(T) <= task_inline_align&& std::is_nothrow_move_constructible_v<T>;

template <class T>
T* task_allocate() {
  if constexpr (alignof(T) > __STDCPP_DEFAULT_NEW_ALIGNMENT__) {
    return static_cast<T*>(::operator new (sizeof(T), std::align_val_t{alignof(T)}));
  } else {
    return static_cast<T*>(::operator new(sizeof(T)));
  }
}

template <class T>
void task_deallocate(void* p) noexcept {
  if constexpr (alignof(T) > __STDCPP_DEFAULT_NEW_ALIGNMENT__) {
    ::operator delete (p, std::align_val_t{alignof(T)});
  } else {
    ::operator delete(p);
  }
}

template <class T>
T& task_inline_object(void* buf) noexcept {
  return *std::launder(static_cast<T*>(buf));
}

template <class T>
T*& task_heap_pointer(void* buf) noexcept {
  return *std::launder(static_cast<T**>(buf));
}

[[noreturn]] inline void task_call_empty(void* /*buf*/) { throw std::bad_function_call(); }

inline constexpr task_vtable empty_vtable{&task_call_empty, &task_call_empty, nullptr, nullptr,
                                          false};

// Destroys a callable (and frees its heap block) when the call that uses it ends, also by an
// exception.
template <class T, bool OnHeap>
class destroy_after_call {
 public:
  explicit destroy_after_call(T* p) noexcept : p_(p) {}
  destroy_after_call(const destroy_after_call&) = delete;
  destroy_after_call& operator=(const destroy_after_call&) = delete;
  destroy_after_call(destroy_after_call&&) = delete;
  destroy_after_call& operator=(destroy_after_call&&) = delete;
  ~destroy_after_call() {
    p_->~T();
    if constexpr (OnHeap) task_deallocate<T>(p_);
  }

 private:
  T* p_;
};

template <class T>
struct inline_ops {
  static void call(void* buf) { task_inline_object<T>(buf)(); }
  static void consume(void* buf) {
    T& f = task_inline_object<T>(buf);
    if constexpr (std::is_trivially_destructible_v<T>) {
      f();
    } else {
      const destroy_after_call<T, false> guard(&f);
      f();
    }
  }
  static const task_vtable* relocate(void* dst, void* src) noexcept;
  static void destroy(void* buf) noexcept { task_inline_object<T>(buf).~T(); }
};

template <class T>
inline constexpr task_vtable inline_vtable{
    &inline_ops<T>::call, &inline_ops<T>::consume,
    std::is_trivially_copyable_v<T> ? nullptr : &inline_ops<T>::relocate,
    std::is_trivially_destructible_v<T> ? nullptr : &inline_ops<T>::destroy, false};

template <class T>
const task_vtable* inline_ops<T>::relocate(void* dst, void* src) noexcept {
  T& from = task_inline_object<T>(src);
  ::new (dst) T(std::move(from));
  from.~T();  // NOLINT(bugprone-use-after-move): relocation ends the moved-from source's life
  return &inline_vtable<T>;
}

template <class T>
struct heap_ops {
  static void call(void* buf) { (*task_heap_pointer<T>(buf))(); }
  static void consume(void* buf) {
    T* p = task_heap_pointer<T>(buf);
    const destroy_after_call<T, true> guard(p);
    (*p)();
  }
  static void destroy(void* buf) noexcept {
    T* p = task_heap_pointer<T>(buf);
    p->~T();
    task_deallocate<T>(p);
  }
};

// The pointer is relocated by copying the buffer's bytes.
template <class T>
inline constexpr task_vtable heap_vtable{&heap_ops<T>::call, &heap_ops<T>::consume, nullptr,
                                         &heap_ops<T>::destroy, false};

// Builds T from `args` into the buffer `dst` (inline, or in `memory` for a heap T: then `memory`
// becomes the buffer's pointer); returns the buffer's table. Throws what T's constructor throws.
template <class T, class... Args>
const task_vtable* task_build(void* dst, void* memory, Args&&... args) {
  if constexpr (task_fits_inline<T>) {
    ::new (dst) T(std::forward<Args>(args)...);
    return &inline_vtable<T>;
  } else {
    T* p = ::new (memory) T(std::forward<Args>(args)...);
    ::new (dst) T*(p);
    return &heap_vtable<T>;
  }
}

// A callable of type T not built yet: references to its constructor arguments in the
// submitting frame, and the memory for a heap T. Lives in that frame for the whole submit; a
// task built by as_task() points at it. Not thread-safe: the submitting thread and the pool's
// one relocation (which happens before the submit returns) never overlap.
template <class T, class... Args>
class task_loan {
  static_assert(std::is_nothrow_constructible_v<T, Args&&...>,
                "a loan is built inside the pool's noexcept hand-over: building T must not throw");

 public:
  explicit task_loan(Args&&... args) : args_(std::forward<Args>(args)...) {
    if constexpr (!task_fits_inline<T>) memory_ = task_allocate<T>();
  }
  task_loan(const task_loan&) = delete;
  task_loan& operator=(const task_loan&) = delete;
  task_loan(task_loan&&) = delete;
  task_loan& operator=(task_loan&&) = delete;
  ~task_loan() {
    if constexpr (!task_fits_inline<T>) {
      if (memory_ != nullptr) task_deallocate<T>(memory_);
    }
  }

  // Whether the callable was built (the loan's task was moved: accepted or dropped).
  bool consumed() const noexcept { return consumed_; }

  static const task_vtable* relocate(void* dst, void* src) noexcept {
    auto* self = *std::launder(static_cast<task_loan**>(src));
    self->consumed_ = true;
    void* memory = self->memory_;
    self->memory_ = nullptr;
    return std::apply(
        [&](Args&&... a) { return task_build<T>(dst, memory, std::forward<Args>(a)...); },
        std::move(self->args_));
  }

  static constexpr task_vtable vtable{nullptr, nullptr, &relocate, nullptr, true};

 private:
  std::tuple<Args&&...> args_;
  void* memory_ = nullptr;
  bool consumed_ = false;
};

}  // namespace crew::detail
