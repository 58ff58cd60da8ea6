#pragma once

// The Lua scripts of crew::redis, and the commands that run them. Each script runs atomically
// on the server (Redis runs one script at a time), which is what each one needs:
//
//  dead_letter: XADD the entry to the dead-letter stream, then XACK it in the source group. No
//    client can observe the entry in neither place (lost) or in both with the source still
//    pending (looping): XADD before XACK, in one script.
//  claim_own:   for each id, XCLAIM it only if this consumer still owns it (XPENDING of that
//    one id names us). JUSTID mode is the heartbeat of a long job: it resets the idle time
//    without counting a delivery and without stealing an entry another consumer has already
//    claimed. FULL mode is the one-at-a-time recovery of the consumer's own pending entries
//    after a start or a reconnect: it returns the entry and its new delivery count.
//
// Scripts are sent with EVAL, not EVALSHA: the script cache is empty after a server restart,
// and these paths are rare (one per dead letter, one per heartbeat interval, one per recovered
// entry), so the extra bytes cost nothing measurable and the NOSCRIPT retry path does not exist.

#include <cstdint>
#include <string>
#include <vector>

#include "connection.hpp"
#include "message.hpp"

namespace crew::redis::scripts {

// KEYS: stream, dead stream. ARGV: group, id, deliveries, error, consumer, then the entry's
// field/value pairs. Returns XACK's count (1, or 0 if another consumer acked it first).
inline constexpr const char* dead_letter_lua = R"lua(
local args = {'source_id', ARGV[2], 'deliveries', ARGV[3], 'error', ARGV[4], 'consumer', ARGV[5]}
for i = 6, #ARGV do args[#args + 1] = ARGV[i] end
redis.call('XADD', KEYS[2], '*', unpack(args))
return redis.call('XACK', KEYS[1], ARGV[1], ARGV[2])
)lua";

// KEYS: stream. ARGV: group, consumer, mode ('JUSTID' or 'FULL'), ids...
// JUSTID returns the ids still owned (now refreshed); FULL returns [[id, fields, deliveries]]
// for each owned entry that still exists (a deleted one is acknowledged instead).
inline constexpr const char* claim_own_lua = R"lua(
local out = {}
for i = 4, #ARGV do
  local p = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[i], ARGV[i], 1)
  if p[1] and p[1][2] == ARGV[2] then
    if ARGV[3] == 'JUSTID' then
      redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[2], 0, ARGV[i], 'JUSTID')
      out[#out + 1] = ARGV[i]
    else
      local e = redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[2], 0, ARGV[i])
      if e[1] and e[1][2] then
        out[#out + 1] = {e[1][1], e[1][2], p[1][4] + 1}
      else
        redis.call('XACK', KEYS[1], ARGV[1], ARGV[i])
      end
    end
  end
end
return out
)lua";

inline command dead_letter(const std::string& stream, const std::string& dead_stream,
                           const std::string& group, const std::string& consumer, const message& m,
                           const std::string& error) {
  command c{"EVAL",      dead_letter_lua, "2",  stream,
            dead_stream, group,           m.id, std::to_string(m.deliveries),
            error,       consumer};
  for (const auto& [f, v] : m.fields) {
    c.push_back(f);
    c.push_back(v);
  }
  return c;
}

inline command claim_own(const std::string& stream, const std::string& group,
                         const std::string& consumer, bool just_id,
                         const std::vector<std::string>& ids) {
  command c{"EVAL", claim_own_lua, "1", stream, group, consumer, just_id ? "JUSTID" : "FULL"};
  c.insert(c.end(), ids.begin(), ids.end());
  return c;
}

// Parses claim_own's FULL reply: [[id, fields, deliveries], ...].
inline void parse_claim_own(const redisReply* r, std::vector<message>& out) {
  if (r == nullptr || r->type != REDIS_REPLY_ARRAY) return;
  for (std::size_t i = 0; i < r->elements; ++i) {
    const redisReply* e = r->element[i];
    if (e == nullptr || e->type != REDIS_REPLY_ARRAY || e->elements < 3) continue;
    std::vector<std::string> deleted;  // the script acknowledged deleted entries itself
    parse_entry(e, detail::to_u64(e->element[2]), out, deleted);
  }
}

}  // namespace crew::redis::scripts
