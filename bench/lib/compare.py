#!/usr/bin/env python3
"""roster beside Knot, NSD and CoreDNS on one core, every figure also as a ratio to roster's.

Run through bench/compare.sh (see bench/README.md, "Side by side"). For each dataset (small: 10k pod
records, large: 100k) and each server, one after the other, the server pinned to one core:

  start        seconds from exec to the first correct answer for the dataset's last pod record
  qps          dnsperf max qps (-c 4 -q 200), per load (mixed, nx = NXDOMAIN only)
  cpu us/q     server CPU (utime + stime from /proc) per answered query during that run
  p99 ms       dnsperf -Q RATE -v, every answered query's latency, at a fixed rate
  RSS MiB      after the mixed max-qps load; B/RR = (RSS - RSS on an empty zone after the same
               kind of load) / resource records in the dataset
  instr/q      user-space instructions per query under valgrind (cachegrind's count, the same
               as callgrind's): three runs of the server
               (n mixed + n nx; N mixed + n nx; n mixed + N nx queries at a fixed low rate), each
               whole run counted (start, load, stop); differences divided by the answered-query
               difference cancel start-up and loading.

Everything the servers answer comes from the same generated zone (Kubernetes objects for roster,
the identical zone files for the others). Loopback only; every load is bounded; servers are
stopped by PID.
"""
import argparse
import datetime as dt
import glob
import json
import os
import re
import signal
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench as B  # noqa: E402
import gen_dataset  # noqa: E402
import peers as P  # noqa: E402

SERVERS = ("roster", "knot", "nsd", "coredns")
LOADS = ("mixed", "nx")


def log(msg):
    print(time.strftime("%H:%M:%S ") + msg, flush=True)


def dataset(workdir, scale):
    s, p, c = gen_dataset.PRESETS[scale]
    d = os.path.join(workdir, "data", f"s{s}-p{p}-c{c}")
    if not os.path.exists(os.path.join(d, "meta.json")) or not os.path.exists(
            os.path.join(d, "queries-dual.txt")):
        log(f"generating dataset in {d}")
        gen_dataset.generate(d, s, p, c, seed=1, nqueries=200000)
    meta = json.load(open(os.path.join(d, "meta.json")))
    checks = json.load(open(os.path.join(d, "checks.json")))
    return {"dir": d, "meta": meta, "checks": checks, "scale": scale,
            "files": {"mixed": os.path.join(d, "queries.txt"),
                      "nx": os.path.join(d, "queries-nx.txt")}}


def measure(peer, args, ds, empty_ds):
    """Start, answer checks, max qps + CPU and fixed-rate latency per load, memory."""
    args.queries_file = ds["files"]["mixed"]
    res = {"name": peer.name, "version": peer.version()}
    base = B.measure_baseline(peer, args, empty_ds, log)
    wd = os.path.join(args.workdir, "servers", peer.name)
    proc, logf, started, err, argv = B.launch(peer, args, ds, wd, log)
    res["cmd"] = " ".join(argv)
    try:
        if err:
            res["error"] = err
            return res
        res["start_s"] = started
        time.sleep(0.3)
        B.enforce_affinity(proc.pid, args.server_core)
        failed = []
        for chk in ds["checks"]:
            ok, why = B.check_answer(peer.port, chk, 1232)
            if not ok:
                failed.append(f"{chk['what']}: {why}")
        res["checks_failed"] = failed
        if failed:
            log(f"[{peer.name}] answer checks FAILED: {'; '.join(failed)}")
        B.run_dnsperf(args, peer.port, ds["files"]["mixed"], B.load_opts(args), args.warmup)
        probe = ds["meta"]["ready_probe"]
        for load in LOADS:
            tp = B.measure_throughput(args, peer, proc, ds["files"][load], args.duration, probe)
            B.enforce_affinity(proc.pid, args.server_core)
            lr = B.measure_latency(args, peer, ds["files"][load], probe)
            cpu_us = (tp["server_cpu_s"] * 1e6 / tp["completed"]) if tp.get("completed") else None
            res[load] = {"qps": tp["qps_best"], "cpu_us_per_q": cpu_us, "p99_ms": lr["p99_ms"],
                         "p50_ms": lr["p50_ms"], "lost_pct": tp.get("lost_pct"),
                         "latency_lost_pct": lr.get("lost_pct"),
                         "server_cpu_util": tp["server_cpu_util"]}
            if load == "mixed":
                res["rss_kb"] = tp["mem_after"]["rss_kb"]
                res["pss_kb"] = tp["mem_after"]["pss_kb"]
            log(f"[{peer.name}] {load}: {tp['qps_best'] or 0:.0f} qps, "
                f"{cpu_us or 0:.2f} us CPU/query, p99 {lr['p99_ms'] or 0:.3f} ms @ {args.rate} qps")
        empty = (base.get("mem_after_load") or {}).get("rss_kb")
        if empty is not None and "rss_kb" in res:
            res["rss_empty_kb"] = empty
            res["b_per_rr"] = (res["rss_kb"] - empty) * 1024 / ds["meta"]["rr_total"]
        return res
    finally:
        if proc is not None:
            B.stop_server(proc)
            logf.close()


