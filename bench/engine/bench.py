#!/usr/bin/env python3
"""Engine overhead benchmark: a generated pipeline of N `cmd` stages over
N*10 source files. Reports first-run overhead per stage, no-op `dvx run`
wall time, and planning time (`dvx status` on an up-to-date workspace,
and `dvx dag`, which only parses and builds the graph).

Side by side with the no-op run, the floor it is measured against: a
Python process that stats every source file and every out of the same
tree (interpreter start included), timed the same way in the same run.
The target (issue 16, section 5) is no-op <= 1.0x that walk, and linear
growth from 1,000 stages / 10,000 files to 10,000 / 100,000
(`--stages 10000`).

The no-op and the walk (and, with `--baseline OTHER_DVX`, another dvx's
no-op on the same tree) are timed in interleaved rounds, so a change in the
machine's load hits all of them alike; the load average is printed with them.
`--workdir DIR` keeps the generated tree in DIR (made and run once if it has
no dvx.yaml) so later invocations skip the first run.

Usage: bench.py [--stages 1000] [--files-per-stage 10] [--dvx target/release/dvx]
                [--baseline OTHER_DVX] [--rounds 7] [--workdir DIR]
"""
import argparse
import os
import resource
import shutil
import statistics
import subprocess
import tempfile
import time


# CPU seconds (user + sys) of each command timed, by its first word and
# binary: on a loaded machine the steadier figure.
CPU = {}


