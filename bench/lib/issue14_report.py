#!/usr/bin/env python3
"""Issue 14's figures in one report, from what bench/issue14.sh collected in its work dir.

  compare/compare-*.json   bench/compare.sh --results DIR: roster, Knot, NSD, CoreDNS on one core
  propagation.json         bench/propagation_real.py --json: roster against CoreDNS on a real control plane
  watchers.json            bench/watchers_real.py --json: kube-apiserver's watches with 0/10/1,000 subscribers
  fanout.log               target/release/examples/fanout's stdout (its two markdown tables)
  forward/forward-*.json   bench/forward.sh --results DIR (optional)
  steps.tsv, run.txt       what bench/issue14.sh ran, when, at which commit, with which exit code

Prints one markdown report (each table with a "vs roster" column where a peer exists, then the issue's
targets, met or missed) and writes it to --out. Nothing is measured here.
"""
import argparse
import datetime as dt
import glob
import json
import os
import re
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)

PEERS = ("knot", "nsd", "coredns")
TITLE = {"roster": "roster", "knot": "Knot", "nsd": "NSD", "coredns": "CoreDNS", "unbound": "Unbound",
         "dnsdist": "dnsdist"}
SCALE_RECORDS = {"small": 10_000, "large": 100_000}  # pod records (lib/gen_dataset.py PRESETS)

MET, MISSED, NONE = "met", "**missed**", "not measured"


# ------------------------------------------------------------------ reading


def read_kv(path):
    out = {"reruns": [], "binaries": []}
    if os.path.exists(path):
        for line in open(path):
            if "=" in line:
                k, v = line.rstrip("\n").split("=", 1)
                if k in ("rerun", "binary"):
                    out[{"rerun": "reruns", "binary": "binaries"}[k]].append(v)
                else:
                    out[k] = v
    return out


def read_steps(work):
    """The last line per step of steps.tsv."""
    steps = {}
    path = os.path.join(work, "steps.tsv")
    if os.path.exists(path):
        for line in open(path):
            f = line.rstrip("\n").split("\t")
            if len(f) >= 7:
                steps[f[0]] = {"rc": int(f[1]), "started": f[2], "seconds": int(f[3]), "commit": f[4],
                               "quick": f[5] == "1", "cmd": f[6]}
    return steps


def newest(pattern):
    paths = glob.glob(pattern)
    return max(paths, key=os.path.getmtime) if paths else None


def load_json(path):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def read_compare(work):
    runs = load_json(newest(os.path.join(work, "compare", "compare-*.json")) or "")
    return runs[-1] if isinstance(runs, list) and runs else None


def read_forward(work):
    doc = load_json(newest(os.path.join(work, "forward", "forward-*.json")) or "")
    return doc["runs"][-1] if doc and doc.get("runs") else None


def md_table(lines, header_start):
    """The first markdown table whose header starts with `header_start`: (header cells, first row cells)."""
    for i, line in enumerate(lines):
        if line.startswith(header_start) and i + 2 < len(lines):
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            row = [c.strip() for c in lines[i + 2].strip().strip("|").split("|")]
            return cells, row
    return None, None


def read_fanout(work):
    path = os.path.join(work, "fanout.log")
    if not os.path.exists(path):
        return None
    lines = open(path, errors="replace").read().splitlines()
    out = {"lines": lines}
    out["title"] = next((x for x in lines if x.startswith("fanout: ")), None)
    out["slowest"] = next((x for x in lines if x.startswith("slowest deliveries")), None)
    m = re.search(r"fanout: (\d+) subscribers .*= (\d+) pod records; (\d+) deltas", out["title"] or "")
    out["subscribers"], out["pod_records"] = (int(m.group(1)), int(m.group(2))) if m else (None, None)
    for key, start in (("snapshot", "| records |"), ("deltas", "| deltas × subscribers |")):
        head, row = md_table(lines, start)
        out[key] = (head, row) if head else None
        i = next((i for i, x in enumerate(lines) if x.startswith(start)), None)
        out[key + "_lines"] = lines[i:i + 3] if i is not None else []
    return out


