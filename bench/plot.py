#!/usr/bin/env python3
"""Turn crew's benchmark results into PNG charts and a markdown summary.

Usage:

    python3 bench/plot.py <results-dir> [<out-dir>]

<results-dir> is where the `bench` ctest tests write their JSON (normally <build>/bench-results/):

  peers_bench.json, recycle_bench.json, queue_bench.json, pool_bench.json (and any other
      Google Benchmark output there): run with --benchmark_repetitions=N
      --benchmark_report_aggregates_only=true; the `median` aggregate rows are used (without
      aggregates, the median of the plain iteration rows). Name suffixes such as /real_time,
      /manual_time or /iterations:1 are stripped.
  memory_story.json: written by bench/memory_story.cpp, {"context", "burst", "stack",
      "recycle_cost"} (see memory_section()).

<out-dir> (default: docs/ at the top of the repository) receives

  throughput.png    trivial jobs/s per contender, 1 and 2 producers       (peers_bench)
  latency.png       wake-up latency p50 / p99 / p99.9 per contender      (peers_bench)
  workloads.png     makespan of the small and skewed workloads, burst time (peers_bench)
  burst_memory.png  peak RSS and completion time of a burst of jobs      (memory_story)
  stack_rss.png     RSS over time under deep-stack jobs                  (memory_story)
  recycle_cost.png  jobs/s with recycling off, respawn and trim          (memory_story, else
                                                                          recycle_bench)
  benchmarks.md     the machine, tables of medians with ratios against crew, links to the PNGs

The markdown is printed to stdout too; progress and skipped parts go to stderr. Any input may be
absent (a peer not installed, a scenario skipped): its rows and charts are left out with a
message. Charts are drawn by gnuplot (Debian: gnuplot-nox) with the pngcairo terminal, or png
when cairo is not built in; without gnuplot only the markdown is written. Only the Python
standard library is used. Exit status: 0, or 1 when no result was found or gnuplot failed.
"""
import json
import math
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field

REPO_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Charts and tables list contenders in this order; names not listed follow in order of appearance.
CONTENDER_ORDER = ("crew", "crew_bulk", "crew_off", "crew_respawn", "crew_trim", "mutex_condvar",
                   "moodycamel_pool", "moodycamel_bounded", "onetbb", "asio_thread_pool",
                   "thread_per_job")

# What each contender name stands for, listed under the tables.
DESCRIPTIONS = {
    "crew": "crew::worker_pool, one submit per job",
    "crew_bulk": "crew::worker_pool, submit_bulk",
    "crew_off": "crew::worker_pool, recycling off",
    "crew_respawn": "crew::worker_pool, recycle_mode::respawn",
    "crew_trim": "crew::worker_pool, recycle_mode::trim",
    "mutex_condvar": "mutex + condvar pool (bench/mutex_pool.hpp)",
    "moodycamel_pool": "pool on moodycamel BlockingConcurrentQueue (bulk dequeue, unbounded)",
    "moodycamel_bounded": "the same pool bounded at 1,024 jobs by a moodycamel LightweightSemaphore",
    "onetbb": "oneTBB task_arena + task_group",
    "asio_thread_pool": "Boost.Asio thread_pool",
    "thread_per_job": "one std::thread per job",
}

# Series colours (bars) and line colours, in order.
PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2",
           "#7f7f7f", "#bcbd22", "#17becf")

# Counters shown first in generic tables, in this order; any other counter follows by name.
KNOWN_COUNTERS = ("items_per_second", "p50_ns", "p99_ns", "p999_ns", "mean_ns", "cpu_ms_per_s",
                  "recycles", "allocs_per_job", "burst_ms")

# Fields of a Google Benchmark row that are not counters.
GBENCH_FIELDS = {"name", "family_index", "per_family_instance_index", "run_name", "run_type",
                 "repetitions", "repetition_index", "threads", "aggregate_name", "aggregate_unit",
                 "iterations", "real_time", "cpu_time", "time_unit", "error_occurred",
                 "error_message", "label", "skipped", "skip_message"}

# Suffixes Google Benchmark appends to a benchmark's name; stripped repeatedly from the end.
NAME_SUFFIX = re.compile(r"/(real_time|manual_time|process_time|iterations:\d+|repeats:\d+|"
                         r"threads:\d+|min_time:[^/]+|min_warmup_time:[^/]+)$")

TO_MS = {"ns": 1e-6, "us": 1e-3, "ms": 1.0, "s": 1e3}

# recycle_bench: the cost of one recycle is computed only from runs with this many recycles per
# iteration; with fewer, the time difference against "off" is mostly noise.
MIN_RECYCLES_FOR_COST = 100


def note(message):
    """Progress and skip messages go to stderr; stdout carries the markdown only."""
    print(f"plot.py: {message}", file=sys.stderr)


# ---- reading numbers and formatting them ---------------------------------------------------------

