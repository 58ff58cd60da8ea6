#pragma once

// crew::redis::detail::consumer_core: the fetch thread of a consumer, and the sink its workers
// report outcomes to. Private; crew::redis::consumer (consumer.hpp) is the public face.
//
// Threads and what they own:
//  - the fetch thread owns the connection (one hiredis context, used by no other thread) and
//    all the bookkeeping below (in_flight_, acks_, dead_, returns_, the recovery cursor): no
//    lock guards them because no other thread touches them;
//  - workers (the pool's threads) run the handler and append an outcome to outcomes_ under
//    mu_, then notify cv_;
//  - shutdown callers flip the phase flags and append hand-backs to outcomes_ under mu_; a
//    drain first waits for the fetch thread to leave its fetch section (step 5), so what a
//    read under way returns reaches the pool before the pool closes.
//
// One loop iteration of the fetch thread:
//  1. collect outcomes: done -> ack; failed -> dead letter (delivery >= dead_letter_after),
//     hand back at once (abort under way), or leave pending (redelivered after min_idle);
//  2. (re)connect with backoff if needed; after every connect: XGROUP CREATE (a server
//     restarted without persistence lost the group) and restart own-pending recovery;
//  3. send dead letters (one script each) and hand-backs (XCLAIM me 0 id IDLE min_idle
//     RETRYCOUNT n JUSTID: claimable by anyone at once; n = deliveries - 1 for an unstarted
//     message, so the hand-back does not count as a delivery);
//  4. heartbeat every heartbeat_interval: refresh every in-flight entry we still own;
//  5. while fetching and free = workers - in_flight > 0: every claim_interval, claim entries
//     idle >= min_idle from anyone (XPENDING IDLE + XCLAIM min_idle, which fails if someone
//     else claimed first); then recover own pending entries one at a time (never a bulk
//     XREADGROUP ... 0, which would raise every entry's delivery count); then pipeline the
//     batched XACK with XREADGROUP COUNT free BLOCK block;
//  6. otherwise ack, then sleep on cv_ until an outcome or the next timer.
// Invariants: an entry is in in_flight_ from its submit until its outcome is collected; at
// most workers() entries are in flight; an id leaves acks_/dead_/returns_ only when its
// command got a reply (an I/O error keeps it for the next connection: XACK and XCLAIM are
// idempotent, so a resend after a lost reply is harmless).

#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <functional>
#include <mutex>
#include <stop_token>
#include <string>
#include <string_view>
#include <thread>
#include <unordered_map>
#include <utility>
#include <vector>

#include "../status.hpp"
#include "connection.hpp"
#include "message.hpp"
#include "options.hpp"
#include "pool_adaptor.hpp"
#include "scripts.hpp"
#include "stats.hpp"

namespace crew::redis {

// The handler's type-erased form: it may modify the message (it owns it until it returns).
using message_handler = std::function<void(message&, std::stop_token)>;

namespace detail {

using clock = std::chrono::steady_clock;

struct outcome {
  enum class kind : std::uint8_t { done, failed, handed_back };
  kind what = kind::done;
  message msg;        // id and deliveries always; fields only when failed
  std::string error;  // failed: what() of the exception
};

class consumer_core final : public run_sink {
 public:
  consumer_core(consumer_options options, message_handler handler)
      : opts_(checked(std::move(options))),
        handler_(std::move(handler)),
        conn_(opts_.connection),
        claim_every_(claim_interval_of(opts_)),
        heartbeat_every_(heartbeat_interval_of(opts_)) {
    if (!handler_) throw std::invalid_argument("crew::redis::consumer: the handler is empty");
  }
  consumer_core(const consumer_core&) = delete;
  consumer_core& operator=(const consumer_core&) = delete;
  consumer_core(consumer_core&&) = delete;
  consumer_core& operator=(consumer_core&&) = delete;
  ~consumer_core() override { join(); }

  const consumer_options& options() const noexcept { return opts_; }

  // Called once, before any message: how to submit, and how many may be in flight.
  void start(std::function<submit_status(message&&)> submit, std::size_t workers) {
    submit_ = std::move(submit);
    workers_ = workers;
    thread_ = std::thread([this] { main(); });
  }