def num(s):
    try:
        return float(str(s).replace(",", "").split()[0])
    except (ValueError, IndexError):
        return None


# ------------------------------------------------------------------ formatting


def fmt(v, spec):
    return format(v, spec) if isinstance(v, (int, float)) else "–"


def adv(roster, peer, higher_better=False):
    """How many times better roster's figure is than the peer's (≥ 1: roster ahead)."""
    if not all(isinstance(v, (int, float)) for v in (roster, peer)) or not roster or not peer:
        return None
    return roster / peer if higher_better else peer / roster


def fx(r):
    return "–" if r is None else f"{r:.2f}×"


def verdict(ok, scaled=None):
    if ok is None:
        return NONE
    v = MET if ok else MISSED
    return f"{v} ({scaled})" if scaled else v


def table(header, rows, align=None):
    align = align or ["---"] + ["---:"] * (len(header) - 1)
    return ["| " + " | ".join(header) + " |", "|" + "|".join(align) + "|"] + \
        ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]


# ------------------------------------------------------------------ 1 and 2: compare.sh

METRICS = [  # label, getter, format, higher is better
    ("mixed qps", lambda r: r.get("mixed", {}).get("qps"), ",.0f", True),
    ("mixed CPU µs/query", lambda r: r.get("mixed", {}).get("cpu_us_per_q"), ".2f", False),
    ("mixed instructions/query", lambda r: r.get("instr", {}).get("mixed", {}).get("instr_per_q"), ",.0f", False),
    ("mixed p99 ms (fixed rate)", lambda r: r.get("mixed", {}).get("p99_ms"), ".3f", False),
    ("NXDOMAIN qps", lambda r: r.get("nx", {}).get("qps"), ",.0f", True),
    ("NXDOMAIN CPU µs/query", lambda r: r.get("nx", {}).get("cpu_us_per_q"), ".2f", False),
    ("NXDOMAIN instructions/query", lambda r: r.get("instr", {}).get("nx", {}).get("instr_per_q"), ",.0f", False),
    ("NXDOMAIN p99 ms (fixed rate)", lambda r: r.get("nx", {}).get("p99_ms"), ".3f", False),
    ("RSS MiB", lambda r: r["rss_kb"] / 1024 if "rss_kb" in r else None, ".1f", False),
    ("RSS B per record (RR)", lambda r: r.get("b_per_rr"), ",.0f", False),
]


def start_s(r):
    return r.get("start_s")


def side_by_side(rows, metrics):
    by = {r["name"]: r for r in rows}
    ref = by.get("roster", {})
    peers = [p for p in PEERS if p in by]
    header = ["", "roster"]
    for p in peers:
        header += [TITLE[p], "vs roster"]
    out = []
    for label, get, spec, hb in metrics:
        line = [label, fmt(get(ref), spec)]
        for p in peers:
            line += [fmt(get(by[p]), spec), fx(adv(get(ref), get(by[p]), hb))]
        out.append(line)
    return table(header, out)


def section_compare(cmp, step, w):
    w("## 1. Authoritative throughput on one core")
    w("")
    if not cmp:
        no_results(step, w)
        return
    w(f"`{cmd(step, 'bench/compare.sh')}` — servers pinned to one core, dnsperf on the other; "
      "qps at saturation (dnsperf -c 4 -q 200), server CPU per answered query, user-space instructions per "
      "query under valgrind (cachegrind's count = callgrind's Ir; three runs, differences divided by the "
      "answered-query difference), p99 at a fixed 10,000 qps, RSS after the mixed load, B/RR = (RSS − RSS on "
      "an empty zone) / resource records. **vs roster**: how many times better roster's figure is (the "
      "peer's cost ÷ roster's; for qps roster's ÷ the peer's); ≥ 1.00× = roster ahead.")
    w("")
    for scale, rows in cmp["scales"].items():
        w(f"### {scale}: {SCALE_RECORDS.get(scale, 0):,} pod records")
        w("")
        for line in side_by_side(rows, METRICS):
            w(line)
        notes = [f"{r['name']}: {r['error']}" for r in rows if r.get("error")]
        notes += [f"{r['name']}: answer checks failed: {'; '.join(r['checks_failed'])}"
                  for r in rows if r.get("checks_failed")]
        if not any(r.get("instr") for r in rows):
            notes.append("instructions per query not measured at this size (compare.sh --quick: small only)")
        if notes:
            w("")
        for n in notes:
            w(f"- {n}")
        w("")
    versions = ", ".join(f"{r['name']} {r.get('version', '?')}" for r in next(iter(cmp["scales"].values()), []))
    w(f"Versions: {versions}. CoreDNS serves the same zone files through its `file` plugin; its instructions "
      "under valgrind are inflated (Go's scheduler runs one thread at a time there): its CPU per query is "
      "the better figure for it.")
    w("")


