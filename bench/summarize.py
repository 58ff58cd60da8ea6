#!/usr/bin/env python3
"""Turn Google Benchmark JSON (with --benchmark_repetitions and aggregates) into markdown tables
of medians, one row per benchmark, with the counters that matter. Usage:

    python3 bench/summarize.py build/bench/bench-results/*.json

Only the standard library; prints to stdout.
"""
import json
import sys

COUNTERS = ("items_per_second", "allocs_per_job", "burst_ms", "p50_ns", "p99_ns", "p999_ns",
            "cpu_ms_per_s", "recycles")


def fmt(name, value):
    if name == "items_per_second":
        return f"{value / 1e6:.2f} M/s"
    if name.endswith("_ns"):
        return f"{value / 1e3:.1f} us"
    if name == "burst_ms":
        return f"{value:.2f} ms"
    if name == "cpu_ms_per_s":
        return f"{value:.3f} ms/s"
    return f"{value:.4g}"


def main(paths):
    for path in paths:
        with open(path) as f:
            data = json.load(f)
        ctx = data.get("context", {})
        print(f"### {path.rsplit('/', 1)[-1]}\n")
        print(f"{ctx.get('num_cpus', '?')} CPUs at {ctx.get('mhz_per_cpu', '?')} MHz, "
              f"{ctx.get('date', '?')}, medians of "
              f"{max((b.get('repetitions', 1) for b in data['benchmarks']), default=1)} repetitions\n")
        rows = [b for b in data["benchmarks"] if b.get("aggregate_name") == "median"]
        if not rows:
            rows = [b for b in data["benchmarks"] if b.get("run_type") == "iteration"]
        used = [c for c in COUNTERS if any(c in b for b in rows)]
        print("| benchmark | time | " + " | ".join(used) + " |")
        print("|---|---|" + "---|" * len(used))
        for b in rows:
            name = (b["run_name"].replace("/real_time", "").replace("/manual_time", "")
                    .replace("/iterations:1", ""))
            cells = [fmt(c, b[c]) if c in b else "" for c in used]
            print(f"| {name} | {b['real_time']:.4g} {b['time_unit']} | " + " | ".join(cells) + " |")
        print()


if __name__ == "__main__":
    main(sys.argv[1:])