def num(value):
    """value as a finite float, or None (missing, NaN, infinite, not a number)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def si(value, unit=""):
    """3 significant digits and a k/M/G prefix: si(12345678) == "12.3M",
    si(12345678, "/s") == "12.3 M/s"."""
    if value is None:
        return ""
    for factor, prefix in ((1e9, "G"), (1e6, "M"), (1e3, "k"), (1, "")):
        if abs(value) >= factor or factor == 1:
            text = f"{value / factor:.3g}"
            if "e" in text and abs(value) >= 1:  # 999.96 rounds to "1e+03"
                text = f"{value / factor:.0f}"
            return f"{text} {prefix}{unit}" if unit else f"{text}{prefix}"
    return ""


def fmt_rate(per_s):
    return si(per_s, "/s") if per_s is not None else ""


def fmt_ns(ns):
    """A duration in the unit that fits it, as the README writes them (us, not µs)."""
    if ns is None:
        return ""
    for factor, unit in ((1e9, "s"), (1e6, "ms"), (1e3, "us")):
        if abs(ns) >= factor:
            return f"{ns / factor:.3g} {unit}"
    return f"{ns:.3g} ns"


def plain(value):
    """3 significant digits, no prefix (bar labels on axes in ms, us, MiB or s)."""
    return f"{value:.3g}" if abs(value) < 1000 else f"{value:.0f}"


def fmt_count(value):
    """Whole counts with thousands separators (8,446); small or fractional ones as they are."""
    if value is None:
        return ""
    return f"{value:,.0f}" if abs(value) >= 100 else f"{value:.4g}"


def fmt_bytes(n):
    for factor, unit in ((1 << 30, "GiB"), (1 << 20, "MiB"), (1 << 10, "KiB")):
        if n >= factor:
            return f"{n / factor:.3g} {unit}"
    return f"{n:.0f} bytes"


def fmt_mib(kib):
    return f"{kib / 1024:.1f} MiB" if kib is not None else ""


def ratio(a, b):
    return a / b if a is not None and b not in (None, 0) else None


def fmt_ratio(r):
    if r is None:
        return ""
    return f"{r:.0f}x" if r >= 100 else f"{r:.1f}x" if r >= 10 else f"{r:.2f}x"


def fmt_pow2(n):
    """2^k for powers of two (as recycle_bench names them), the plain number otherwise."""
    n = int(n)
    return f"2^{n.bit_length() - 1}" if n > 0 and n & (n - 1) == 0 else str(n)


def order_names(names):
    """Contender names in CONTENDER_ORDER first, then the others in order of appearance."""
    names = list(dict.fromkeys(names))
    known = [c for c in CONTENDER_ORDER if c in names]
    return known + [c for c in names if c not in known]


def table(header, rows):
    """Markdown table lines (and a blank line after). Columns empty in every row are left out
    (a ratio against a contender that did not run, a counter no row has)."""
    rows = [[str(c) for c in row] for row in rows]
    keep = [i for i in range(len(header)) if i == 0 or any(row[i] for row in rows)]
    header = [header[i] for i in keep]
    rows = [[row[i] for i in keep] for row in rows]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return lines + [""]


def legend_lines(names):
    """One line naming what each contender in a table is."""
    known = [f"`{n}` = {DESCRIPTIONS[n]}" for n in names if n in DESCRIPTIONS]
    return ["Contenders: " + "; ".join(known) + ".", ""] if known else []


# ---- input files ---------------------------------------------------------------------------------

def load_json(path):
    """The parsed file; None when it is absent (the caller says what is skipped) or unreadable."""
    if not os.path.exists(path):
        return None
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)  # Python's json accepts the NaN that Google Benchmark writes
    except (OSError, ValueError) as e:
        note(f"{path} is not readable JSON ({e}): skipped")
        return None


class GBench:
    """One Google Benchmark JSON file: its context and one median row per benchmark name."""

    def __init__(self, path, data):
        self.name = os.path.basename(path)
        self.context = data.get("context") if isinstance(data.get("context"), dict) else {}
        runs = [b for b in data.get("benchmarks", []) if isinstance(b, dict) and "name" in b]
        for b in runs:
            if b.get("error_occurred"):
                note(f"{self.name}: {b['name']} failed ({b.get('error_message', '?')}): left out")
        runs = [b for b in runs if not b.get("error_occurred")]
        self.repetitions = max((int(num(b.get("repetitions")) or 1) for b in runs), default=1)
        medians = [b for b in runs if b.get("aggregate_name") == "median"]
        # name -> row, in the file's order
        self.rows = {}
        if medians:
            for b in medians:
                self.rows[self.clean_name(b)] = b
        else:  # no aggregates: take the median of each field over the repetitions
            groups = {}
            for b in runs:
                if b.get("run_type", "iteration") == "iteration":
                    groups.setdefault(self.clean_name(b), []).append(b)
            for name, group in groups.items():
                row = dict(group[0])
                for key in row:
                    values = [num(b.get(key)) for b in group]
                    if key not in GBENCH_FIELDS and all(v is not None for v in values):
                        row[key] = statistics.median(values)
                times = [num(b.get("real_time")) for b in group]
                if all(t is not None for t in times):
                    row["real_time"] = statistics.median(times)
                self.rows[name] = row

    @staticmethod
    def clean_name(b):
        """BM_X/a/iterations:1/real_time_median -> BM_X/a."""
        name = b.get("run_name") or re.sub(r"_(mean|median|stddev|cv)$", "", b["name"])
        while True:
            shorter = NAME_SUFFIX.sub("", name)
            if shorter == name:
                return name
            name = shorter

    @staticmethod
    def ms(row):
        """The row's real time (per iteration) in milliseconds."""
        t = num(row.get("real_time"))
        return t * TO_MS.get(row.get("time_unit", "ns"), 1e-6) if t is not None else None


def counters_of(rows):
    """Counter names present in rows: KNOWN_COUNTERS first, then the others by name."""
    present = {k for r in rows for k, v in r.items()
               if k not in GBENCH_FIELDS and num(v) is not None}
    return [c for c in KNOWN_COUNTERS if c in present] + sorted(present - set(KNOWN_COUNTERS))


def fmt_counter(name, value):
    if value is None:
        return ""
    if name == "items_per_second":
        return fmt_rate(value)
    if name.endswith("_ns"):
        return fmt_ns(value)
    if name.endswith("_ms"):
        return fmt_ns(value * 1e6)
    if name == "cpu_ms_per_s":
        return f"{value:.3g} ms/s"
    return f"{value:.4g}"


# ---- gnuplot -------------------------------------------------------------------------------------

def gp_str(text):
    """A gnuplot single-quoted string (no escapes inside; a quote is doubled)."""
    return "'" + str(text).replace("'", "''") + "'"


def wants_log(values):
    """Log scale when the values are positive and span more than 30x."""
    values = [v for v in values if v is not None]
    return bool(values) and min(values) > 0 and max(values) / min(values) > 30