def section_startup(cmp, w):
    w("## 2. Start to first correct answer")
    w("")
    if not cmp:
        w("No results (from compare.sh above).")
        w("")
        return
    w("Exec → the first correct answer for the dataset's last pod record, seconds (compare.sh, same run). "
      "vs roster = the peer's time ÷ roster's.")
    w("")
    by_scale = {s: {r["name"]: r for r in rows} for s, rows in cmp["scales"].items()}
    peers = [p for p in PEERS if any(p in b for b in by_scale.values())]
    header = ["pod records", "roster"]
    for p in peers:
        header += [TITLE[p], "vs roster"]
    out = []
    for scale, by in by_scale.items():
        ref = start_s(by.get("roster", {}))
        line = [f"{SCALE_RECORDS.get(scale, 0):,} ({scale})", fmt(ref, ".3f")]
        for p in peers:
            v = start_s(by.get(p, {}))
            line += [fmt(v, ".3f"), fx(adv(ref, v))]
        out.append(line)
    for line in table(header, out):
        w(line)
    w("")


def compare_targets(cmp, quick):
    """Rows of the targets table from compare.sh."""
    rows = []
    if not cmp:
        for t in ("roster ≥ 1.0× Knot per server-CPU-second, every load, small and large",
                  "roster ≥ 1.0× Knot in instructions per query, every load, small and large",
                  "roster ≥ 5× CoreDNS (per server-CPU-second and instructions per query)",
                  "RSS per record ≤ Knot's, small and large", "start-up ≤ Knot's (100k pod records)"):
            rows.append((t, "–", NONE))
        return rows
    by_scale = {s: {r["name"]: r for r in rs} for s, rs in cmp["scales"].items()}

    def per_load(peer, key):
        figs, missing = [], []
        for scale in ("small", "large"):
            by = by_scale.get(scale, {})
            for load, lname in (("mixed", "mixed"), ("nx", "NXDOMAIN")):
                if key == "cpu":
                    a = by.get("roster", {}).get(load, {}).get("cpu_us_per_q")
                    b = by.get(peer, {}).get(load, {}).get("cpu_us_per_q")
                else:
                    a = by.get("roster", {}).get("instr", {}).get(load, {}).get("instr_per_q")
                    b = by.get(peer, {}).get("instr", {}).get(load, {}).get("instr_per_q")
                r = adv(a, b)
                if r is None:
                    missing.append(f"{scale} {lname}")
                else:
                    figs.append((f"{scale} {lname}", r))
        return figs, missing

    def row(target, peer, key, need):
        figs, missing = per_load(peer, key)
        figure = ", ".join(f"{n} {r:.2f}×" for n, r in figs) or "–"
        if missing:
            figure += f"; not measured: {', '.join(missing)}"
        if not figs:
            return (target, figure, NONE)
        ok = all(r >= need for _, r in figs)
        return (target, figure, verdict(ok, "on what was measured" if missing else None))

    rows.append(row("roster ≥ 1.0× Knot per server-CPU-second, every load, small and large", "knot", "cpu", 1.0))
    rows.append(row("roster ≥ 1.0× Knot in instructions per query, every load, small and large", "knot", "instr",
                    1.0))
    rows.append(row("roster ≥ 5× CoreDNS per server-CPU-second", "coredns", "cpu", 5.0))
    rows.append(row("roster ≥ 5× CoreDNS in instructions per query", "coredns", "instr", 5.0))
    figs, oks = [], []
    for scale in ("small", "large"):
        a = by_scale.get(scale, {}).get("roster", {}).get("b_per_rr")
        b = by_scale.get(scale, {}).get("knot", {}).get("b_per_rr")
        if a is not None and b is not None:
            figs.append(f"{scale} roster {a:,.0f} / Knot {b:,.0f} B per RR")
            oks.append(a <= b)
        else:
            figs.append(f"{scale} not measured")
    rows.append(("RSS per record ≤ Knot's, small and large", "; ".join(figs),
                 verdict(all(oks) if oks else None, "one size only" if len(oks) == 1 else None)))
    large = by_scale.get("large", {})
    a, b = start_s(large.get("roster", {})), start_s(large.get("knot", {}))
    small = by_scale.get("small", {})
    sa, sb = start_s(small.get("roster", {})), start_s(small.get("knot", {}))
    fig = f"roster {fmt(a, '.3f')} s, Knot {fmt(b, '.3f')} s (small: {fmt(sa, '.3f')} / {fmt(sb, '.3f')} s)"
    rows.append(("start-up ≤ Knot's (100k pod records)", fig,
                 verdict(None if a is None or b is None else a <= b)))
    return rows


