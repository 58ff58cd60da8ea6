#pragma once

// crew::bounded_queue<T>: a lock-free, bounded, multi-producer multi-consumer ring.
//
// When to use: a fixed-capacity hand-off between any number of producer and consumer threads
// where a full queue must be an answer ("no room"), never an allocation. It is the queue under
// crew::worker_pool, and usable on its own.
//
// When not to: if you need to block until there is room or an element, use the pool (waiting is
// its job); if you need unbounded growth, this is deliberately not that.
//
// Design: Vyukov's bounded MPMC ring, with rigtorp's lap-based turns. Every slot carries a
// sequence ("turn") counter. Ticket t maps to slot t % capacity in lap t / capacity. A producer
// holding ticket t may write its slot once the turn is 2 * lap, then publishes the element by
// storing 2 * lap + 1; a consumer holding ticket t may read it once the turn is 2 * lap + 1, then
// frees the slot for the next lap by storing 2 * lap + 2. (Vyukov's original turns, t and t + 1,
// collide when the capacity is 1; lap-based turns work for every capacity.) Tickets are claimed
// with a compare-exchange
// on the shared tail (producers) or head (consumers), so a full or empty queue is detected
// without claiming anything. Elements are constructed in place in their slot: no allocation per
// element, ever; the slot array is allocated once by the constructor.
//
// Closing: close() sets the top bit of the tail ticket, so every later push fails and no push
// can be half-way through a claim when it returns: a push either claimed its ticket before the
// close (and will publish it) or fails. That is how crew::worker_pool shuts down without losing
// an accepted job. Pops keep working after close() until the queue is drained.
//
// Memory contract: everything a producer did before a successful push is visible to the
// consumer after the pop that returns that element.
//
// Progress guarantee, named honestly: no call ever blocks or waits, but the ring is not
// lock-free in the strict sense. A producer preempted between claiming its ticket and
// publishing its slot makes that one slot look "not ready" to consumers (try_pop returns false
// while later slots may be full), and a consumer preempted between its claim and its release
// makes that slot look "full" to the producer of the next lap. Every other slot keeps working.
// (This is true of every ring of Vyukov's family; see DESIGN.md, "The queue".)
//
// Holes: when T's constructor may throw, try_emplace claims its ticket first and constructs in
// the slot; if the constructor throws, the slot is released as a hole that consumers skip (and
// holes are not counted as pushes). So a failed try_emplace never consumes its arguments.
//
// Memory usage: capacity() slots, each padded to a multiple of a cache line (64 bytes), plus
// three cache lines for the indices.

#include <unistd.h>

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <iterator>
#include <limits>
#include <new>
#include <optional>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <utility>

#include "detail/cache_line.hpp"

namespace crew {

namespace detail {

// Physical memory of this machine in bytes, or 0 when unknown.
inline std::size_t physical_memory_bytes() noexcept {
  const long pages = ::sysconf(_SC_PHYS_PAGES);
  const long page_size = ::sysconf(_SC_PAGESIZE);
  if (pages <= 0 || page_size <= 0) return 0;
  const auto p = static_cast<unsigned long long>(pages);
  const auto s = static_cast<unsigned long long>(page_size);
  if (p > std::numeric_limits<std::size_t>::max() / s)
    return std::numeric_limits<std::size_t>::max();
  return static_cast<std::size_t>(p * s);
}

}  // namespace detail

// A lock-free bounded MPMC queue of T.
//
// Thread safety: every member function except the constructor and destructor may be called
// concurrently from any number of threads. The destructor must not run concurrently with any
// other call (as for any object).
//
// Requirements on T: nothrow move construction and nothrow destruction (static_asserted), so an
// element can always be moved into and out of its slot after a ticket is claimed; T need not be
// default-constructible or copyable.
//
// Exception safety: try_push/try_push_bulk/try_pop()/try_pop_bulk/batches never throw.
// try_emplace: if T's constructor throws, no element was added (the claimed slot becomes a hole
// that pops skip) and the exception reaches the caller; on a full or closed queue its arguments
// are not touched. try_pop(T&) gives the strong guarantee for the queue; if T's move assignment
// throws, the popped element is destroyed and the exception propagates. try_pop_bulk accepts
// only outputs whose write cannot throw (checked at compile time), so no claimed element can be
// lost half-way; for other outputs take elements one by one from try_pop_batch().
template <class T>
class bounded_queue {
  static_assert(std::is_nothrow_move_constructible_v<T>,
                "crew::bounded_queue<T> requires a nothrow move constructor: an element is moved "
                "into its slot after the slot is claimed, and that step must not fail. Mark the "
                "move constructor noexcept, or store a std::unique_ptr<T>.");
  static_assert(std::is_nothrow_destructible_v<T>,
                "crew::bounded_queue<T> requires a nothrow destructor.");
  static_assert(std::is_object_v<T> && !std::is_const_v<T> && !std::is_array_v<T>,
                "crew::bounded_queue<T> requires a non-const, non-array object type.");