class Counted(P.Peer):
    """`peer` run under valgrind's cachegrind counting instructions only (the same count as
    callgrind's Ir; callgrind 3.19 aborts on Go's signal handling), children traced (NSD forks its
    server), one file per process."""

    def __init__(self, peer):
        # No asynchronous preemption signals (SIGURG) for Go under valgrind: fewer signals to emulate.
        super().__init__(peer.name, peer.port, peer.binary, None,
                         env=dict(peer.env, GODEBUG="asyncpreemptoff=1"))
        self.inner = peer

    def prepare(self, workdir, ds):
        self.inner.prepare(workdir, ds)

    def argv(self, workdir, ds):
        return ["valgrind", "--tool=cachegrind", "--cache-sim=no", "--trace-children=yes",
                f"--cachegrind-out-file={workdir}/cachegrind.%p"] + self.inner.argv(workdir, ds)


def stop_tree(proc, grace=180.0):
    """SIGTERM to the server we started, then wait for its whole tree: valgrind writes its
    counts when each traced process exits, which takes a while."""
    tree = B.proc_tree(proc.pid)
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGTERM)
    deadline = time.time() + grace
    try:
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=5)
    for p in tree[1:]:
        while time.time() < deadline and os.path.exists(f"/proc/{p}"):
            time.sleep(0.1)


def total_instructions(wd):
    total = 0
    for path in glob.glob(os.path.join(wd, "cachegrind.*")):
        with open(path, errors="replace") as f:
            for line in f:
                m = re.match(r"(?:summary|totals):\s+(\d+)", line)
                if m:
                    total += int(m.group(1))
                    break
    return total


def counted_run(peer, args, ds, counts, tag):
    """One whole run under valgrind answering counts[load] queries of each load at a fixed rate.
    Returns (instructions, {load: answered})."""
    wd = os.path.join(args.workdir, "instructions", f"{peer.name}-{tag}")
    # Not pinned: valgrind runs one thread at a time anyway, and the count does not depend on it.
    unpinned = argparse.Namespace(**dict(vars(args), server_core=f"{args.server_core},{args.client_core}"))
    proc, logf, _started, err, _argv = B.launch(Counted(peer), unpinned, ds, wd, log, f" valgrind {tag}")
    answered = {}
    try:
        if err:
            raise RuntimeError(err)
        for load in LOADS:
            qf = os.path.join(wd, f"q-{load}.txt")
            with open(ds["files"][load]) as src, open(qf, "w") as dst:
                for i, line in enumerate(src):
                    if i >= counts[load]:
                        break
                    dst.write(line)
            cmd = ["taskset", "-c", str(args.client_core), "dnsperf", "-s", "127.0.0.1", "-p",
                   str(peer.port), "-d", qf, "-n", "1", "-Q", str(args.instr_rate), "-c", "1",
                   "-q", "50", "-t", "5", "-e",
                   "-l", str(int(counts[load] / args.instr_rate * 3) + 30)]
            out = subprocess.run(cmd, capture_output=True, text=True,
                                 timeout=counts[load] / args.instr_rate + 120).stdout
            answered[load] = B.parse_dnsperf(out)["completed"] or 0
    finally:
        if proc is not None:
            stop_tree(proc)
            logf.close()
    return total_instructions(wd), answered