# ------------------------------------------------------------------ 3: propagation_real.py


def prop_rows(rnd):
    return {label: s for label, s in rnd["table"]}


def triple(s):
    if not s or not s.get("n"):
        return "–"
    return f"{s['p50']:.2f} / {s['p99']:.2f} / {s['max']:.2f}"


def section_propagation(prop, step, w):
    w("## 3. Propagation on the real control plane, roster against CoreDNS")
    w("")
    if not prop:
        no_results(step, w)
        return
    a = prop.get("args", {})
    n = a.get("replicas", 3)
    mode = ("every server watching the cluster at once, on the same writes" if a.get("together")
            else "one server at a time on the cluster, as a cluster runs one")
    w(f"`{cmd(step, 'bench/propagation_real.py')}` — {prop.get('machine', '')}. kube-apiserver "
      f"acknowledges a write (create a ClusterIP Service; every {a.get('delete_every')}th deletes the oldest) → "
      f"the replica answers it; {a.get('changes')} writes per background size; \"{n} replicas\" = the slowest of "
      f"{n}; {mode}. CoreDNS with kubeadm's Corefile without `cache` is the comparable figure (roster caches nothing); "
      "vs roster = CoreDNS's p99 ÷ roster's.")
    w("")
    out = []
    for rnd in prop.get("rounds", []):
        t = prop_rows(rnd)
        for reps, suffix in ((1, "1 replica"), (n, f"{n} replicas (slowest)")):
            r, c = t.get(f"roster, {suffix}"), t.get(f"coredns-nocache, {suffix}")
            if r is None:
                continue
            timeouts = f"{r.get('timeouts', 0)} / {(c or {}).get('timeouts', 0)}"
            out.append([f"{rnd['background']:,}", reps, r.get("n", 0), triple(r), triple(c),
                        fx(adv((r or {}).get("p99"), (c or {}).get("p99"))), timeouts])
    for line in table(["background services", "replicas", "writes", "roster p50 / p99 / max ms",
                       "CoreDNS (no cache) p50 / p99 / max ms", "vs roster (p99)", "timeouts roster / CoreDNS"],
                      out):
        w(line)
    w("")
    cached = []
    for rnd in prop.get("rounds", []):
        t = prop_rows(rnd)
        s = t.get(f"coredns, {n} replicas (slowest)") or t.get("coredns, 1 replica")
        if s:
            cached.append(f"background {rnd['background']:,}: {triple(s)} ms over {s.get('n', 0)} writes")
    if cached:
        w("CoreDNS as kubeadm deploys it (`cache 30`), slowest replica, p50 / p99 / max: " + "; ".join(cached) +
          " (a name asked before its informer has the object stays NXDOMAIN for the 30 s negative TTL).")
        w("")


