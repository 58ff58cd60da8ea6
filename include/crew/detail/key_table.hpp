#pragma once

// crew::detail::key_table<Key, Job, KeyEqual>: the storage of a keyed pool. Exact keys, each
// with a FIFO of its queued jobs, all in storage sized at construction: no allocation per job
// or per key, ever.
//
// Storage:
//   - a slab of `capacity` job slots (the pool's global bound), handed out and back through a
//     free list (a crew::bounded_queue of slot indices);
//   - `capacity + holders` key entries (an active key has a queued job, which holds a slot, or
//     is held by one of the `holders` workers, so the entries can never run out), with their
//     own free list;
//   - a hash table of entry chains (buckets >= 2 x entries), split into stripes, each guarded by
//     its own mutex. A key lives in exactly one bucket, compared with KeyEqual: two keys never
//     share an entry, whatever their hashes (no striping of keys, only of locks).
//
// Protocol (the keyed pool's scheduling of keys; the model in tests/model/keyed.pml checks it
// exhaustively for small cases):
//   K1. An entry is in the table exactly while its key is scheduled: it is on the pool's run
//       queue (detail::scheduler: ring, a stash, or in flight between them, or in the hands of
//       the producer that created it, or of the holder that re-queues it, about to push it), or
//       held by one worker. The table
//       has no "idle key" state: a key with nothing queued and nobody holding it has no entry.
//   K2. A producer admits a job under its stripe's lock: it appends to the key's entry if there
//       is one (whoever schedules or holds the key will see the job), or creates the entry with
//       this one job and must then put the entry on the run queue (admit() says so). Only that
//       creation schedules a key, so a key is never on the run queue twice.
//   K3. Only the worker holding a key takes its jobs (take()): a run of up to max_take from the
//       FIFO's head under one lock, into that worker's own job stash, which it runs in order
//       before it takes again. So two jobs of one key never run at once and run in FIFO order;
//       the holder's program order, and the lock between its takes, order everything one job
//       did before the next job of its key (visibility). Jobs handed over still count as the
//       key's queued jobs (`handed`, for max_per_key) until each starts.
//   K4. The holder gives the key up under the same lock in one of three ways: the FIFO is empty
//       (the entry is removed: the next admit creates and schedules a new one), its budget is
//       spent with jobs left (requeue: it pushes the entry to the back of the run queue), or the
//       pool is aborting (it leaves the entry, empty or not, and its jobs for the shutdown to
//       collect: the shutdown reads the key of a held run, so the entry must stay).
//   No lost wake-up: an admit and the holder's emptiness check are serialised by the stripe's
//   lock, so either the admit's job is seen by the check (the key stays scheduled) or the admit
//   comes after the removal and creates a new, scheduled entry.
//
// Closing: close() sets a flag that admit() reads under the stripe lock, then takes and releases
// every stripe's lock once: when close() returns, every admit either finished before it (its job
// is in the table) or will see the flag (closed). Nothing admitted can be missed by a drain.
//
// Thread safety: admit*, key_has_room, take, release_slot, collect, close, stats accessors:
// any thread. The destructor: no concurrent call.

#include <algorithm>
#include <array>
#include <atomic>
#include <bit>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <new>
#include <ranges>
#include <stdexcept>
#include <string>
#include <thread>
#include <type_traits>
#include <utility>
#include <vector>

#include "../bounded_queue.hpp"
#include "cache_line.hpp"
#include "pool_support.hpp"

namespace crew::detail {

inline constexpr std::uint32_t no_index = 0xFFFFFFFFU;

enum class admit_result : unsigned char { accepted, full, key_full, closed };

template <class Key, class Job, class KeyEqual>
class key_table {
 public:
  using job_type = envelope<Job>;

  // What take() tells the worker holding a key.
  enum class step : unsigned char {
    run,      // jobs were handed over: run them (each announced with started())
    requeue,  // budget spent, jobs left: push the key to the back of the run queue
    removed,  // nothing left: the key is no longer scheduled
    left,     // aborting: the key and its jobs stay for the shutdown's collect()
  };
  struct taken {
    step what;
    std::uint32_t count;  // step::run: how many jobs were handed over
  };
  // Jobs one take() hands over at most.
  static constexpr std::uint32_t max_take = 16;

