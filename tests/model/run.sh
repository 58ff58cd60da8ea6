#!/usr/bin/env bash
# Checks crew's Promela models (tests/model/*.pml) exhaustively with spin.
#
# Usage: tests/model/run.sh [--slow] [--mutants] [--counterexamples] [--only] [MODEL...]
#
# Each model lists the configurations to check in its header comment, one per line:
#   * @config NAME FLAGS...          run by default; must pass
#   * @slow NAME FLAGS...            run with --slow; must pass (minutes, not seconds)
#   * @counterexample NAME FLAGS...  run with --counterexamples; must FAIL (a known gap)
#   * @mutant NAME FLAGS...          run with --mutants; must FAIL (a planted bug: the check
#                                    that the model can fail at all)
# FLAGS go to `spin -a` (-D...). --only runs just the selected extra kinds, not the defaults.
# MODEL: stash, park, stash.pml, ... (default: every *.pml here).
#
# For each configuration: spin -a, compile pan (gcc -O2 -DSAFETY -DCOLLAPSE), run it (full
# depth-first search), and report the states explored, the depth and the time. A configuration
# fails when pan reports errors, or when its search was incomplete (depth or memory bound hit).
# Everything is built in a temporary directory (removed at the end, kept on failure so that the
# trail can be replayed: the command is printed). Works from any directory.
#
# Environment: SPIN (default spin), CC (default cc), PAN_MEMLIM (MB, default 4096),
# PAN_DEPTH (default 1000000), KEEP=1 keeps the temporary directory.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
spin="${SPIN:-spin}"
cc="${CC:-cc}"
memlim="${PAN_MEMLIM:-4096}"
depth="${PAN_DEPTH:-1000000}"

kinds=(config)
only=0
models=()
for arg in "$@"; do
  case "$arg" in
    --slow) kinds+=(slow) ;;
    --mutants) kinds+=(mutant) ;;
    --counterexamples) kinds+=(counterexample) ;;
    --only) only=1 ;;
    -h | --help)
      sed -n '2,24p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
      exit 0
      ;;
    -*)
      echo "run.sh: unknown option $arg (see --help)" >&2
      exit 2
      ;;
    *)
      m="${arg%.pml}"
      m="${m##*/}"
      [[ -f "$here/$m.pml" ]] || { echo "run.sh: no model $here/$m.pml" >&2; exit 2; }
      models+=("$m")
      ;;
  esac