  using ticket = std::uint64_t;
  // An output iterator whose write and increment cannot throw (try_pop_bulk's requirement).
  template <class It>
  static constexpr bool nothrow_output =
      noexcept(*std::declval<It&>() = std::declval<T&&>()) && noexcept(++std::declval<It&>());
  // Top bit of the tail ticket: set by close(). 2^63 tickets cannot be exhausted in practice.
  static constexpr ticket closed_bit = ticket{1} << 63;

  // Raw storage: an element lives in a slot only between its push and its pop.
  // NOLINTNEXTLINE(cppcoreguidelines-pro-type-member-init)
  struct alignas(detail::cache_line_size) slot {
    std::atomic<ticket> turn;
    alignas(T) unsigned char storage[sizeof(T)];

    T* element() noexcept { return std::launder(reinterpret_cast<T*>(storage)); }
  };
  static_assert(alignof(slot) % detail::cache_line_size == 0,
                "each slot must start on its own cache line so that neighbouring slots written "
                "by different threads never share a line");
  static_assert(sizeof(slot) % detail::cache_line_size == 0,
                "a slot must fill whole cache lines so the next slot starts on a fresh line");

 public:
  using value_type = T;
  using size_type = std::size_t;

  // The largest capacity the type can represent (the real limit is memory, see the constructor).
  static constexpr size_type max_capacity() noexcept {
    return size_type{1} << (std::numeric_limits<size_type>::digits - 2);
  }

  // Creates an empty queue holding at least `capacity` elements. The capacity is rounded up to
  // a power of two (so a ticket maps to its slot with a mask); capacity() tells the real value.
  // Throws std::invalid_argument naming the capacity when it is 0, when it cannot be
  // represented, when the slots would need more than this machine's physical memory, or when
  // the allocation fails.
  explicit bounded_queue(size_type capacity) {
    if (capacity == 0) {
      throw std::invalid_argument("crew::bounded_queue: capacity must be at least 1, got 0");
    }
    if (capacity > max_capacity() ||
        capacity > std::numeric_limits<size_type>::max() / sizeof(slot) / 2) {
      throw std::invalid_argument("crew::bounded_queue: capacity " + std::to_string(capacity) +
                                  " is too large to represent");
    }
    size_type rounded = 1;
    while (rounded < capacity) rounded <<= 1;
    const size_type bytes = rounded * sizeof(slot);
    const size_type memory = detail::physical_memory_bytes();
    if (memory != 0 && bytes > memory) {
      throw std::invalid_argument("crew::bounded_queue: capacity " + std::to_string(capacity) +
                                  " needs " + std::to_string(bytes) +
                                  " bytes of slots, more than this machine's physical memory (" +
                                  std::to_string(memory) + " bytes)");
    }
    void* raw = nullptr;
    try {
      raw = ::operator new (bytes, std::align_val_t{alignof(slot)});
    } catch (const std::bad_alloc&) {
      throw std::invalid_argument("crew::bounded_queue: capacity " + std::to_string(capacity) +
                                  " cannot be allocated (" + std::to_string(bytes) + " bytes)");
    }
    slots_ = static_cast<slot*>(raw);
    for (size_type i = 0; i < rounded; ++i) {
      // Not yet shared with any thread: the constructor's completion publishes the slots.
      ::new (static_cast<void*>(&slots_[i])) slot;
      slots_[i].turn.store(0, std::memory_order_relaxed);
    }
    capacity_ = rounded;
    mask_ = rounded - 1;
    while ((size_type{1} << shift_) < rounded) ++shift_;
  }

  bounded_queue(const bounded_queue&) = delete;
  bounded_queue& operator=(const bounded_queue&) = delete;
  bounded_queue(bounded_queue&&) = delete;
  bounded_queue& operator=(bounded_queue&&) = delete;