def instructions(peer, args, ds):
    n, big = args.instr_small, args.instr_large
    base_i, base_q = counted_run(peer, args, ds, {"mixed": n, "nx": n}, "base")
    out = {}
    for load in LOADS:
        counts = {x: (big if x == load else n) for x in LOADS}
        more_i, more_q = counted_run(peer, args, ds, counts, load)
        dq = more_q[load] - base_q[load]
        out[load] = {"instr_per_q": (more_i - base_i) / dq if dq > 0 else None,
                     "runs": [[base_i, base_q], [more_i, more_q]],
                     "lost": {"base": n - base_q[load], "more": big - more_q[load]}}
        log(f"[{peer.name}] {load}: {out[load]['instr_per_q'] or 0:,.0f} instructions/query "
            f"(answered {base_q[load]} and {more_q[load]})")
    return out


def fmt(v, spec):
    return format(v, spec) if isinstance(v, (int, float)) else "-"


def ratio(a, b):
    return a / b if isinstance(a, (int, float)) and isinstance(b, (int, float)) and b else None


COLUMNS = [  # header, getter, format
    ("start s", lambda r: r.get("start_s"), ".3f"),
    ("mixed qps", lambda r: r.get("mixed", {}).get("qps"), ",.0f"),
    ("mixed CPU µs/q", lambda r: r.get("mixed", {}).get("cpu_us_per_q"), ".2f"),
    ("mixed instr/q", lambda r: r.get("instr", {}).get("mixed", {}).get("instr_per_q"), ",.0f"),
    ("mixed p99 ms", lambda r: r.get("mixed", {}).get("p99_ms"), ".3f"),
    ("nx qps", lambda r: r.get("nx", {}).get("qps"), ",.0f"),
    ("nx CPU µs/q", lambda r: r.get("nx", {}).get("cpu_us_per_q"), ".2f"),
    ("nx instr/q", lambda r: r.get("instr", {}).get("nx", {}).get("instr_per_q"), ",.0f"),
    ("nx p99 ms", lambda r: r.get("nx", {}).get("p99_ms"), ".3f"),
    ("RSS MiB", lambda r: r["rss_kb"] / 1024 if "rss_kb" in r else None, ".1f"),
    ("B/RR", lambda r: r.get("b_per_rr"), ",.0f"),
]


