"""Turn a pytest-benchmark JSON of bench/ into markdown tables.

    python -m pytest bench/ --benchmark-json=bench.json
    python bench/ratios.py bench.json [more.json ...] [--stat min]

Tables: (1) per config x pass x dtype x threads, the median ms of crnn, NumPy
and torch, crnn's speed-up over each, crnn's GF/s and its % of the GEMM
ceiling of the same dtype and thread count: of the one measured first in the
same group (M and L forward + backward; same statistic as crnn's, seconds
apart) and of the run's best (the fastest round of the "GEMM" groups, which
open and close the run); (2) the targets' groups measured with their
contenders interleaved round by round (test_interleaved; at two threads in
blocks of calls after a pause, TOKPROJ in blocks); (3) token ids vs
the dense one-hot input; (4) the GEMM ceiling; (5) the performance targets
and whether each is met, from the interleaved groups where the run has them.
Several JSON files are merged (a later file's result replaces an earlier
one's for the same benchmark), so a quick run and a large run can be combined;
with --runs each file is instead a whole run of its own, and the output is the
targets in every run side by side, with how often each was met:

    python bench/ratios.py --runs run1.json run2.json run3.json
Reads only extra_info (config, pass, dtype, threads, impl, flops) and
stats.median (or, with --stat min, stats.min: steadier on a loaded machine);
the run's best GEMM ceiling is always its fastest round (the best the BLAS
did). The targets use the ceiling of the same group where there is one.
Stdlib only.
"""
import argparse
import json
import statistics
import sys

LAYER_CONFIGS = ["LAT", "S", "M", "L", "BI2"]
TOKEN_CONFIGS = ["TOK", "TOKPROJ"]
PASSES = ["fwd", "fwd+bwd"]
DTYPES = ["float32", "float64"]

# (config, pass, measure, threshold, threads or None for every thread count)
#   measure: "torch"/"numpy" = crnn's speed-up over it (>= threshold)
#            "ceiling" = crnn's fraction of the GEMM ceiling (>= threshold)
#            "share" = tokens time / one-hot time (<= threshold)
TARGETS = [
    ("LAT", "fwd+bwd", "torch", 10.0, None),
    ("LAT", "fwd+bwd", "numpy", 3.0, None),
    ("LAT", "fwd", "torch", 6.0, None),
    ("S", "fwd+bwd", "torch", 2.0, None),
    ("S", "fwd+bwd", "numpy", 1.3, None),
    ("M", "fwd+bwd", "ceiling", 0.90, None),
    ("M", "fwd+bwd", "torch", 1.1, None),
    ("L", "fwd+bwd", "ceiling", 0.90, None),
    ("L", "fwd+bwd", "torch", 1.1, None),
    ("BI2", "fwd+bwd", "torch", 1.5, (2,)),
    ("TOKPROJ", "fwd", "share", 0.10, None),
]


def load(paths, stat="median"):
    """runs, interleaved, machine info: runs and interleaved map (config, pass,
    dtype, threads) to {impl: (seconds, flops)}; interleaved's from the
    rounds of test_interleaved (`stat` over each contender's rounds), with
    the round count under "rounds"."""
    runs, il, machine = {}, {}, {}
    for path in paths:
        with open(path) as f:
            doc = json.load(f)
        machine = doc.get("machine_info", machine)
        for b in doc.get("benchmarks", []):
            e = b.get("extra_info", {})
            if "impl" not in e:
                continue
            key = (e["config"], e["pass"], e["dtype"], int(e["threads"]))
            if e["impl"] == "interleaved":
                pick = min if stat == "min" else statistics.median
                il[key] = {impl: (pick(times), e["flops"][impl])
                           for impl, times in e["interleaved"].items()}
                il[key]["rounds"] = min(len(t) for t in e["interleaved"].values())
                continue
            # the run's ceiling is the best the BLAS did: its fastest round,
            # whatever `stat`, over every measurement of it (the run's first
            # and last); a group's own ceiling takes `stat`, as crnn does
            best = e["impl"] == "gemm" and e["config"] == "GEMM"
            seconds = b["stats"]["min" if best else stat]
            if best and "gemm" in runs.get(key, {}):
                seconds = min(seconds, runs[key]["gemm"][0])
            runs.setdefault(key, {})[e["impl"]] = (seconds, e["flops"])
    return runs, il, machine