  // Destroys the elements still inside, in FIFO order, then frees the slots. No other call may
  // be running: every push has then published its slot, so [head, tail) are all live elements.
  ~bounded_queue() {
    const ticket tail = tail_.load(std::memory_order_relaxed) & ~closed_bit;
    for (ticket t = head_.load(std::memory_order_relaxed); t != tail; ++t) {
      // A hole (a push whose constructor threw) holds no element.
      if (slots_[t & mask_].turn.load(std::memory_order_relaxed) == free_turn(t) + 1) {
        slots_[t & mask_].element()->~T();
      }
    }
    for (size_type i = 0; i < capacity_; ++i) slots_[i].~slot();
    ::operator delete (static_cast<void*>(slots_), std::align_val_t{alignof(slot)});
  }

  // Moves `value` into the queue if there is room and the queue is open; returns whether it
  // did. On false, `value` is untouched. Never blocks; lock-free. May return false while a
  // consumer is still moving the previous lap's element out of the one slot it needs (the queue
  // is full at that instant). Thread-safe.
  bool try_push(T&& value) noexcept {
    return push_one([&](void* where) noexcept { ::new (where) T(std::move(value)); });
  }

  // Copies `value` into the queue if there is room and the queue is open. Strong guarantee if
  // T's copy constructor throws (the copy is made before a slot is claimed). Thread-safe.
  bool try_push(const T& value) requires std::is_copy_constructible_v<T> {
    return try_emplace(value);
  }

  // Constructs an element from `args` in place if there is room and the queue is open; returns
  // whether it did. On false (full or closed), `args` are not touched. If T's constructor
  // throws, the claimed slot is released as a hole (pops skip it, pushed_count() does not count
  // it) and the exception reaches the caller. Thread-safe.
  template <class... Args>
  requires std::is_constructible_v<T, Args&&...>
  bool try_emplace(Args&&... args) noexcept(std::is_nothrow_constructible_v<T, Args&&...>) {
    if constexpr (std::is_nothrow_constructible_v<T, Args&&...>) {
      return push_one([&](void* where) noexcept { ::new (where) T(std::forward<Args>(args)...); });
    } else {
      return push_one([&](void* where) { ::new (where) T(std::forward<Args>(args)...); });
    }
  }

  // Moves up to `count` elements from [first, first + count) into the queue with one claim of
  // the tail, in order; returns how many it took (a prefix; 0 when full or closed). Elements
  // past the returned count are not moved from. The range must hold at least `count` elements.
  // Constructing T from an element must not throw (the slots are claimed before construction);
  // push elements one by one with try_emplace when it may. Thread-safe.
  template <std::input_iterator It>
  requires std::is_nothrow_constructible_v<T, std::iter_rvalue_reference_t<It>> size_type
  try_push_bulk(It first, size_type count)
  noexcept {
    if (count == 0) return 0;
    ticket pos = tail_.load(std::memory_order_relaxed);
    for (;;) {
      if ((pos & closed_bit) != 0) return 0;
      size_type n = 0;
      // (2) acquire pairs with the consumer's release of each slot: the previous lap's element
      // is fully moved out before we construct over it.
      while (n < count &&
             slots_[(pos + n) & mask_].turn.load(std::memory_order_acquire) == free_turn(pos + n)) {
        ++n;
      }
      if (n == 0) {
        const ticket turn = slots_[pos & mask_].turn.load(std::memory_order_acquire);
        if (static_cast<std::int64_t>(turn - free_turn(pos)) < 0) return 0;  // full
        pos = tail_.load(std::memory_order_relaxed);  // stale: another producer won
        continue;
      }
      // seq_cst: the successful claim is one side of the pool's parking handshake (see
      // size_approx()); relaxed on failure, since nothing is published by a failed claim.
      if (tail_.compare_exchange_weak(pos, pos + n, std::memory_order_seq_cst,
                                      std::memory_order_relaxed)) {
        for (size_type i = 0; i < n; ++i, ++first) {
          slot& s = slots_[(pos + i) & mask_];
          ::new (static_cast<void*>(s.storage)) T(std::ranges::iter_move(first));
          // (1) release publishes the element to the consumer that acquires this turn.
          s.turn.store(free_turn(pos + i) + 1, std::memory_order_release);
        }
        return n;
      }
    }
  }