@dataclass
class Bars:
    """A grouped bar panel: one group per x label, one coloured bar per series inside a group.

    values maps (group, series) to a number; missing pairs leave a gap. Each bar carries its value
    (label(value)) on top. refs are dashed horizontal lines (value, text). Groups without any
    value are left out unless keep_groups is set (stacked panels keep the same x positions)."""
    title: str
    ylabel: str
    groups: list
    series: list
    values: dict
    label: object = si
    log: bool = False
    xlabel: str = ""
    refs: list = field(default_factory=list)
    keep_groups: bool = False

    def has_data(self):
        return bool(self.values) or bool(self.refs)

    @staticmethod
    def tick_format(lo, hi, log):
        """Plain numbers for small ranges, else an SI prefix: 2.5M, 100k."""
        if hi <= 1e4 and (lo >= 1e-3 or not log):
            return "%g"
        return "%.0s%c" if log else "%.1s%c"

    def render(self, datafile):
        groups = [g for g in self.groups
                  if self.keep_groups or any((g, s) in self.values for s in self.series)]
        series = [s for s in self.series if any((g, s) in self.values for g in groups)]
        shown = [self.values[(g, s)] for g in groups for s in series if (g, s) in self.values]
        everything = shown + [v for v, _ in self.refs]
        log = self.log and min(everything) > 0
        if log:  # whole decades, with room above the tallest bar for its label
            lo = 10 ** math.floor(math.log10(min(everything)))
            if min(everything) / lo < 1.5:
                lo /= 10
            hi = 10 ** math.ceil(math.log10(max(everything)) + 0.3)
        else:
            lo, hi = 0.0, (max(everything) * 1.18 if max(everything) > 0 else 1.0)
        width = 0.8 / max(1, len(series))  # no series: reference lines only
        blocks = []
        for si_, s in enumerate(series):
            rows = []
            for gi, g in enumerate(groups):
                if (g, s) in self.values:
                    v = self.values[(g, s)]
                    x = gi - 0.4 + width * (si_ + 0.5)
                    rows.append(f'{x} {v} {x - width / 2} {x + width / 2} {lo} "{self.label(v)}"')
            blocks.append("\n".join(rows))
        data = "\n\n\n".join(blocks) + "\n"
        ticks = ", ".join(f"{gp_str(g)} {i}" for i, g in enumerate(groups))
        cmds = [f"set title {gp_str(self.title)}",
                f"set ylabel {gp_str(self.ylabel)}",
                f"set xlabel {gp_str(self.xlabel)}",
                f"set xrange [-0.6:{len(groups) - 0.4}]",
                f"set yrange [{lo}:{hi}]",
                "set logscale y" if log else "unset logscale y",
                f"set format y {gp_str(self.tick_format(lo, hi, log))}",
                f"set xtics ({ticks}) scale 0",
                "set grid ytics lc rgb '#dddddd'",
                "set key outside right top vertical" if len(series) + len(self.refs) > 1
                else "unset key",
                "set style fill solid 0.85 border rgb '#333333'"]
        # Reference lines first (behind the bars), named in the key.
        plots = [f"{v} with lines dt 2 lw 1.5 lc rgb '#444444' title {gp_str(text)}"
                 for v, text in self.refs]
        for i, s in enumerate(series):
            plots.append(f"{gp_str(datafile)} index {i} using 1:2:3:4:5:2 with boxxyerror "
                         f"lc rgb '{PALETTE[i % len(PALETTE)]}' title {gp_str(s)}")
            plots.append(f"{gp_str(datafile)} index {i} using 1:2:6 with labels center "
                         "offset 0,0.6 font ',8' notitle")
        cmds.append("plot " + ", \\\n     ".join(plots))
        return cmds, data


@dataclass
class Lines:
    """A line panel: series is a list of (name, [(x, y), ...])."""
    title: str
    xlabel: str
    ylabel: str
    series: list

    def has_data(self):
        return any(pts for _, pts in self.series)

    def render(self, datafile):
        series = [(n, pts) for n, pts in self.series if pts]
        data = "\n\n\n".join("\n".join(f"{x} {y}" for x, y in pts) for _, pts in series) + "\n"
        cmds = [f"set title {gp_str(self.title)}",
                f"set xlabel {gp_str(self.xlabel)}",
                f"set ylabel {gp_str(self.ylabel)}",
                "set yrange [0:*]",
                "set offsets 0, 0, graph 0.06, 0",
                "set grid lc rgb '#dddddd'",
                "set key outside right top vertical"]
        # Solid, fairly thin lines: RSS under recycling is a dense saw-tooth, which dash
        # patterns would break into noise.
        plots = [f"{gp_str(datafile)} index {i} using 1:2 with lines lw 1.5 "
                 f"lc rgb '{PALETTE[i % len(PALETTE)]}' title {gp_str(n)}"
                 for i, (n, _) in enumerate(series)]
        cmds.append("plot " + ", \\\n     ".join(plots))
        return cmds, data


