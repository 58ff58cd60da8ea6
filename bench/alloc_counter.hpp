#pragma once

// Counts every call to operator new in the benchmark binary that includes this header (exactly
// one translation unit per binary may include it: it defines the replaceable global operators).
// g_news is the count; benchmarks read it before and after an iteration for allocs_per_job.

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <new>

namespace crew_bench {
inline std::atomic<std::uint64_t> g_news{0};
inline void* counted(std::size_t n, std::size_t align) {
  // Relaxed: a statistic; it is read after the iteration's threads were joined or its jobs
  // counted, which orders these increments before the read.
  g_news.fetch_add(1, std::memory_order_relaxed);
  if (n == 0) n = 1;
  void* p = align <= alignof(std::max_align_t)
                ? std::malloc(n)
                : std::aligned_alloc(align, (n + align - 1) / align * align);
  if (p == nullptr) throw std::bad_alloc();
  return p;
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
void operator delete(void* p) noexcept { std::free(p); }
void operator delete[](void* p) noexcept { std::free(p); }
void operator delete(void* p, std::size_t) noexcept { std::free(p); }
void operator delete[](void* p, std::size_t) noexcept { std::free(p); }
void operator delete(void* p, std::align_val_t) noexcept { std::free(p); }
void operator delete[](void* p, std::align_val_t) noexcept { std::free(p); }
void operator delete(void* p, std::size_t, std::align_val_t) noexcept { std::free(p); }
void operator delete[](void* p, std::size_t, std::align_val_t) noexcept { std::free(p); }
#pragma GCC diagnostic pop