  // Moves the oldest element into `out` if there is one; returns whether it did. May return
  // false while the producer of the oldest element is still writing it. Thread-safe.
  bool try_pop(T& out) noexcept(std::is_nothrow_move_assignable_v<T>) {
    batch b = try_pop_batch(1);
    if (b.empty()) return false;
    b.pop_into(out);
    return true;
  }

  // Removes and returns the oldest element, or nullopt when there is none. Thread-safe.
  std::optional<T> try_pop() noexcept {
    batch b = try_pop_batch(1);
    if (b.empty()) return std::nullopt;
    return std::optional<T>(b.pop());
  }

  // Moves up to `max` of the oldest elements to `out` in FIFO order with one claim of the head;
  // returns how many. Writing to `out` must not throw (a pointer into an array of T with a
  // nothrow move assignment, or any output iterator whose assignment is noexcept): a throw half
  // way would leave claimed elements with nowhere to go. For an output that may throw (a
  // back_inserter), take elements one by one from try_pop_batch(). Thread-safe.
  template <class OutputIt>
  requires std::output_iterator<OutputIt, T> && nothrow_output<OutputIt> size_type
  try_pop_bulk(OutputIt out, size_type max)
  noexcept {
    batch b = try_pop_batch(max);
    const size_type n = b.size();
    while (!b.empty()) {
      *out = b.pop();
      ++out;
    }
    return n;
  }

  // A run of consecutive elements claimed by one consumer with a single head update. The
  // elements stay in their slots until taken with pop(), so a consumer can run each one as it
  // frees its slot; the destructor destroys (and frees the slots of) whatever was not taken.
  // A batch belongs to one thread at a time and must not outlive its queue.
  class batch {
   public:
    batch() = default;
    batch(batch&& other) noexcept
        : queue_(std::exchange(other.queue_, nullptr)),
          first_(other.first_),
          size_(std::exchange(other.size_, 0)),
          taken_(std::exchange(other.taken_, 0)) {}
    batch& operator=(batch&& other) noexcept {
      if (this != &other) {
        discard_rest();
        queue_ = std::exchange(other.queue_, nullptr);
        first_ = other.first_;
        size_ = std::exchange(other.size_, 0);
        taken_ = std::exchange(other.taken_, 0);
      }
      return *this;
    }
    batch(const batch&) = delete;
    batch& operator=(const batch&) = delete;
    ~batch() { discard_rest(); }

    // How many elements were claimed, and whether all of them have been taken.
    size_type size() const noexcept { return size_; }
    bool empty() const noexcept { return taken_ == size_; }
    size_type remaining() const noexcept { return size_ - taken_; }

    // Moves the next element out and frees its slot. Precondition: !empty().
    T pop() noexcept {
      slot& s = next_slot();
      T out(std::move(*s.element()));
      release(s);
      return out;
    }

    // Like pop(), assigning into `out`. If the assignment throws, the element is still removed.
    void pop_into(T& out) noexcept(std::is_nothrow_move_assignable_v<T>) {
      slot& s = next_slot();
      struct releaser {
        releaser(batch* b, slot* sl) noexcept : self(b), s(sl) {}
        batch* self;
        slot* s;
        releaser(const releaser&) = delete;
        releaser& operator=(const releaser&) = delete;
        releaser(releaser&&) = delete;
        releaser& operator=(releaser&&) = delete;
        ~releaser() { self->release(*s); }
      } guard(this, &s);
      out = std::move(*s.element());
    }

   private:
    friend class bounded_queue;
    batch(bounded_queue* q, ticket first, size_type size) noexcept
        : queue_(q), first_(first), size_(size) {}

    slot& next_slot() noexcept { return queue_->slots_[(first_ + taken_) & queue_->mask_]; }

    void release(slot& s) noexcept {
      s.element()->~T();
      // (2) release frees the slot: the producer of the next lap acquires this turn before it
      // constructs over the storage, so our move-out and destruction happen before its writes.
      s.turn.store(queue_->free_turn(first_ + taken_) + 2, std::memory_order_release);
      ++taken_;
    }

    void discard_rest() noexcept {
      while (taken_ < size_) release(next_slot());
    }

    bounded_queue* queue_ = nullptr;
    ticket first_ = 0;
    size_type size_ = 0;
    size_type taken_ = 0;
  };