class Plotter:
    """Writes each figure's .dat and .gp files to a temporary directory and runs gnuplot."""

    def __init__(self, out_dir):
        self.out_dir = out_dir
        self.made = []     # PNG file names written, in order
        self.failed = []
        self.exe = shutil.which("gnuplot")
        self.tmp = None
        if not self.exe:
            note("gnuplot not found (Debian: apt-get install gnuplot-nox): "
                 "markdown only, no charts")
            return
        probe = subprocess.run([self.exe, "-e", "print GPVAL_TERMINALS"],
                               capture_output=True, text=True, check=False)
        self.terminal = "pngcairo" if "pngcairo" in (probe.stdout + probe.stderr).split() else "png"
        self.tmp = tempfile.mkdtemp(prefix="crew-plot-")

    def figure(self, filename, panels, title="", panel_height=520):
        """Draws panels (Bars or Lines), stacked top to bottom under title, into
        out_dir/filename; True when the PNG was written."""
        if not self.exe:
            return False
        panels = [p for p in panels if p.has_data()]
        if not panels:
            note(f"nothing to draw in {filename}: skipped")
            return False
        stem = os.path.splitext(filename)[0]
        out = os.path.abspath(os.path.join(self.out_dir, filename))
        # About 150 px per group of bars (the longest contender name fits under it), plus the
        # y axis on the left and the key on the right.
        groups = max((len(p.groups) for p in panels if isinstance(p, Bars)), default=0)
        width = max(1100 if any(isinstance(p, Lines) for p in panels) else 900,
                    150 * groups + 280)
        height = panel_height * len(panels) + (30 if len(panels) > 1 else 0)
        font = " font 'sans,10'" if self.terminal == "pngcairo" else ""
        script = [f"set terminal {self.terminal} size {width},{height}{font} noenhanced",
                  f"set output {gp_str(out)}",
                  "set encoding utf8"]
        multi = len(panels) > 1
        if multi:
            script.append(f"set multiplot layout {len(panels)},1 title {gp_str(title)}")
        for i, panel in enumerate(panels):
            datafile = os.path.join(self.tmp, f"{stem}_{i}.dat")
            cmds, data = panel.render(datafile)
            with open(datafile, "w", encoding="utf-8") as f:
                f.write(data)
            # reset: each panel starts from gnuplot's defaults (terminal and output are kept).
            # Fixed margins line up the plot areas of stacked panels; the right one holds the key.
            script += ["reset", "set encoding utf8", "set lmargin 11"]
            if isinstance(panel, Bars):
                script.append(f"set rmargin at screen {1 - 170 / width:.4f}")
            script += cmds
        if multi:
            script.append("unset multiplot")
        script.append("set output")
        gp = os.path.join(self.tmp, f"{stem}.gp")
        with open(gp, "w", encoding="utf-8") as f:
            f.write("\n".join(script) + "\n")
        run = subprocess.run([self.exe, gp], capture_output=True, text=True, check=False)
        if run.returncode != 0 or not os.path.exists(out) or os.path.getsize(out) == 0:
            note(f"gnuplot failed on {gp} (kept for inspection):\n{run.stderr.strip()}")
            self.failed.append(filename)
            return False
        if run.stderr.strip():
            note(f"gnuplot warnings for {filename}:\n{run.stderr.strip()}")
        self.made.append(filename)
        note(f"wrote {out}")
        return True

    def cleanup(self):
        if self.tmp and not self.failed:
            shutil.rmtree(self.tmp, ignore_errors=True)


# ---- peers_bench ---------------------------------------------------------------------------------

def split_peers(gb):
    """{kind: {contender: {variant: row}}} from rows named BM_Peers_<Kind>/<contender>[/<variant>]
    (variant "" when there is none), and the rows named otherwise."""
    kinds, other = {}, {}
    for name, row in gb.rows.items():
        parts = name.split("/")
        if parts[0].startswith("BM_Peers_") and len(parts) >= 2:
            kind = parts[0][len("BM_Peers_"):]
            kinds.setdefault(kind, {}).setdefault(parts[1], {})["/".join(parts[2:])] = row
        else:
            other[name] = row
    return kinds, other


def peers_section(gb, plot):
    """Tables and charts for peers_bench: throughput.png, latency.png, workloads.png."""
    kinds, other = split_peers(gb)
    md = [f"## Pool against the peers (`{gb.name}`)", ""]
    contenders = []
    parts = (("Trivial", "throughput.png", lambda k: trivial_part(k["Trivial"], plot)),
             ("WakeLatency", "latency.png", lambda k: latency_part(k["WakeLatency"], plot)),
             (("Small", "Skewed", "Bursty"), "workloads.png",
              lambda k: workloads_part(k.get("Small", {}), k.get("Skewed", {}),
                                       k.get("Bursty", {}), plot)),
             ("IdleCpu", None, lambda k: idle_part(k["IdleCpu"])))
    for wanted, chart, part in parts:
        wanted = (wanted,) if isinstance(wanted, str) else wanted
        if any(w in kinds for w in wanted):
            lines, names = part(kinds)
            md += lines
            contenders += names
        elif chart:
            note(f"{gb.name}: no {'/'.join('BM_Peers_' + w for w in wanted)} rows: "
                 f"{chart} skipped")
        for w in wanted:
            kinds.pop(w, None)

    # Anything else peers_bench measured, as plain medians.
    leftovers = dict(other)
    for kind, by_contender in kinds.items():
        for c, variants in by_contender.items():
            for v, row in variants.items():
                leftovers["/".join(p for p in (f"BM_Peers_{kind}", c, v) if p)] = row
    if leftovers:
        md += ["Other rows:", ""] + generic_table(leftovers)
    return md + legend_lines(order_names(contenders))