def timed(cmd, cwd, repeat=1):
    times = []
    for _ in range(repeat):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        t = time.perf_counter()
        r = subprocess.run(cmd, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        times.append(time.perf_counter() - t)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
        CPU.setdefault(tuple(cmd[:2]), []).append(cpu)
        if r.returncode != 0:
            raise SystemExit(f"{' '.join(cmd)} failed: {r.stderr.decode()}")
    return times


# Stats every source and out of the tree, as a no-op must at least do.
WALK = """
import os, sys
n = 0
for top in ("src", "out"):
    for root, dirs, files in os.walk(top):
        for f in files:
            os.stat(os.path.join(root, f))
            n += 1
print(n)
"""


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--stages", type=int, default=1000)
    ap.add_argument("--files-per-stage", type=int, default=10)
    ap.add_argument("--dvx", default=os.path.join(os.path.dirname(__file__), "../../target/release/dvx"))
    ap.add_argument("--baseline", help="another dvx binary whose no-op is timed in the same rounds")
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--workdir", help="keep the generated tree here (reused when it holds a dvx.yaml)")
    args = ap.parse_args()
    dvx = os.path.abspath(args.dvx)
    work = args.workdir or tempfile.mkdtemp(prefix="dvx-bench-")
    reuse = args.workdir and os.path.exists(os.path.join(work, "dvx.yaml"))
    try:
        if not reuse:
            first, sh_cost = generate_and_run(work, args, dvx)
        rounds = {"noop": [], "walk": [], "baseline": []}
        for _ in range(args.rounds):
            rounds["noop"] += timed([dvx, "run"], work)
            rounds["walk"] += timed(["python3", "-c", WALK], work)
            if args.baseline:
                rounds["baseline"] += timed([os.path.abspath(args.baseline), "run"], work)
        noop, walk = rounds["noop"], rounds["walk"]
        status = timed([dvx, "status"], work, repeat=args.rounds)
        dag = timed([dvx, "dag"], work, repeat=args.rounds)
        # The engine's own phases, from its debug log (median of the rounds of `dvx status`).
        phases = {}
        for _ in range(args.rounds):
            r = subprocess.run([dvx, "status"], cwd=work, capture_output=True, text=True,
                               env=dict(os.environ, RUST_LOG="dvx=debug,dvx_engine=debug", NO_COLOR="1"))
            marks = {}
            for line in r.stderr.splitlines():
                if "elapsed=" in line:
                    what = line.split("elapsed=")[0].split("DEBUG")[-1].strip()
                    val = line.split("elapsed=")[1].split()[0]
                    ms = float(val[:-2]) if val.endswith("ms") else float(val[:-2]) / 1000 if val.endswith("µs") else float(val[:-1]) * 1000
                    marks[what] = ms
            phases.setdefault("parse", []).append(marks.get("pipeline loaded", 0))
            phases.setdefault("graph", []).append(marks.get("graph built", 0))
            phases.setdefault("plan", []).append(marks.get("stages done", 0) - marks.get("state loaded", 0))
        n = args.stages
        med = lambda xs: statistics.median(xs) * 1000
        print(f"| measure ({n} stages, {n * args.files_per_stage} source files) | value |")
        print("|---|---|")
        if not reuse:
            print(f"| first run, wall | {first:.2f} s |")
            print(f"| first run, per stage (incl. sh) | {first / n * 1000:.2f} ms |")
            print(f"| spawning `sh -c true` alone, per stage (sequential) | {sh_cost / n * 1000:.2f} ms |")
        print(f"| load average (1 min) after the rounds | {os.getloadavg()[0]:.1f} |")
        print(f"| no-op `dvx run`, median of {args.rounds} | {med(noop):.1f} ms |")
        print(f"| Python stat walk of every source and out, median of {args.rounds} | {med(walk):.1f} ms |")
        print(f"| no-op / walk | {statistics.median(noop) / statistics.median(walk):.2f}x |")
        cpu_noop, cpu_walk = CPU[(dvx, "run")], CPU[("python3", "-c")]
        print(f"| CPU (user + sys) of the no-op / of the walk, medians | {med(cpu_noop):.0f} ms / {med(cpu_walk):.0f} ms |")
        if args.baseline:
            base = rounds["baseline"]
            print(f"| baseline no-op ({args.baseline}), median of {args.rounds} | {med(base):.1f} ms |")
            print(f"| baseline no-op / walk | {statistics.median(base) / statistics.median(walk):.2f}x |")
            print(f"| CPU (user + sys) of the baseline no-op, median | {med(CPU[(os.path.abspath(args.baseline), 'run')]):.0f} ms |")
        print(f"| `dvx status` (full plan), median of {args.rounds} | {med(status):.1f} ms |")
        print(f"| `dvx dag` (parse + graph), median of {args.rounds} | {med(dag):.1f} ms |")
        print(f"| in-engine: YAML parse + resolve | {statistics.median(phases['parse']):.1f} ms |")
        print(f"| in-engine: graph build + source check | {statistics.median(phases['graph']):.1f} ms |")
        print(f"| in-engine: plan (keys, stat checks, why-stale) of all stages | {statistics.median(phases['plan']):.1f} ms |")
    finally:
        if not args.workdir:
            shutil.rmtree(work, ignore_errors=True)


def generate_and_run(work, args, dvx):
    """Write the pipeline and its sources, run it once; the first run's wall
    time and that of spawning as many shells alone."""
    lines = ["name: bench", "stages:"]
    for i in range(args.stages):
        d = os.path.join(work, "src", f"d{i}")
        os.makedirs(d, exist_ok=True)
        for j in range(args.files_per_stage):
            with open(os.path.join(d, f"f{j}.txt"), "w") as f:
                f.write(f"stage {i} file {j}\n" * 20)
        deps = [f"src/d{i}"]
        if i % 10:
            deps.append(f"out/o{i-1}.txt")  # chains of 10 stages
        lines += [
            f"  s{i}:",
            f"    deps: [{', '.join(deps)}]",
            f"    outs: [out/o{i}.txt]",
            f"    cmd: cat {' '.join(deps[::-1])}/* > out/o{i}.txt 2>/dev/null || cat src/d{i}/* > out/o{i}.txt",
        ]
    with open(os.path.join(work, "dvx.yaml"), "w") as f:
        f.write("\n".join(lines) + "\n")
    # Let the files age past the stat cache's racy window.
    time.sleep(0.3)
    first = timed([dvx, "run", "-j", str(os.cpu_count())], work)[0]
    # Raw cost of the same shell commands without dvx, to isolate dvx's overhead.
    t = time.perf_counter()
    for i in range(args.stages):
        subprocess.run(["sh", "-c", "true"], cwd=work)
    sh_cost = time.perf_counter() - t
    return first, sh_cost


if __name__ == "__main__":
    main()