  // Throws std::invalid_argument naming `<owner>: options.queue_capacity` for a capacity the
  // table cannot have, std::bad_alloc when the storage cannot be allocated.
  // `per_key_bound`: whether admits will pass a max_per_key (only then are taken jobs counted,
  // take() and started() keep the `handed` counts).
  key_table(std::size_t capacity, std::size_t holders, KeyEqual equal, bool per_key_bound,
            const char* owner)
      : capacity_(checked_capacity(capacity, holders, owner)),
        per_key_bound_(per_key_bound),
        entry_count_(capacity_ + holders),
        bucket_mask_(std::bit_ceil(2 * entry_count_) - 1),
        stripe_mask_(std::min<std::size_t>(bucket_mask_ + 1, max_stripes) - 1),
        equal_(std::move(equal)),
        slots_(std::make_unique<slot[]>(capacity_)),
        entries_(std::make_unique<entry[]>(entry_count_)),
        buckets_(std::make_unique<std::uint32_t[]>(bucket_mask_ + 1)),
        stripes_(std::make_unique<stripe[]>(stripe_mask_ + 1)),
        free_slots_(capacity_),
        free_entries_(entry_count_) {
    for (std::size_t b = 0; b <= bucket_mask_; ++b) buckets_[b] = no_index;
    for (std::size_t s = 0; s < capacity_; ++s) (void)free_slots_.try_push(index_of(s));
    for (std::size_t e = 0; e < entry_count_; ++e) (void)free_entries_.try_push(index_of(e));
  }

  key_table(const key_table&) = delete;
  key_table& operator=(const key_table&) = delete;
  key_table(key_table&&) = delete;
  key_table& operator=(key_table&&) = delete;

  // Destroys the jobs and keys still held. No concurrent call.
  ~key_table() {
    for (std::size_t b = 0; b <= bucket_mask_; ++b) {
      for (std::uint32_t e = buckets_[b]; e != no_index;) {
        entry& en = entries_[e];
        for (std::uint32_t s = en.head; en.count != 0; --en.count) {
          const std::uint32_t next = slots_[s].next;
          slots_[s].job()->~job_type();
          s = next;
        }
        en.key()->~Key();
        e = en.next;
      }
    }
  }

  std::size_t capacity() const noexcept { return capacity_; }

  // Admits `job` (moved from only when accepted) under `key`, whose hash is `hash`. accepted:
  // `schedule` is the key's entry when this admit created it (the caller must push it on the
  // run queue), no_index otherwise. full: every slot holds a queued job (honest: `capacity`
  // jobs wait, but for a slot between a worker's take and its release). key_full: the key
  // already holds `max_per_key` queued jobs (0: no limit). closed: after close(). Throws what
  // KeyEqual or Key's copy constructor throws, with nothing changed.
  admit_result admit(std::size_t hash, const Key& key, Job& job, std::uint64_t ts,
                     std::size_t max_per_key, std::uint32_t& schedule) {
    std::size_t n = 0;
    return admit_run(hash, key, &job, 1, ts, max_per_key, schedule, n);
  }

  // As admit(), for up to `count` jobs from the iterator `first` (each moved from only when
  // accepted) under one lock; `admitted` says how many were. The result is that of the first
  // job that was not admitted (accepted when all were). The iterator's dereference and
  // increment must not throw.
  template <class It>
  admit_result admit_run(std::size_t hash, const Key& key, It first, std::size_t count,
                         std::uint64_t ts, std::size_t max_per_key, std::uint32_t& schedule,
                         std::size_t& admitted) {
    schedule = no_index;
    admitted = 0;
    stripe& st = stripe_of(hash);
    const std::lock_guard lock(st.mutex);
    if (closed_.load(std::memory_order_relaxed)) return admit_result::closed;  // (see close())
    std::uint32_t& chain = buckets_[bucket_of(hash)];
    std::uint32_t e = find(chain, hash, key);
    for (; admitted < count; ++admitted, ++first) {
      if (e != no_index && max_per_key != 0 && queued_in(entries_[e]) >= max_per_key) {
        return admit_result::key_full;
      }
      std::uint32_t s = no_index;
      if (!free_slots_.try_pop(s)) return admit_result::full;
      if (e == no_index) {
        try {
          e = new_entry(hash, key);
        } catch (...) {
          release_slot(s);
          throw;
        }
        entries_[e].next = chain;
        chain = e;
        bump(st.keys);
        schedule = e;
      }
      ::new (static_cast<void*>(slots_[s].storage)) job_type(std::ranges::iter_move(first), ts);
      entry& en = entries_[e];
      slots_[s].next = no_index;
      if (en.count == 0) {
        en.head = s;
      } else {
        slots_[en.tail].next = s;
      }
      en.tail = s;
      ++en.count;
      bump(st.accepted);
    }
    return admit_result::accepted;
  }