def propagation_target(prop, quick):
    target = "propagation p99 ≤ 10 ms, 3 replicas, real control plane (CoreDNS beside)"
    if not prop or not prop.get("rounds"):
        return [(target, "–", NONE)]
    n = prop.get("args", {}).get("replicas", 3)
    figs, oks = [], []
    for rnd in prop["rounds"]:
        t = prop_rows(rnd)
        r = t.get(f"roster, {n} replicas (slowest)") or {}
        c = t.get(f"coredns-nocache, {n} replicas (slowest)") or {}
        if not r.get("n"):
            figs.append(f"background {rnd['background']:,}: no answer")
            oks.append(False)
            continue
        extra = f", {r['timeouts']} timed out" if r.get("timeouts") else ""
        figs.append(f"background {rnd['background']:,}: roster {r['p99']:.2f} ms{extra} (CoreDNS "
                    f"{fmt(c.get('p99'), '.2f')} ms)")
        oks.append(r["p99"] <= 10.0 and not r.get("timeouts"))
    bgs = [rnd["background"] for rnd in prop["rounds"]]
    scaled = None
    if n != 3:
        scaled = f"{n} replicas"
    elif max(bgs) < 5000:
        scaled = f"background {max(bgs):,} services, not 5,000: --quick"
    return [(target, "; ".join(figs), verdict(all(oks), scaled))]


# ------------------------------------------------------------------ 4: fanout and watchers_real.py


def section_stream(fan, fan_step, wat, wat_step, w):
    w("## 4. The record stream at node scale")
    w("")
    w("### One controller, N light subscribers (`controller/examples/fanout.rs`)")
    w("")
    if not fan or not fan.get("snapshot"):
        no_results(fan_step, w)
        if fan:
            tail = [x for x in fan["lines"] if x.strip()][-5:]
            w("```")
            for x in tail:
                w(x)
            w("```")
            w("")
    else:
        w(f"`{cmd(fan_step, 'fanout')}` — {fan.get('title') or ''}. No peer: the subscribers "
          "talk to the controller only; \"records\" are the zone's DNS records. Fan-out: first connection → the "
          "last subscriber has decoded the whole snapshot; delta: publication → read, over every (subscriber, "
          "delta).")
        w("")
        for key in ("snapshot", "deltas"):
            for line in fan.get(key + "_lines", []):
                w(line)
            w("")
        if fan.get("slowest"):
            w(fan["slowest"])
            w("")
    w("### kube-apiserver's watches with 0 / 10 / 1,000 subscribers (`bench/watchers_real.py`)")
    w("")
    if not wat or not wat.get("phases"):
        no_results(wat_step, w)
        return
    a = wat.get("args", {})
    w(f"`{cmd(wat_step, 'bench/watchers_real.py')}` — {wat.get('machine', '')}. "
      f"{a.get('services'):,} headless services × {a.get('endpoints')} endpoints = "
      f"{a.get('services', 0) * a.get('endpoints', 0):,} pod records through the API, {a.get('encoding')} stream, "
      f"{a.get('deltas')} writes per row (API ack → every subscriber has the delta). WATCH requests: "
      "`apiserver_longrunning_requests{verb=\"WATCH\"}`, whole server; events and bytes: during the writes.")
    w("")
    out = []
    base_bytes = None
    for p in wat["phases"]:
        d = p.get("delta")
        delta = "–" if not d else f"{fmt(d.get('p50'), '.1f')} / {fmt(d.get('p99'), '.1f')} / {fmt(d.get('max'), '.1f')}"
        b, at, z = p.get("api_before", {}), p.get("api_attached", {}), p.get("api_after", {})

        def diff(key, at=at, z=z):
            return None if z.get(key) is None or at.get(key) is None else z[key] - at[key]
        es_bytes = diff("endpointslice_bytes")
        if base_bytes is None and p["subscribers"] == 0:
            base_bytes = es_bytes
        out.append([p["subscribers"], fmt(p.get("fanout_s"), ".2f"), delta,
                    f"{fmt(p.get('controller_cpu_fanout_s'), '.2f')} / {fmt(p.get('controller_cpu_deltas_s'), '.2f')}",
                    fmt(p.get("controller_rss_mib"), ".0f"),
                    f"{fmt(b.get('watches'), '.0f')} / {fmt(at.get('watches'), '.0f')} / {fmt(z.get('watches'), '.0f')}",
                    fmt(diff("endpointslice_events"), ".0f"), fmt(es_bytes, ",.0f"),
                    fx(None if base_bytes is None or es_bytes is None else es_bytes / base_bytes if base_bytes else None)])
    for line in table(["subscribers", "fan-out s", "delta p50 / p99 / max ms", "controller CPU s fan-out / deltas",
                       "controller RSS MiB", "WATCH requests before / attached / after", "EndpointSlice watch events",
                       "EndpointSlice watch bytes", "bytes vs 0 subscribers"], out):
        w(line)
    w("")


