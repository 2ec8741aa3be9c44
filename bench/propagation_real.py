#!/usr/bin/env python3
"""Propagation on the real control plane, roster against CoreDNS: kube-apiserver acknowledges a write →
every replica answers it. See bench/README.md ("Propagation on the real control plane").

One cluster (scripts/cluster.sh up: etcd, kube-apiserver, kube-controller-manager, kube-scheduler, kwok),
and three servers, each with --replicas replicas:
  * roster: `roster controller` with deploy/'s ServiceAccount token, `roster dns` replicas on its
    mutual-TLS record stream;
  * CoreDNS with kubeadm's Corefile without `cache` ("coredns-nocache": when its informers have the
    object), and as kubeadm deploys it ("coredns", `cache 30`: a name asked before CoreDNS has it stays
    NXDOMAIN in the cache for the negative TTL, 30 s, so it gets only --cached-changes writes).
For background 0 and then --background ClusterIP services (created once, through the API, 8 connections),
one server at a time is started on the cluster (as a cluster runs one DNS server, not three), waited for,
measured and stopped; roster and coredns-nocache take turns going first. `--together` is the design before
2026-12-08: every server watching the cluster at once, roster and coredns-nocache on the same writes, each
server's watches and answers loading the two cores and the API server the others are measured on.
  --changes writes through kube-apiserver's HTTPS API (admin certificate, keep-alive): `create Service`
  (a ClusterIP from the real allocator), every --delete-every-th a delete of the oldest; after the
  response has been read, every replica is polled with UDP queries until it answers the new state.
  "1 replica" is the first replica of a server, "3 replicas" the slowest of its three, from the same writes.

Only 127.0.0.1 is used; every loop is bounded in count and time; processes are stopped by PID.
"""
import argparse
import datetime as dt
import json
import os
import random
import select
import signal
import struct
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "lib"))
from propagation import (Replica, build_query, cpu_seconds, fmt_row, parse_log, parse_response, rss_kb,  # noqa: E402
                         summary, wait_until_seen)
import realcluster as rc  # noqa: E402

NAMESPACE = "prop"


def poll_until_seen(replicas, qname, check, poll_s, timeout_s, t0):
    """Polls each replica on its own schedule until `check(rcode, addrs)` holds for it: a replica is asked
    again `poll_s` after its previous question, as soon as that one is answered (or after 50 ms, lost), so
    a slow server never delays the questions to another (propagation.py's rounds wait for every answer).
    Returns {label: seconds since t0 or None on timeout}."""
    qname_l = qname.lower().rstrip(".")
    by_fd = {r.sock.fileno(): r for r in replicas}
    seen = {r.label: None for r in replicas}
    waiting = {r.label: r for r in replicas}
    sent_at = {}  # label -> when its outstanding question left (absent: none outstanding)
    next_send = {r.label: t0 for r in replicas}
    deadline = t0 + timeout_s
    while waiting:
        now = time.perf_counter()
        if now > deadline:
            break
        for label, r in waiting.items():
            outstanding = sent_at.get(label)
            if (outstanding is None or now - outstanding > 0.05) and now >= next_send[label]:
                try:
                    r.sock.send(build_query(random.randrange(65536), qname))
                except (BlockingIOError, ConnectionRefusedError):
                    pass
                sent_at[label] = now
                next_send[label] = now + poll_s
        wake = min([next_send[x] for x in waiting if x not in sent_at] + [now + 0.001])
        ready, _, _ = select.select([r.sock for r in waiting.values()], [], [], max(0.0, wake - time.perf_counter()))
        for sock in ready:
            r = by_fd[sock.fileno()]
            while True:
                try:
                    msg = sock.recv(4096)
                except (BlockingIOError, ConnectionRefusedError):
                    break
                try:
                    _rid, rcode, rq, addrs = parse_response(msg)
                except (ValueError, IndexError, struct.error):
                    continue
                if rq != qname_l or r.label not in waiting:
                    continue
                sent_at.pop(r.label, None)
                if check(rcode, addrs):
                    seen[r.label] = time.perf_counter() - t0
                    del waiting[r.label]
    return seen