def ceiling_gfs(runs, dtype, threads):
    r = runs.get(("GEMM", "gemm", dtype, threads), {}).get("gemm")
    return None if r is None else r[1] / r[0] / 1e9


def speedup(runs, key, other):
    r = runs.get(key, {})
    if "crnn" not in r or other not in r:
        return None
    return r[other][0] / r["crnn"][0]


def fraction_of_ceiling(runs, key, best=False):
    """crnn's GF/s over the ceiling's: the group's own one (measured next to
    it) when it has one and best is False, else the run's best."""
    group = runs.get(key, {})
    r = group.get("crnn")
    own = group.get("gemm")
    c = own[1] / own[0] / 1e9 if own and not best else ceiling_gfs(runs, key[2], key[3])
    return None if r is None or c is None else r[1] / r[0] / 1e9 / c


def token_share(runs, key):
    r = runs.get(key, {})
    if "crnn-tokens" not in r or "crnn-onehot" not in r:
        return None
    return r["crnn-tokens"][0] / r["crnn-onehot"][0]


def ms(r, impl):
    return f"{r[impl][0] * 1e3:.3f}" if impl in r else "—"


def x(v):
    return "—" if v is None else f"{v:.2f}×"


def threads_seen(runs):
    return sorted({k[3] for k in runs})