def stream_targets(fan, wat, quick):
    rows = []
    if fan and fan.get("snapshot"):
        head, row = fan["snapshot"]
        snap = dict(zip(head, row))
        subs, recs = fan.get("subscribers"), fan.get("pod_records")
        fo = num(snap.get("fan-out s"))
        scaled = None
        if subs is not None and recs is not None and (subs < 1000 or recs < 100_000):
            scaled = f"at {subs:,} subscribers / {recs:,} pod records, not 1,000 / 100,000"
        rows.append(("1,000 subscribers: snapshot fan-out (100k pod records) < 5 s",
                     f"{fmt(fo, '.2f')} s", verdict(None if fo is None else fo < 5.0, scaled)))
        if fan.get("deltas"):
            dh, dr = fan["deltas"]
            d = dict(zip(dh, dr))
            p99, got, want = num(d.get("p99 ms")), num(d.get("received")), num(d.get("deltas × subscribers"))
            fig = f"p99 {fmt(p99, '.2f')} ms, {fmt(got, ',.0f')} of {fmt(want, ',.0f')} received"
            ok = None if p99 is None else (p99 <= 50.0 and got == want)
            rows.append(("1,000 subscribers: delta p99 ≤ 50 ms", fig, verdict(ok, scaled)))
        else:
            rows.append(("1,000 subscribers: delta p99 ≤ 50 ms", "–", NONE))
    else:
        rows.append(("1,000 subscribers: snapshot fan-out (100k pod records) < 5 s", "–", NONE))
        rows.append(("1,000 subscribers: delta p99 ≤ 50 ms", "–", NONE))
    target = "API watches constant with 0 / 10 / 1,000 subscribers"
    if wat and wat.get("phases"):
        figs, ok = [], True
        base_bytes = None
        for p in wat["phases"]:
            b, at, z = p.get("api_before", {}), p.get("api_attached", {}), p.get("api_after", {})
            ws = [x.get("watches") for x in (b, at, z)]
            if None in ws:
                ok = None
                continue
            # One watch per subscriber would add N; allow 2 for the control plane's own re-watches.
            if max(ws) - min(ws) > 2:
                ok = False
            es = (None if z.get("endpointslice_bytes") is None or at.get("endpointslice_bytes") is None
                  else z["endpointslice_bytes"] - at["endpointslice_bytes"])
            if p["subscribers"] == 0:
                base_bytes = es
            elif base_bytes and es is not None and es > 1.10 * base_bytes:
                ok = False
            figs.append(f"{p['subscribers']}: {ws[1]:.0f} watches ({ws[0]:.0f} before)"
                        + (f", {es / base_bytes:.2f}× the bytes" if base_bytes and es is not None and p["subscribers"]
                           else ""))
        most = max(p["subscribers"] for p in wat["phases"])
        scaled = None if most >= 1000 else f"up to {most:,} subscribers, not 1,000"
        rows.append((target + " (WATCH count within 2, EndpointSlice watch bytes within 1.10× of 0 subscribers')",
                     "; ".join(figs), verdict(ok if figs else None, scaled)))
    else:
        rows.append((target, "–", NONE))
    return rows


