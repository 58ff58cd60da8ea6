#pragma once

// crew::redis::message, and the parsing of the stream-entry reply shapes of Redis 7.0:
//   XREADGROUP: [[key, [[id, [f, v, ...]], ...]]], or NIL when a BLOCK timed out
//   XCLAIM:     [[id, [f, v, ...]], ...]
//   an entry deleted (XDEL) while pending, read from a consumer's history: [id, NIL]
//   XPENDING (extended form): [[id, owner, idle_ms, deliveries], ...]
// A deleted entry has no fields to run: the parsers report its id separately so the consumer
// can acknowledge it (removing it from the pending list) instead of running it.
// The parsers only read their reply and write their outputs: thread-safe on distinct outputs.

#include <hiredis/hiredis.h>

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#include "connection.hpp"

namespace crew::redis {

// One stream entry as the handler sees it.
struct message {
  std::string id;                                           // the stream id: "ms-seq"
  std::vector<std::pair<std::string, std::string>> fields;  // in the entry's order
  // How many times the group delivered it, this delivery included (1 on the first). With the
  // id, the idempotency key: a redelivered message may already have run (at-least-once).
  std::uint64_t deliveries = 0;

  // The first field named `name`, or null.
  const std::string* find(std::string_view name) const noexcept {
    for (const auto& [f, v] : fields) {
      if (f == name) return &v;
    }
    return nullptr;
  }
};
static_assert(std::is_nothrow_move_constructible_v<message>,
              "crew::redis::message must be nothrow move constructible: pools store it by value.");

// One row of XPENDING's extended form.
struct pending_entry {
  std::string id;
  std::string owner;
  std::uint64_t idle_ms = 0;
  std::uint64_t deliveries = 0;
};

namespace detail {

inline std::uint64_t to_u64(const redisReply* r) noexcept {
  if (r == nullptr) return 0;
  if (r->type == REDIS_REPLY_INTEGER)
    return r->integer < 0 ? 0 : static_cast<std::uint64_t>(r->integer);
  std::uint64_t v = 0;
  for (const char c : text_of(r)) {
    if (c < '0' || c > '9') return v;
    v = v * 10 + static_cast<std::uint64_t>(c - '0');
  }
  return v;
}

inline bool is_string(const redisReply* r) noexcept {
  return r != nullptr && (r->type == REDIS_REPLY_STRING || r->type == REDIS_REPLY_STATUS);
}

}  // namespace detail

// Parses one [id, fields] row: appends a message with the given delivery count to `out`
// (true), or the id of a deleted entry ([id, NIL]) to `deleted` (false). A malformed row is
// skipped (false).
inline bool parse_entry(const redisReply* e, std::uint64_t deliveries, std::vector<message>& out,
                        std::vector<std::string>& deleted) {
  if (e == nullptr || e->type != REDIS_REPLY_ARRAY || e->elements < 2 ||
      !detail::is_string(e->element[0])) {
    return false;
  }
  const redisReply* fields = e->element[1];
  if (fields == nullptr || fields->type == REDIS_REPLY_NIL) {
    deleted.emplace_back(text_of(e->element[0]));
    return false;
  }
  if (fields->type != REDIS_REPLY_ARRAY) return false;
  message m;
  m.id = std::string(text_of(e->element[0]));
  m.deliveries = deliveries;
  m.fields.reserve(fields->elements / 2);
  for (std::size_t f = 0; f + 1 < fields->elements; f += 2) {
    m.fields.emplace_back(text_of(fields->element[f]), text_of(fields->element[f + 1]));
  }
  out.push_back(std::move(m));
  return true;
}

// Appends the entries of an XCLAIM-shaped array ([[id, fields], ...]) as parse_entry does.
// Returns how many messages were appended.
inline std::size_t parse_entries(const redisReply* entries, std::uint64_t deliveries,
                                 std::vector<message>& out, std::vector<std::string>& deleted) {
  if (entries == nullptr || entries->type != REDIS_REPLY_ARRAY) return 0;
  std::size_t added = 0;
  for (std::size_t i = 0; i < entries->elements; ++i) {
    if (parse_entry(entries->element[i], deliveries, out, deleted)) ++added;
  }
  return added;
}

// The XREADGROUP shape: [[key, entries], ...] or NIL. Every entry gets `deliveries`.
inline std::size_t parse_read(const redisReply* r, std::uint64_t deliveries,
                              std::vector<message>& out, std::vector<std::string>& deleted) {
  if (r == nullptr || r->type != REDIS_REPLY_ARRAY) return 0;
  std::size_t added = 0;
  for (std::size_t s = 0; s < r->elements; ++s) {
    const redisReply* stream = r->element[s];
    if (stream != nullptr && stream->type == REDIS_REPLY_ARRAY && stream->elements == 2) {
      added += parse_entries(stream->element[1], deliveries, out, deleted);
    }
  }
  return added;
}

// XPENDING's extended form.
inline std::vector<pending_entry> parse_pending(const redisReply* r) {
  std::vector<pending_entry> out;
  if (r == nullptr || r->type != REDIS_REPLY_ARRAY) return out;
  for (std::size_t i = 0; i < r->elements; ++i) {
    const redisReply* e = r->element[i];
    if (e == nullptr || e->type != REDIS_REPLY_ARRAY || e->elements < 4) continue;
    out.push_back({std::string(text_of(e->element[0])), std::string(text_of(e->element[1])),
                   detail::to_u64(e->element[2]), detail::to_u64(e->element[3])});
  }
  return out;
}

}  // namespace crew::redis
