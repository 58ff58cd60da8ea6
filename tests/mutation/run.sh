#!/usr/bin/env bash
# Mutation check of crew's two randomized checkers: the chaos harness
# (tests/stress/chaos_test.cpp) and the libFuzzer target (tests/fuzz/pool_fuzz.cpp).
#
# The script snapshots include/ and the test sources once, then for the unmutated snapshot (the
# baseline, which both checkers must pass) and for each planted bug ("mutant") in turn:
#   1. copies the snapshot's include/ to a fresh directory and applies the one mutation there
#      (a literal text substitution that must match exactly once, so a header edited since the
#      mutant was written is reported as NOT-APPLIED rather than silently tested unmutated);
#   2. builds the chaos test with g++ and the fuzzer with clang (in parallel) against the copy;
#   3. runs both (in parallel), each under `timeout`: the chaos test for CHAOS_SECONDS, the
#      fuzzer for FUZZ_SECONDS from a private copy of tests/fuzz/corpus;
#   4. records for each checker CAUGHT (with how: an invariant message, a crash, a hang) or MISSED.
# The real include/ and tests/ are never modified. Nothing is committed.
#
# Usage:
#   tests/mutation/run.sh                 # baseline, then every mutant
#   tests/mutation/run.sh M1 M3b          # baseline, then only these mutants
#   tests/mutation/run.sh --list          # list the mutants and exit
#   tests/mutation/run.sh --no-baseline M2
#   tests/mutation/run.sh --dry-run       # only apply each mutant and check that it compiles
#
# Environment:
#   CHAOS_SECONDS  CREW_STRESS_SECONDS for the chaos test (default 20)
#   FUZZ_SECONDS   libFuzzer -max_total_time (default 60)
#   FUZZ_TIMEOUT   libFuzzer -timeout, per input (default 30)
#   RUN_TIMEOUT    hard limit for each run, seconds (default 300): a run killed here is
#                  "caught (hang)"
#   SEQUENTIAL=1   run the chaos test and the fuzzer one after the other instead of together
#   MUTATION_WORK  work directory (default: a fresh mktemp -d under ${TMPDIR:-/tmp})
#   KEEP_BINARIES=1  keep the built binaries in the work directory (logs are always kept)
#   CREW_STRESS_SEED is passed through to the chaos test when set (default: random per run).
#
# Exit status: 0 when the baseline passes and every mutant is caught by at least one checker;
# 1 when some mutant is missed by both; 2 when the baseline fails or a mutant does not apply or
# does not build (the check itself is broken then).

set -uo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
CHAOS_SECONDS=${CHAOS_SECONDS:-20}
FUZZ_SECONDS=${FUZZ_SECONDS:-60}
FUZZ_TIMEOUT=${FUZZ_TIMEOUT:-30}
RUN_TIMEOUT=${RUN_TIMEOUT:-300}
CXX_GCC=${CXX_GCC:-g++}
CXX_CLANG=${CXX_CLANG:-clang++}

# ---- the mutants ---------------------------------------------------------------------------------
# Each: an id, a file under include/crew, the exact text to replace (must occur exactly once) and
# its replacement, and a one-line description. Multi-line anchors use $'...'.

MUTANTS=(M1 M1b M2 M3a M3b M3c M4a M4b M5a M5b)

declare -A M_FILE M_OLD M_NEW M_DESC

M_FILE[M1]=detail/stash.hpp
M_OLD[M1]='      sink(std::move(*job));'
M_NEW[M1]='      if (i + 1 != n) sink(std::move(*job));  // MUTANT M1: last claimed job destroyed'
M_DESC[M1]="lost job: stash::steal's sink loop destroys the last claimed job instead of handing it on"

M_FILE[M1b]=detail/scheduler.hpp
M_OLD[M1b]='for (; !batch.empty(); ++k) put(batch.pop());'
M_NEW[M1b]='for (; batch.remaining() > 1; ++k) put(batch.pop());  // MUTANT M1b: one job dropped'
M_DESC[M1b]="lost job: claim_from_ring stashes one job fewer than it claimed (the batch destroys it)"

