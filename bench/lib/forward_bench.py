#!/usr/bin/env python3
"""Caching-forwarder benchmark: roster's forwarder + cache against Unbound and
dnsdist on the same data in the same run (see ../README.md, "Forwarder benchmark").

One Knot on loopback is the upstream ("the internet") for every forwarder: it
serves a synthetic zone `fwd.test.` with N A records `h<i>.fwd.test` (TTL 3600)
and answers NXDOMAIN (SOA minimum 3600, so negative answers are cacheable) for
every other name. Each forwarder under test listens on its own loopback port and
forwards everything to that Knot:

  roster   roster dns --objects <empty v1 List> --upstream 127.0.0.1:KNOT --cache-size C
  unbound  forward-zone "." -> Knot, num-threads 1, module-config "iterator" (no
           DNSSEC validation), msg/rrset caches sized for N
  dnsdist  newServer(Knot), one setLocal listener, a packet cache of C entries

For every forwarder, one after another (rounds alternate the order), pinned to
--server-core with taskset (dnsperf on --client-core; Knot on the client core,
so its warm-up work never lands on the forwarder's core):
  1. start; ready = the first correct answer for a name of the zone;
  2. pre-load: 3 s of saturating load on 1,000 other names of the zone, so thread
     stacks, socket buffers and allocator arenas exist -> RSS "before";
  3. warm-up: every one of the N names once (dnsperf -n 1 at --warm-rate), then a
     second pass (fills anything lost in the first) -> RSS "after N";
     then every NXDOMAIN name likewise -> RSS "after N + NX";
  4. answer checks (positive A answers carry the right address, NXDOMAIN carries
     the SOA);
  5. per load (`hit` = the N cached names, `hit+nx10` = 90 % of them and 10 %
     cached NXDOMAIN names): max qps (dnsperf -c 4 -T 1 -q 200 -l D) with the
     forwarder's CPU seconds -> queries per CPU-second and Knot's CPU seconds (≈ 0
     when every answer came from the cache), then p50/p99 at a fixed rate;
  6. optionally (--profile S, roster only) perf record on roster under the `hit` load;
  7. stop by PID.
Cache memory per entry = (RSS after warm-up of the N names − RSS before) / N.

Only 127.0.0.1 is used. Every dnsperf run is bounded (-l plus a subprocess
timeout); processes are stopped by the PID this script started.
"""
import argparse
import datetime as dt
import json
import os
import random
import shutil
import signal
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench  # noqa: E402  (dnsperf, /proc and process helpers of the authoritative benchmark)
import peers as peers_mod  # noqa: E402

# Queries of this benchmark set RD, as every stub resolver does: a recursive server
# (Unbound) answers an RD=0 query from its cache only, so bench.py's authoritative-style
# probes (RD=0) would never be forwarded. bench.dns_query (used by bench.launch and
# bench.drain too) builds its queries through this module-level function.
_build_query_no_rd = bench.build_query


def build_query_rd(*a, **kw):
    q = bytearray(_build_query_no_rd(*a, **kw))
    q[2] |= 0x01  # RD
    return bytes(q)


bench.build_query = build_query_rd

ZONE = "fwd.test."
TTL = 3600
BASE = 0xC6120000  # 198.18.0.0/15, the benchmarking range (RFC 2544)
PRE_NAMES = 1000
BASE_PORT = 15450
HERE = os.path.dirname(os.path.abspath(__file__))
BENCH_DIR = os.path.dirname(HERE)
REPO_ROOT = os.path.dirname(BENCH_DIR)


def ip_of(i):
    n = BASE + i
    return f"{n >> 24}.{(n >> 16) & 255}.{(n >> 8) & 255}.{n & 255}"