def wait_all_answer(replicas, qname, limit_s=120):
    """Until every replica answers `qname` with an address (the servers have synced)."""
    seen, _ = wait_until_seen(replicas, qname, lambda rcode, addrs: rcode == 0 and bool(addrs), 0.2, limit_s,
                              time.perf_counter())
    missing = [label for label, t in seen.items() if t is None]
    if missing:
        raise RuntimeError(f"{missing} do not answer {qname} within {limit_s} s")


class WatchProbe(threading.Thread):
    """The benchmark's own watch of the namespace's Services through kube-apiserver (admin, HTTPS): when
    each ADDED/DELETED event reaches a plain client. It tells what part of a server's latency is the API
    server's watch delivery, common to roster and CoreDNS."""

    def __init__(self, api):
        super().__init__(daemon=True)
        self.arrivals = {}
        self.conn = api.clone()
        status, payload = self.conn.request("GET", f"/api/v1/namespaces/{NAMESPACE}/services?limit=1")
        rv = json.loads(payload)["metadata"]["resourceVersion"]
        self.conn.conn.request("GET", f"/api/v1/namespaces/{NAMESPACE}/services?watch=1&resourceVersion={rv}"
                                      f"&allowWatchBookmarks=false&timeoutSeconds=3000")
        self.resp = self.conn.conn.getresponse()
        if self.resp.status != 200:
            raise RuntimeError(f"watch: HTTP {self.resp.status}")

    def run(self):
        try:
            while True:
                line = self.resp.readline()
                if not line:
                    return
                at = time.perf_counter()
                event = json.loads(line)
                key = (event.get("type"), event.get("object", {}).get("metadata", {}).get("name"))
                self.arrivals.setdefault(key, at)
        except (OSError, ValueError):
            return

    def close(self):
        try:
            self.conn.conn.sock.shutdown(2)
        except OSError:
            pass


def measure(api, replicas, changes, delete_every, poll_s, timeout_s, max_seconds, prefix, probe=None):
    samples, alive = [], []
    started = time.perf_counter()
    for n in range(changes):
        if time.perf_counter() - started > max_seconds:
            print(f"    stopping after {n} changes: {max_seconds} s reached", flush=True)
            break
        for r in replicas:
            r.drain()
        if delete_every and (n + 1) % delete_every == 0 and alive:
            name = alive.pop(0)
            api.delete_service(NAMESPACE, name)
            t0 = time.perf_counter()

            def check(rcode, addrs):
                return rcode == 3
            op = "delete"
        else:
            name = f"{prefix}-{n}"
            ip = api.create_service(NAMESPACE, name)
            t0 = time.perf_counter()
            alive.append(name)

            def check(rcode, addrs, ip=ip):
                return rcode == 0 and addrs == [ip]
            op = "create"
        seen = poll_until_seen(replicas, f"{name}.{NAMESPACE}.svc.cluster.local", check, poll_s, timeout_s, t0)
        sample = {"op": op, "name": name, "per_replica_s": seen, "ack_wall": time.time() - (time.perf_counter() - t0)}
        if probe is not None:
            # Every replica answered, so the event was sent: give the probe's thread up to 1 s to read it.
            key = ("DELETED" if op == "delete" else "ADDED", name)
            give_up = time.monotonic() + 1.0
            while key not in probe.arrivals and time.monotonic() < give_up:
                time.sleep(0.001)
            arrived = probe.arrivals.get(key)
            sample["probe_watch_s"] = None if arrived is None else arrived - t0
        samples.append(sample)
    for name in alive:
        api.delete_service(NAMESPACE, name)
    return samples, time.perf_counter() - started


def trace_rows(samples, workdir, labels):
    """--trace: each roster replica's time split into ack → published (controller) → applied (replica) →
    answer seen, from the roster logs (µs timestamps, same clock): the generation that made a replica
    answer is the last one it applied before the answer was seen."""
    published = parse_log(os.path.join(workdir, "controller.log"))["published"]
    segments = {"ack → published (controller)": [], "published → applied (replica)": [],
                "applied → answer seen": []}
    for label in labels:
        applied = parse_log(os.path.join(workdir, f"{label}.log"))["applied"]
        for s in samples:
            seen = s["per_replica_s"].get(label)
            if seen is None:
                continue
            seen_wall = s["ack_wall"] + seen
            gens = [g for g, t in applied.items() if t <= seen_wall + 0.0005]
            if not gens or max(gens) not in published:
                continue
            g = max(gens)
            # A watch event may beat the write's response: steps before the ack count from the ack.
            ack = s["ack_wall"]
            pub, app = max(published[g], ack), max(applied[g], ack)
            segments["ack → published (controller)"].append(pub - ack)
            segments["published → applied (replica)"].append(app - pub)
            segments["applied → answer seen"].append(seen_wall - app)
    return [(f"trace, roster replicas: {k}", summary([max(v, 0.0) for v in vals])) for k, vals in segments.items()]


