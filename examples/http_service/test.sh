#!/usr/bin/env bash
# The http_service example's check (run by ctest): start the service on a free loopback port,
# overload it with wrk (or curl in a loop when wrk is missing), and check that
#   - overload produces 429 (with Retry-After) and never a 5xx;
#   - /metrics parses as Prometheus text and its counters add up with what the client saw;
#   - SIGTERM during load ends with accepted = executed + written back to the file.
# usage: test.sh <http_service binary> <post.lua>   (CREW_HTTP_TEST_NO_WRK=1: use curl even when
# wrk is installed)
set -u
bin=$1
lua=$2
work=$(mktemp -d)
pid=
cleanup() {
  [ -n "$pid" ] && kill -KILL "$pid" 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT
fail() {
  echo "FAIL: $*"
  echo "--- server log"; cat "$work/server.log"
  exit 1
}

workers=4 queue=128 job_ms=100 duration=3 connections=16
"$bin" --port 0 --workers $workers --queue $queue --job-ms $job_ms --deadline-ms 1000 \
  --handed-back "$work/handed_back.jobs" >"$work/server.log" 2>&1 &
pid=$!
port=
for _ in $(seq 100); do
  port=$(sed -n 's/^listening on 127\.0\.0\.1:\([0-9]*\).*/\1/p' "$work/server.log")
  [ -n "$port" ] && break
  sleep 0.1
done
[ -n "$port" ] || fail "service did not start"
url=http://127.0.0.1:$port
head -n1 "$work/server.log"

[ "$(curl -s "$url/healthz")" = ok ] || fail "/healthz is not ok"

# One job through the front door: 202 with an id, then its state.
code=$(curl -s -o "$work/post.json" -w '%{http_code}' -X POST --data 'resize cat.jpg 800x600' "$url/jobs")
[ "$code" = 202 ] || fail "first POST /jobs gave $code, not 202"
id=$(sed -n 's/.*"id":\([0-9]*\).*/\1/p' "$work/post.json")
state=$(curl -s "$url/jobs/$id")
echo "job $id: $state"
echo "$state" | grep -Eq '"state":"(queued|running|done)"' || fail "GET /jobs/$id: $state"
[ "$(curl -s -o /dev/null -w '%{http_code}' "$url/jobs/999999999")" = 404 ] || fail "unknown job not 404"

# Drive the service: count responses by status code into $1 ("status <code> <count>" lines).
drive() {
  if command -v wrk >/dev/null && [ -z "${CREW_HTTP_TEST_NO_WRK:-}" ]; then
    wrk -t2 -c$connections -d${duration}s --timeout 2s -s "$lua" "$url/jobs" >"$1" 2>&1
  else
    local loops=() end=$((SECONDS + duration))
    for _ in $(seq 8); do
      while [ $SECONDS -lt $end ]; do
        curl -s -o /dev/null -w '%{http_code}\n' -X POST --data 'resize cat.jpg' "$url/jobs"
      done >>"$1.codes" &
      loops+=($!)
    done
    wait "${loops[@]}"  # not a bare wait: that would wait for the service too
    sort "$1.codes" | uniq -c | awk '{print "status", $2, $1}' >"$1"
  fi
}
count() { awk -v c="$2" '$1 == "status" && $2 == c {n += $3} END {print n + 0}' "$1"; }
count5xx() { awk -v skip="${2:-}" '$1 == "status" && $2 >= 500 && $2 != skip {n += $3} END {print n + 0}' "$1"; }

# 1. Overload: 4 workers x 100 ms = 40 jobs/s of capacity against thousands of requests/s.
drive "$work/load.out"
n202=$(count "$work/load.out" 202)
n429=$(count "$work/load.out" 429)
n5xx=$(count5xx "$work/load.out")
total=$(awk '$1 == "status" {n += $3} END {print n + 0}' "$work/load.out")
echo "overload (${duration} s, $connections connections): $total responses: 202 x $n202, 429 x $n429, 5xx x $n5xx"
awk -v a=$n202 -v t=$total -v d=$duration 'BEGIN {printf "  accepted %.0f requests/s, 429 share %.1f%%\n", a / d, t ? 100 * (t - a) / t : 0}'
[ "$n202" -gt 0 ] || fail "no request was accepted"
[ "$n429" -gt 0 ] || fail "overload produced no 429"
[ "$n5xx" -eq 0 ] || fail "overload produced $n5xx 5xx responses"

# Right after the load the queue is still full: a 429 must carry Retry-After.
curl -s -D "$work/h429" -o /dev/null -X POST --data x "$url/jobs"
if grep -q '^HTTP/1.1 429' "$work/h429"; then
  grep -qi '^Retry-After: [0-9]' "$work/h429" || fail "429 without Retry-After"
  n429=$((n429 + 1))
  echo "429 carries $(grep -i '^Retry-After' "$work/h429" | tr -d '\r')"
else
  n202=$((n202 + 1))  # the queue had room after all: that probe was accepted
fi

# 2. /metrics: Prometheus text exposition that adds up.
curl -s "$url/metrics" >"$work/metrics"
bad=$(grep -v '^#' "$work/metrics" | grep -Evc '^[a-zA-Z_:][a-zA-Z0-9_:]*(\{[^}]*\})? [-+0-9.eE]+(\s+[0-9]+)?$|^(NaN|\+Inf)$|^$')
[ "$bad" -eq 0 ] || fail "/metrics has $bad lines that are not Prometheus samples"
grep -Eq '^# TYPE http_jobs_accepted_total counter$' "$work/metrics" || fail "/metrics lacks TYPE lines"
metric() { awk -v m="$1" '$1 == m {print $2}' "$work/metrics"; }
accepted=$(metric http_jobs_accepted_total)
rejected=$(metric http_jobs_rejected_total)
executed=$(metric http_jobs_executed_total)
depth=$(metric http_jobs_queue_depth)
capacity=$(metric http_jobs_queue_capacity)
echo "metrics: accepted $accepted rejected $rejected executed $executed queue_depth $depth"
# Every 202 and 429 the client saw was counted by the service (plus the first probe). Requests
# in flight or timed out when wrk stopped are counted by the service but not by wrk: allow a few
# per connection.
client_accepted=$((n202 + 1))
slack=$((4 * connections))
[ "$accepted" -ge "$client_accepted" ] || fail "accepted_total $accepted < $client_accepted 202s seen"
[ "$rejected" -ge "$n429" ] || fail "rejected_total $rejected < $n429 429s seen"
[ $((accepted + rejected - client_accepted - n429)) -le $slack ] ||
  fail "accepted_total + rejected_total = $((accepted + rejected)) but the client saw $((client_accepted + n429))"
[ "$executed" -le "$accepted" ] || fail "executed $executed > accepted $accepted"
# Accepted but not finished: at most capacity in the ring, max_batch (16) in each worker's stash
# (claimed, not started, stealable: the README's "Work conservation and honest refusals") and one
# running job per worker.
max_batch=16
[ $((accepted - executed)) -le $((capacity + workers * (max_batch + 1))) ] ||
  fail "accepted - executed exceeds queue + stashes + workers"

# 3. SIGTERM during load: the service answers 503, drains for 1 s, writes back the rest.
drive "$work/term.out" &
driver=$!
sleep 1
kill -TERM "$pid"
wait "$pid"
rc=$?
pid=
wait "$driver"
echo "after SIGTERM: $(tail -n1 "$work/server.log")"
[ "$rc" -eq 0 ] || fail "service exited with $rc after SIGTERM"
read -r a e h w < <(sed -n 's/^shutdown: accepted \([0-9]*\) executed \([0-9]*\) handed back \([0-9]*\) written \([0-9]*\).*/\1 \2 \3 \4/p' "$work/server.log")
[ -n "${a:-}" ] || fail "no shutdown line"
lines=$(wc -l <"$work/handed_back.jobs")
[ "$a" -eq $((e + w)) ] || fail "accepted $a != executed $e + written back $w"
[ "$w" -eq "$lines" ] || fail "written back $w but the file has $lines lines"
[ "$(count5xx "$work/term.out" 503)" -eq 0 ] || fail "a 5xx other than 503 during shutdown"
echo "during shutdown: 202 x $(count "$work/term.out" 202), 429 x $(count "$work/term.out" 429), 503 x $(count "$work/term.out" 503)"
echo "PASS: accepted $a = executed $e + written back $w"