def trivial_part(trivial, plot):
    """Trivial jobs: jobs/s per contender and producer count (variants p1, p2, ...), allocations
    per job, crew / each contender, crew / best peer, crew_bulk / crew; throughput.png."""
    names = order_names(trivial)
    variants = sorted({v for c in trivial.values() for v in c},
                      key=lambda v: (len(v), v))  # p1, p2, ..., p10
    label = {v: (f"{v[1:]} producer" + ("" if v == "p1" else "s")) if re.fullmatch(r"p\d+", v)
             else v for v in variants}
    rate = {(c, label[v]): num(row.get("items_per_second"))
            for c in names for v, row in trivial[c].items()}
    rate = {k: v for k, v in rate.items() if v is not None}
    crew = {v: rate.get(("crew", label[v])) for v in variants}

    header = ["contender"] + [f"{label[v]}, jobs/s" for v in variants] + ["allocs/job"]
    header += [f"crew / this, {label[v]}" for v in variants]
    rows = []
    for c in names:
        allocs = [num(trivial[c].get(v, {}).get("allocs_per_job")) for v in variants]
        allocs = [f"{a:.3g}" for a in allocs if a is not None]
        allocs = allocs[0] if len(set(allocs)) == 1 else " / ".join(allocs)
        rows.append([c] + [fmt_rate(rate.get((c, label[v]))) for v in variants] + [allocs]
                    + [fmt_ratio(ratio(crew[v], rate.get((c, label[v])))) for v in variants])
    md = ["**Trivial jobs**, submitted one at a time (the job adds to a counter); allocs/job: "
          "heap allocations per job (one figure per producer count when they differ); "
          "crew / this above 1x means crew is faster:", ""] + table(header, rows)

    best, bulk = [], []
    for v in variants:
        peers = [(rate[(c, label[v])], c) for c in names
                 if not c.startswith("crew") and (c, label[v]) in rate]
        if crew[v] is not None and peers:
            top, who = max(peers)
            best.append(f"{label[v]} **{fmt_ratio(crew[v] / top)}** ({who})")
        if ("crew_bulk", label[v]) in rate and crew[v]:
            bulk.append(f"{label[v]} **{fmt_ratio(rate[('crew_bulk', label[v])] / crew[v])}**")
    if best:
        md += ["crew / best peer: " + ", ".join(best) + ".", ""]
    if bulk:
        md += ["Bulk over single submits (crew_bulk / crew): " + ", ".join(bulk) + ".", ""]

    if rate:
        log = wants_log(rate.values())
        slow = ratio(crew.get("p1"), rate.get(("thread_per_job", label.get("p1"))))
        title = "Trivial jobs: throughput, higher is better"
        if log:
            title += (f" (log scale: thread_per_job is ~{slow:.0f}x slower than crew)" if slow
                      else " (log scale)")
        plot.figure("throughput.png", [Bars(title, "jobs/s", names, list(label.values()), rate,
                                            log=log)])
    return md, names


def latency_part(wake, plot):
    """Wake-up latency from idle: p50 / p99 / p99.9 and each against crew; latency.png."""
    names = order_names(wake)
    keys = (("p50_ns", "p50"), ("p99_ns", "p99"), ("p999_ns", "p99.9"))
    lat = {(c, title): num(wake[c].get("", {}).get(key)) for c in names for key, title in keys}
    lat = {k: v for k, v in lat.items() if v is not None}
    header = ["contender", "p50", "p99", "p99.9", "this / crew, p50", "this / crew, p99"]
    rows = [[c] + [fmt_ns(lat.get((c, t))) for _, t in keys]
            + [fmt_ratio(ratio(lat.get((c, t)), lat.get(("crew", t)))) for t in ("p50", "p99")]
            for c in names]
    md = ["**Wake-up latency from idle** (submit to start, workers parked); this / crew above "
          "1x means crew wakes faster:", ""] + table(header, rows)
    us = {k: v / 1e3 for k, v in lat.items()}
    if us:
        log = wants_log(us.values())
        plot.figure("latency.png", [Bars(
            "Wake-up latency from idle (submit to job start), lower is better"
            + (" (log scale)" if log else ""), "latency (µs)", names, [t for _, t in keys], us,
            label=plain, log=log)])
    return md, names


def workloads_part(small, skewed, bursty, plot):
    """Small and skewed workloads (makespan = the row's real time, jobs/s), bursty load
    (burst_ms, p50, p99), each against crew; workloads.png with one panel for each."""
    md = []
    work = {k: rows for k, rows in (("Small", small), ("Skewed", skewed)) if rows}
    span = {(c, k): GBench.ms(rows[c][""]) for k, rows in work.items()
            for c in rows if "" in rows[c]}
    span = {key: v for key, v in span.items() if v is not None}
    if work:
        header = ["contender"]
        for k in work:
            header += [f"{k}: makespan", f"{k}: jobs/s", f"{k}: this / crew"]
        rows = []
        for c in order_names(list(small) + list(skewed)):
            row = [c]
            for k, r in work.items():
                ips = num(r.get(c, {}).get("", {}).get("items_per_second"))
                row += [fmt_ns(span[(c, k)] * 1e6) if (c, k) in span else "", fmt_rate(ips),
                        fmt_ratio(ratio(span.get((c, k)), span.get(("crew", k))))]
            rows.append(row)
        md += ["**Small and skewed workloads** (makespan: time to run the whole set; "
               "this / crew above 1x means crew finishes first):", ""] + table(header, rows)

    burst = {c: {key: num(bursty[c].get("", {}).get(key))
                 for key in ("burst_ms", "p50_ns", "p99_ns")} for c in bursty}
    if bursty:
        crew_burst = burst.get("crew", {}).get("burst_ms")
        rows = [[c, fmt_ns(b["burst_ms"] * 1e6) if b["burst_ms"] is not None else "",
                 fmt_ns(b["p50_ns"]), fmt_ns(b["p99_ns"]),
                 fmt_ratio(ratio(b["burst_ms"], crew_burst))]
                for c, b in ((c, burst[c]) for c in order_names(bursty))]
        md += ["**Bursty load** (time to drain a burst; job latency within it); this / crew "
               "above 1x means crew drains it first:", ""]
        md += table(["contender", "burst", "p50", "p99", "burst, this / crew"], rows)

    # Both panels list every contender, so their x positions line up.
    names = order_names(list(small) + list(skewed) + list(bursty))
    panels = []
    if span:
        log = wants_log(span.values())
        panels.append(Bars("Makespan of the small and skewed workloads, lower is better"
                           + (" (log scale)" if log else ""), "makespan (ms)", names,
                           list(work), span, label=plain, log=log, keep_groups=True))
    burst_ms = {(c, "burst"): b["burst_ms"] for c, b in burst.items() if b["burst_ms"] is not None}
    if burst_ms:
        log = wants_log(burst_ms.values())
        panels.append(Bars("Bursty load: time to drain a burst, lower is better"
                           + (" (log scale)" if log else ""), "burst time (ms)", names,
                           ["burst"], burst_ms, label=plain, log=log, keep_groups=True))
    if panels:
        plot.figure("workloads.png", panels, "Workloads (medians)", panel_height=460)
    return md, names