def rows(samples, groups):
    """[(label, summary)] per (server, 1 replica / all its replicas)."""
    out = []
    for server, labels in groups.items():
        first = [s["per_replica_s"][labels[0]] for s in samples]
        out.append((f"{server}, 1 replica", summary(first)))
        if len(labels) > 1:
            slowest = [None if any(s["per_replica_s"][x] is None for x in labels)
                       else max(s["per_replica_s"][x] for x in labels) for s in samples]
            out.append((f"{server}, {len(labels)} replicas (slowest)", summary(slowest)))
    return out


SERVERS = ("roster", "coredns-nocache", "coredns")


def create_background(api, count):
    """`count` ClusterIP services through the API (8 connections), never measured."""
    print(f"  creating {count} background ClusterIP services ...", flush=True)
    t = time.perf_counter()
    rc.in_parallel(api, range(count), lambda a, i: a.create_service(NAMESPACE, f"bg-{i}"))
    print(f"  created in {time.perf_counter() - t:.1f} s", flush=True)


def start_server(args, cluster, server, rundir, log, procs, replicas):
    """One server's replicas (roster: its controller too), appended to `procs` and `replicas` (which the
    run's `finally` stops and closes); returns its processes and its replicas."""
    started, group = [], []
    if server == "roster":
        controller, stream_port, client_dir = rc.start_controller(args.roster, cluster, rundir, log=log)
        started.append(controller)
    upstream = rc.free_port()  # nothing listens: no name outside the cluster is asked
    for i in range(args.replicas):
        if server == "roster":
            proc, port = rc.start_dns(args.roster, f"roster-{i}", stream_port, client_dir, rundir, log=log)
        else:
            proc, port = rc.start_coredns(cluster, f"{server}-{i}", rundir, server == "coredns", upstream)
        started.append(proc)
        group.append(Replica(proc.label, port))
    procs.extend(started)
    replicas.extend(group)
    return started, group


def probe_row(samples):
    """The harness's plain watch of the Services, over `samples`' writes: a table row, or None."""
    vals = [x["probe_watch_s"] for x in samples if "probe_watch_s" in x]
    if not vals:
        return None
    early = sum(1 for v in vals if v is not None and v < 0)
    return (f"diagnostic: the event on a plain watch of the Services ({early} before the ack)",
            summary([None if v is None else max(v, 0.0) for v in vals]))


def one_at_a_time(args, cluster, api, workdir, log, stopping, probe, procs, replicas, results):
    """The default: one server at a time on the cluster (roster, CoreDNS without cache, CoreDNS with it),
    as a cluster runs one of them; each started after the background services exist, measured, stopped.
    The first two take turns going first from one background size to the next."""
    for round_no, background in enumerate((0, args.background) if args.background else (0,)):
        if background:
            create_background(api, background)
        rundir = os.path.join(workdir, f"background-{background}")
        os.makedirs(rundir, exist_ok=True)
        order = SERVERS if round_no % 2 == 0 else ("coredns-nocache", "roster", "coredns")
        rnd = {"background": background, "elapsed_s": 0.0, "cpu_s": {}, "rss_kb": {}, "samples": [],
               "cached_samples": [], "order": list(order)}
        tables = {}
        for server in order:
            stopping.starting()
            started, group = start_server(args, cluster, server, rundir, log, procs, replicas)
            labels = [r.label for r in group]
            stopping.started()
            # The API server's own Service answers once a server has synced (asked once: not cached negative).
            time.sleep(1.0)
            wait_all_answer(group, "kubernetes.default.svc.cluster.local")
            if background:
                wait_all_answer(group, f"bg-{background - 1}.{NAMESPACE}.svc.cluster.local")
            cached = server == "coredns"
            changes = args.cached_changes if cached else args.changes
            print(f"  background {background}: {changes} writes, {server} ...", flush=True)
            cpu0 = {p.label: cpu_seconds(p.pid) for p in started}
            samples, elapsed = measure(api, group, changes, 0 if cached else args.delete_every, args.poll_us / 1e6,
                                       args.cached_timeout_s if cached else args.timeout_s, args.max_seconds,
                                       f"p{round_no}{server[:1]}{len(server)}", None if cached else probe)
            rnd["cpu_s"].update({p.label: round(cpu_seconds(p.pid) - cpu0[p.label], 2) for p in started})
            rnd["rss_kb"].update({p.label: rss_kb(p.pid) for p in started})
            for p in started:
                if not p.alive():
                    raise RuntimeError(f"{p.label} exited during the run:\n{p.tail()}")
            table = rows(samples, {server: labels})
            if server == "roster" and args.trace:
                table += trace_rows(samples, rundir, labels)
            tables[server] = table
            if cached:
                rnd["cached_samples"] = samples
            else:
                rnd["samples"] += samples
                rnd["elapsed_s"] += elapsed
            for p in started:
                p.stop()
            for r in group:
                r.close()
        probe_rows = [row for row in [probe_row(rnd["samples"])] if row]
        rnd["table"] = tables["roster"] + tables["coredns-nocache"] + probe_rows + tables["coredns"]
        results["rounds"].append(rnd)
        print_round(rnd, args)