M_FILE[M2]=detail/stash.hpp
M_OLD[M2]='pack(steal_of(h), real + n)'
M_NEW[M2]='pack(steal_of(h), all ? real + n : real) /* MUTANT M2: real not advanced */'
M_DESC[M2]="duplicated job: stash::steal's claim CAS does not advance real (take-all excepted), so the owner pops the stolen (moved-from) jobs again"

M_FILE[M3a]=detail/parking.hpp
M_OLD[M3a]='if (!has_work()) wait(wake_[index].word, seen);'
M_NEW[M3a]='if (true) wait(wake_[index].word, seen);  // MUTANT M3a: no re-check after announcing'
M_DESC[M3a]="lost wake-up: worker_parking::park sleeps without re-checking has_work() after announcing itself"

M_FILE[M3b]=detail/scheduler.hpp
M_OLD[M3b]=$'return false;\n    (void)parking_.wake_one();\n    return true;'
M_NEW[M3b]=$'return false;\n    // MUTANT M3b: no wake-up after a push\n    return true;'
M_DESC[M3b]="lost wake-up: scheduler::push (single submits) never wakes a parked worker"

M_FILE[M3c]=detail/scheduler.hpp
M_OLD[M3c]=$'std::atomic_thread_fence(std::memory_order_seq_cst);\n    (void)parking_.wake_one();'
M_NEW[M3c]=$'std::atomic_thread_fence(std::memory_order_seq_cst);\n    // MUTANT M3c: no wake-up for stashed jobs'
M_DESC[M3c]="lost wake-up: scheduler::announce_stashed does not wake a parked worker after a stash fill"

M_FILE[M4a]=worker_pool.hpp
M_OLD[M4a]='handed_back_.fetch_add(n, std::memory_order_release);'
M_NEW[M4a]='handed_back_.fetch_add(n != 0 ? n - 1 : 0, std::memory_order_release);  // MUTANT M4a'
M_DESC[M4a]="wrong hand-back: worker_pool::collect hands back n jobs but counts n-1 in handed_back_"

M_FILE[M4b]=detail/scheduler.hpp
M_OLD[M4b]='const std::uint32_t n = stashes_[i].steal(sink, true, stash_size, busy);'
M_NEW[M4b]='const std::uint32_t n = 0; (void)sink;  // MUTANT M4b: stashes not collected'
M_DESC[M4b]="wrong hand-back: scheduler::collect skips the stashes (only the ring): stashed jobs are neither run nor handed back at abort"

M_FILE[M5a]=worker_pool.hpp
M_OLD[M5a]=$'r = push(job);  // one more attempt whatever the wait said: room may have come at the end\n      if (r != push_result::full) return to_status(r);'
M_NEW[M5a]=$'r = push(job);  // MUTANT M5a: an accepted last attempt is reported as the wait\'s refusal\n      if (r != push_result::full && w == room_result::room) return to_status(r);'
M_DESC[M5a]="dishonest refusal: submit_waiting's last push after a failed wait (timed out / cancelled / closed) is accepted but reported as refused"

M_FILE[M5b]=worker_pool.hpp
M_OLD[M5b]='report.drained = report.still_running == 0 &&'
M_NEW[M5b]='report.drained = report.still_running == 0 || /* MUTANT M5b */'
M_DESC[M5b]="wrong drained flag: finish() reports drained whenever no worker is still running, even after jobs were handed back"

# ---- arguments -----------------------------------------------------------------------------------

run_baseline=1
dry_run=0
selected=()
for arg in "$@"; do
  case "${arg}" in
    --list)
      for m in "${MUTANTS[@]}"; do printf '%-4s %-22s %s\n' "${m}" "${M_FILE[$m]}" "${M_DESC[$m]}"; done
      exit 0
      ;;
    --no-baseline) run_baseline=0 ;;
    --dry-run) dry_run=1 ;;
    -h | --help)
      sed -n '2,/^$/p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
      exit 0
      ;;
    *)
      if [[ -z "${M_FILE[$arg]+x}" ]]; then
        echo "unknown mutant '${arg}' (see --list)" >&2
        exit 2
      fi
      selected+=("${arg}")
      ;;
  esac
