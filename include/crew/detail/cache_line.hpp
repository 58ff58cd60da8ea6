#pragma once

#include <cstddef>

namespace crew::detail {

// The destructive interference size. std::hardware_destructive_interference_size exists in
// libstdc++, but GCC warns that its value depends on -mtune and so may differ between
// translation units (an ODR hazard for a header-only library); 64 bytes is right for x86-64 and
// most AArch64 cores, and a wrong guess only costs speed, never correctness.
inline constexpr std::size_t cache_line_size = 64;

}  // namespace crew::detail
