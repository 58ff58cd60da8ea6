#!/usr/bin/env bash
# bench/compare_revisions.sh: peers_bench against two versions of crew's headers, with the same
# benchmark code, the same compiler and the same flags, run interleaved on this machine.
#
# Usage:
#   bench/compare_revisions.sh [--old REV] [--new REV] [--rounds K] [--filter REGEX] [--out DIR]
#                              [--wait-quiet SECONDS] [--timeout SECONDS] [-- BENCHMARK_ARGS...]
#
#   --old REV       git revision whose include/ is "old" (default 75da75b, the last commit before
#                   the rewrite of include/crew/)
#   --new REV       git revision whose include/ is "new" (default: the working tree's include/,
#                   uncommitted changes included)
#   --rounds K      rounds of old, new (default 3): old, new, old, new, ...
#   --filter REGEX  --benchmark_filter (default 'Trivial|Small|HeadOfLine|WakeLatency')
#   --out DIR       output directory (default build/compare, relative to the repository root)
#   --wait-quiet S  before each run, wait up to S seconds (default 0: do not wait) for a 2 s window
#                   in which the rest of the machine uses under 5% of one core
#   --timeout S     stop a run that takes longer than S seconds (default 900; the default filter
#                   takes ~2 minutes a run): a hung pool fails its run instead of the script
#   -- ARGS...      passed to both binaries after the script's own arguments, e.g.
#                   -- --benchmark_min_time=0.1
#
# What it does:
#   1. Snapshots, into DIR/src/, the working tree's bench/*.cpp and bench/*.hpp (both binaries
#      are built from this one copy), the old revision's include/ (git archive), and the new
#      include/ (git archive of --new, else a copy of the working tree's include/). A snapshot,
#      so edits made while the script runs change nothing.
#   2. Builds DIR/bin/peers_bench_old and _new with one command line that mirrors what
#      bench/CMakeLists.txt gives peers_bench in a Release build (CMake's Release flags
#      -O3 -DNDEBUG, -std=c++20, the same warnings; each peer that CMake would find gets its
#      CREW_HAVE_*=1 define and its include/link flags; a missing peer is skipped). Compiler: $CXX,
#      default c++ (what CMake picks). Override the optimisation flags with
#      CREW_COMPARE_OPT_FLAGS (default "-O3 -DNDEBUG"). The command line is printed and saved.
#   3. Runs old, new, old, new, ... (K rounds; never two at once) with --benchmark_filter,
#      --benchmark_repetitions=3 --benchmark_report_aggregates_only=true; JSON to
#      DIR/old_r<k>.json and DIR/new_r<k>.json, console output to DIR/*_r<k>.log. DIR/runs.tsv
#      records each run's wall time, its own CPU time and the CPU time the rest of the machine
#      used meanwhile; the summary flags runs where that exceeds 5% of one core.
#   4. Prints (and writes to DIR/summary.md) a markdown table: per benchmark and metric, the
#      median over the rounds of each run's median, old and new; new/old; and for each revision
#      crew against the best peer of the same run, oriented so that > 1 means crew is better.
#      Metrics: items_per_second (higher is better) for Trivial, Small, Skewed, Bursty;
#      makespan_over_ideal and makespan_ms for HeadOfLine, p50_ns and p99_ns for WakeLatency,
#      cpu_ms_per_s for IdleCpu (lower is better).
#
# Needs: git, coreutils (timeout), a C++20 compiler, Google Benchmark (libbenchmark-dev), python3 (standard library
# only). Optional peers: libtbb-dev, libboost-dev, libconcurrentqueue-dev.
# Exit status: 0 when both binaries built and every run finished; 1 otherwise.

set -euo pipefail

old_rev=75da75b
new_rev=""
rounds=3
filter='Trivial|Small|HeadOfLine|WakeLatency'
out=""
wait_quiet=0
run_timeout=900
extra=()

usage() { sed -n '2,/^$/{s/^# \{0,1\}//;p}' "$0"; }
die() {
  echo "compare_revisions: $*" >&2
  exit 1
}

while (($# > 0)); do
  case "$1" in
    --old) old_rev="${2:?--old needs a revision}"; shift 2 ;;
    --new) new_rev="${2:?--new needs a revision}"; shift 2 ;;
    --rounds) rounds="${2:?--rounds needs a number}"; shift 2 ;;
    --filter) filter="${2:?--filter needs a regex}"; shift 2 ;;
    --out) out="${2:?--out needs a directory}"; shift 2 ;;
    --wait-quiet) wait_quiet="${2:?--wait-quiet needs seconds}"; shift 2 ;;
    --timeout) run_timeout="${2:?--timeout needs seconds}"; shift 2 ;;
    --) shift; extra=("$@"); break ;;
    -h | --help) usage; exit 0 ;;
    *) usage >&2; die "unknown argument: $1" ;;
  esac