# ------------------------------------------------------------------ forwarder (optional)


def forward_figures(fwd):
    try:
        import forward_bench  # its own reading of a result (figures), not a copy
    except Exception:  # noqa: BLE001
        return None, []
    rnd = fwd["rounds"][-1] if fwd.get("rounds") else []
    loads = []
    for r in rnd:
        for ln in (r.get("loads") or {}):
            if ln not in loads:
                loads.append(ln)
    return {r["name"]: forward_bench.figures(r, loads) for r in rnd if r.get("loads")}, loads


def section_forward(fwd, step, w):
    w("## Forwarder, warm cache (`bench/forward.sh --rounds 1`)")
    w("")
    if not fwd:
        no_results(step, w)
        return
    figs, loads = forward_figures(fwd)
    if not figs:
        w("Results present but not readable (bench/lib/forward_bench.py).")
        w("")
        return
    meta = fwd.get("meta", {})
    w(f"`{cmd(step, 'bench/forward.sh')}` — {meta.get('n', 0):,} cached names on a Knot upstream; "
      "roster's forwarder against Unbound and dnsdist, one core each. vs roster as above (for q/CPU-s "
      "roster's ÷ the peer's, for p99 and bytes per entry the peer's ÷ roster's).")
    w("")
    cols = []
    for ln in loads:
        cols += [(f"{ln} qps", ",.0f", True), (f"{ln} q/cpu", ",.0f", True), (f"{ln} p99", ".2f", False)]
    cols += [("B/entry", ",.0f", False), ("rss_mib", ".1f", False)]
    label = {"rss_mib": "RSS MiB", "B/entry": "B per entry"}
    ref = figs.get("roster", {})
    peers = [p for p in ("unbound", "dnsdist") if p in figs]
    header = ["", "roster"]
    for p in peers:
        header += [TITLE[p], "vs roster"]
    out = []
    for key, spec, hb in cols:
        name = label.get(key, key.replace(" q/cpu", " queries per CPU-second").replace(" p99", " p99 ms")
                         .replace(" qps", " max qps"))
        line = [name, fmt(ref.get(key), spec)]
        for p in peers:
            line += [fmt(figs[p].get(key), spec), fx(adv(ref.get(key), figs[p].get(key), hb))]
        out.append(line)
    for line in table(header, out):
        w(line)
    w("")


def forward_targets(fwd):
    target = "forwarder ≥ 1.0× Unbound and dnsdist per CPU-second, hits and NXDOMAIN; B per entry ≤ theirs"
    if not fwd:
        return [(target, "not run (bench/issue14.sh --with-forwarder)", NONE)]
    figs, loads = forward_figures(fwd)
    if not figs or "roster" not in figs:
        return [(target, "–", NONE)]
    ref = figs["roster"]
    parts, oks = [], []
    for p in ("unbound", "dnsdist"):
        if p not in figs:
            continue
        for ln in loads:
            r = adv(ref.get(f"{ln} q/cpu"), figs[p].get(f"{ln} q/cpu"), True)
            parts.append(f"{TITLE[p]} {ln} {fx(r)}")
            oks.append(r is not None and r >= 1.0)
        r = adv(ref.get("B/entry"), figs[p].get("B/entry"))
        parts.append(f"{TITLE[p]} B/entry {fx(r)}")
        oks.append(r is not None and r >= 1.0)
    return [(target, ", ".join(parts), verdict(all(oks) if oks else None))]


# ------------------------------------------------------------------ the report


def cmd(step, default):
    return (step["cmd"] if step else default).replace(REPO + "/", "")


def no_results(step, w):
    """A section's place when its step left nothing to read: why."""
    if not step:
        why = "not run"
    elif step["rc"] == 124:
        why = f"stopped at its bound after {step['seconds']} s; log in the work dir"
    elif step["rc"]:
        why = f"exit {step['rc']} after {step['seconds']} s; log in the work dir"
    else:
        why = "its output was not found"
    w(f"No results ({why}).")
    w("")


def machine():
    cpu = "?"
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return cpu, os.cpu_count()