  // Claims up to `max` of the oldest published elements with one update of the head and
  // returns them as a batch (empty when there is nothing to take). Thread-safe.
  batch try_pop_batch(size_type max) noexcept {
    if (max == 0) return {};
    ticket pos = head_.load(std::memory_order_relaxed);
    for (;;) {
      size_type n = 0;
      // (1) acquire pairs with the producer's release publishing each slot: the element's
      // construction (and all the producer did before it) is visible once the turn is seen.
      while (n < max && slots_[(pos + n) & mask_].turn.load(std::memory_order_acquire) ==
                            free_turn(pos + n) + 1) {
        ++n;
      }
      if (n == 0) {
        const ticket turn = slots_[pos & mask_].turn.load(std::memory_order_acquire);
        const auto diff = static_cast<std::int64_t>(turn - (free_turn(pos) + 1));
        if (diff < 0) return {};  // empty
        if (diff > 0) {
          // The slot of ticket `pos` was released: either another consumer claimed `pos` (then
          // the head has moved on and this CAS fails) or its push left a hole (the head still
          // reads `pos`: skip it). The CAS decides, so no hole is skipped twice and no element
          // is ever skipped (an element's slot reads exactly free_turn(pos) + 1 until claimed).
          if (head_.compare_exchange_strong(pos, pos + 1, std::memory_order_seq_cst,
                                            std::memory_order_relaxed)) {
            skipped_.fetch_add(1, std::memory_order_relaxed);  // statistics for size_approx()
          }
        }
        pos = head_.load(std::memory_order_relaxed);  // diff == 0: published since the scan
        continue;
      }
      // seq_cst: the claim is one side of the pool's producer-parking handshake (see
      // size_approx()); relaxed on failure, nothing is claimed.
      if (head_.compare_exchange_weak(pos, pos + n, std::memory_order_seq_cst,
                                      std::memory_order_relaxed)) {
        return batch(this, pos, n);
      }
    }
  }

  // Closes the queue: every push that has not claimed its slot by now fails, forever; pops go
  // on until the queue is drained. Idempotent. Returns the number of elements ever pushed
  // (final from now on). Thread-safe. seq_cst: a thread that parks after checking is_closed()
  // or size_approx() cannot miss it (same handshake as pushes).
  std::uint64_t close() noexcept {
    return tail_.fetch_or(closed_bit, std::memory_order_seq_cst) & ~closed_bit;
  }

  // Whether the oldest unclaimed element is ready to pop (its push completed): a hint for
  // threads that poll, which reads the consumers' head and one slot but never the producers'
  // tail, so polling does not take the line every push updates away from the producers
  // (measured with 2 producers and 2 polling workers on 2 cores: 1.7x the throughput of polling
  // size_approx()). Stale as soon as it returns; try_pop() decides. Thread-safe.
  bool front_ready() const noexcept {
    // relaxed: a hint only; the pop that follows a `true` does the acquire on the slot.
    const ticket head = head_.load(std::memory_order_relaxed);
    return slots_[head & mask_].turn.load(std::memory_order_relaxed) == free_turn(head) + 1;
  }

  // Whether close() has been called. Thread-safe.
  bool is_closed() const noexcept {
    return (tail_.load(std::memory_order_seq_cst) & closed_bit) != 0;
  }

  // Whether the queue is closed and every element ever pushed has been claimed by a consumer:
  // nothing more will ever be popped. Thread-safe.
  bool is_drained() const noexcept {
    const ticket tail = tail_.load(std::memory_order_seq_cst);
    return (tail & closed_bit) != 0 &&
           head_.load(std::memory_order_seq_cst) == (tail & ~closed_bit);
  }

  // The number of elements pushed but not yet claimed by a consumer (including pushes still
  // writing their slot), clamped to [0, capacity()]. A snapshot that may be stale on return.
  //
  // Parking handshake: this reads head and tail with seq_cst loads, and successful claims are
  // seq_cst read-modify-writes. So if thread A makes a seq_cst store or RMW (say, "I am about to
  // sleep") and then calls size_approx(), while thread B completes a push and then makes a
  // seq_cst load of A's flag, at least one of them sees the other: A sees the push, or B sees
  // the flag. crew::worker_pool relies on this to park without lost wake-ups. Thread-safe.
  size_type size_approx() const noexcept {
    // Holes not yet skipped are not elements: holes (counted before they exist) minus skipped
    // (counted after the head passed them). Both stay 0 unless a constructor threw.
    const ticket skipped = skipped_.load(std::memory_order_relaxed);
    const ticket head = head_.load(std::memory_order_seq_cst);
    const ticket tail = tail_.load(std::memory_order_seq_cst) & ~closed_bit;
    const ticket holes = holes_.load(std::memory_order_relaxed) - skipped;
    if (tail <= head + holes) return 0;
    const ticket n = tail - head - holes;
    return n > capacity_ ? capacity_ : static_cast<size_type>(n);
  }