# ------------------------------------------------------------------ dataset
def gen_data(root, n, seed=1):
    """Zone + query files for N names (cached in root/n<N>)."""
    d = os.path.join(root, f"n{n}")
    meta_path = os.path.join(d, "meta.json")
    n_nx = max(1, n // 9)  # so that NX names are 10 % of the hit+nx10 file
    if os.path.exists(meta_path):
        with open(meta_path) as f:
            meta = json.load(f)
        if meta.get("n") == n and meta.get("seed") == seed:
            return {"dir": d, "meta": meta}
    os.makedirs(d, exist_ok=True)
    rnd = random.Random(seed)
    with open(os.path.join(d, "fwd.test.zone"), "w") as f:
        f.write(f"$ORIGIN {ZONE}\n$TTL {TTL}\n")
        f.write(f"@ IN SOA ns.{ZONE} hostmaster.{ZONE} 1 3600 600 86400 {TTL}\n")
        f.write(f"@ IN NS ns.{ZONE}\nns IN A 127.0.0.1\n")
        for i in range(n):
            f.write(f"h{i} IN A {ip_of(i)}\n")
        for i in range(PRE_NAMES):
            f.write(f"pre{i} IN A {ip_of(n + i)}\n")
    pos = [f"h{i}.{ZONE} A" for i in range(n)]
    nx = [f"nx{i}.{ZONE} A" for i in range(n_nx)]
    pre = [f"pre{i}.{ZONE} A" for i in range(PRE_NAMES)]

    def write(name, lines):
        with open(os.path.join(d, name), "w") as f:
            f.write("\n".join(lines) + "\n")

    write("warm-hit.txt", pos)  # in order: each name exactly once
    write("warm-nx.txt", nx)
    write("pre.txt", pre)
    hit = pos[:]
    rnd.shuffle(hit)
    write("queries-hit.txt", hit)
    mixed = pos + nx
    rnd.shuffle(mixed)
    write("queries-hit+nx10.txt", mixed)
    # an empty Kubernetes object list: roster serves only an empty cluster.local itself
    with open(os.path.join(d, "empty-list.json"), "w") as f:
        json.dump({"apiVersion": "v1", "kind": "List", "items": []}, f)
    meta = {"n": n, "n_nx": n_nx, "seed": seed, "zone": ZONE, "ttl": TTL,
            "ready_probe": {"qname": f"pre0.{ZONE}", "qtype": "A"}}
    with open(meta_path, "w") as f:
        json.dump(meta, f, indent=1)
    return {"dir": d, "meta": meta}


# ---------------------------------------------------------------- servers
def knot_upstream(port):
    def prepare(p, wd, ds):
        os.makedirs(os.path.join(wd, "db"), exist_ok=True)
        with open(os.path.join(wd, "knot.conf"), "w") as f:
            f.write(f"""server:
    rundir: "{wd}"
    listen: 127.0.0.1@{p.port}
    udp-workers: 1
    tcp-workers: 1
    background-workers: 1
control:
    listen: "{wd}/knot.sock"
database:
    storage: "{wd}/db"
template:
  - id: default
    storage: "{ds['dir']}"
    zonefile-sync: -1
    zonefile-load: whole
    journal-content: none
    semantic-checks: off
log:
  - target: stderr
    any: warning
zone:
  - domain: {ZONE}
    file: fwd.test.zone
""")

    return peers_mod.Peer(
        "knot-upstream", port, "knotd",
        lambda p, wd, ds: [p.resolve_binary(), "-c", os.path.join(wd, "knot.conf")],
        prepare, lambda b: [b, "-V"], "apt-get install knot",
        "the upstream: udp-workers=1, zone loaded whole")


def forwarders(knot_port, cache_entries, n_total):
    up = f"127.0.0.1:{knot_port}"

    def roster_argv(p, wd, ds):
        return [p.resolve_binary(), "dns", "--objects", os.path.join(ds["dir"], "empty-list.json"),
                "--listen", f"127.0.0.1:{p.port}", "--upstream", up,
                "--cache-size", str(cache_entries)]

    roster = peers_mod.Peer(
        "roster", BASE_PORT + 2, peers_mod._roster_bin(), roster_argv, None,
        lambda b: [b, "--version"], "cd <repo> && cargo build --release",
        f"roster dns --objects <empty v1 List> --upstream {up} --cache-size {cache_entries}; "
        "tokio workers = available parallelism (1 when pinned); ROSTER_LOG=warn",
        env={"ROSTER_LOG": "warn"})

    # Unbound: sized so that N messages + N rrsets fit with room to spare (~1 KiB each is
    # generous); slabs 1 since there is one thread; no validator.
    mb = max(16, (n_total * 2048) // (1 << 20) + 16)

    def unbound_prepare(p, wd, ds):
        with open(os.path.join(wd, "unbound.conf"), "w") as f:
            f.write(f"""server:
    interface: 127.0.0.1@{p.port}
    port: {p.port}
    do-ip6: no
    num-threads: 1
    username: ""
    chroot: ""
    directory: "{wd}"
    pidfile: "{wd}/unbound.pid"
    use-syslog: no
    logfile: ""
    verbosity: 0
    do-daemonize: no
    module-config: "iterator"
    do-not-query-localhost: no
    access-control: 127.0.0.0/8 allow
    msg-cache-size: {mb}m
    msg-cache-slabs: 1
    rrset-cache-size: {2 * mb}m
    rrset-cache-slabs: 1
    infra-cache-slabs: 1
    key-cache-slabs: 1
    prefetch: no
    # Unbound answers the RFC 6761 name test. itself (static NXDOMAIN) unless told not to
    local-zone: "test." nodefault
    qname-minimisation: no
    trust-anchor-signaling: no
    root-key-sentinel: no
remote-control:
    control-enable: no
forward-zone:
    name: "."
    forward-addr: 127.0.0.1@{knot_port}
""")

    unbound = peers_mod.Peer(
        "unbound", BASE_PORT + 3, "unbound",
        lambda p, wd, ds: [p.resolve_binary(), "-d", "-c", os.path.join(wd, "unbound.conf")],
        unbound_prepare, lambda b: [b, "-V"], "apt-get install unbound",
        f"num-threads 1, module-config iterator, forward-zone . -> {up}, "
        f"msg-cache {mb}m, rrset-cache {2 * mb}m, slabs 1, prefetch no, "
        'local-zone "test." nodefault')

    def dnsdist_prepare(p, wd, ds):
        with open(os.path.join(wd, "dnsdist.conf"), "w") as f:
            f.write(f"""setSecurityPollSuffix("")
setLocal("127.0.0.1:{p.port}")
setACL({{"127.0.0.0/8"}})
newServer({{address="{up}", checkName="{ZONE}", checkType="SOA", mustResolve=true}})
pc = newPacketCache({cache_entries}, {{maxTTL=86400, minTTL=0, numberOfShards=1}})
getPool(""):setCache(pc)
""")

    dnsdist = peers_mod.Peer(
        "dnsdist", BASE_PORT + 4, "dnsdist",
        lambda p, wd, ds: [p.resolve_binary(), "--supervised", "--disable-syslog", "-C",
                           os.path.join(wd, "dnsdist.conf")],
        dnsdist_prepare, lambda b: [b, "--version"], "apt-get install dnsdist",
        f"one setLocal listener, newServer({up}), newPacketCache({cache_entries}, 1 shard), "
        "security polling off, otherwise defaults")
    return [roster, unbound, dnsdist]


# ----------------------------------------------------------------- helpers
def warm(args, port, qfile, count):
    """Every name of qfile once, at a modest rate; returns dnsperf's figures."""
    secs = int(count / args.warm_rate) + 20
    out, _c, _cmd = bench.run_dnsperf(args, port, qfile,
                                      ["-n", "1", "-Q", str(args.warm_rate), "-c", "1",
                                       "-T", "1", "-q", "100"], secs)
    return bench.parse_dnsperf(out)


def check_answers(port, ds):
    n, n_nx = ds["meta"]["n"], ds["meta"]["n_nx"]
    out = []
    for i in (0, n // 2, n - 1):
        q = f"h{i}.{ZONE}"
        try:
            r = bench.dns_query(port, q, "A", timeout=1.0)
            got = [bench.socket.inet_ntoa(rd) for t, rd in r["answers"] if t == 1]
            ttl = [rr["ttl"] for rr in r["answer_rrs"]]
            ok = r["rcode"] == 0 and got == [ip_of(i)] and all(0 < t <= TTL for t in ttl)
            out.append({"q": q, "ok": ok, "detail": f"rcode {r['rcode']} {got} ttl {ttl}"})
        except Exception as e:  # noqa: BLE001
            out.append({"q": q, "ok": False, "detail": f"no response ({e})"})
    for i in (0, n_nx - 1):
        q = f"nx{i}.{ZONE}"
        try:
            r = bench.dns_query(port, q, "A", timeout=1.0)
            ok = r["rcode"] == 3 and any(rr["type"] == 6 for rr in r["authority"])
            out.append({"q": q, "ok": ok, "detail": f"rcode {r['rcode']}, "
                                                    f"{len(r['authority'])} authority RRs"})
        except Exception as e:  # noqa: BLE001
            out.append({"q": q, "ok": False, "detail": f"no response ({e})"})
    return out


# Where a forwarded cache hit's time goes. A sample goes to the first bucket (in this
# order) whose pattern matches any frame of its stack: so the allocations made while
# cloning a cached answer count as the cache lookup, the record encoding done by
# RrSet::new as building the answer, and a syscall as the syscall.
FWD_BUCKETS = [
    (r"__libc_sendto|__sys_sendto|sendmmsg", "kernel sendto (UDP send, loopback delivery, waking dnsperf)"),
    (r"__libc_recvfrom|__sys_recvfrom|recvmmsg", "kernel recvfrom"),
    (r"epoll_wait", "kernel epoll_wait (idle)"),
    (r"roster_dns::metrics|prometheus_client",
     "metrics: Metrics::observe + cache_hits (label-set HashMap lookups per query)"),
    (r"forward::cache::Cache::get|CachedAnswer as core::clone|CacheKey",
     "cache lookup: Cache::get (key hash + compare, clone of the stored answer)"),
    (r"forward::to_answer|store::RrSet::new|LowerName::new|Name::to_lowercase",
     "cache hit -> Answer: lower-cased key, to_answer + RrSet::new (encodes each record "
     "once to size it)"),
    (r"Request::from_bytes|MessageRequest::read|Queries::read",
     "hickory parse of the request"),
    (r"destructive_emit|emit_message_parts|BinEncoder|BinEncodable>::emit",
     "hickory encode of the response"),
    (r"tokio::runtime::task::spawn|spawn_inner|OwnedTasks|Harness<T,S>::(complete|dealloc|"
     r"release|drop_join)|drop_in_place<alloc::boxed::Box<tokio::runtime::task|schedule_task|"
     r"Handle::schedule|notify_parked|Context::park|Parker|maintenance",
     "tokio: the task spawned, scheduled and freed per forwarded query"),
    (r"FrontHandler|roster_dns::udp", "rest of roster's handler and UDP loop (datagram copy, task allocation, decide)"),
]


def profile_buckets(perf_script_text):
    import collections
    import perf_buckets
    pats = [(bench.re.compile(p), n) for p, n in FWD_BUCKETS]
    buckets, allocs, total, in_alloc = collections.Counter(), collections.Counter(), 0, 0
    for st in perf_buckets.stacks(perf_script_text.splitlines(True)):
        total += 1
        name = next((n for p, n in pats if any(p.search(fr) for fr in st)),
                    "other (tokio scheduler, timers, misc)")
        buckets[name] += 1
        if perf_buckets.ALLOC.match(st[0]):
            in_alloc += 1
            site = next((fr for fr in st if not perf_buckets.ALLOC.match(fr)
                         and "(inlined)" not in fr), "?")
            allocs[site[:110]] += 1
    out = [f"{100 * k / total:5.1f}%  {n}" for n, k in buckets.most_common()] if total else []
    out.append(f"allocator (malloc/free) self time: {100 * in_alloc / max(total, 1):.1f}% of "
               f"{total} samples; top callers:")
    out += [f"  {100 * k / total:5.1f}%  {n}" for n, k in allocs.most_common(6)]
    return out


def profile_roster(args, peer, proc, qfile, log):
    """perf record (DWARF call graphs) on roster under the saturating `hit` load."""
    if shutil.which("perf") is None:
        return {"error": "perf not installed"}
    data = os.path.join(args.workdir, "profile-forward.data")
    secs = args.profile
    cmd = ["taskset", "-c", str(args.client_core), "dnsperf", "-s", "127.0.0.1", "-p",
           str(peer.port), "-d", qfile, "-l", str(secs + 4), "-e"] + bench.load_opts(args)
    dp = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        time.sleep(2)
        pr = subprocess.run(["perf", "record", "-F", "499", "--call-graph", "dwarf,32768",
                             "-p", str(proc.pid), "-o", data, "--", "sleep", str(secs)],
                            capture_output=True, text=True, timeout=secs + 60)
        out, _ = dp.communicate(timeout=secs + 60)
    finally:
        if dp.poll() is None:
            dp.kill()
            dp.wait()
    res = {"data": data, "perf_record": (pr.stderr or "").strip().splitlines()[-1:],
           "dnsperf_qps": bench.parse_dnsperf(out)["qps"]}
    rep = subprocess.run(["perf", "report", "-i", data, "--no-children", "--sort", "symbol",
                          "--stdio", "-g", "none"], capture_output=True, text=True, timeout=600)
    res["self_top"] = [l.rstrip() for l in rep.stdout.splitlines()
                       if bench.re.match(r"^ +[0-9.]+%", l)][:30]
    sc = subprocess.run(["perf", "script", "-i", data, "-F", "ip,sym"], capture_output=True,
                        text=True, timeout=600)
    res["buckets"] = profile_buckets(sc.stdout)
    log(f"[roster] profile: {res['perf_record']} (dnsperf {res['dnsperf_qps']} qps); "
        f"perf report -i {data}")
    return res


def bench_forwarder(peer, args, ds, knot_proc, log):
    res = {"name": peer.name, "port": peer.port, "version": peer.version(),
           "notes": peer.notes, "ok": False}
    wd = os.path.join(args.workdir, "servers", peer.name)
    proc, logf, started, err, argv = bench.launch(peer, args, ds, wd, log)
    res["cmd"] = " ".join(argv)
    meta = ds["meta"]
    probe = meta["ready_probe"]
    try:
        if err:
            res["error"] = err
            return res
        res["startup_s"] = round(started, 4)
        time.sleep(0.5)
        res["affinity_repinned"] = bench.enforce_affinity(proc.pid, args.server_core)
        res["mem_idle"] = bench.mem_snapshot(proc.pid)
        # 2. pre-load on other names
        bench.run_dnsperf(args, peer.port, os.path.join(ds["dir"], "pre.txt"),
                          bench.load_opts(args), 3)
        bench.drain(peer.port, probe)
        time.sleep(0.3)
        res["mem_before"] = bench.mem_snapshot(proc.pid)
        # 3. warm-up
        k0 = bench.cpu_seconds(knot_proc.pid)
        w1 = warm(args, peer.port, os.path.join(ds["dir"], "warm-hit.txt"), meta["n"])
        k1 = bench.cpu_seconds(knot_proc.pid)
        w2 = warm(args, peer.port, os.path.join(ds["dir"], "warm-hit.txt"), meta["n"])
        k2 = bench.cpu_seconds(knot_proc.pid)
        time.sleep(0.3)
        res["mem_after_hit"] = bench.mem_snapshot(proc.pid)
        w3 = warm(args, peer.port, os.path.join(ds["dir"], "warm-nx.txt"), meta["n_nx"])
        w4 = warm(args, peer.port, os.path.join(ds["dir"], "warm-nx.txt"), meta["n_nx"])
        time.sleep(0.3)
        res["mem_after_nx"] = bench.mem_snapshot(proc.pid)
        res["warm"] = {
            "pass1": {k: w1.get(k) for k in ("completed", "lost", "qps", "rcodes")},
            "pass2": {k: w2.get(k) for k in ("completed", "lost", "qps", "rcodes")},
            "nx_pass1": {k: w3.get(k) for k in ("completed", "lost", "qps", "rcodes")},
            "nx_pass2": {k: w4.get(k) for k in ("completed", "lost", "qps", "rcodes")},
            "knot_cpu_pass1_s": round(k1 - k0, 3), "knot_cpu_pass2_s": round(k2 - k1, 3)}
        before, after_hit, after_nx = (res["mem_before"]["rss_kb"], res["mem_after_hit"]["rss_kb"],
                                       res["mem_after_nx"]["rss_kb"])
        res["bytes_per_entry"] = round((after_hit - before) * 1024 / meta["n"])
        res["bytes_per_nx_entry"] = round((after_nx - after_hit) * 1024 / meta["n_nx"])
        res["bytes_per_entry_pss"] = round(
            (res["mem_after_hit"]["pss_kb"] - res["mem_before"]["pss_kb"]) * 1024 / meta["n"])
        log(f"[{peer.name}] warm-up: pass 1 {w1['completed']}/{meta['n']} answered "
            f"({w1.get('rcodes')}), Knot cpu {k1 - k0:.2f}s; pass 2 Knot cpu {k2 - k1:.2f}s; "
            f"RSS {before / 1024:.1f} -> {after_hit / 1024:.1f} MiB (+{meta['n']} entries: "
            f"{res['bytes_per_entry']} B/entry) -> {after_nx / 1024:.1f} MiB (+{meta['n_nx']} NX: "
            f"{res['bytes_per_nx_entry']} B/entry)")
        # 4. answers
        res["checks"] = check_answers(peer.port, ds)
        res["checks_ok"] = all(c["ok"] for c in res["checks"])
        if not res["checks_ok"]:
            log(f"[{peer.name}] answer checks FAILED: " + "; ".join(
                f"{c['q']}: {c['detail']}" for c in res["checks"] if not c["ok"]))
        # 5. loads
        res["loads"] = {}
        for lname in args.loads:
            lfile = os.path.join(ds["dir"], f"queries-{lname}.txt")
            bench.drain(peer.port, probe)
            k0 = bench.cpu_seconds(knot_proc.pid)
            tp = bench.measure_throughput(args, peer, proc, lfile, args.duration, probe)
            tp["upstream_cpu_s"] = round(bench.cpu_seconds(knot_proc.pid) - k0, 3)
            drift = bench.enforce_affinity(proc.pid, args.server_core)
            if drift:
                tp["affinity_drift_during_load"] = drift
            if tp["qps"] is None:
                res["error"] = f"dnsperf output not understood ({lname}): {tp['raw_tail']}"
                return res
            log(f"[{peer.name}] {lname}: {tp['qps']:.0f} qps"
                + (f" (serial {tp['qps_serial'] or 0:.0f})" if "qps_serial" in tp else "")
                + f", {tp['qps_per_server_cpu_s']} q/cpu-s, lost {tp.get('lost_pct', 0):.2f}%, "
                f"server cpu {tp['server_cpu_util']}, client cpu {tp['client_cpu_util']}, "
                f"rcodes {tp.get('rcodes')}, resp {tp['resp_bytes']} B, "
                f"Knot cpu {tp['upstream_cpu_s']}s")
            lr = bench.measure_latency(args, peer, lfile, probe)
            log(f"[{peer.name}] {lname} @{args.rate} qps: p50 {lr['p50_ms'] or 0:.3f} ms, "
                f"p99 {lr['p99_ms'] or 0:.3f} ms, lost {lr.get('lost_pct', 0):.2f}%")
            res["loads"][lname] = {"throughput": tp, "latency": lr}
        res["mem_after_loads"] = bench.mem_snapshot(proc.pid)
        if args.profile and peer.name == "roster" and not args.profiled:
            bench.drain(peer.port, probe)
            res["profile"] = profile_roster(args, peer, proc,
                                            os.path.join(ds["dir"], "queries-hit.txt"), log)
            args.profiled = True
        res["ok"] = res["checks_ok"]
        return res
    finally:
        if proc is not None:
            rc = bench.stop_server(proc)
            logf.close()
            res["exit_code"] = rc
            log(f"[{peer.name}] stopped pid {proc.pid} (rc={rc})")


# ---------------------------------------------------------------- report
def med(vals):
    vals = [v for v in vals if isinstance(v, (int, float))]
    return statistics.median(vals) if vals else None


def figures(r, loads):
    f = {"B/entry": r.get("bytes_per_entry"), "B/nx": r.get("bytes_per_nx_entry"),
         "rss_mib": (r.get("mem_after_nx") or {}).get("rss_kb", 0) / 1024 or None}
    for ln in loads:
        ld = (r.get("loads") or {}).get(ln)
        if not ld:
            continue
        f[f"{ln} qps"] = ld["throughput"].get("qps_best")
        f[f"{ln} q/cpu"] = ld["throughput"].get("qps_per_server_cpu_s")
        f[f"{ln} p99"] = ld["latency"].get("p99_ms")
        f[f"{ln} p50"] = ld["latency"].get("p50_ms")
        f[f"{ln} cpu"] = ld["throughput"].get("server_cpu_util")
        f[f"{ln} up"] = ld["throughput"].get("upstream_cpu_s")
        f[f"{ln} resp"] = ld["throughput"].get("resp_bytes")
    return f


def fmt(v, spec):
    return format(v, spec) if isinstance(v, (int, float)) else "-"


def report(rounds, args, meta, versions):
    names = []
    for rnd in rounds:
        for r in rnd:
            if r["name"] not in names:
                names.append(r["name"])
    per = {n: [figures(r, args.loads) for rnd in rounds for r in rnd if r["name"] == n and
               r.get("loads")] for n in names}
    medians = {n: {k: med([f.get(k) for f in fs]) for k in (fs[0] if fs else {})}
               for n, fs in per.items()}
    lines = []
    w = lines.append
    w(f"Forwarded queries, warm cache: N = {meta['n']:,} cached A names (+ {meta['n_nx']:,} "
      f"cached NXDOMAIN names) in {ZONE} on a Knot upstream, TTL {TTL}.")
    w(f"max qps: dnsperf {' '.join(bench.load_opts(args))} -l {args.duration} (client core "
      f"{args.client_core}, server core {args.server_core}); p50/p99 at {args.rate} qps for "
      f"{args.latency_duration} s; medians over {len(rounds)} round(s).")
    w("")
    cols = []
    for ln in args.loads:
        cols += [(f"{ln} qps", ",.0f"), (f"{ln} q/cpu", ",.0f"), (f"{ln} p99", ".2f")]
    hdr = ["server"] + [c.replace(" qps", " max qps").replace(" q/cpu", " q/cpu-s")
                        .replace(" p99", " p99 ms") for c, _ in cols] + ["B/entry", "B/NX entry",
                                                                         "RSS MiB"]
    w("| " + " | ".join(hdr) + " |")
    w("|" + "---|" + "---:|" * (len(hdr) - 1))
    for n in names:
        m = medians.get(n, {})
        w(f"| {n} | " + " | ".join(fmt(m.get(c), s) for c, s in cols) +
          f" | {fmt(m.get('B/entry'), ',.0f')} | {fmt(m.get('B/nx'), ',.0f')} | "
          f"{fmt(m.get('rss_mib'), '.1f')} |")
    w("")
    w("Forwarder CPU use during max qps (share of its core), Knot CPU seconds during the "
      "load (≈ 0: every answer came from the cache), p50 at the fixed rate, dnsperf's average "
      "response size:")
    for n in names:
        m = medians.get(n, {})
        w(f"  {n:<8} " + "; ".join(f"{ln}: cpu {fmt(m.get(ln + ' cpu'), '.2f')}, Knot "
                                   f"{fmt(m.get(ln + ' up'), '.2f')} s, p50 "
                                   f"{fmt(m.get(ln + ' p50'), '.3f')} ms, avg response "
                                   f"{fmt(m.get(ln + ' resp'), '.0f')} B" for ln in args.loads))
    w("Warm-up (pass 1 answered / names; Knot CPU s in pass 1 and in pass 2, ≈ 0 when the first "
      "pass cached every name):")
    for n in names:
        ws = [r["warm"] for rnd in rounds for r in rnd if r["name"] == n and r.get("warm")]
        w(f"  {n:<8} " + "; ".join(
            f"{x['pass1']['completed']}/{meta['n']}, Knot {x['knot_cpu_pass1_s']:.2f} / "
            f"{x['knot_cpu_pass2_s']:.2f} s" for x in ws))
    subject = "roster"
    if subject in names:
        w("")
        w(f"Ratios {subject} / peer (median of per-round ratios; qps and q/cpu: higher is "
          f"better for {subject}; p99 and B/entry: lower is better):")
        rcols = []
        for ln in args.loads:
            rcols += [f"{ln} qps", f"{ln} q/cpu", f"{ln} p99"]
        rcols += ["B/entry"]
        w("| peer | " + " | ".join(rcols) + " |")
        w("|---|" + "---:|" * len(rcols))
        for n in names:
            if n == subject:
                continue
            cells = []
            for c in rcols:
                rs = []
                for rnd in rounds:
                    a = next((figures(r, args.loads) for r in rnd if r["name"] == subject
                              and r.get("loads")), None)
                    b = next((figures(r, args.loads) for r in rnd if r["name"] == n
                              and r.get("loads")), None)
                    if a and b and a.get(c) and b.get(c):
                        rs.append(a[c] / b[c])
                cells.append(fmt(med(rs), ".2f") + "×" if rs else "-")
            w(f"| {n} | " + " | ".join(cells) + " |")
    w("")
    for rnd_i, rnd in enumerate(rounds):
        for r in rnd:
            bad = [c for c in r.get("checks", []) if not c["ok"]]
            if r.get("error") or bad:
                w(f"round {rnd_i + 1} {r['name']}: " + (r.get("error") or "") +
                  "; ".join(f"check {c['q']}: {c['detail']}" for c in bad))
    if all(r.get("checks_ok") for rnd in rounds for r in rnd):
        w("Answer checks (3 positive A with address and TTL, 2 NXDOMAIN with SOA) passed for "
          "every forwarder in every round.")
    w("")
    w("Versions: " + "; ".join(f"{k} {v}" for k, v in versions.items()))
    for rnd in rounds[:1]:
        for r in rnd:
            w(f"  {r['name']}: {r.get('cmd', '')}")
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------ main
def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=50000, help="cached names (A records)")
    ap.add_argument("--cache-size", type=int, default=100000,
                    help="roster --cache-size and dnsdist's packet cache entries")
    ap.add_argument("--only", default="roster,unbound,dnsdist")
    ap.add_argument("--loads", default="hit,hit+nx10")
    ap.add_argument("--rounds", type=int, default=2, help="interleaved rounds; tables show medians")
    ap.add_argument("--duration", type=int, default=8, help="max-qps seconds per load")
    ap.add_argument("--rate", type=int, default=10000, help="fixed rate of the latency runs")
    ap.add_argument("--latency-duration", type=int, default=5)
    ap.add_argument("--warm-rate", type=int, default=10000, help="warm-up queries per second")
    ap.add_argument("--clients", type=int, default=4, help="dnsperf -c")
    ap.add_argument("--outstanding", type=int, default=200, help="dnsperf -q")
    ap.add_argument("--timeout", type=int, default=2, help="dnsperf -t")
    ap.add_argument("--per-class", type=int, default=3,
                    help="seconds of the one-outstanding re-measure of an overloaded server")
    ap.add_argument("--profile", type=int, default=0, metavar="S",
                    help="perf record roster for S s under the hit load (after its figures)")
    ap.add_argument("--server-core", type=int, default=1)
    ap.add_argument("--client-core", type=int, default=0)
    ap.add_argument("--startup-timeout", type=int, default=60)
    ap.add_argument("--workdir", default=os.environ.get("BENCH_WORKDIR", "/tmp/roster-bench")
                    + "/forward")
    ap.add_argument("--results", default=os.path.join(BENCH_DIR, "results"))
    ap.add_argument("--no-save", action="store_true")
    args = ap.parse_args()
    args.no_edns = False
    args.profiled = False
    args.loads = [x.strip() for x in args.loads.split(",") if x.strip()]
    for ln in args.loads:
        if ln not in ("hit", "hit+nx10"):
            sys.exit(f"--loads: unknown load {ln} (hit, hit+nx10)")

    def _stop(signum, _frame):
        raise SystemExit(f"interrupted by signal {signum}")

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)

    def log(msg):
        print(time.strftime("%H:%M:%S ") + msg, flush=True)

    for tool in ("dnsperf", "taskset", "knotd"):
        if shutil.which(tool) is None:
            sys.exit(f"{tool} is required (bench/forward.sh --install)")
    t_start = time.monotonic()
    load0 = os.getloadavg()[0]
    try:
        rbuilt = dt.datetime.fromtimestamp(os.path.getmtime(peers_mod._roster_bin()),
                                           dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    except OSError:
        rbuilt = "?"
    started = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    os.makedirs(args.workdir, exist_ok=True)
    ds = gen_data(os.path.join(args.workdir, "data"), args.n)
    meta = ds["meta"]
    n_total = meta["n"] + meta["n_nx"] + PRE_NAMES
    if args.cache_size < n_total:
        sys.exit(f"--cache-size {args.cache_size} < {n_total} names: the cache would evict")

    knot = knot_upstream(BASE_PORT + 1)
    fwds = forwarders(knot.port, args.cache_size, n_total)
    only = [x.strip() for x in args.only.split(",") if x.strip()]
    fwds = [p for p in fwds if p.name in only]
    for p in fwds:
        ok, why = p.available()
        if not ok:
            sys.exit(f"{p.name}: {why}")
    versions = {p.name: p.version() for p in [knot] + fwds}

    # Knot runs on the client core: it works only during warm-up (and never during
    # measurements, when every answer comes from the forwarder's cache).
    kargs = argparse.Namespace(**vars(args))
    kargs.server_core = args.client_core
    knot_proc, knot_log, _st, err, _argv = bench.launch(
        knot, kargs, ds, os.path.join(args.workdir, "servers", "knot-upstream"), log)
    rounds = []
    try:
        if err:
            sys.exit(f"Knot upstream failed: {err}")
        bench.enforce_affinity(knot_proc.pid, args.client_core)
        for i in range(args.rounds):
            order = fwds if i % 2 == 0 else list(reversed(fwds))
            log(f"round {i + 1}/{args.rounds}: {', '.join(p.name for p in order)}")
            rounds.append([bench_forwarder(p, args, ds, knot_proc, log) for p in order])
    finally:
        if knot_proc is not None:
            bench.stop_server(knot_proc)
            knot_log.close()
            log(f"[knot-upstream] stopped pid {knot_proc.pid}")

    text = report(rounds, args, meta, versions)
    gi = bench.git_info(REPO_ROOT)
    head = (f"{started}  bench/forward.sh {' '.join(bench.args_quote(sys.argv[1:]))}\n"
            f"repo {gi['commit']} ({gi['dirty_files']} files modified in the working tree); "
            f"roster binary {peers_mod._roster_bin()} built {rbuilt}\n"
            f"host {bench.host_info().get('cpu', '?')} x{os.cpu_count()}, load average "
            f"{load0:.1f} at the start, {os.getloadavg()[0]:.1f} at the end; "
            f"wall {time.monotonic() - t_start:.0f} s\n")
    for rnd in rounds:
        for r in rnd:
            p = r.get("profile")
            if p and p.get("buckets"):
                text += (f"\nroster profile under the hit load ({args.profile} s, dnsperf "
                         f"{fmt(p['dnsperf_qps'], ',.0f')} qps; perf report -i {p['data']}):\n"
                         + "\n".join(p["buckets"]) + "\nself time, top 30 symbols:\n"
                         + "\n".join(l[:150].rstrip() for l in p["self_top"]) + "\n")
            elif p:
                text += f"\nroster profile: {p.get('error')}\n"
    print()
    print(head + text, end="")
    if not args.no_save:
        os.makedirs(args.results, exist_ok=True)
        with open(os.path.join(args.results, "forward-latest.txt"), "w") as f:
            f.write(head + text)
        path = os.path.join(args.results, f"forward-{dt.date.today().isoformat()}.json")
        doc = {"runs": []}
        if os.path.exists(path):
            try:
                doc = json.load(open(path))
            except ValueError:
                pass
        doc["runs"].append({"started": started, "argv": sys.argv[1:], "meta": meta,
                            "versions": versions, "rounds": rounds})
        with open(path, "w") as f:
            json.dump(doc, f, indent=1, default=str)
        log(f"saved {os.path.join(args.results, 'forward-latest.txt')} and {path}")
    return 0 if all(r.get("ok") for rnd in rounds for r in rnd) else 1


if __name__ == "__main__":
    sys.exit(main())
