#pragma once

// crew: a header-only C++20 worker pool. Include this, or the one header you need.

#include "crew/bounded_queue.hpp"
#include "crew/concurrency.hpp"
#include "crew/keyed_pool.hpp"
#include "crew/options.hpp"
#include "crew/stats.hpp"
#include "crew/status.hpp"
#include "crew/task.hpp"
#include "crew/version.hpp"
#include "crew/worker_pool.hpp"
