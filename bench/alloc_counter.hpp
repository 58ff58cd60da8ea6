#pragma once

// Counts every call to operator new in the benchmark binary that includes this header (exactly
// one translation unit per binary may include it: it defines the replaceable global operators).
// g_news is the count; benchmarks read it before and after an iteration for allocs_per_job.
// g_heap_bytes / g_heap_peak track the heap bytes operator new handed out and not yet deleted.

#include <malloc.h>

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <new>

namespace crew_bench {
inline std::atomic<std::uint64_t> g_news{0};
// Heap bytes in use (malloc_usable_size of every live block from operator new) and their peak
// since reset_heap_peak(): what a contender's data structures really hold, unlike the RSS,
// which malloc's retained free memory and earlier benchmarks blur.
inline std::atomic<std::int64_t> g_heap_bytes{0};
inline std::atomic<std::int64_t> g_heap_peak{0};
inline void reset_heap_peak() noexcept { g_heap_peak.store(g_heap_bytes.load()); }
inline void* counted(std::size_t n, std::size_t align) {
  // Relaxed: statistics; they are read after the iteration's threads were joined or its jobs
  // counted, which orders these updates before the read.
  g_news.fetch_add(1, std::memory_order_relaxed);
  if (n == 0) n = 1;
  void* p = align <= alignof(std::max_align_t)
                ? std::malloc(n)
                : std::aligned_alloc(align, (n + align - 1) / align * align);
  if (p == nullptr) throw std::bad_alloc();
  const auto now = g_heap_bytes.fetch_add(static_cast<std::int64_t>(::malloc_usable_size(p)),
                                          std::memory_order_relaxed) +
                   static_cast<std::int64_t>(::malloc_usable_size(p));
  std::int64_t peak = g_heap_peak.load(std::memory_order_relaxed);
  while (now > peak && !g_heap_peak.compare_exchange_weak(peak, now, std::memory_order_relaxed)) {
  }
  return p;
}
inline void release(void* p) noexcept {
  if (p == nullptr) return;
  g_heap_bytes.fetch_sub(static_cast<std::int64_t>(::malloc_usable_size(p)),
                         std::memory_order_relaxed);
  std::free(p);
}
}  // namespace crew_bench
void* operator new(std::size_t n) { return crew_bench::counted(n, 0); }
void* operator new[](std::size_t n) { return crew_bench::counted(n, 0); }
void* operator new(std::size_t n, std::align_val_t a) {
  return crew_bench::counted(n, static_cast<std::size_t>(a));
}
void* operator new[](std::size_t n, std::align_val_t a) {
  return crew_bench::counted(n, static_cast<std::size_t>(a));
}
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"
void operator delete(void* p) noexcept { crew_bench::release(p); }
void operator delete[](void* p) noexcept { crew_bench::release(p); }
void operator delete(void* p, std::size_t) noexcept { crew_bench::release(p); }
void operator delete[](void* p, std::size_t) noexcept { crew_bench::release(p); }
void operator delete(void* p, std::align_val_t) noexcept { crew_bench::release(p); }
void operator delete[](void* p, std::align_val_t) noexcept { crew_bench::release(p); }
void operator delete(void* p, std::size_t, std::align_val_t) noexcept { crew_bench::release(p); }
void operator delete[](void* p, std::size_t, std::align_val_t) noexcept { crew_bench::release(p); }
#pragma GCC diagnostic pop