def idle_part(idle):
    """CPU time an idle pool burns, against crew (table only)."""
    names = order_names(idle)
    cpu = {c: num(idle[c].get("", {}).get("cpu_ms_per_s")) for c in names}
    rows = [[c, f"{cpu[c]:.3g} ms/s" if cpu[c] is not None else "",
             fmt_ratio(ratio(cpu[c], cpu.get("crew")))] for c in names]
    md = ["**Idle cost** (CPU time an idle pool burns per second of wall time):", ""]
    return md + table(["contender", "CPU while idle", "this / crew"], rows), names


# ---- memory_story --------------------------------------------------------------------------------

def records(story, key, required):
    """The list story[key], keeping the dicts that have every required field."""
    items = story.get(key)
    if not isinstance(items, list):  # absent: the caller says what is skipped
        if items is not None:
            note(f"memory_story.json: '{key}' is not a list: ignored")
        return []
    kept = [r for r in items if isinstance(r, dict) and all(f in r for f in required)]
    if len(kept) < len(items):
        note(f"memory_story.json: {len(items) - len(kept)} '{key}' entries lack one of "
             f"{', '.join(required)}: left out")
    return kept


def uniform(items, key):
    """items' common value of key, or None when they differ."""
    values = {str(r.get(key)) for r in items}
    return items[0].get(key) if len(values) == 1 else None


def memory_section(story, plot):
    """Burst memory and stack RSS tables and charts from memory_story.json:

    burst: [{contender, jobs, workers, seconds, peak_rss_kib, start_rss_kib}]
    stack: [{contender, workers, recycle_after, deep_every, deep_bytes, jobs, rss_before_kib,
             rss_peak_kib, rss_end_kib, samples: [{t_ms, rss_kib}]}]
    (recycle_cost is read by recycle_section.)"""
    md = ["## Memory (`memory_story.json`)", ""]
    contenders = []

    burst = records(story, "burst", ("contender", "peak_rss_kib"))
    if burst:
        names = order_names([r["contender"] for r in burst])
        contenders += names
        by = {r["contender"]: r for r in burst}  # one burst per contender
        base = num(by.get("thread_per_job", {}).get("peak_rss_kib"))
        crew_s = num(by.get("crew", {}).get("seconds"))
        rows = []
        for c in names:
            r = by[c]
            peak, start = num(r.get("peak_rss_kib")), num(r.get("start_rss_kib"))
            secs = num(r.get("seconds"))
            rows.append([c, fmt_count(num(r.get("jobs"))), r.get("workers", ""),
                         fmt_ns(secs * 1e9) if secs is not None else "", fmt_mib(start),
                         fmt_mib(peak), fmt_ratio(ratio(peak, base)),
                         fmt_ratio(ratio(secs, crew_s))])
        jobs, workers = uniform(burst, "jobs"), uniform(burst, "workers")
        what = (f"{fmt_count(num(jobs))} jobs submitted at once" if num(jobs) is not None
                else "a burst of jobs")
        what += f", {workers} workers" if workers is not None else ""
        md += [f"**Burst** ({what}): peak resident memory and time to finish. "
               "RSS / thread_per_job below 1x means less memory than a thread per job; "
               "time / crew above 1x means crew finishes first:", ""]
        md += table(["contender", "jobs", "workers", "time", "RSS at start", "peak RSS",
                     "peak RSS / thread_per_job", "time / crew"], rows)
        mib = {}
        for c in names:
            for key, series in (("start_rss_kib", "RSS at start"), ("peak_rss_kib", "peak RSS")):
                if num(by[c].get(key)) is not None:
                    mib[(c, series)] = num(by[c][key]) / 1024
        secs = {(c, "time"): num(by[c].get("seconds")) for c in names
                if num(by[c].get("seconds")) is not None}
        log = wants_log(mib.values())
        panels = [Bars("Resident memory, lower is better" + (" (log scale)" if log else ""),
                       "RSS (MiB)", names, ["RSS at start", "peak RSS"], mib, label=plain,
                       log=log, keep_groups=True)]
        if secs:
            log = wants_log(secs.values())
            panels.append(Bars("Time to finish the burst, lower is better"
                               + (" (log scale)" if log else ""), "time (s)", names, ["time"],
                               secs, label=plain, log=log, keep_groups=True))
        plot.figure("burst_memory.png", panels, f"Burst: {what}", panel_height=440)
    else:
        note("memory_story.json: no burst entries: burst_memory.png skipped")

    stack = records(story, "stack", ("contender", "rss_before_kib", "rss_end_kib"))
    if stack:
        names = order_names([r["contender"] for r in stack])
        contenders += names
        rows, lines = [], []
        for r in stack:
            before, peak, end = (num(r.get(k)) for k in ("rss_before_kib", "rss_peak_kib",
                                                         "rss_end_kib"))
            every, deep = num(r.get("deep_every")), num(r.get("deep_bytes"))
            recycle = num(r.get("recycle_after"))
            rows.append([r["contender"], r.get("workers", ""),
                         fmt_pow2(recycle) if recycle else "off",
                         f"{fmt_bytes(deep)} every {fmt_count(every)} jobs"
                         if every is not None and deep is not None else "",
                         fmt_count(num(r.get("jobs"))), fmt_mib(before), fmt_mib(peak),
                         fmt_mib(end),
                         fmt_ratio(ratio(end, before)), fmt_ratio(ratio(peak, before))])
            samples = r.get("samples") if isinstance(r.get("samples"), list) else []
            pts = [(num(s.get("t_ms")) / 1e3, num(s.get("rss_kib")) / 1024) for s in samples
                   if isinstance(s, dict) and num(s.get("t_ms")) is not None
                   and num(s.get("rss_kib")) is not None]
            title = r["contender"] + (f", recycle_after {fmt_pow2(recycle)}" if recycle else "")
            lines.append((title, pts))
        rows.sort(key=lambda row: names.index(row[0]))
        lines.sort(key=lambda line: names.index(line[0].split(",")[0]))
        md += ["**Deep stacks** (jobs that now and then touch a deep stack; the RSS a pool keeps "
               "after them). end / before near 1x means the memory was given back:", ""]
        md += table(["contender", "workers", "recycle_after", "deep job", "jobs", "RSS before",
                     "peak RSS", "RSS at end", "end / before", "peak / before"], rows)
        if any(pts for _, pts in lines):
            workers, every = uniform(stack, "workers"), uniform(stack, "deep_every")
            deep = num(uniform(stack, "deep_bytes"))
            title = "Resident memory over time under deep-stack jobs"
            if workers is not None and every is not None and deep is not None:
                title += (f": {workers} workers, one job in {fmt_count(num(every))} touches "
                          f"{fmt_bytes(deep)} of stack")
            plot.figure("stack_rss.png", [Lines(title, "time (s)", "RSS (MiB)", lines)],
                        panel_height=560)
        else:
            note("memory_story.json: stack entries have no samples: stack_rss.png skipped")
    else:
        note("memory_story.json: no stack entries: stack_rss.png skipped")
    return md + legend_lines(order_names(contenders))