def table(rows, ds):
    ref = next((r for r in rows if r["name"] == "roster"), None)
    meta = ds["meta"]
    lines = [f"#### {ds['scale']}: {meta['headless_services'] * meta['pods_per_service']:,} pod records, "
             f"{meta['rr_total']:,} RRs", "",
             "| server | " + " | ".join(c[0] for c in COLUMNS) + " |",
             "|---|" + "---:|" * len(COLUMNS)]
    for r in rows:
        lines.append(f"| {r['name']} | " + " | ".join(fmt(g(r), f) for _, g, f in COLUMNS) + " |")
    if ref:
        lines += ["", "Each peer's figure / roster's (qps: above 1 = the peer is faster; the others: "
                  "above 1 = the peer costs more):", "",
                  "| peer | " + " | ".join(c[0] for c in COLUMNS) + " |",
                  "|---|" + "---:|" * len(COLUMNS)]
        for r in rows:
            if r is ref:
                continue
            lines.append(f"| {r['name']} | " + " | ".join(
                fmt(ratio(g(r), g(ref)), ".2f") + ("×" if ratio(g(r), g(ref)) else "")
                for _, g, _f in COLUMNS) + " |")
    errs = [f"- {r['name']}: {r['error']}" for r in rows if r.get("error")]
    errs += [f"- {r['name']}: answer checks failed: {'; '.join(r['checks_failed'])}"
             for r in rows if r.get("checks_failed")]
    lost = [f"{r['name']} {load} {v['lost']}" for r in rows
            for load, v in r.get("instr", {}).items() if any(v["lost"].values())]
    if lost:
        errs.append("- queries lost under valgrind (not in the denominators): " + ", ".join(lost))
    return "\n".join(lines + ([""] + errs if errs else [])) + "\n"


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true",
                    help="3 s loads, 1 s warm-ups, instructions on the small dataset only (< 10 min)")
    ap.add_argument("--scales", default="small,large")
    ap.add_argument("--only", default=",".join(SERVERS))
    ap.add_argument("--duration", type=int, default=None, help="max-qps seconds (10; --quick 3)")
    ap.add_argument("--latency-duration", type=int, default=None, help="p99 run seconds (5; --quick 3)")
    ap.add_argument("--rate", type=int, default=10000, help="fixed rate of the p99 runs")
    ap.add_argument("--instr-rate", type=int, default=2000, help="query rate under valgrind")
    ap.add_argument("--instr-small", type=int, default=None, help="4000 (--quick 2000)")
    ap.add_argument("--instr-large", type=int, default=None, help="20000 (--quick 10000)")
    ap.add_argument("--instr-scales", default=None,
                    help="datasets measured under valgrind (default: all; --quick: small)")
    ap.add_argument("--no-instr", action="store_true")
    ap.add_argument("--instr-only", action="store_true",
                    help="only instructions per query (e.g. a roster build before and after a change)")
    ap.add_argument("--server-core", type=int, default=1)
    ap.add_argument("--client-core", type=int, default=0)
    ap.add_argument("--workdir", default=os.environ.get("BENCH_WORKDIR", "/tmp/roster-bench"))
    ap.add_argument("--results", default=os.path.join(
        os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "results"))
    ap.add_argument("--no-save", action="store_true")
    args = ap.parse_args()
    # What bench.py's measuring functions read.
    args.clients, args.outstanding, args.timeout, args.no_edns = 4, 200, 2, False
    args.warmup, args.baseline_duration, args.per_class = 2, 3, 3
    args.startup_timeout = 900
    quick = args.quick
    if quick:
        args.warmup, args.baseline_duration = 1, 1
    for name, full, short in (("duration", 10, 3), ("latency_duration", 5, 3),
                              ("instr_small", 4000, 2000), ("instr_large", 20000, 10000)):
        if getattr(args, name) is None:
            setattr(args, name, short if quick else full)
    instr_scales = (args.instr_scales or ("small" if args.quick else args.scales)).split(",")

    def _stop(signum, _frame):
        # Once: a second signal (Ctrl-C beside bench/issue14.sh's SIGTERM) would cut short the stopping
        # of the current server.
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        raise SystemExit(f"interrupted by signal {signum}")

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)

    by_name = {p.name: p for p in P.all_peers()}
    chosen = [by_name[n] for n in args.only.split(",") if n]
    missing = [f"{p.name}: {why}" for p in chosen for ok, why in [p.available()] if not ok]
    if missing:
        sys.exit("missing servers: " + "; ".join(missing))
    empty_dir = os.path.join(args.workdir, "data", "empty")
    empty_ds = {"dir": empty_dir, "meta": gen_dataset.generate_empty(empty_dir), "checks": []}
    t0 = time.monotonic()
    host = B.host_info()
    repo = B.git_info(P.REPO_ROOT)
    out = {"started": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
           "argv": sys.argv[1:], "host": host, "repo": repo, "scales": {}}
    text = [f"{out['started']}  bench/compare.sh {' '.join(sys.argv[1:])}",
            f"roster {repo['commit']} ({repo['dirty_files']} files changed), "
            f"{host.get('cpu', '?')} x{host.get('nproc')}, load average at start "
            f"{' '.join(host.get('loadavg_start', []))}; servers on core {args.server_core}, "
            f"dnsperf on core {args.client_core}",
            "versions: " + ", ".join(f"{p.name} {p.version()}" for p in chosen), ""]
    for scale in args.scales.split(","):
        ds = dataset(args.workdir, scale)
        rows = []
        for peer in chosen:
            r = {"name": peer.name} if args.instr_only else measure(peer, args, ds, empty_ds)
            if scale in instr_scales and not args.no_instr and "error" not in r:
                try:
                    r["instr"] = instructions(peer, args, ds)
                except Exception as e:  # noqa: BLE001
                    r["error"] = f"instructions: {e}"
            rows.append(r)
        out["scales"][scale] = rows
        text.append(table(rows, ds))
        print(text[-1], flush=True)
    wall = time.monotonic() - t0
    text.insert(3, f"wall {wall:.0f} s; max qps -c 4 -q 200 for {args.duration} s; p99 at "
                f"{args.rate} qps for {args.latency_duration} s; valgrind at {args.instr_rate} qps, "
                f"{args.instr_small} and {args.instr_large} queries")
    report = "\n".join(text)
    if not args.no_save:
        os.makedirs(args.results, exist_ok=True)
        with open(os.path.join(args.results, "compare-latest.txt"), "w") as f:
            f.write(report)
        path = os.path.join(args.results, f"compare-{dt.date.today().isoformat()}.json")
        runs = json.load(open(path)) if os.path.exists(path) else []
        runs.append(out)
        with open(path, "w") as f:
            json.dump(runs, f, indent=1)
        log(f"written: {os.path.join(args.results, 'compare-latest.txt')} and {path}")
    print(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