done
if ((only)); then
  if ((${#kinds[@]} == 1)); then
    echo "run.sh: --only needs --slow, --mutants or --counterexamples" >&2
    exit 2
  fi
  kinds=("${kinds[@]:1}")
fi
if ((${#models[@]} == 0)); then
  for f in "$here"/*.pml; do
    m="${f##*/}"
    models+=("${m%.pml}")
  done
fi

command -v "$spin" >/dev/null || { echo "run.sh: $spin not found (apt-get install spin)" >&2; exit 2; }
command -v "$cc" >/dev/null || { echo "run.sh: C compiler $cc not found (set CC)" >&2; exit 2; }

work="$(mktemp -d "${TMPDIR:-/tmp}/crew-model.XXXXXX")"
failed=0
cleanup() {
  if ((failed)) || [[ "${KEEP:-0}" == 1 ]]; then
    echo "run.sh: work files kept in $work"
  else
    rm -rf "$work"
  fi
}
trap cleanup EXIT

now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f", b - a }'; }

# run_one MODEL KIND NAME FLAGS...
run_one() {
  local model="$1" kind="$2" name="$3"
  shift 3
  local flags=("$@")
  local dir="$work/$model.$kind.$name"
  local expect=pass
  [[ "$kind" == mutant || "$kind" == counterexample ]] && expect=fail
  mkdir -p "$dir"
  local t0 t1 t2
  t0="$(now)"
  # spin writes pan.[chmbt] into the current directory: build in $dir, never in the source tree.
  if ! (cd "$dir" && "$spin" "${flags[@]}" -a "$here/$model.pml") >"$dir/spin.log" 2>&1; then
    echo "FAIL  $model.pml $kind $name: spin -a failed:"
    sed 's/^/      /' "$dir/spin.log"
    failed=1
    return
  fi
  # -w: pan's generated code trips a few of gcc's warnings; they say nothing about the model.
  if ! (cd "$dir" && "$cc" -O2 -w -DSAFETY -DCOLLAPSE -DNOBOUNDCHECK -DMEMLIM="$memlim" \
          -o pan pan.c) >"$dir/cc.log" 2>&1; then
    echo "FAIL  $model.pml $kind $name: compiling pan failed:"
    sed 's/^/      /' "$dir/cc.log"
    failed=1
    return
  fi
  t1="$(now)"
  local rc=0
  (cd "$dir" && ./pan -m"$depth" -n) >"$dir/pan.log" 2>&1 || rc=$?
  t2="$(now)"
  local log="$dir/pan.log"
  local errors states depth_reached pan_time
  errors="$(sed -n 's/.*errors: \([0-9][0-9]*\).*/\1/p' "$log" | tail -n 1)"
  states="$(awk '/states, stored/ { print $1; exit }' "$log")"
  depth_reached="$(sed -n 's/.*depth reached \([0-9][0-9]*\).*/\1/p' "$log" | tail -n 1)"
  pan_time="$(sed -n 's/^pan: elapsed time \([0-9.e+-]*\).*/\1/p' "$log" | tail -n 1)"
  local incomplete=""
  if grep -q "max search depth too small" "$log"; then incomplete="depth bound -m$depth hit"; fi
  if grep -q "reached -DMEMLIM bound\|out of memory" "$log"; then incomplete="memory bound hit"; fi
  local summary="${states:-?} states, depth ${depth_reached:-?}, pan ${pan_time:-?} s" \
    total="$(elapsed "$t0" "$t2") s with spin -a and cc"
  local what="$model.pml $kind $name (${flags[*]})"
  if [[ -z "$errors" ]]; then
    echo "FAIL  $what: pan did not finish (exit $rc):"
    tail -n 20 "$log" | sed 's/^/      /'
    failed=1
  elif [[ "$expect" == pass ]]; then
    if [[ "$errors" == 0 && -z "$incomplete" ]]; then
      echo "ok    $what: $summary; $total"
    else
      echo "FAIL  $what: errors: $errors${incomplete:+, $incomplete}; $summary"
      grep -E "^pan:|assert|violated|invalid end" "$log" | head -n 5 | sed 's/^/      /'
      if ls "$dir"/*.trail >/dev/null 2>&1; then
        echo "      replay: cd $dir && $spin ${flags[*]} -t -p -g $here/$model.pml"
      fi
      failed=1
    fi
  else
    if [[ "$errors" != 0 ]]; then
      local first
      first="$(grep -E "^pan:1:" "$log" | head -n 1 | cut -c1-160)"
      echo "ok    $what: fails as it must: ${first:-errors: $errors} (after $summary)"
    else
      echo "FAIL  $what: no error found, but this $kind must fail ($summary)"
      failed=1
    fi
  fi
}

echo "crew models: $("$spin" -V 2>&1 | head -n 1); work in $work"
for model in "${models[@]}"; do
  for kind in "${kinds[@]}"; do
    # " * @kind NAME FLAGS..." lines of the model's header comment
    while read -r name rest; do
      [[ -n "$name" ]] || continue
      # shellcheck disable=SC2086 # FLAGS are words
      run_one "$model" "$kind" "$name" $rest
    done < <(sed -n "s/^ \* @$kind[[:space:]]\{1,\}\([^[:space:]].*\)$/\1/p" "$here/$model.pml")
  done
done

if ((failed)); then
  echo "crew models: FAILED"
  exit 1
fi
echo "crew models: all passed"