# ---- recycling cost ------------------------------------------------------------------------------

def recycle_from_story(story):
    """[{mode, recycle_after, jobs_per_s, recycles}] from memory_story's recycle_cost."""
    return [{"mode": str(r["mode"]), "recycle_after": int(num(r.get("recycle_after")) or 0),
             "jobs_per_s": num(r.get("jobs_per_s")), "recycles": num(r.get("recycles")),
             "ms": None}
            for r in records(story, "recycle_cost", ("mode", "jobs_per_s"))]


def recycle_from_bench(gb):
    """The same records from recycle_bench's BM_Recycle/off and BM_Recycle/<mode>/2^<k>."""
    out = []
    for name, row in gb.rows.items():
        m = re.fullmatch(r"BM_Recycle/(off|(\w+)/2\^(\d+))", name)
        if m:
            out.append({"mode": m.group(2) or "off",
                        "recycle_after": 1 << int(m.group(3)) if m.group(3) else 0,
                        "jobs_per_s": num(row.get("items_per_second")),
                        "recycles": num(row.get("recycles")), "ms": GBench.ms(row)})
    return out


def recycle_section(recs, source, plot, chart):
    """A table of jobs/s against recycling off, and the chart when chart is True."""
    recs = [r for r in recs if r["jobs_per_s"] is not None]
    off = next((r for r in recs if r["mode"] == "off"), None)
    recs.sort(key=lambda r: (r["mode"] != "off", r["mode"], r["recycle_after"]))
    per_iteration = any(r["ms"] is not None for r in recs)
    # recycle_bench counts recycles per iteration (2^18 jobs), memory_story per run.
    header = ["mode", "recycle_after", "jobs/s",
              "recycles per iteration" if per_iteration else "recycles per run",
              "cost vs off (time per job)"]
    if per_iteration:  # (time with - time without) / recycles, from the same run
        header.append("cost of one recycle")
    rows = []
    for r in recs:
        row = [r["mode"], fmt_pow2(r["recycle_after"]) if r["recycle_after"] else "",
               fmt_rate(r["jobs_per_s"]), fmt_count(r["recycles"]),
               # extra time per job against "off", as memory_story's own table computes it
               f"{(off['jobs_per_s'] / r['jobs_per_s'] - 1) * 100:+.1f} %"
               if off and r["jobs_per_s"] and r is not off else ""]
        if per_iteration:
            cost = None
            if (off and off["ms"] is not None and r["ms"] is not None
                    and (r["recycles"] or 0) >= MIN_RECYCLES_FOR_COST):
                cost = (r["ms"] - off["ms"]) * 1e6 / r["recycles"]
            row.append(fmt_ns(cost) if cost is not None and r is not off else "")
        rows.append(row)
    md = [f"**Recycling cost** (`{source}`): throughput of trivial jobs with worker recycling off "
          "and in each mode; cost vs off = extra time per job, off / this - 1 (+10 % = each job "
          "takes 10 % longer; negative = noise or faster)"
          + (", cost of one recycle = (time with - time without) / recycles, shown from "
             f"{MIN_RECYCLES_FOR_COST} recycles per iteration up (fewer drown in the run-to-run "
             "noise)" if per_iteration else "") + ":", ""]
    md += table(header, rows)
    if chart:
        modes = [m for m in dict.fromkeys(r["mode"] for r in recs) if m != "off"]
        wanted = [n for n in (1 << 10, 1 << 13, 1 << 16)
                  if any(r["recycle_after"] == n for r in recs)]
        wanted = wanted or sorted({r["recycle_after"] for r in recs if r["mode"] != "off"})
        values = {(fmt_pow2(r["recycle_after"]), r["mode"]): r["jobs_per_s"]
                  for r in recs if r["mode"] != "off" and r["recycle_after"] in wanted}
        refs = [(off["jobs_per_s"], f"off: {fmt_rate(off['jobs_per_s'])}")] if off else []
        if not values:
            note(f"{source}: no figures with recycling on: recycle_cost.png skipped")
        else:
            groups = [fmt_pow2(n) for n in wanted]
            plot.figure("recycle_cost.png", [Bars(
                f"Price of worker recycling: trivial jobs/s, higher is better ({source})",
                "jobs/s", groups, modes, values, refs=refs,
                xlabel="recycle_after (a worker recycles after about this many jobs)")])
    return md


# ---- other Google Benchmark files ----------------------------------------------------------------

def generic_table(rows):
    """name, time and every counter: one row per benchmark."""
    used = counters_of(rows.values())
    lines = []
    for name, b in rows.items():
        t = num(b.get("real_time"))
        lines.append([name, f"{t:.4g} {b.get('time_unit', '')}" if t is not None else ""]
                     + [fmt_counter(c, num(b.get(c))) for c in used])
    return table(["benchmark", "time"] + used, lines)