def table_layers(runs):
    lines = [("| config | pass | dtype | thr | crnn ms | NumPy ms | torch ms | vs NumPy "
              "| vs torch | crnn GF/s | GEMM GF/s, same group | % of it | % of run's best GEMM |"),
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for key, r in measured(runs, LAYER_CONFIGS):
        cfg, pas, dt, n = key
        gfs, own = gfs_text(r, "crnn"), gfs_text(r, "gemm")
        pct = [pct_text(fraction_of_ceiling(runs, key)) if "gemm" in r else "—",
               pct_text(fraction_of_ceiling(runs, key, best=True))]
        lines.append(f"| {cfg} | {pas} | {dt} | {n} | {ms(r, 'crnn')} "
                     f"| {ms(r, 'numpy')} | {ms(r, 'torch')} "
                     f"| {x(speedup(runs, key, 'numpy'))} "
                     f"| {x(speedup(runs, key, 'torch'))} | {gfs} | {own} | {pct[0]} | {pct[1]} |")
    return lines


def pct_text(frac):
    return "—" if frac is None else f"{100 * frac:.0f} %"


def gfs_text(r, impl):
    """impl's GF/s in group r, or a dash."""
    return f"{r[impl][1] / r[impl][0] / 1e9:.1f}" if impl in r else "—"


def measured(runs, configs):
    """(key, runs[key]) for each measured (config, pass, dtype, threads), in table order."""
    for cfg in configs:
        for dt in DTYPES:
            for n in threads_seen(runs):
                for pas in PASSES:
                    key = (cfg, pas, dt, n)
                    if runs.get(key):
                        yield key, runs[key]


def table_tokens(runs):
    lines = ["| config | pass | dtype | thr | tokens ms | one-hot ms | tokens / one-hot |",
             "|---|---|---|---|---|---|---|"]
    for key, r in measured(runs, TOKEN_CONFIGS):
        cfg, pas, dt, n = key
        share = token_share(runs, key)
        lines.append(f"| {cfg} | {pas} | {dt} | {n} | {ms(r, 'crnn-tokens')} "
                     f"| {ms(r, 'crnn-onehot')} | "
                     f"{pct_text(share)} |")
    return lines


def table_ceiling(runs):
    lines = ["| GEMM | dtype | thr | ms | GF/s |", "|---|---|---|---|---|"]
    for dt in DTYPES:
        for n in threads_seen(runs):
            r = runs.get(("GEMM", "gemm", dt, n), {}).get("gemm")
            if r:
                side = round((r[1] / 2) ** (1 / 3))      # flops = 2 n^3
                gfs = r[1] / r[0] / 1e9
                lines.append(f"| {side}² | {dt} | {n} | {r[0] * 1e3:.1f} | {gfs:.1f} |")
    return lines


def evaluate(runs, target, dt, n):
    """(measured text, met: True/False/None for not measured)."""
    cfg, pas, what, thr, _ = target
    key = (cfg, pas, dt, n)
    # one decimal, so that a miss never reads as the threshold itself
    if what == "share":
        v = token_share(runs, key)
        return ("—", None) if v is None else (f"{100 * v:.1f} %", v <= thr)
    if what == "ceiling":
        v = fraction_of_ceiling(runs, key)
        return ("—", None) if v is None else (f"{100 * v:.1f} %", v >= thr)
    v = speedup(runs, key, what)
    return ("—", None) if v is None else (f"{v:.2f}×", v >= thr)


def describe(target):
    cfg, pas, what, thr, _ = target
    if what == "share":
        pct = f"{100 * thr:.0f} %"
        return f"{cfg} {pas}: token projection ≤ {pct} of one-hot", f"≤ {pct}"
    if what == "ceiling":
        return f"{cfg} {pas}: ≥ {100 * thr:.0f} % of GEMM ceiling", f"≥ {100 * thr:.0f} %"
    name = {"torch": "torch", "numpy": "NumPy"}[what]
    return f"{cfg} {pas}: ≥ {thr:g}× {name}", f"≥ {thr:g}×"


def table_interleaved(il):
    lines = ["| config | pass | dtype | thr | rounds | crnn ms (tokens) | NumPy ms | torch ms "
             "| one-hot ms | vs NumPy | vs torch | GEMM GF/s | crnn % of it | tokens / one-hot |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for key, r in measured(il, LAYER_CONFIGS + TOKEN_CONFIGS):
        cfg, pas, dt, n = key
        own = gfs_text(r, "gemm")
        pct = pct_text(fraction_of_ceiling(il, key)) if "gemm" in r else "—"
        crnn_ms = ms(r, "crnn") if "crnn" in r else ms(r, "crnn-tokens")
        lines.append(f"| {cfg} | {pas} | {dt} | {n} | {r['rounds']} | {crnn_ms} "
                     f"| {ms(r, 'numpy')} | {ms(r, 'torch')} | {ms(r, 'crnn-onehot')} "
                     f"| {x(speedup(il, key, 'numpy'))} | {x(speedup(il, key, 'torch'))} "
                     f"| {own} | {pct} | {pct_text(token_share(il, key))} |")
    return lines


def target_rows(runs, il):
    """(target, dtype, threads) for every target at every thread count the run has."""
    for target in TARGETS:
        for dt in DTYPES:
            for n in (target[4] or threads_seen({**runs, **il})):
                yield target, dt, n


def evaluate_in(runs, il, target, dt, n):
    """(measured text, met, "interleaved" | "groups"): from the interleaved
    group when the run has it."""
    key = (target[0], target[1], dt, n)
    src, name = (il, "interleaved") if key in il else (runs, "groups")
    return evaluate(src, target, dt, n) + (name,)


def table_targets(runs, il):
    lines = ["| target | dtype | thr | measured | needed | met | from |",
             "|---|---|---|---|---|---|---|"]
    counts = {True: 0, False: 0, None: 0}
    for target, dt, n in target_rows(runs, il):
        text, needed = describe(target)
        measured, met, name = evaluate_in(runs, il, target, dt, n)
        counts[met] += 1
        mark = {True: "yes", False: "**no**", None: "not measured"}[met]
        lines.append(f"| {text} | {dt} | {n} | {measured} | {needed} | {mark} | {name} |")
    lines.append("")
    lines.append(f"met {counts[True]}, missed {counts[False]}, not measured {counts[None]}")
    return lines


def table_targets_runs(loaded):
    """The targets in several whole runs side by side: one column per run
    (a miss in bold, a value from the back-to-back groups marked "g"), and
    in how many of the runs that measured it each target was met."""
    lines = ["| target | dtype | thr | needed | " + " | ".join(
                 f"run {i + 1}" for i in range(len(loaded))) + " | met in |",
             "|---|---|---|---|" + "---|" * len(loaded) + "---|"]
    rows = {}
    for runs, il in loaded:
        for target, dt, n in target_rows(runs, il):
            rows.setdefault((target, dt, n), None)
    met_all = 0
    for target, dt, n in rows:
        text, needed = describe(target)
        cells, met_n, seen = [], 0, 0
        for runs, il in loaded:
            measured, met, name = evaluate_in(runs, il, target, dt, n)
            seen += met is not None
            met_n += bool(met)
            cell = measured if met is not False else f"**{measured}**"
            cells.append(cell + (" g" if name == "groups" and met is not None else ""))
        met_all += seen > 0 and met_n == seen
        lines.append(f"| {text} | {dt} | {n} | {needed} | " + " | ".join(cells)
                     + f" | {met_n} of {seen} |")
    lines.append("")
    lines.append(f"met in every run that measured it: {met_all} of {len(rows)}")
    return lines


def report(paths, stat="median"):
    runs, il, machine = load(paths, stat)
    if not runs and not il:
        raise SystemExit(f"no crnn benchmarks (extra_info with 'impl') in {', '.join(paths)}")
    cpu = machine.get("cpu", {}).get("brand_raw", "?")
    out = [(f"machine: {cpu}; torch {machine.get('torch') or 'absent'}; "
            f"load average at start {machine.get('loadavg_at_start', '?')}"), "",
           f"## crnn vs NumPy vs torch ({stat} ms; speed-up = other / crnn)", ""]
    out += table_layers(runs)
    if il:
        out += ["", f"## the targets' groups, contenders interleaved round by round ({stat} "
                    "ms over the calls; two threads: blocks of calls, each after a pause; "
                    "TOKPROJ: blocks of calls)", ""]
        out += table_interleaved(il)
    out += ["", "## token ids vs dense one-hot input (crnn.Layer both)", ""]
    out += table_tokens(runs)
    out += ["", "## GEMM ceiling (SciPy BLAS, fastest round)", ""]
    out += table_ceiling(runs)
    out += ["", "## targets", ""]
    out += table_targets(runs, il)
    return "\n".join(out)


def report_runs(paths, stat="median"):
    """Only the targets, each file a whole run of its own (--runs)."""
    loaded = []
    for path in paths:
        runs, il, _ = load([path], stat)
        if not runs and not il:
            raise SystemExit(f"no crnn benchmarks (extra_info with 'impl') in {path}")
        loaded.append((runs, il))
    out = [f"## targets in {len(paths)} runs ({stat}; " + ", ".join(
               f"run {i + 1}: {p}" for i, p in enumerate(paths)) + ")", ""]
    return "\n".join(out + table_targets_runs(loaded))


def main(argv=None):
    ap = argparse.ArgumentParser(description="Markdown tables from bench/'s pytest-benchmark JSON.")
    ap.add_argument("json", nargs="+", help="files written by --benchmark-json")
    ap.add_argument("--stat", choices=["median", "min"], default="median")
    ap.add_argument("--runs", action="store_true",
                    help="each file is a whole run: the targets in each, side by side")
    args = ap.parse_args(argv)
    print(report_runs(args.json, args.stat) if args.runs else report(args.json, args.stat))
    return 0


if __name__ == "__main__":
    sys.exit(main())