  // Worker threads: run one message and record its outcome. noexcept: an outcome that cannot
  // be recorded (out of memory) terminates rather than losing the ack silently.
  void run(message&& m, std::stop_token stop) noexcept override {
    bump(counters_.executed);
    outcome o;
    o.msg.id = m.id;
    o.msg.deliveries = m.deliveries;
    try {
      handler_(m, std::move(stop));
    } catch (const std::exception& e) {
      o.what = outcome::kind::failed;
      o.error = e.what();
    } catch (...) {
      o.what = outcome::kind::failed;
      o.error = "unknown exception";
    }
    if (o.what == outcome::kind::failed) {
      bump(counters_.failed);
      o.msg.fields = std::move(m.fields);
    }
    push(std::move(o));
  }

  // Shutdown callers (any thread, idempotent): stop fetching new work, then wait until the
  // fetch thread is out of its fetch section (a read, claim or recovery and the submits of
  // what it returned), or it exited, or `deadline` passed. What a section fetched before the
  // pool closes is accepted by the pool, so a drain runs it; the wait is bounded by one
  // section: a few commands, each within socket_timeout (a read blocks at most `block`).
  // What a section submits after the pool closed is handed back and counted by
  // take_refused().
  void stop_fetching(clock::time_point deadline) {
    std::unique_lock lock(mu_);
    fetching_ = false;
    cv_.notify_all();
    quiet_cv_.wait_until(lock, deadline, [&] { return !fetch_busy_ || exited_; });
  }
  // Shutdown callers: how many fetched messages the pool refused (it had closed) since the
  // last call; each was handed back to the group. Any thread.
  std::size_t take_refused() noexcept { return refused_.exchange(0); }
  // From now on a failed message is handed back at once instead of waiting for min_idle.
  void set_aborting() { aborting_ = true; }
  // Unstarted messages a pool handed back: returned to the group without counting a delivery.
  void hand_back(std::vector<message>&& unstarted) {
    for (message& m : unstarted) push({outcome::kind::handed_back, std::move(m), {}});
  }
  // The pool has stopped accepting: the fetch thread exits once nothing is in flight and
  // everything is sent, or when Redis stays unreachable for flush_timeout.
  void begin_finishing() {
    {
      const std::lock_guard lock(mu_);
      if (!finishing_) give_up_at_ = clock::now() + opts_.flush_timeout;
      finishing_ = true;
      quiet_ = false;
    }
    cv_.notify_all();
  }
  // Waits until the fetch thread has sent everything it collected and at most
  // `allowed_in_flight` entries are still in flight, or it exited, or the deadline passed.
  // Returns how many outcomes were left unsent.
  std::size_t wait_quiet(std::size_t allowed_in_flight, clock::time_point deadline) {
    std::unique_lock lock(mu_);
    quiet_cv_.wait_until(lock, deadline, [&] {
      return exited_ || (quiet_ && outcomes_.empty() && in_flight_now_ <= allowed_in_flight);
    });
    return exited_ ? unsent_at_exit_ : unsent_now_ + outcomes_.size();
  }
  void join() {
    if (thread_.joinable()) {
      begin_finishing();
      thread_.join();
    }
  }

  consumer_stats stats() const noexcept { return counters_.snapshot(); }

  // Any thread: the last error reply or connection error, empty if none yet.
  std::string last_error() const {
    const std::lock_guard lock(mu_);
    return last_error_;
  }

 private:
  void push(outcome&& o) {
    {
      const std::lock_guard lock(mu_);
      outcomes_.push_back(std::move(o));
      quiet_ = false;
    }
    cv_.notify_one();
  }

  // The delivery count to restore when a delivery did not start: this one is not counted.
  static std::uint64_t uncounted(std::uint64_t deliveries) noexcept {
    return deliveries > 0 ? deliveries - 1 : 0;
  }

  std::size_t free_workers() const noexcept {
    return in_flight_.size() >= workers_ ? 0 : workers_ - in_flight_.size();
  }
  std::size_t unsent() const noexcept { return acks_.size() + dead_.size() + returns_.size(); }
  void publish_in_flight() {
    counters_.in_flight.store(in_flight_.size(), std::memory_order_relaxed);
  }