  // Total number of successful pushes so far (monotonic; relaxed snapshot). Thread-safe.
  std::uint64_t pushed_count() const noexcept {
    // holes_ is read second: both only grow, so the difference never counts a hole as a push.
    const ticket tail = tail_.load(std::memory_order_relaxed) & ~closed_bit;
    return tail - holes_.load(std::memory_order_relaxed);
  }

  // Total number of elements claimed by consumers so far (monotonic; relaxed snapshot).
  std::uint64_t popped_count() const noexcept { return head_.load(std::memory_order_relaxed); }

  // The real capacity: the requested one rounded up to a power of two. Thread-safe.
  size_type capacity() const noexcept { return capacity_; }

 private:
  // The turn at which ticket t's slot is free for its producer (2 * lap); t's element is
  // published at free_turn(t) + 1 and the slot freed for the next lap at free_turn(t) + 2.
  ticket free_turn(ticket t) const noexcept { return (t >> shift_) << 1; }

  template <class Construct>
  bool push_one(Construct&& construct) noexcept(noexcept(construct(nullptr))) {
    ticket pos = tail_.load(std::memory_order_relaxed);
    for (;;) {
      if ((pos & closed_bit) != 0) return false;
      slot& s = slots_[pos & mask_];
      // (2) acquire pairs with the consumer's release of this slot.
      const ticket turn = s.turn.load(std::memory_order_acquire);
      const auto diff = static_cast<std::int64_t>(turn - free_turn(pos));
      if (diff == 0) {
        // seq_cst on success: see size_approx(). Relaxed on failure: nothing claimed.
        if (tail_.compare_exchange_weak(pos, pos + 1, std::memory_order_seq_cst,
                                        std::memory_order_relaxed)) {
          if constexpr (noexcept(construct(nullptr))) {
            construct(static_cast<void*>(s.storage));
          } else {
            try {
              construct(static_cast<void*>(s.storage));
            } catch (...) {
              // Give the ticket back if no other producer claimed one since (the slot was never
              // published, so no consumer can have taken it). Otherwise release the slot as a
              // hole: the turn a consumer would leave behind, so the next lap's producer may use
              // it; consumers skip it (try_pop_batch). Counted first, so that pushed_count()
              // and size_approx() never count a hole as an element.
              ticket expected = pos + 1;
              if (!tail_.compare_exchange_strong(expected, pos, std::memory_order_seq_cst,
                                                 std::memory_order_relaxed)) {
                holes_.fetch_add(1, std::memory_order_seq_cst);
                s.turn.store(free_turn(pos) + 2, std::memory_order_release);
              }
              throw;
            }
          }
          // (1) release publishes the element.
          s.turn.store(free_turn(pos) + 1, std::memory_order_release);
          return true;
        }
      } else if (diff < 0) {
        return false;  // the slot still holds the previous lap's element: full
      } else {
        pos = tail_.load(std::memory_order_relaxed);  // stale ticket: reload
      }
    }
  }

  // Read-only after construction: on a line of its own so index updates never invalidate it.
  alignas(detail::cache_line_size) slot* slots_ = nullptr;
  size_type mask_ = 0;
  size_type capacity_ = 0;
  unsigned shift_ = 0;  // log2(capacity_)
  // Consumers' ticket.
  alignas(detail::cache_line_size) std::atomic<ticket> head_{0};
  // Producers' ticket; its top bit is the closed flag.
  alignas(detail::cache_line_size) std::atomic<ticket> tail_{0};
  // Pushes whose constructor threw and left a hole, and holes consumers skipped (rare; relaxed
  // statistics subtracted by pushed_count() and size_approx()).
  std::atomic<ticket> holes_{0};
  std::atomic<ticket> skipped_{0};
  // Keeps whatever follows this object off the tail's line.
  char pad_[detail::cache_line_size - 3 * sizeof(std::atomic<ticket>)] = {};
};

}  // namespace crew