  // Whether an admit under `key` would find room in the key (not whether a slot is free).
  bool key_has_room(std::size_t hash, const Key& key, std::size_t max_per_key) {
    if (max_per_key == 0) return true;
    stripe& st = stripe_of(hash);
    const std::lock_guard lock(st.mutex);
    const std::uint32_t e = find(buckets_[bucket_of(hash)], hash, key);
    return e == no_index || queued_in(entries_[e]) < max_per_key;
  }

  // The holder of entry `e` asks for its next jobs (K3, K4): up to `most` of them (at most
  // max_take; 0 when its budget is spent), in FIFO order, each moved to `put(job_type&&)`
  // (noexcept) under the lock, their slots given back after it. The jobs handed over count as
  // the key's queued jobs (for max_per_key) until the holder calls started() for each.
  template <class Put>
  taken take(std::uint32_t e, std::uint32_t most, bool aborting, Put&& put) noexcept {
    entry& en = entries_[e];
    stripe& st = stripe_of(en.hash);
    std::array<std::uint32_t, max_take> freed{};
    std::uint32_t k = 0;
    {
      const std::lock_guard lock(st.mutex);
      // Aborting first: a holder never removes an entry then, so a shutdown collecting this
      // key's stashed run can still read its key (collect() removes the entries at the end).
      if (aborting) return {step::left, 0};
      if (en.count == 0) {
        remove(st, e);
        return {step::removed, 0};
      }
      if (most == 0) return {step::requeue, 0};
      k = std::min({most, en.count, max_take});
      for (std::uint32_t j = 0; j < k; ++j) {
        const std::uint32_t s = en.head;
        job_type* job = slots_[s].job();
        put(std::move(*job));
        job->~job_type();
        en.head = slots_[s].next;
        // j < k <= max_take
        freed[j] = s;  // NOLINT(cppcoreguidelines-pro-bounds-constant-array-index)
      }
      en.count -= k;
      // The holder is the only writer (under the lock here, without it in started()); relaxed:
      // producers read it under this lock, which orders this store before their read.
      if (per_key_bound_) {
        en.handed.store(en.handed.load(std::memory_order_relaxed) + k, std::memory_order_relaxed);
      }
    }
    // The slots are free before any of their jobs runs: a refusal means `capacity` jobs wait.
    // One tail claim for the run (a push stops short only at a slot an earlier lap's taker is
    // still reading: a hand-off of a few instructions; the list has a place for every slot).
    for (std::uint32_t done = 0; done < k;) {
      const auto n =
          static_cast<std::uint32_t>(free_slots_.try_push_bulk(freed.data() + done, k - done));
      done += n;
      if (done < k && n == 0) std::this_thread::yield();
    }
    return {step::run, k};
  }

  // The holder of entry `e` starts one of the jobs take() handed it: it no longer counts as
  // queued in its key. Release: a producer's check under the lock (acquire) that sees the
  // decrement sees the job started. Holder only.
  void started(std::uint32_t e) noexcept {
    if (!per_key_bound_) return;  // nobody reads the count: no store on the per-job path
    std::atomic<std::uint32_t>& h = entries_[e].handed;
    h.store(h.load(std::memory_order_relaxed) - 1, std::memory_order_release);
  }

  // The key of an entry that a worker holds (its key cannot change or go while held).
  const Key& key_of(std::uint32_t e) noexcept { return *entries_[e].key(); }

  // Gives a slot back to the free list. Retries while the free list's next slot is still being
  // read by the taker of an earlier lap (a hand-off of a few instructions; the list can never be
  // really full: it has a place for every slot). Thread-safe.
  void release_slot(std::uint32_t s) noexcept {
    while (!free_slots_.try_push(std::uint32_t{s})) std::this_thread::yield();
  }

