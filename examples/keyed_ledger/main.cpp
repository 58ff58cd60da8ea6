// keyed_ledger: a posting engine. Four feeds post debits and credits to 2,000 accounts; a
// crew::keyed_pool keyed by account applies them with 8 workers, each account's postings in
// the order its feed posted them, different accounts in parallel. A debit larger than the
// balance bounces, so the outcome depends on the order: the program replays every account's
// postings sequentially and checks that each account's history (balance after every posting,
// bounces included) is identical. It exits non-zero on any difference.
//
//   ./build/dev/examples/keyed_ledger/keyed_ledger [postings per feed]

#include <crew/keyed_pool.hpp>

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <thread>
#include <vector>

namespace {

constexpr std::uint32_t accounts = 2000;
constexpr int feeds = 4;  // feed f owns the accounts a with a % feeds == f

struct posting {
  std::uint32_t account;
  std::int64_t amount;  // > 0 credit, < 0 debit
};

// What happened to one posting: the balance after it, or a bounce.
struct entry {
  std::int64_t balance;
  bool bounced;
  bool operator==(const entry&) const = default;
};

struct account_book {
  std::int64_t balance = 0;
  std::vector<entry> history;  // touched only by the job running this account's posting

  void apply(std::int64_t amount) {
    if (amount < 0 && balance + amount < 0) {
      history.push_back({balance, true});
      return;
    }
    balance += amount;
    history.push_back({balance, false});
  }
};

std::uint64_t next_random(std::uint64_t& state) {
  state ^= state << 13;
  state ^= state >> 7;
  state ^= state << 17;
  return state;
}

// Feed f's postings, in the order it posts them (the same for the pool and the replay).
std::vector<posting> make_feed(int f, int count) {
  std::vector<posting> out;
  out.reserve(static_cast<std::size_t>(count));
  std::uint64_t rng = 0x9E3779B97F4A7C15ULL * static_cast<std::uint64_t>(f + 1);
  for (int i = 0; i < count; ++i) {
    const auto slot = static_cast<std::uint32_t>(next_random(rng) % (accounts / feeds));
    const std::uint32_t account = slot * feeds + static_cast<std::uint32_t>(f);
    const auto cents = static_cast<std::int64_t>(next_random(rng) % 10000);
    out.push_back({account, next_random(rng) % 2 == 0 ? cents : -cents});
  }
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  const int per_feed = argc > 1 ? std::atoi(argv[1]) : 250000;
  if (per_feed <= 0) {
    std::fprintf(stderr, "usage: keyed_ledger [postings per feed > 0]\n");
    return 2;
  }
  std::vector<std::vector<posting>> feed_postings;
  for (int f = 0; f < feeds; ++f) feed_postings.push_back(make_feed(f, per_feed));

  std::vector<account_book> books(accounts);
  const auto start = std::chrono::steady_clock::now();
  crew::pool_stats stats;
  {
    crew::keyed_pool<std::uint32_t, posting> pool{
        [&books](posting&& p) { books[p.account].apply(p.amount); },
        {.workers = 8, .queue_capacity = 4096, .on_full = crew::overflow_policy::block}};
    std::vector<std::thread> threads;
    for (int f = 0; f < feeds; ++f) {
      threads.emplace_back([&pool, &feed_postings, f] {
        for (const posting& p : feed_postings[static_cast<std::size_t>(f)]) {
          if (pool.submit(p.account, posting{p}) != crew::submit_status::accepted) std::abort();
        }
      });
    }
    for (std::thread& t : threads) t.join();
    pool.wait_idle();
    stats = pool.stats();
  }  // drains and joins
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();

  // The sequential replay: every feed's postings in its order; accounts are disjoint between
  // feeds, so this is each account's order.
  std::vector<account_book> replay(accounts);
  for (const auto& feed : feed_postings) {
    for (const posting& p : feed) replay[p.account].apply(p.amount);
  }
  std::size_t differing = 0;
  std::size_t bounces = 0;
  for (std::uint32_t a = 0; a < accounts; ++a) {
    if (books[a].history != replay[a].history) ++differing;
    for (const entry& e : replay[a].history) bounces += e.bounced ? 1 : 0;
  }
  const auto total = static_cast<std::uint64_t>(feeds) * static_cast<std::uint64_t>(per_feed);
  std::printf(
      "keyed_ledger: %d feeds posted %llu postings to %u accounts; 8 workers applied them "
      "in %.3f s (%.2f M postings/s)\n",
      feeds, static_cast<unsigned long long>(total), accounts, seconds,
      static_cast<double>(total) / seconds / 1e6);
  std::printf("  pool: accepted %llu executed %llu rejected %llu; %zu bounced debits\n",
              static_cast<unsigned long long>(stats.accepted),
              static_cast<unsigned long long>(stats.executed),
              static_cast<unsigned long long>(stats.rejected), bounces);
  if (differing != 0 || stats.executed != total) {
    std::printf("FAIL: %zu accounts differ from the sequential replay\n", differing);
    return 1;
  }
  std::printf("OK: every account's history (%zu bounces included) equals the sequential replay\n",
              bounces);
  return 0;
}