  void collect() {
    std::vector<outcome> batch;
    {
      const std::lock_guard lock(mu_);
      batch.swap(outcomes_);
    }
    for (outcome& o : batch) {
      in_flight_.erase(o.msg.id);
      switch (o.what) {
        case outcome::kind::done: acks_.push_back(std::move(o.msg.id)); break;
        case outcome::kind::handed_back:
          returns_.emplace_back(std::move(o.msg.id), uncounted(o.msg.deliveries));
          break;
        case outcome::kind::failed:
          if (o.msg.deliveries >= opts_.dead_letter_after) {
            dead_.emplace_back(std::move(o.msg), std::move(o.error));
          } else if (aborting_) {
            returns_.emplace_back(std::move(o.msg.id), o.msg.deliveries);
          }  // else: stays pending; claimed again once idle for min_idle
          break;
      }
    }
    publish_in_flight();
  }

  bool finished() {
    if (!finishing_) return false;
    if (in_flight_.empty() && unsent() == 0) return true;
    return !conn_.connected() && clock::now() >= give_up_at_;
  }

  void main() {
    while (true) {
      try {
        if (!iterate()) break;
      } catch (const std::exception& e) {
        // Out of memory or a malformed reply that escaped a parser: nothing here is lost
        // (unsent outcomes stay queued, fetched entries stay pending); start over on a fresh
        // connection after a pause.
        set_last_error(std::string("fetch loop: ") + e.what());
        conn_.disconnect();
        std::this_thread::sleep_for(opts_.block);
      }
    }
    const std::lock_guard lock(mu_);
    exited_ = true;
    unsent_at_exit_ = unsent() + in_flight_.size();
    quiet_cv_.notify_all();
  }

  // One iteration of the loop described at the top of this file; false: time to exit.
  bool iterate() {
    collect();
    if (finished()) return false;
    if (!conn_.connected() && !reconnect()) return true;
    if (!send_dead_letters() || !send_returns()) return true;
    if (clock::now() >= next_heartbeat_ && !heartbeat()) return true;
    if (const fetch_section section(*this); section.entered) {
      if (free_workers() > 0 && clock::now() >= next_claim_ && !scan_claims()) return true;
      if (recovering_) {
        // One at a time, literally: the next own entry is recovered only once the previous
        // one finished, and nothing new is read meanwhile. A recovered poison message that
        // kills the process again then takes no innocent entry's delivery count with it.
        if (free_workers() > 0 && !in_flight_.contains(recovered_id_)) {
          recover_one();
          return true;
        }
      } else if (free_workers() > 0) {
        read_new();
        return true;
      }
    }
    if (!send_acks()) return true;
    sleep_until_work();
    return true;
  }

  // The fetch thread's side of stop_fetching's handshake: a section is entered only while
  // fetching_ is true (checked under mu_, where stop_fetching clears it) and left on every path
  // out of it, exceptions included.
  bool enter_fetch() {
    const std::lock_guard lock(mu_);
    fetch_busy_ = fetching_;
    return fetch_busy_;
  }
  void leave_fetch() {
    {
      const std::lock_guard lock(mu_);
      fetch_busy_ = false;
    }
    quiet_cv_.notify_all();
  }
  struct fetch_section {
    consumer_core& core;
    const bool entered;
    explicit fetch_section(consumer_core& c) : core(c), entered(c.enter_fetch()) {}
    fetch_section(const fetch_section&) = delete;
    fetch_section& operator=(const fetch_section&) = delete;
    fetch_section(fetch_section&&) = delete;
    fetch_section& operator=(fetch_section&&) = delete;
    ~fetch_section() {
      if (entered) core.leave_fetch();
    }
  };

  void sleep_until_work() {
    std::unique_lock lock(mu_);
    unsent_now_ = unsent();
    in_flight_now_ = in_flight_.size();
    if (outcomes_.empty()) quiet_ = true;
    quiet_cv_.notify_all();
    auto until = std::min(next_heartbeat_, clock::now() + opts_.block);
    if (fetching_) until = std::min(until, next_claim_);
    cv_.wait_until(lock, until,
                   [&] { return !outcomes_.empty() || (finishing_ && in_flight_.empty()); });
  }

