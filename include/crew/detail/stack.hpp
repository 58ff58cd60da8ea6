#pragma once

// A thread's own stack: its bounds, how much of it is resident, and giving the unused part back
// to the operating system. Used by worker recycling (recycle_mode::trim and recycle_stack_limit).
//
// glibc does the same when a thread exits (start_thread -> advise_stack_range madvises the
// stack below the exit-time stack pointer); trim does it from inside a running thread.

#include <pthread.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>

namespace crew::detail {

struct stack_range {
  std::uintptr_t low = 0;   // lowest usable address (the stack grows down towards it)
  std::uintptr_t high = 0;  // one past the highest address
  bool valid() const noexcept { return high > low; }
};

inline std::size_t page_size() noexcept {
  static const std::size_t size = [] {
    const long p = ::sysconf(_SC_PAGESIZE);
    return p > 0 ? static_cast<std::size_t>(p) : std::size_t{4096};
  }();
  return size;
}

// The calling thread's stack, or an invalid range when the platform cannot tell.
inline stack_range current_stack() noexcept {
  stack_range r;
#if defined(__linux__)
  pthread_attr_t attr;
  if (::pthread_getattr_np(::pthread_self(), &attr) != 0) return r;
  void* addr = nullptr;
  std::size_t size = 0;
  if (::pthread_attr_getstack(&attr, &addr, &size) == 0 && addr != nullptr) {
    r.low = reinterpret_cast<std::uintptr_t>(addr);
    r.high = r.low + size;
  }
  ::pthread_attr_destroy(&attr);
#endif
  return r;
}

// An address inside the caller's current frame: an upper bound for the live part of the stack
// below it.
[[gnu::noinline]] inline std::uintptr_t approximate_stack_pointer() noexcept {
  return reinterpret_cast<std::uintptr_t>(__builtin_frame_address(0));
}

// Bytes of [low, high) resident in memory (mincore), or 0 when it cannot be measured. Never
// allocates (it runs on a worker's noexcept recycle path): asks mincore about a fixed number of
// pages at a time.
inline std::size_t resident_bytes(std::uintptr_t low, std::uintptr_t high) noexcept {
  const std::size_t page = page_size();
  low &= ~(page - 1);
  if (high <= low) return 0;
  constexpr std::size_t chunk_pages = 256;
  unsigned char pages[chunk_pages];
  std::size_t resident = 0;
  for (std::uintptr_t at = low; at < high;) {
    const std::size_t left = (high - at + page - 1) / page;
    const std::size_t n = left < chunk_pages ? left : chunk_pages;
    // The kernel takes addresses: an integer-to-pointer cast is the point here.
    // NOLINTNEXTLINE(performance-no-int-to-ptr,cppcoreguidelines-pro-bounds-array-to-pointer-decay)
    if (::mincore(reinterpret_cast<void*>(at), n * page, pages) != 0) return 0;
    // i < n <= chunk_pages, the buffer's size.
    // NOLINTNEXTLINE(cppcoreguidelines-pro-bounds-constant-array-index)
    for (std::size_t i = 0; i < n; ++i) resident += (pages[i] & 1U);
    at += n * page;
  }
  return resident * page;
}

// Bytes of the calling thread's stack that are resident, or 0 when unknown.
inline std::size_t resident_stack_bytes() noexcept {
  const stack_range r = current_stack();
  return r.valid() ? resident_bytes(r.low, r.high) : 0;
}

// Gives back to the OS every whole page of the calling thread's stack that lies more than
// `margin` bytes below the current frame: MADV_DONTNEED drops the pages, and the next touch of
// one maps a fresh zero page. Pages below the stack pointer hold no live data (the margin keeps
// the red zone, this call's own frames, the madvise call's and a signal frame clear of it).
// 16 KiB is what glibc keeps when it trims an exiting thread's stack (PTHREAD_STACK_MIN on
// x86-64); the 64 KiB used before left ~13% over the pre-spike RSS of an 8-worker pool
// (bench/memory_story), where respawn came back to within 1%. Returns the number of bytes
// advised, 0 when nothing could be trimmed.
inline std::size_t trim_stack(std::size_t margin = std::size_t{16} * 1024) noexcept {
  const stack_range r = current_stack();
  if (!r.valid()) return 0;
  const std::uintptr_t sp = approximate_stack_pointer();
  if (sp <= r.low || sp > r.high || sp - r.low <= margin) return 0;
  const std::size_t page = page_size();
  const std::uintptr_t end = (sp - margin) & ~(page - 1);
  const std::uintptr_t begin = (r.low + page - 1) & ~(page - 1);
  if (end <= begin) return 0;
  if (::madvise(reinterpret_cast<void*>(begin), end - begin,  // NOLINT(performance-no-int-to-ptr)
                MADV_DONTNEED) != 0) {
    return 0;
  }
  return end - begin;
}

}  // namespace crew::detail