done
((${#selected[@]} == 0)) && selected=("${MUTANTS[@]}")

for tool in "${CXX_GCC}" "${CXX_CLANG}" timeout python3; do
  command -v "${tool}" >/dev/null 2>&1 || { echo "error: ${tool} not found" >&2; exit 2; }
done

# ---- the snapshot --------------------------------------------------------------------------------

WORK=${MUTATION_WORK:-$(mktemp -d "${TMPDIR:-/tmp}/crew-mutation.XXXXXX")}
mkdir -p "${WORK}"
SNAP="${WORK}/snapshot"
rm -rf "${SNAP}"
mkdir -p "${SNAP}/tests/stress" "${SNAP}/tests/fuzz"
cp -a "${ROOT}/include" "${SNAP}/include"
cp -a "${ROOT}/tests/test_support.hpp" "${SNAP}/tests/"
cp -a "${ROOT}/tests/stress/chaos_test.cpp" "${ROOT}/tests/stress/watchdog.hpp" "${SNAP}/tests/stress/"
cp -a "${ROOT}/tests/fuzz/pool_fuzz.cpp" "${ROOT}/tests/fuzz/corpus" "${SNAP}/tests/fuzz/"

start_seconds=${SECONDS}
echo "== crew mutation check"
echo "   source:  ${ROOT} ($(git -C "${ROOT}" rev-parse --short HEAD 2>/dev/null || echo '?')," \
  "$(git -C "${ROOT}" status --porcelain -- include 2>/dev/null | wc -l) modified file(s) under include/, snapshot taken now)"
echo "   work:    ${WORK}"
echo "   chaos:   CREW_STRESS_SECONDS=${CHAOS_SECONDS}; fuzzer: -max_total_time=${FUZZ_SECONDS}" \
  "-timeout=${FUZZ_TIMEOUT}; hard limit ${RUN_TIMEOUT} s per run;" \
  "$([[ ${SEQUENTIAL:-0} == 1 ]] && echo sequential || echo 'chaos and fuzzer run concurrently')"
echo "   cores:   $(nproc), load: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "   mutants: ${selected[*]}"

# replace_once FILE OLD NEW: literal substitution that must match exactly once.
replace_once() {
  python3 - "$1" "$2" "$3" <<'EOF'
import sys
path, old, new = sys.argv[1], sys.argv[2], sys.argv[3]
text = open(path).read()
count = text.count(old)
if count != 1:
    sys.stderr.write(f"anchor found {count} times in {path} (need exactly 1):\n{old}\n")
    sys.exit(1)
open(path, "w").write(text.replace(old, new, 1))
EOF
}

# ---- one variant ---------------------------------------------------------------------------------

declare -A R_CHAOS R_FUZZ R_VERDICT

# classify_chaos RC LOG -> prints "CAUGHT (...)" or "MISSED"
classify_chaos() {
  local rc=$1 log=$2 msg
  if ((rc == 0)); then
    echo "MISSED"
  elif ((rc == 124 || rc == 137)); then
    echo "CAUGHT (hang: killed by timeout after ${RUN_TIMEOUT} s)"
  elif grep -q '^WATCHDOG:' "${log}"; then
    echo "CAUGHT (hang: watchdog abort, $(grep -m1 -o 'budget of [0-9]* ms' "${log}"))"
  elif msg=$(grep -m1 -A1 'invariant violations in chaos run' "${log}" | sed -n 2p) && [[ -n "${msg}" ]]; then
    echo "CAUGHT (${msg#"${msg%%[![:space:]]*}"})"
  elif ((rc > 128)); then
    echo "CAUGHT (crash: signal $((rc - 128)))"
  else
    echo "CAUGHT (test failed, exit ${rc})"
  fi
}

classify_fuzz() {
  local rc=$1 log=$2 msg
  if ((rc == 0)); then
    echo "MISSED"
  elif ((rc == 124 || rc == 137)); then
    echo "CAUGHT (hang: killed by timeout after ${RUN_TIMEOUT} s)"
  elif grep -q 'ERROR: libFuzzer: timeout' "${log}"; then
    echo "CAUGHT (hang: libFuzzer -timeout=${FUZZ_TIMEOUT} on one input)"
  elif msg=$(grep -m1 -o 'invariant violated: .*' "${log}"); then
    echo "CAUGHT (${msg})"
  elif msg=$(grep -m1 -oE 'ERROR: (AddressSanitizer|LeakSanitizer|libFuzzer): [^ ]+( [^ ]+)?' "${log}"); then
    echo "CAUGHT (${msg})"
  elif msg=$(grep -m1 -o 'runtime error: .*' "${log}"); then
    echo "CAUGHT (UBSan ${msg:0:80})"
  else
    echo "CAUGHT (fuzzer failed, exit ${rc})"
  fi
}

# run_variant NAME [MUTANT]: returns 0 when built and run (results in R_*), 2 on a setup error.
run_variant() {
  local name=$1 mutant=${2:-}
  local dir="${WORK}/${name}"
  local t0=${SECONDS}
  rm -rf "${dir}"
  mkdir -p "${dir}"
  cp -a "${SNAP}/include" "${dir}/include"
  echo
  if [[ -n "${mutant}" ]]; then
    echo "== ${name}: ${M_DESC[$mutant]}"
    if ! replace_once "${dir}/include/crew/${M_FILE[$mutant]}" "${M_OLD[$mutant]}" \
      "${M_NEW[$mutant]}" 2>"${dir}/apply.log"; then
      sed 's/^/   /' "${dir}/apply.log"
      R_CHAOS[$name]="NOT-APPLIED"
      R_FUZZ[$name]="NOT-APPLIED"
      R_VERDICT[$name]="ERROR (anchor not found: the header changed)"
      return 2
    fi
    (cd "${dir}" && diff -u "${SNAP}/include/crew/${M_FILE[$mutant]}" \
      "include/crew/${M_FILE[$mutant]}" >"${dir}/mutation.diff")
    grep -E '^[-+][^-+]' "${dir}/mutation.diff" | sed 's/^/   /'
  else
    echo "== ${name}: the unmutated snapshot (both checkers must pass)"
  fi

  # Build both against the copy (the copy's include first; tests/ holds test_support.hpp).
  "${CXX_GCC}" -std=c++20 -O1 -g -pthread -I"${dir}/include" -I"${SNAP}/tests" \
    "${SNAP}/tests/stress/chaos_test.cpp" -o "${dir}/stress_chaos_test" -lgtest_main -lgtest \
    >"${dir}/build-chaos.log" 2>&1 &
  local pid_cb=$!
  "${CXX_CLANG}" -std=c++20 -O1 -g -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all \
    -fno-omit-frame-pointer -I"${dir}/include" "${SNAP}/tests/fuzz/pool_fuzz.cpp" \
    -o "${dir}/crew_pool_fuzz" >"${dir}/build-fuzz.log" 2>&1 &
  local pid_fb=$!
  local rc_cb=0 rc_fb=0
  wait "${pid_cb}" || rc_cb=$?
  wait "${pid_fb}" || rc_fb=$?
  echo "   built in $((SECONDS - t0)) s"
  if ((rc_cb != 0 || rc_fb != 0)); then
    ((rc_cb != 0)) && { echo "   chaos build failed:"; tail -n 20 "${dir}/build-chaos.log" | sed 's/^/     /'; }
    ((rc_fb != 0)) && { echo "   fuzzer build failed:"; tail -n 20 "${dir}/build-fuzz.log" | sed 's/^/     /'; }
    R_CHAOS[$name]=$([[ ${rc_cb} == 0 ]] && echo built || echo BUILD-FAILED)
    R_FUZZ[$name]=$([[ ${rc_fb} == 0 ]] && echo built || echo BUILD-FAILED)
    R_VERDICT[$name]="ERROR (does not build)"
    return 2
  fi

  # Run both, each bounded.
  cp -a "${SNAP}/tests/fuzz/corpus" "${dir}/corpus"
  mkdir -p "${dir}/artifacts"
  local t1=${SECONDS}
  run_chaos() {
    (cd "${dir}" && CREW_STRESS_SECONDS="${CHAOS_SECONDS}" timeout -k 10 "${RUN_TIMEOUT}" \
      ./stress_chaos_test --gtest_filter='Chaos.*' >"${dir}/chaos.log" 2>&1) 2>/dev/null
  }
  run_fuzz() {
    (cd "${dir}" && timeout -k 10 "${RUN_TIMEOUT}" ./crew_pool_fuzz \
      -max_total_time="${FUZZ_SECONDS}" -timeout="${FUZZ_TIMEOUT}" -rss_limit_mb=2048 \
      -artifact_prefix="${dir}/artifacts/" -print_final_stats=1 "${dir}/corpus" \
      >"${dir}/fuzz.log" 2>&1) 2>/dev/null
  }
  local rc_c=0 rc_f=0
  if [[ ${SEQUENTIAL:-0} == 1 ]]; then
    run_chaos || rc_c=$?
    run_fuzz || rc_f=$?
  else
    run_chaos &
    local pid_c=$!
    run_fuzz &
    local pid_f=$!
    wait "${pid_c}" || rc_c=$?
    wait "${pid_f}" || rc_f=$?
  fi
  R_CHAOS[$name]=$(classify_chaos "${rc_c}" "${dir}/chaos.log")
  R_FUZZ[$name]=$(classify_fuzz "${rc_f}" "${dir}/fuzz.log")
  local seed runs execs
  seed=$(grep -m1 -o 'base seed [0-9]*' "${dir}/chaos.log" | cut -d' ' -f3)
  runs=$(grep -c '^chaos run seed=' "${dir}/chaos.log")
  execs=$(grep -m1 -o 'stat::number_of_executed_units: *[0-9]*' "${dir}/fuzz.log" | grep -o '[0-9]*$')
  [[ -z "${execs}" ]] && execs=$(grep -o '#[0-9]*' "${dir}/fuzz.log" | tail -n1 | tr -d '#')
  echo "   ran in $((SECONDS - t1)) s (chaos exit ${rc_c}, ${runs} run(s) completed, base seed" \
    "${seed:-?}; fuzzer exit ${rc_f}, ${execs:-?} inputs)"
  echo "   chaos:  ${R_CHAOS[$name]}"
  echo "   fuzzer: ${R_FUZZ[$name]}"
  if [[ ${R_CHAOS[$name]} == CAUGHT* ]]; then
    grep -m1 -A6 -E '^WATCHDOG:|invariant violations in chaos run' "${dir}/chaos.log" | cut -c1-220 | sed 's/^/     | /'
  fi
  if [[ ${R_FUZZ[$name]} == CAUGHT* ]]; then
    grep -m1 -A3 -E 'invariant violated|ERROR: (libFuzzer|AddressSanitizer|LeakSanitizer)|runtime error' \
      "${dir}/fuzz.log" | cut -c1-220 | sed 's/^/     | /'
  fi
  if [[ -z "${KEEP_BINARIES:-}" ]]; then rm -f "${dir}/stress_chaos_test" "${dir}/crew_pool_fuzz"; fi
  return 0
}

# ---- main ----------------------------------------------------------------------------------------

if ((dry_run)); then
  status=0
  for m in "${selected[@]}"; do
    dir="${WORK}/${m}"
    rm -rf "${dir}"
    mkdir -p "${dir}"
    cp -a "${SNAP}/include" "${dir}/include"
    if ! replace_once "${dir}/include/crew/${M_FILE[$m]}" "${M_OLD[$m]}" "${M_NEW[$m]}"; then
      echo "${m}: NOT-APPLIED"
      status=2
      continue
    fi
    if "${CXX_GCC}" -std=c++20 -fsyntax-only -I"${dir}/include" -I"${SNAP}/tests" \
      "${SNAP}/tests/stress/chaos_test.cpp" &&
      "${CXX_CLANG}" -std=c++20 -fsyntax-only -I"${dir}/include" "${SNAP}/tests/fuzz/pool_fuzz.cpp"; then
      echo "${m}: applies and compiles"
    else
      echo "${m}: DOES NOT COMPILE"
      status=2
    fi
  done
  exit "${status}"
fi

status=0
if ((run_baseline)); then
  run_variant baseline || true
  if [[ ${R_CHAOS[baseline]} != MISSED || ${R_FUZZ[baseline]} != MISSED ]]; then
    # For the baseline, "MISSED" means "passed".
    echo
    echo "BASELINE FAILED: the unmutated copy must pass both checkers (chaos: ${R_CHAOS[baseline]};" \
      "fuzzer: ${R_FUZZ[baseline]}). Logs: ${WORK}/baseline/"
    exit 2
  fi
  R_CHAOS[baseline]="pass"
  R_FUZZ[baseline]="pass"
  R_VERDICT[baseline]="ok (baseline passes)"
fi

for m in "${selected[@]}"; do
  if ! run_variant "${m}" "${m}"; then
    status=2
    continue
  fi
  if [[ ${R_CHAOS[$m]} == CAUGHT* || ${R_FUZZ[$m]} == CAUGHT* ]]; then
    R_VERDICT[$m]="caught"
  else
    R_VERDICT[$m]="MISSED BY BOTH"
    ((status == 0)) && status=1
  fi
done

# ---- the table -----------------------------------------------------------------------------------

echo
echo "== results ($((SECONDS - start_seconds)) s; logs under ${WORK}/<mutant>/)"
rows=()
((run_baseline)) && rows+=(baseline)
rows+=("${selected[@]}")
# short CELL: the kind of catch, for the table (the full text follows it).
short() {
  case "$1" in
    "CAUGHT (hang: watchdog"*) echo "CAUGHT (hang: watchdog abort)" ;;
    "CAUGHT (hang: libFuzzer"*) echo "CAUGHT (hang: libFuzzer -timeout)" ;;
    "CAUGHT (hang: killed"*) echo "CAUGHT (hang: killed by timeout)" ;;
    "CAUGHT (crash"* | "CAUGHT (ERROR"* | "CAUGHT (UBSan"*) echo "CAUGHT (crash / sanitizer)" ;;
    "CAUGHT (test failed"* | "CAUGHT (fuzzer failed"*) echo "CAUGHT (failed)" ;;
    CAUGHT*) echo "CAUGHT (invariant check)" ;;
    *) echo "$1" ;;
  esac
}
printf '%-9s | %-34s | %-34s | %s\n' mutant "chaos (stress_chaos_test)" "fuzzer (crew_pool_fuzz)" verdict
printf '%s\n' "$(printf -- '-%.0s' {1..100})"
for r in "${rows[@]}"; do
  printf '%-9s | %-34s | %-34s | %s\n' "${r}" "$(short "${R_CHAOS[$r]:-?}")" \
    "$(short "${R_FUZZ[$r]:-?}")" "${R_VERDICT[$r]:-?}"
done
echo
for r in "${selected[@]}"; do
  printf '%-4s %s\n' "${r}" "${M_DESC[$r]}"
  printf '       chaos:  %s\n       fuzzer: %s\n' "${R_CHAOS[$r]:-?}" "${R_FUZZ[$r]:-?}"
done
echo
case ${status} in
  0) echo "every mutant was caught by at least one checker" ;;
  1) echo "SOME MUTANT WAS MISSED BY BOTH CHECKERS" ;;
  *) echo "ERROR: some mutant did not apply or did not build" ;;
esac
exit "${status}"