done
[[ "$rounds" =~ ^[1-9][0-9]*$ ]] || die "--rounds must be a positive integer, not '$rounds'"
[[ "$wait_quiet" =~ ^[0-9]+$ ]] || die "--wait-quiet must be a number of seconds, not '$wait_quiet'"
[[ "$run_timeout" =~ ^[1-9][0-9]*$ ]] || die "--timeout must be a number of seconds, not '$run_timeout'"

script_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(git -C "$script_dir" rev-parse --show-toplevel)"
out="${out:-$root/build/compare}"
mkdir -p "$out"
out="$(cd "$out" && pwd)"
# The script empties DIR/src and DIR/bin: only in a directory it made (marker file) or an empty one.
if [[ ! -f "$out/.compare_revisions" && -n "$(ls -A "$out")" ]]; then
  die "--out $out is not empty and was not made by this script: choose another directory"
fi
touch "$out/.compare_revisions"

old_sha="$(git -C "$root" rev-parse --verify --quiet "${old_rev}^{commit}")" ||
  die "--old: '$old_rev' is not a commit"
if [[ -n "$new_rev" ]]; then
  new_sha="$(git -C "$root" rev-parse --verify --quiet "${new_rev}^{commit}")" ||
    die "--new: '$new_rev' is not a commit"
fi

# ---- 1. snapshots -------------------------------------------------------------------------------
src="$out/src"
rm -rf "${src:?}" "${out:?}/bin"
rm -f "$out"/{old,new}_r*.{json,log,time} "$out/runs.tsv" "$out/summary.md"
mkdir -p "$src/bench" "$src/old" "$src/new" "$out/bin"