  void set_last_error(std::string_view what) {
    const std::lock_guard lock(mu_);
    last_error_.assign(what);
  }

  void sync_connection_counters() {
    counters_.reconnects.store(conn_.reconnects(), std::memory_order_relaxed);
    counters_.io_errors.store(conn_.io_errors(), std::memory_order_relaxed);
  }

  bool reconnect() {
    const bool ok = conn_.connect_with_backoff([this] {
      return finishing_ && ((in_flight_.empty() && unsent() == 0) || clock::now() >= give_up_at_);
    });
    sync_connection_counters();
    if (!conn_.last_error().empty()) set_last_error(conn_.last_error());
    if (!ok) return false;
    ensure_group();
    recovering_ = true;  // a lost reply may have delivered entries nobody runs: find them
    cursor_ = "-";
    return conn_.connected();
  }

  void ensure_group() {
    const reply_ptr r = conn_.run(
        {"XGROUP", "CREATE", opts_.stream, opts_.group, opts_.group_start_id, "MKSTREAM"});
    if (r != nullptr && is_error(r.get()) && !is_error_code(r.get(), "BUSYGROUP")) {
      set_last_error(text_of(r.get()));
    }
  }

  // An error reply other than NOGROUP (a wrong key type, ACLs): wait, do not spin.
  void on_error_reply(const redisReply* r) {
    if (is_error_code(r, "NOGROUP")) {
      ensure_group();
      return;
    }
    set_last_error(text_of(r));
    std::this_thread::sleep_for(opts_.block);
  }

  // Submits one message, or dead-letters it when it was delivered too often, or hands it
  // back when the pool refused it (shut down meanwhile).
  void submit(message&& m) {
    if (m.deliveries > opts_.dead_letter_after) {
      std::string why = "delivered " + std::to_string(m.deliveries - 1) +
                        " times without an acknowledgement (handler crashed, killed or hung)";
      dead_.emplace_back(std::move(m), std::move(why));
      return;
    }
    std::string id = m.id;
    const std::uint64_t deliveries = m.deliveries;
    in_flight_.emplace(id, deliveries);
    submit_status status = submit_status::rejected;
    try {
      status = submit_(std::move(m));    // moves from m only when accepted
    } catch (const std::exception& e) {  // a throwing key function, out of memory
      set_last_error(std::string("submit to the pool threw: ") + e.what());
    }
    if (status != submit_status::accepted) {
      in_flight_.erase(id);
      returns_.emplace_back(std::move(id), uncounted(deliveries));
      if (!fetching_) refused_.fetch_add(1);
    }
    publish_in_flight();
  }

  bool send_acks() {
    if (acks_.empty()) return true;
    const std::size_t n = std::min(acks_.size(), opts_.max_ack_batch);
    command c{"XACK", opts_.stream, opts_.group};
    c.insert(c.end(), acks_.begin(), acks_.begin() + static_cast<std::ptrdiff_t>(n));
    const reply_ptr r = conn_.run(c);
    if (r == nullptr) return false;
    acked(r.get(), n);
    return true;
  }
  void acked(const redisReply* r, std::size_t n) {
    if (!is_error(r)) bump(counters_.acknowledged, detail::to_u64(r));
    acks_.erase(acks_.begin(), acks_.begin() + static_cast<std::ptrdiff_t>(n));
  }

  bool send_dead_letters() {
    while (!dead_.empty()) {
      auto& [m, why] = dead_.back();
      const reply_ptr r = conn_.run(scripts::dead_letter(opts_.stream, opts_.dead_stream,
                                                         opts_.group, opts_.consumer, m, why));
      if (r == nullptr) return false;
      if (is_error(r.get())) {
        set_last_error(text_of(r.get()));  // left pending: a later claim dead-letters it again
      } else {
        bump(counters_.dead_lettered);
      }
      dead_.pop_back();
    }
    return true;
  }