def machine_lines(story, gbenches):
    """The machine and when each file was written, from the JSON contexts."""
    ctx = story.get("context") if isinstance(story, dict) and isinstance(story.get("context"),
                                                                          dict) else {}
    first = gbenches[0].context if gbenches else {}
    cpus = ctx.get("cpus", first.get("num_cpus"))
    model = ctx.get("cpu_model")
    host = ctx.get("host", first.get("host_name"))
    if not model and host and host == socket.gethostname():  # the benchmarks ran here
        try:
            with open("/proc/cpuinfo", encoding="utf-8") as f:
                model = next((line.split(":", 1)[1].strip() for line in f
                              if line.startswith("model name")), None)
        except OSError:
            pass
    parts = [f"{cpus} CPUs" if cpus is not None else "CPUs unknown",
             f'"{model}"' if model else "model not recorded"]
    if first.get("mhz_per_cpu"):
        parts.append(f"{first['mhz_per_cpu']} MHz")
    parts += [f"{k} {ctx[k]}" for k in ("kernel", "compiler") if ctx.get(k)]
    if host:
        parts.append(f"host {host}")
    runs = [f"{g.name} {g.context.get('date', '?')}"
            + (f" (load {g.context['load_avg'][0]:.2f})"
               if isinstance(g.context.get("load_avg"), list) and g.context["load_avg"]
               and num(g.context["load_avg"][0]) is not None else "")
            for g in gbenches]
    if ctx.get("date"):
        runs.append(f"memory_story.json {ctx['date']}")
    reps = max((g.repetitions for g in gbenches), default=1)
    lines = ["**Machine:** " + ", ".join(parts) + ".", ""]
    if runs:
        lines += ["**Runs:** " + "; ".join(runs) + f". Google Benchmark figures are medians of "
                  f"{reps} repetitions.", ""]
    return lines


# ---- main ----------------------------------------------------------------------------------------

def main(argv):
    if len(argv) not in (2, 3) or argv[1] in ("-h", "--help"):
        print(__doc__, file=sys.stderr)
        return 2
    results = argv[1]
    out_dir = argv[2] if len(argv) == 3 else os.path.join(REPO_DIR, "docs")
    if not os.path.isdir(results):
        note(f"{results} is not a directory (run the benchmarks first: "
             "cmake --workflow --preset bench)")
        return 1
    os.makedirs(out_dir, exist_ok=True)
    plot = Plotter(out_dir)

    def path(name):
        return os.path.join(results, name)

    # Google Benchmark files: the known ones first, then any other *.json with a benchmarks list.
    known = ["peers_bench.json", "recycle_bench.json", "pool_bench.json", "queue_bench.json"]
    others = sorted(n for n in os.listdir(results)
                    if n.endswith(".json") and n not in known and n != "memory_story.json")
    gbenches = {}
    for name in known + others:
        data = load_json(path(name))
        if isinstance(data, dict) and isinstance(data.get("benchmarks"), list):
            gbenches[name] = GBench(path(name), data)
        elif data is not None:
            note(f"{name} is not Google Benchmark output: skipped")
        elif name in ("pool_bench.json", "queue_bench.json"):
            note(f"{name} not found: its table is skipped")
    story = load_json(path("memory_story.json"))
    if story is not None and not isinstance(story, dict):
        note("memory_story.json is not a JSON object: skipped")
        story = None
    if not gbenches and story is None:
        note(f"no benchmark results in {results}")
        return 1

    md = ["# crew benchmarks", "",
          f"Generated by `bench/plot.py` from `{os.path.basename(os.path.normpath(results))}/`. "
          "Ratios are taken within one run; the machine is shared, so read the ratios rather "
          "than the absolute figures.", ""]
    md += machine_lines(story, list(gbenches.values()))
    if "peers_bench.json" in gbenches:
        md += peers_section(gbenches.pop("peers_bench.json"), plot)
    else:
        note("no usable peers_bench.json: throughput.png, latency.png, workloads.png skipped")
    if story is not None:
        md += memory_section(story, plot)
    else:
        note("no usable memory_story.json: burst_memory.png, stack_rss.png skipped")

    # Recycling: memory_story's figures draw the chart when present, else recycle_bench's.
    story_recs = recycle_from_story(story) if story is not None else []
    bench = gbenches.pop("recycle_bench.json", None)
    bench_recs = recycle_from_bench(bench) if bench else []
    if story_recs or bench_recs:
        md += ["## Recycling", ""]
        if story_recs:
            md += recycle_section(story_recs, "memory_story.json", plot, chart=True)
        if bench_recs:
            md += recycle_section(bench_recs, "recycle_bench.json", plot, chart=not story_recs)
        rest = ({n: r for n, r in bench.rows.items() if not n.startswith("BM_Recycle/")}
                if bench else {})
        if rest:
            md += ["Other `recycle_bench.json` rows:", ""] + generic_table(rest)
    else:
        note("no recycling figures (memory_story recycle_cost, recycle_bench.json): "
             "recycle_cost.png skipped")

    for name, gb in gbenches.items():
        if gb.rows:
            md += [f"## `{name}`", ""] + generic_table(gb.rows)

    if plot.made:
        md += ["## Charts", ""]
        md += [f"![{os.path.splitext(f)[0]}]({f})" for f in plot.made] + [""]

    text = "\n".join(md).rstrip() + "\n"
    with open(os.path.join(out_dir, "benchmarks.md"), "w", encoding="utf-8") as f:
        f.write(text)
    sys.stdout.write(text)
    plot.cleanup()

    note(f"wrote {len(plot.made)} chart(s) and benchmarks.md to {out_dir}")
    docs = os.path.join(REPO_DIR, "docs")
    if os.path.abspath(out_dir) != os.path.abspath(docs):
        pngs = os.path.join(out_dir, "*.png ") if plot.made else ""
        note(f"to update the README's figures: cp {pngs}{os.path.join(out_dir, 'benchmarks.md')} "
             f"{docs}/")
    return 1 if plot.failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