  // Shutdown: moves every queued job out, each key's in its order, into `out` as {key, job};
  // when `remove_all` (no worker holds a key any more), removes every entry too. Returns how
  // many jobs were taken. May throw (bad_alloc, or Key's copy constructor): what was taken by
  // then is in `out`, the rest stays in the table for a later call. Thread-safe.
  std::size_t collect(std::vector<std::pair<Key, Job>>& out, bool remove_all) {
    std::size_t taken_count = 0;
    for (std::size_t si = 0; si <= stripe_mask_; ++si) {
      stripe& st = stripes_[si];
      const std::lock_guard lock(st.mutex);
      for (std::size_t b = si; b <= bucket_mask_; b += stripe_mask_ + 1) {
        for (std::uint32_t e = buckets_[b]; e != no_index;) {
          entry& en = entries_[e];
          out.reserve(out.size() + en.count);
          while (en.count != 0) {
            const std::uint32_t s = en.head;
            job_type* job = slots_[s].job();
            out.emplace_back(*en.key(), std::move(job->job));  // Key first: a throw moves nothing
            job->~job_type();
            en.head = slots_[s].next;
            --en.count;
            release_slot(s);
            ++taken_count;
          }
          const std::uint32_t next = en.next;
          if (remove_all) remove(st, e);
          e = next;
        }
      }
    }
    return taken_count;
  }

  // See "Closing" above. Idempotent; thread-safe.
  void close() noexcept {
    // relaxed: every reader reads it under a stripe lock, and the locking below orders it.
    closed_.store(true, std::memory_order_relaxed);
    for (std::size_t si = 0; si <= stripe_mask_; ++si) {
      const std::lock_guard lock(stripes_[si].mutex);
    }
  }
  // Relaxed outside a lock: a caller uses it only to tell "full" from "closed" after a refused
  // admit, or as a waiter's re-check; a stale "open" costs one more wait, which begin_shutdown's
  // wake-up (after close()) ends, and the room gate's eventcount fence orders the re-check.
  bool closed() const noexcept { return closed_.load(std::memory_order_relaxed); }

  // Jobs accepted so far (acquire: a reader that sees a count also sees the admits before it,
  // for wait_idle's and the drain's comparisons). Thread-safe.
  std::uint64_t accepted() const noexcept {
    std::uint64_t n = 0;
    for (std::size_t si = 0; si <= stripe_mask_; ++si) {
      n += stripes_[si].accepted.load(std::memory_order_acquire);
    }
    return n;
  }

  // Keys with an entry (queued or running jobs, or just scheduled). Relaxed: statistics.
  std::size_t active_keys() const noexcept {
    std::uint64_t added = 0;
    std::uint64_t removed = 0;
    for (std::size_t si = 0; si <= stripe_mask_; ++si) {
      added += stripes_[si].keys.load(std::memory_order_relaxed);
      removed += stripes_[si].removed.load(std::memory_order_relaxed);
    }
    return added > removed ? static_cast<std::size_t>(added - removed) : 0;
  }

  // Slots holding queued jobs now (seq_cst: the room gate's handshake). Thread-safe.
  std::size_t used_slots() const noexcept {
    const std::size_t free = free_slots_.size_approx();
    return free >= capacity_ ? 0 : capacity_ - free;
  }

 private:
  static constexpr std::size_t max_stripes = 256;

  // Raw storage: a job lives in a slot only between its admit and its take.
  // NOLINTNEXTLINE(cppcoreguidelines-pro-type-member-init)
  struct slot {
    alignas(job_type) unsigned char storage[sizeof(job_type)];
    std::uint32_t next = no_index;
    job_type* job() noexcept { return std::launder(reinterpret_cast<job_type*>(storage)); }
  };
  // Raw storage: a key lives in an entry only while the entry is in the table.
  // NOLINTNEXTLINE(cppcoreguidelines-pro-type-member-init)
  struct entry {
    alignas(Key) unsigned char key_storage[sizeof(Key)];
    std::size_t hash = 0;
    std::uint32_t next = no_index;  // bucket chain
    std::uint32_t head = no_index;  // FIFO of slots
    std::uint32_t tail = no_index;
    std::uint32_t count = 0;               // queued jobs in the FIFO
    std::atomic<std::uint32_t> handed{0};  // handed to the holder by take(), not started
    Key* key() noexcept { return std::launder(reinterpret_cast<Key*>(key_storage)); }
  };
  // A lock and the counters written under it (single writer at a time: detail::bump).
  struct alignas(cache_line_size) stripe {
    std::mutex mutex;
    std::atomic<std::uint64_t> accepted{0};
    std::atomic<std::uint64_t> keys{0};
    std::atomic<std::uint64_t> removed{0};
  };