  bool send_returns() {
    if (returns_.empty()) return true;
    std::vector<command> cmds;
    cmds.reserve(returns_.size());
    for (const auto& [id, retry] : returns_) {
      cmds.push_back({"XCLAIM", opts_.stream, opts_.group, opts_.consumer, "0", id, "IDLE",
                      std::to_string(opts_.min_idle.count()), "RETRYCOUNT", std::to_string(retry),
                      "JUSTID"});
    }
    if (conn_.pipeline(cmds).empty()) return false;
    bump(counters_.returned, returns_.size());
    returns_.clear();
    return true;
  }

  bool heartbeat() {
    next_heartbeat_ = clock::now() + heartbeat_every_;
    if (in_flight_.empty()) return true;
    std::vector<std::string> ids;
    ids.reserve(in_flight_.size());
    for (const auto& entry : in_flight_) ids.push_back(entry.first);
    const reply_ptr r =
        conn_.run(scripts::claim_own(opts_.stream, opts_.group, opts_.consumer, true, ids));
    if (r == nullptr) return false;
    if (r->type == REDIS_REPLY_ARRAY) {
      bump(counters_.heartbeats, r->elements);
      bump(counters_.lost_claims, ids.size() - std::min(ids.size(), r->elements));
    }
    return true;
  }

  // Before reading the pending list, send every finished outcome: an entry that ran but whose
  // ack is still queued here must not look stale (scan) or orphaned (recovery).
  bool flush_all() {
    while (!acks_.empty()) {
      if (!send_acks()) return false;
    }
    return send_dead_letters() && send_returns();
  }

  bool scan_claims() {
    next_claim_ = clock::now() + claim_every_;
    if (!flush_all()) return false;
    const std::size_t free = free_workers();
    const reply_ptr r = conn_.run({"XPENDING", opts_.stream, opts_.group, "IDLE",
                                   std::to_string(opts_.min_idle.count()), "-", "+",
                                   std::to_string(free + in_flight_.size())});
    if (r == nullptr) return false;
    if (is_error(r.get())) {
      on_error_reply(r.get());
      return true;
    }
    std::vector<pending_entry> stale;
    bool more = false;  // stale entries this scan left for lack of free workers
    for (pending_entry& p : parse_pending(r.get())) {
      if (in_flight_.contains(p.id)) continue;
      if (stale.size() < free) {
        stale.push_back(std::move(p));
      } else {
        more = true;
      }
    }
    // A backlog of orphans (a dead consumer held several): scan again as soon as a worker is
    // free instead of a whole interval later, so each orphan waits for a worker, not a timer.
    if (more) next_claim_ = clock::now();
    if (stale.empty()) return true;
    std::vector<command> cmds;
    cmds.reserve(stale.size());
    for (const pending_entry& p : stale) {
      cmds.push_back({"XCLAIM", opts_.stream, opts_.group, opts_.consumer,
                      std::to_string(opts_.min_idle.count()), p.id});
    }
    const std::vector<reply_ptr> replies = conn_.pipeline(cmds);
    if (replies.empty()) return false;
    std::vector<message> claimed;
    std::vector<std::string> deleted;
    for (std::size_t i = 0; i < replies.size(); ++i) {
      parse_entries(replies[i].get(), stale[i].deliveries + 1, claimed, deleted);
    }
    bump(counters_.reclaimed, claimed.size());
    take_deleted(deleted);
    for (message& m : claimed) submit(std::move(m));
    return true;
  }

  void recover_one() {
    if (!flush_all()) return;
    const reply_ptr r =
        conn_.run({"XPENDING", opts_.stream, opts_.group, cursor_ == "-" ? cursor_ : "(" + cursor_,
                   "+", "16", opts_.consumer});
    if (r == nullptr) return;
    if (is_error(r.get())) {
      on_error_reply(r.get());
      return;
    }
    const std::vector<pending_entry> mine = parse_pending(r.get());
    if (mine.empty()) {
      recovering_ = false;
      return;
    }
    for (const pending_entry& p : mine) {
      cursor_ = p.id;
      if (in_flight_.contains(p.id)) continue;
      const reply_ptr c =
          conn_.run(scripts::claim_own(opts_.stream, opts_.group, opts_.consumer, false, {p.id}));
      if (c == nullptr) return;
      std::vector<message> got;
      scripts::parse_claim_own(c.get(), got);
      if (got.empty()) bump(counters_.deleted);  // deleted (acked by the script)
      bump(counters_.recovered, got.size());
      for (message& m : got) {
        recovered_id_ = m.id;
        submit(std::move(m));
      }
      return;  // one at a time
    }
  }