cp "$root"/bench/*.cpp "$root"/bench/*.hpp "$src/bench/"
git -C "$root" archive --format=tar "$old_sha" include | tar -x -C "$src/old"
label() {  # label <rev> <sha>: "<short sha> <subject>", plus [<rev>] when rev is another name
  local short
  short="$(git -C "$root" rev-parse --short "$2")"
  printf '%s%s' "$(git -C "$root" log -1 --format='%h %s' "$2" | cut -c1-72)" \
    "$([[ "$short" == "$1"* ]] || echo " [$1]")"
}
old_label="$(label "$old_rev" "$old_sha")"
if [[ -n "$new_rev" ]]; then
  git -C "$root" archive --format=tar "$new_sha" include | tar -x -C "$src/new"
  new_label="$(label "$new_rev" "$new_sha")"
else
  cp -a "$root/include" "$src/new/"
  head_sha="$(git -C "$root" rev-parse --short HEAD)"
  changed="$(git -C "$root" status --porcelain -- include | wc -l)"
  new_label="working tree include/ (HEAD $head_sha, $changed changed or new files)"
fi
[[ -f "$src/old/include/crew/worker_pool.hpp" ]] || die "$old_rev has no include/crew/worker_pool.hpp"
[[ -f "$src/new/include/crew/worker_pool.hpp" ]] || die "new include/ has no crew/worker_pool.hpp"

# ---- 2. build -----------------------------------------------------------------------------------
cxx="${CXX:-c++}"
read -r -a opt_flags <<<"${CREW_COMPARE_OPT_FLAGS:--O3 -DNDEBUG}"
defines=()
includes=()
libs=()
peers=()

# Probes mirror bench/CMakeLists.txt: each peer is used when it would compile and link there.
probe() {  # probe <code> <flags...>: does this snippet compile and link?
  local code="$1"
  shift
  printf '%s\n' "$code" | "$cxx" -std=c++20 -x c++ - -o /dev/null "$@" >/dev/null 2>&1
}
if probe '#include <oneapi/tbb/task_arena.h>
int main() { tbb::task_arena a(2); return a.max_concurrency() > 0 ? 0 : 1; }' -ltbb; then
  defines+=(-DCREW_HAVE_TBB=1)
  libs+=(-ltbb)
  peers+=(onetbb)
fi
if probe '#include <boost/asio/thread_pool.hpp>
#include <boost/lockfree/queue.hpp>
int main() { boost::asio::thread_pool p(1); p.join(); }' -pthread; then
  defines+=(-DBOOST_ALL_NO_LIB -DCREW_HAVE_BOOST=1)  # Boost::headers adds BOOST_ALL_NO_LIB
  peers+=(asio_thread_pool)
fi
# CMake: find_path(concurrentqueue.h PATH_SUFFIXES concurrentqueue/moodycamel concurrentqueue
# moodycamel), then requires blockingconcurrentqueue.h next to it.
for prefix in /usr/local/include /usr/include; do
  for suffix in concurrentqueue/moodycamel concurrentqueue moodycamel ""; do
    dir="$prefix${suffix:+/$suffix}"
    if [[ -f "$dir/concurrentqueue.h" ]]; then
      if [[ -f "$dir/blockingconcurrentqueue.h" ]]; then
        defines+=(-DCREW_HAVE_MOODYCAMEL=1)
        includes+=(-isystem "$dir")
        peers+=(moodycamel_pool)
      fi
      break 2
    fi
  done
done

build() {  # build old|new
  local which="$1"
  local cmd=("$cxx" "${defines[@]}" -I"$src/bench" -I"$src/$which/include" "${includes[@]}"
    "${opt_flags[@]}" -Wall -Wextra -Wpedantic -Wconversion -Wshadow -std=c++20
    -o "$out/bin/peers_bench_$which" "$src/bench/peers_bench.cpp"
    -lbenchmark "${libs[@]}" -lpthread)
  printf '%q ' "${cmd[@]}" >"$out/bin/build_$which.cmd"
  echo >>"$out/bin/build_$which.cmd"
  echo "== build $which: $(cat "$out/bin/build_$which.cmd")"
  if ! "${cmd[@]}" 2>"$out/bin/build_$which.log"; then
    sed -n '1,40p' "$out/bin/build_$which.log" >&2
    echo "compare_revisions: the $which build failed (full log: $out/bin/build_$which.log)" >&2
    if [[ "$which" == new && -z "$new_rev" ]]; then
      echo "compare_revisions: the working tree's include/ may be mid-edit; --new REV builds a" \
        "committed revision instead" >&2
    fi
    return 1
  fi
  if [[ -s "$out/bin/build_$which.log" ]]; then
    echo "   ($(grep -c 'warning:' "$out/bin/build_$which.log" || true) warnings:" \
      "$out/bin/build_$which.log)"
  fi
}

echo "old: $old_label"
echo "new: $new_label"
echo "peers: crew mutex_condvar ${peers[*]} thread_per_job"
build old || exit 1
build new || exit 1

# ---- 3. runs ------------------------------------------------------------------------------------
args=(--benchmark_filter="$filter" --benchmark_repetitions=3 --benchmark_report_aggregates_only=true
  --benchmark_out_format=json "${extra[@]}")
# Other processes on the machine skew the numbers (2 cores: one busy test binary is enough). For
# each run, DIR/runs.tsv records the wall time, the run's own CPU time and the CPU time that the
# rest of the machine used meanwhile (all busy time in /proc/stat minus the run's own).
busy_ticks() {  # busy CPU ticks of the whole machine so far (user nice system irq softirq steal)
  local user nice system irq softirq steal
  read -r _ user nice system _ _ irq softirq steal _ </proc/stat
  echo $((user + nice + system + irq + softirq + steal))
}
ticks_per_s="$(getconf CLK_TCK)"
wait_for_quiet() {  # up to $wait_quiet s for 2 s under 5% of one core busy (this shell is idle)
  local deadline=$((SECONDS + wait_quiet)) b0 b1
  while ((wait_quiet > 0)); do
    b0="$(busy_ticks)"
    sleep 2
    b1="$(busy_ticks)"
    if (((b1 - b0) * 100 < 2 * ticks_per_s * 5)); then
      return 0
    fi
    if ((SECONDS >= deadline)); then
      echo "   machine still busy after ${wait_quiet} s: running anyway" >&2
      return 0
    fi
  done
}
printf 'run\twall_s\town_cpu_s\tforeign_cpu_s\n' >"$out/runs.tsv"
status=0
for ((k = 1; k <= rounds; ++k)); do
  for which in old new; do
    wait_for_quiet
    echo "== round $k/$rounds: $which (load average: $(cut -d' ' -f1-3 /proc/loadavg))"
    busy0="$(busy_ticks)"
    start_ns="$(date +%s%N)"
    TIMEFORMAT='%U %S'
    rc=0
    { time timeout --kill-after=10 "$run_timeout" "$out/bin/peers_bench_$which" "${args[@]}" \
      --benchmark_out="$out/${which}_r$k.json" >"$out/${which}_r$k.log" 2>&1; } \
      2>"$out/${which}_r$k.time" || rc=$?
    if ((rc == 124 || rc == 137)); then
      echo "compare_revisions: $which round $k timed out after ${run_timeout} s (hung pool?" \
        "see $out/${which}_r$k.log)" >&2
      status=1
    elif ((rc != 0)); then
      echo "compare_revisions: $which round $k failed, exit status $rc (see" \
        "$out/${which}_r$k.log)" >&2
      status=1
    fi
    end_ns="$(date +%s%N)"
    busy1="$(busy_ticks)"
    # The last line is `time`'s (a crash report from bash may come before it).
    read -r own_user own_sys < <(tail -n 1 "$out/${which}_r$k.time")
    [[ "$own_user" =~ ^[0-9.]+$ && "$own_sys" =~ ^[0-9.]+$ ]] || { own_user=0; own_sys=0; }
    python3 -c 'import sys
wall, own, busy = (int(sys.argv[2]) - int(sys.argv[1])) / 1e9, float(sys.argv[3]) + float(sys.argv[4]), (int(sys.argv[6]) - int(sys.argv[5])) / int(sys.argv[7])
print(f"{sys.argv[8]}\t{wall:.2f}\t{own:.2f}\t{max(0.0, busy - own):.2f}")' \
      "$start_ns" "$end_ns" "$own_user" "$own_sys" "$busy0" "$busy1" "$ticks_per_s" \
      "${which}_r$k" >>"$out/runs.tsv"
    tail -n 1 "$out/runs.tsv" | awk -F'\t' '{printf "   wall %s s, own CPU %s s, other processes %s CPU s\n", $2, $3, $4}'
  done
done

# ---- 4. table -----------------------------------------------------------------------------------
python3 - "$out" "$rounds" "$old_label" "$new_label" "$filter" <<'PY' | tee "$out/summary.md"
import json, os, statistics, sys

out, rounds, old_label, new_label, bench_filter = sys.argv[1], int(sys.argv[2]), *sys.argv[3:6]

# family -> [(metric, higher_is_better)]; other families: items_per_second, else real_time.
METRICS = {
    "Trivial": [("items_per_second", True)],
    "Small": [("items_per_second", True)],
    "Skewed": [("items_per_second", True)],
    "Bursty": [("items_per_second", True)],
    "HeadOfLine": [("makespan_over_ideal", False), ("makespan_ms", False)],
    "WakeLatency": [("p50_ns", False), ("p99_ns", False)],
    "IdleCpu": [("cpu_ms_per_s", False)],
}


# Contenders that run a different workload in a family (bench/peers_bench.cpp: thread_per_job runs
# a tenth of the HeadOfLine jobs, so neither its makespan nor its ratio compares): never "best peer".
NOT_A_PEER = {("HeadOfLine", "thread_per_job")}


def load(path):
    """{run_name: {metric: value} or {"error": message}} from one Google Benchmark JSON file:
    the median aggregate when there is one, else the median of the iteration rows."""
    if not os.path.exists(path):
        return None
    try:
        with open(path) as f:
            rows = json.load(f).get("benchmarks", [])
    except (OSError, ValueError) as e:
        print(f"<!-- {path}: {e} -->")
        return None
    medians, iterations, errors = {}, {}, {}
    for row in rows:
        name = row.get("run_name", row.get("name", ""))
        if row.get("error_occurred"):
            errors[name] = row.get("error_message", "error")
        elif row.get("run_type") == "aggregate":
            if row.get("aggregate_name") == "median":
                medians[name] = row
        else:
            iterations.setdefault(name, []).append(row)
    result = {}
    for name in set(medians) | set(iterations) | set(errors):
        if name in errors:
            result[name] = {"error": errors[name]}
            continue
        if name in medians:
            rows_ = [medians[name]]
        else:
            rows_ = iterations[name]
        values = {}
        for key in set().union(*(r.keys() for r in rows_)):
            nums = [r[key] for r in rows_ if isinstance(r.get(key), (int, float))
                    and not isinstance(r.get(key), bool)]
            if nums:
                values[key] = statistics.median(nums)
        result[name] = values
    return result


def split(name):
    """BM_Peers_<Family>/<contender>[/rest] -> (family, contender, rest)."""
    parts = name.split("/")
    family = parts[0][len("BM_Peers_"):] if parts[0].startswith("BM_Peers_") else parts[0]
    contender = parts[1] if len(parts) > 1 else ""
    return family, contender, "/".join(parts[2:])


def metrics_for(family, values):
    if family in METRICS:
        return METRICS[family]
    return [("items_per_second", True)] if "items_per_second" in values else [("real_time", False)]


def is_crew(contender):
    return contender == "crew" or contender.startswith("crew_")


def vs_best_peer(run, name, metric, higher):
    """crew's advantage over the best peer of the same run (> 1: crew better), and that peer."""
    family, contender, rest = split(name)
    mine = run.get(name, {}).get(metric)
    if mine is None or mine == 0:
        return None
    peers = []
    for other, values in run.items():
        f, c, r = split(other)
        if (f == family and r == rest and not is_crew(c) and (f, c) not in NOT_A_PEER
                and values.get(metric) is not None):
            peers.append((values[metric], c))
    if not peers:
        return None
    best, who = (max if higher else min)(peers)
    if best == 0:
        return None
    return (mine / best if higher else best / mine), who


def fmt(metric, v):
    if v is None:
        return "-"
    if metric == "items_per_second":
        for scale, unit in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
            if v >= scale:
                return f"{v / scale:.3g}{unit}/s"
        return f"{v:.3g}/s"
    if metric.endswith("_ns"):
        return f"{v:,.0f} ns"
    if metric.endswith("_ms"):
        return f"{v:.4g} ms"
    return f"{v:.4g}"


def med(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


runs = {w: [load(os.path.join(out, f"{w}_r{k}.json")) for k in range(1, rounds + 1)]
        for w in ("old", "new")}
for w in runs:
    missing = [k + 1 for k, r in enumerate(runs[w]) if r is None]
    runs[w] = [r for r in runs[w] if r is not None]
    if missing:
        print(f"<!-- {w}: no JSON for round(s) {missing} -->")

# Runs disturbed by other processes: more than 5% of one core, on average, used by the rest of
# the machine while the run was on.
disturbed = []
try:
    with open(os.path.join(out, "runs.tsv")) as f:
        for line in list(f)[1:]:
            run, wall, own, foreign = line.rstrip("\n").split("\t")
            if float(wall) > 0 and float(foreign) / float(wall) > 0.05:
                disturbed.append(f"{run} ({float(foreign):.1f} CPU s in {float(wall):.1f} s)")
except OSError:
    pass

names = sorted({n for w in runs for r in runs[w] for n in r},
               key=lambda n: (split(n)[0], split(n)[2], not is_crew(split(n)[1]), split(n)[1]))

print("## peers_bench: old against new crew headers")
print()
print(f"- old: {old_label}")
print(f"- new: {new_label}")
print(f"- filter `{bench_filter}`, {rounds} round(s) of old then new, 3 repetitions each; "
      "each cell is the median over the rounds of a run's median")
print("- new/old is the raw ratio of the two values (↑: higher is better, ↓: lower is better); "
      "crew vs best peer is crew's advantage over the best non-crew contender of the same run, "
      "oriented so that > 1 means crew is better (median over the rounds; the peer named is the "
      "best one in most rounds; thread_per_job is no peer in HeadOfLine, where it runs a tenth "
      "of the jobs)")
if disturbed:
    print("- **warning: other processes used the CPU during " + ", ".join(disturbed) +
          "; those numbers are not comparable (see runs.tsv)**")
print()
print("| benchmark | metric | old | new | new/old | old: crew vs best peer | "
      "new: crew vs best peer |")
print("|---|---|---:|---:|---:|---:|---:|")
for name in names:
    family, contender, _ = split(name)
    sample = next((r[name] for w in runs for r in runs[w] if name in r and "error" not in r[name]),
                  {})
    errors = {w: next((r[name]["error"] for r in runs[w] if "error" in r.get(name, {})), None)
              for w in runs}
    for metric, higher in metrics_for(family, sample):
        cell, adv = {}, {}
        for w in runs:
            cell[w] = med([r.get(name, {}).get(metric) for r in runs[w]])
            if is_crew(contender) and cell[w] is None:
                adv[w] = "-"
            elif is_crew(contender):
                found = [vs_best_peer(r, name, metric, higher) for r in runs[w]]
                found = [f for f in found if f is not None]
                if found:
                    who = statistics.mode([f[1] for f in found])
                    adv[w] = f"{med([f[0] for f in found]):.2f}x ({who})"
                else:
                    adv[w] = "n/a (no peer in run)"
            else:
                adv[w] = ""
        shown = {w: (f"error: {errors[w]}" if cell[w] is None and errors[w] else fmt(metric, cell[w]))
                 for w in runs}
        ratio = (f"{cell['new'] / cell['old']:.3f}"
                 if cell["old"] not in (None, 0) and cell["new"] is not None else "-")
        arrow = "↑" if higher else "↓"
        print(f"| {name} | {metric} {arrow} | {shown['old']} | {shown['new']} | {ratio} | "
              f"{adv['old']} | {adv['new']} |")
if not names:
    print("| (no results: no benchmark matched, or every run failed) | | | | | | |")
PY
exit "$status"