  static std::size_t checked_capacity(std::size_t capacity, std::size_t holders,
                                      const char* owner) {
    constexpr std::size_t limit = std::size_t{1} << 30;  // indices are 32-bit, no_index reserved
    if (capacity == 0 || capacity > limit || holders > limit) {
      throw std::invalid_argument(std::string(owner) + ": options.queue_capacity must be in [1, " +
                                  std::to_string(limit) + "], got " + std::to_string(capacity));
    }
    return std::bit_ceil(capacity);
  }

  static std::uint32_t index_of(std::size_t i) noexcept { return static_cast<std::uint32_t>(i); }

  // Fibonacci hashing: a user's Hash may be the identity (std::hash<int>); its top bits pick the
  // bucket, and the bucket's low bits the stripe.
  std::size_t bucket_of(std::size_t hash) const noexcept {
    const std::uint64_t mixed = static_cast<std::uint64_t>(hash) * 0x9E3779B97F4A7C15ULL;
    return static_cast<std::size_t>(mixed >> 32) & bucket_mask_;
  }
  stripe& stripe_of(std::size_t hash) noexcept { return stripes_[bucket_of(hash) & stripe_mask_]; }

  // Queued jobs of a key: in its FIFO, or handed to its holder and not started yet.
  static std::size_t queued_in(const entry& en) noexcept {
    return std::size_t{en.count} + en.handed.load(std::memory_order_acquire);
  }

  std::uint32_t find(std::uint32_t chain, std::size_t hash, const Key& key) {
    for (std::uint32_t e = chain; e != no_index; e = entries_[e].next) {
      if (entries_[e].hash == hash && equal_(*entries_[e].key(), key)) return e;
    }
    return no_index;
  }

  // An entry for a key being admitted; the free list cannot be empty (see Storage), only late
  // by a hand-off. Throws what Key's copy constructor throws (the entry goes back).
  std::uint32_t new_entry(std::size_t hash, const Key& key) {
    std::uint32_t e = no_index;
    while (!free_entries_.try_pop(e)) std::this_thread::yield();
    try {
      ::new (static_cast<void*>(entries_[e].key_storage)) Key(key);
    } catch (...) {
      while (!free_entries_.try_push(std::uint32_t{e})) std::this_thread::yield();
      throw;
    }
    entry& en = entries_[e];
    en.hash = hash;
    en.head = en.tail = no_index;
    en.count = 0;
    en.handed.store(0, std::memory_order_relaxed);
    return e;
  }

  // Unlinks an empty entry from its chain and frees it. Under its stripe's lock.
  void remove(stripe& st, std::uint32_t e) noexcept {
    entry& en = entries_[e];
    std::uint32_t* link = &buckets_[bucket_of(en.hash)];
    while (*link != e) link = &entries_[*link].next;
    *link = en.next;
    en.key()->~Key();
    bump(st.removed);
    while (!free_entries_.try_push(std::uint32_t{e})) std::this_thread::yield();
  }

  std::size_t capacity_;
  bool per_key_bound_;
  std::size_t entry_count_;
  std::size_t bucket_mask_;
  std::size_t stripe_mask_;
  KeyEqual equal_;
  std::unique_ptr<slot[]> slots_;
  std::unique_ptr<entry[]> entries_;
  std::unique_ptr<std::uint32_t[]> buckets_;  // chain heads; guarded by their stripe's mutex
  std::unique_ptr<stripe[]> stripes_;
  bounded_queue<std::uint32_t> free_slots_;
  bounded_queue<std::uint32_t> free_entries_;
  std::atomic<bool> closed_{false};
};

}  // namespace crew::detail