  void read_new() {
    const std::size_t n = std::min(acks_.size(), opts_.max_ack_batch);
    std::vector<command> cmds;
    if (n > 0) {
      command ack{"XACK", opts_.stream, opts_.group};
      ack.insert(ack.end(), acks_.begin(), acks_.begin() + static_cast<std::ptrdiff_t>(n));
      cmds.push_back(std::move(ack));
    }
    cmds.push_back({"XREADGROUP", "GROUP", opts_.group, opts_.consumer, "COUNT",
                    std::to_string(free_workers()), "BLOCK", std::to_string(opts_.block.count()),
                    "STREAMS", opts_.stream, ">"});
    const std::vector<reply_ptr> replies = conn_.pipeline(cmds);
    if (replies.empty()) return;  // acks kept; entries of a lost reply: recovered after reconnect
    if (n > 0) acked(replies.front().get(), n);
    const redisReply* read = replies.back().get();
    if (is_error(read)) {
      on_error_reply(read);
      return;
    }
    std::vector<message> got;
    std::vector<std::string> deleted;
    parse_read(read, 1, got, deleted);
    bump(counters_.fetched, got.size());
    take_deleted(deleted);
    for (message& m : got) submit(std::move(m));
  }

  // Deleted (XDEL) entries still pending: nothing to run; acknowledge them.
  void take_deleted(std::vector<std::string>& deleted) {
    bump(counters_.deleted, deleted.size());
    for (std::string& id : deleted) acks_.push_back(std::move(id));
  }

  const consumer_options opts_;
  message_handler handler_;
  std::function<submit_status(message&&)> submit_;
  std::size_t workers_ = 0;
  consumer_counters counters_;

  // Fetch thread only.
  connection conn_;
  std::unordered_map<std::string, std::uint64_t> in_flight_;  // id -> deliveries
  std::vector<std::string> acks_;
  std::vector<std::pair<message, std::string>> dead_;
  std::vector<std::pair<std::string, std::uint64_t>> returns_;  // id, RETRYCOUNT
  bool recovering_ = true;
  std::string cursor_ = "-";
  std::string recovered_id_;  // the own entry recovery submitted last
  const std::chrono::milliseconds claim_every_;
  const std::chrono::milliseconds heartbeat_every_;
  clock::time_point next_claim_{};
  clock::time_point next_heartbeat_{};

  // Phase flags, written by shutdown callers, read by the fetch thread: seq_cst atomics (the
  // default; no weaker order is argued here). give_up_at_ is written under mu_ before
  // finishing_ is set, and the fetch thread reads it only after it has seen finishing_ true,
  // so that read needs no lock (the seq_cst store/load pair orders it).
  std::atomic<bool> fetching_{true};
  std::atomic<bool> aborting_{false};
  std::atomic<bool> finishing_{false};
  std::atomic<std::size_t> refused_{0};  // see take_refused()

  // Guarded by mu_.
  mutable std::mutex mu_;
  std::condition_variable cv_;        // fetch thread waits: outcomes or a phase change
  std::condition_variable quiet_cv_;  // shutdown callers wait: everything sent
  std::vector<outcome> outcomes_;
  clock::time_point give_up_at_{};
  bool quiet_ = false;
  bool exited_ = false;
  bool fetch_busy_ = false;  // the fetch thread is in a fetch_section
  std::size_t unsent_now_ = 0;
  std::size_t in_flight_now_ = 0;
  std::size_t unsent_at_exit_ = 0;
  std::string last_error_;

  std::thread thread_;
};

}  // namespace detail
}  // namespace crew::redis