def current_commit():
    def git(*a):
        return subprocess.run(["git", "-C", REPO, *a], capture_output=True, text=True).stdout.strip()
    return git("rev-parse", "--short", "HEAD") + ("+dirty" if git("status", "--porcelain", "--untracked-files=no")
                                                   else "")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workdir", default=os.environ.get("BENCH_WORKDIR", "/tmp/roster-bench") + "/issue14")
    ap.add_argument("--out", default=os.path.join(REPO, "bench", "results", "issue14-latest.txt"))
    args = ap.parse_args()
    work = args.workdir
    run = read_kv(os.path.join(work, "run.txt"))
    steps = read_steps(work)
    quick = run.get("quick") == "1"
    cmp_ = read_compare(work) if "compare" in steps else None
    prop = load_json(os.path.join(work, "propagation.json")) if "propagation" in steps else None
    wat = load_json(os.path.join(work, "watchers.json")) if "watchers" in steps else None
    fan = read_fanout(work) if "fanout" in steps else None
    fwd = read_forward(work) if "forward" in steps else None

    lines = []
    w = lines.append
    cpu, ncpu = machine()
    started = run.get("started") or dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    w("# Issue 14 in one run")
    w("")
    w(f"{started.replace('T', ' ').replace('Z', ' UTC')} · roster `{run.get('commit') or current_commit()}` · "
      f"{cpu} × {ncpu} · load average {run.get('loadavg', '?')} at the start, "
      f"{' '.join(open('/proc/loadavg').read().split()[:3])} at the report")
    w("")
    w(f"`{run.get('argv', 'bench/issue14.sh')}`" + (" — quick: each piece at its smoke size; targets measured "
                                                   "below their scale say so" if quick else ""))
    w("")
    if run["binaries"]:
        w("Binaries: " + "; ".join(run["binaries"]) + ".")
        w("")
    for rerun in run.get("reruns", []):
        w(f"Steps rerun since: {rerun}")
        w("")
    srows = []
    for name in ("compare", "propagation", "watchers", "fanout", "forward"):
        s = steps.get(name)
        if s:
            srows.append([name, f"`{cmd(s, '')}`", s["started"].replace("T", " ")
                          .replace("Z", ""), f"{s['seconds']:,}", f"`{s['commit']}`",
                          "ok" if s["rc"] == 0 else ("bound reached" if s["rc"] == 124 else f"exit {s['rc']}")])
    if srows:
        for line in table(["step", "command", "started UTC", "s", "commit", "result"], srows,
                          ["---", "---", "---", "---:", "---", "---"]):
            w(line)
        w("")
        w(f"Steps: {sum(s['seconds'] for s in steps.values()):,} s in all. Work dir (every piece's output and "
          f"log): `{work}`.")
        w("")

    section_compare(cmp_, steps.get("compare"), w)
    section_startup(cmp_, w)
    section_propagation(prop, steps.get("propagation"), w)
    section_stream(fan, steps.get("fanout"), wat, steps.get("watchers"), w)
    if "forward" in steps:
        section_forward(fwd, steps.get("forward"), w)

    w("## Targets")
    w("")
    trows = compare_targets(cmp_, quick) + propagation_target(prop, quick) + stream_targets(fan, wat, quick) \
        + forward_targets(fwd)
    for line in table(["target", "figure", "result"], [list(r) for r in trows], ["---", "---", "---"]):
        w(line)
    w("")
    met = sum(1 for r in trows if r[2].startswith(MET))
    partly = sum(1 for r in trows if r[2].startswith(MET + " ("))
    missed = sum(1 for r in trows if r[2].startswith(MISSED))
    w(f"{met} met ({partly} of them only on what was measured or below the target's scale), {missed} missed, "
      f"{len(trows) - met - missed} not measured.")
    report = "\n".join(lines) + "\n"
    print(report, end="")
    if args.out:
        os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
        with open(args.out, "w") as f:
            f.write(report)
        with open(os.path.join(work, "report.md"), "w") as f:
            f.write(report)
        print(f"\nwritten: {args.out} (and {os.path.join(work, 'report.md')})", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