def all_at_once(args, cluster, api, workdir, log, stopping, probe, procs, replicas, results):
    """`--together`, the design before 2026-12-08: every server's replicas on the cluster at once, roster
    and CoreDNS without cache timed on the same writes, then CoreDNS with cache on its few."""
    groups = {}
    for server in SERVERS:
        _, group = start_server(args, cluster, server, workdir, log, procs, replicas)
        groups[server] = group
    stopping.started()
    # The API server's own Service answers once a server has synced (asked once: not cached negative).
    time.sleep(1.0)
    wait_all_answer(replicas, "kubernetes.default.svc.cluster.local")
    fast = groups["roster"] + groups["coredns-nocache"]
    labels = {server: [r.label for r in group] for server, group in groups.items()}
    for round_no, background in enumerate((0, args.background) if args.background else (0,)):
        if background:
            create_background(api, background)
            wait_all_answer(replicas, f"bg-{background - 1}.{NAMESPACE}.svc.cluster.local")
        print(f"  background {background}: {args.changes} writes, roster and coredns-nocache ...", flush=True)
        cpu0 = {p.label: cpu_seconds(p.pid) for p in procs}
        samples, elapsed = measure(api, fast, args.changes, args.delete_every, args.poll_us / 1e6,
                                   args.timeout_s, args.max_seconds, f"p{round_no}", probe)
        cpu = {p.label: round(cpu_seconds(p.pid) - cpu0[p.label], 2) for p in procs}
        print(f"  background {background}: {args.cached_changes} writes, coredns (cache 30) ...", flush=True)
        cached_samples, _ = measure(api, groups["coredns"], args.cached_changes, 0, args.poll_us / 1e6,
                                    args.cached_timeout_s, args.max_seconds, f"c{round_no}")
        table = rows(samples, {k: v for k, v in labels.items() if k != "coredns"})
        table += [row for row in [probe_row(samples)] if row]
        if args.trace:
            table += trace_rows(samples, workdir, labels["roster"])
        table += rows(cached_samples, {"coredns": labels["coredns"]})
        results["rounds"].append({"background": background, "elapsed_s": elapsed, "cpu_s": cpu,
                                  "rss_kb": {p.label: rss_kb(p.pid) for p in procs},
                                  "samples": samples, "cached_samples": cached_samples,
                                  "table": [(label, s) for label, s in table]})
        print_round(results["rounds"][-1], args)
    for p in procs:
        if not p.alive():
            raise RuntimeError(f"{p.label} exited during the run:\n{p.tail()}")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--roster", default=os.environ.get("ROSTER_BIN", os.path.join(rc.REPO, "target/release/roster")))
    ap.add_argument("--replicas", type=int, default=3, help="replicas of each server (3)")
    ap.add_argument("--changes", type=int, default=200, help="measured writes per background size (200)")
    ap.add_argument("--cached-changes", type=int, default=6,
                    help="writes measured against CoreDNS with `cache 30` (each waits out its negative cache; 6)")
    ap.add_argument("--delete-every", type=int, default=4, help="every Nth write deletes the oldest (4)")
    ap.add_argument("--background", type=int, default=5000, help="ClusterIP services of the second round (5000)")
    ap.add_argument("--poll-us", type=int, default=500, help="DNS poll round interval in µs (500)")
    ap.add_argument("--together", action="store_true",
                    help="every server watching the cluster at once, measured on the same writes (the design "
                         "before 2026-12-08); by default one server at a time, as a cluster runs one")
    ap.add_argument("--timeout-s", type=float, default=10.0, help="give up on one write after this (10)")
    ap.add_argument("--cached-timeout-s", type=float, default=45.0, help="the same for cached CoreDNS (45)")
    ap.add_argument("--max-seconds", type=float, default=600.0, help="bound per round (600)")
    ap.add_argument("--trace", action="store_true",
                    help="diagnostic: roster logs each publication and applied frame; the report splits roster's "
                         "time into ack → published → applied → answered")
    ap.add_argument("--quick", action="store_true", help="smoke run: 20 changes, 2 cached, 200 background")
    ap.add_argument("--workdir", default=os.environ.get("BENCH_WORKDIR", "/tmp/roster-bench") + "/propagation-real")
    ap.add_argument("--json", default=None, help="raw results (default bench/results/propagation-real-<date>.json)")
    args = ap.parse_args()

    # SIGTERM (bench/issue14.sh's bound) stops the cluster and the servers too.
    stopping = rc.SigtermStop()
    if args.quick:
        args.changes, args.cached_changes, args.background = 20, 2, 200
    if not os.access(args.roster, os.X_OK):
        sys.exit(f"{args.roster} is not built (cargo build --release)")
    os.makedirs(args.workdir, exist_ok=True)
    workdir = tempfile.mkdtemp(prefix="run-", dir=args.workdir)
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    mode = "every server at once" if args.together else "one server at a time"
    print(f"propagation on the real control plane, {stamp}; {rc.machine_line()}; {mode}; logs in {workdir}",
          flush=True)

    cluster = None
    probe = None
    procs = []
    replicas = []
    results = {"date": stamp, "machine": rc.machine_line(), "args": vars(args), "rounds": []}
    try:
        stopping.starting()
        cluster = rc.Cluster(workdir)
        cluster.apply_deploy()
        api = cluster.api()
        api.ensure_namespace(NAMESPACE)
        log = "warn,roster_controller::kube_source=debug,roster_dns::subscriber=info" if args.trace else "warn"
        probe = WatchProbe(api)
        probe.start()
        measure_all = all_at_once if args.together else one_at_a_time
        measure_all(args, cluster, api, workdir, log, stopping, probe, procs, replicas, results)
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # the stopping below is bounded
        if probe is not None:
            probe.close()
        for r in replicas:
            r.close()
        for p in reversed(procs):
            p.stop()
        if cluster is not None:
            cluster.down()
        elif os.path.exists(os.path.join(workdir, "cluster", "pids")):  # stopped while `cluster.sh up` ran
            rc.run([rc.CLUSTER_SH, "down", os.path.join(workdir, "cluster")], timeout=120)
    out = args.json or os.path.join(HERE, "results", f"propagation-real-{stamp[:10]}.json")
    with open(out, "w") as f:
        json.dump(results, f)
    print(f"raw samples: {out}")
    return 0


def print_round(r, args):
    print()
    writes = f"{len(r['samples'])} writes" if args.together else f"{args.changes} writes per server"
    print(f"#### background {r['background']} services ({writes}, "
          f"{len(r['cached_samples'])} against cached CoreDNS)")
    print()
    print("| ms (write acked → answer seen) | n | p50 | p90 | p99 | max | timeouts |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for label, s in r["table"]:
        print(fmt_row(label, s))
    print()
    cpu = ", ".join(f"{k} {v:.1f} s" for k, v in r["cpu_s"].items())
    rss = ", ".join(f"{k} {v / 1024:.0f} MiB" for k, v in r["rss_kb"].items() if v)
    print(f"CPU during the writes: {cpu}. RSS after: {rss}.")
    print(flush=True)


if __name__ == "__main__":
    sys.exit(main())
