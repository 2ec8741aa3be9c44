#!/usr/bin/env python3
"""The record stream at node scale on the real control plane: one `roster controller` (deploy/'s
ServiceAccount token) with 0, 10 and 1,000 light subscribers, and kube-apiserver's own metrics, which
must not grow with subscribers. See bench/README.md ("Stream subscribers against a real API server").

  1. scripts/cluster.sh up; deploy/ applied; --services headless Services (no selector) in namespace
     `scale`, each with one EndpointSlice of --endpoints ready endpoints with hostnames (services ×
     endpoints pod records), created through the API on 8 connections;
  2. `roster controller` on a mutual-TLS stream, waited ready;
  3. for each subscriber count in --subscribers: `fanout --attach` (controller/examples/fanout.rs) opens
     that many stream connections, decoding and checking every frame (zstd, as replicas ask); the snapshot
     fan-out time (connect → the last subscriber has read the whole snapshot) and the controller's CPU;
     then --deltas writes (an endpoint's readiness flipped by JSON patch), one at a time: API write acked →
     every subscriber has read a delta newer than before the write; kube-apiserver's /metrics before,
     with the subscribers attached, and after the writes: WATCH requests in flight
     (apiserver_longrunning_requests{verb="WATCH"}), watch events sent and their bytes
     (apiserver_watch_events_total, apiserver_watch_events_sizes_sum).

Only 127.0.0.1 is used; every wait is bounded; processes are stopped by PID.
"""
import argparse
import datetime as dt
import json
import os
import queue
import signal
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "lib"))
from propagation import cpu_seconds, rss_kb, summary  # noqa: E402
import realcluster as rc  # noqa: E402

NAMESPACE = "scale"


def api_watch_metrics(api):
    text = api.metrics()
    return {
        "watches": rc.metric_sum(text, "apiserver_longrunning_requests", verb="WATCH"),
        "registered_watchers": rc.metric_sum(text, "apiserver_registered_watchers"),
        "watch_events": rc.metric_sum(text, "apiserver_watch_events_total"),
        "watch_bytes": rc.metric_sum(text, "apiserver_watch_events_sizes_sum"),
        "endpointslice_events": rc.metric_sum(text, "apiserver_watch_events_total", resource="endpointslices"),
        "endpointslice_bytes": rc.metric_sum(text, "apiserver_watch_events_sizes_sum", resource="endpointslices"),
    }


class Subscribers:
    """`fanout --attach`: its stdout lines read by a thread into a bounded queue."""

    def __init__(self, fanout, stream_port, client_dir, count, log_path, encoding):
        self.started_ns = time.time_ns()
        self.popen = subprocess.Popen([fanout, "--attach", f"https://127.0.0.1:{stream_port}", client_dir, str(count),
                                       encoding], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                      stderr=open(log_path, "wb"), text=True, start_new_session=True)
        self.lines = queue.Queue(maxsize=1_000_000)
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.popen.stdout:
            self.lines.put(line.split())
        self.lines.put(None)

    def next(self, deadline, max_rss_mib=None):
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("the subscribers did not report in time")
            try:
                line = self.lines.get(timeout=min(left, 1.0))
                break
            except queue.Empty:
                # The machine is shared: a subscriber process outgrowing its bound is stopped, not waited for.
                rss = rss_kb(self.popen.pid) or 0
                if max_rss_mib and rss > max_rss_mib * 1024:
                    self.popen.kill()
                    raise RuntimeError(f"the subscriber process reached {rss // 1024} MiB before the snapshot "
                                       f"fan-out completed (bound --max-subscriber-rss-mib {max_rss_mib})")
        if line is None:
            raise RuntimeError(f"the subscribers exited: {self.popen.wait(timeout=10)}")
        return line

    def stop(self):
        if self.popen.poll() is None:
            try:
                self.popen.stdin.close()
                self.popen.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(timeout=10)


def one_phase(args, api, controller, stream_port, client_dir, workdir, count, slices, ready_state):
    out = {"subscribers": count}
    out["api_before"] = api_watch_metrics(api)
    subs = None
    try:
        if count:
            cpu0 = cpu_seconds(controller.pid)
            subs = Subscribers(args.fanout, stream_port, client_dir, count,
                               os.path.join(workdir, f"subscribers-{count}.log"), args.encoding)
            line = subs.next(time.monotonic() + args.fanout_timeout_s, args.max_subscriber_rss_mib)
            if line[0] != "snapshot":
                raise RuntimeError(f"unexpected line {line}")
            out["fanout_s"] = (int(line[1]) - subs.started_ns) / 1e9
            out["snapshot_bytes"] = int(line[2])
            out["controller_cpu_fanout_s"] = cpu_seconds(controller.pid) - cpu0
        out["controller_rss_mib"] = (rss_kb(controller.pid) or 0) / 1024
        out["api_attached"] = api_watch_metrics(api)
        window_start = time.monotonic()
        cpu0 = cpu_seconds(controller.pid)
        latest = [0] * count  # newest generation each subscriber has read
        latencies = []
        misses = 0
        for n in range(args.deltas):
            before = list(latest)
            # Round robin over the slices across phases; each write flips that endpoint's readiness.
            name = slices[ready_state["next"] % len(slices)]
            ready_state["next"] += 1
            ready_state[name] = not ready_state.get(name, True)
            api.set_endpoint_ready(NAMESPACE, name, ready_state[name])
            acked = time.time_ns()
            waiting = set(range(count))
            deadline = time.monotonic() + args.delta_timeout_s
            try:
                while waiting:
                    line = subs.next(deadline)
                    if line[0] != "delta":
                        continue
                    index, generation, at = int(line[1]), int(line[2]), int(line[3])
                    latest[index] = max(latest[index], generation)
                    if index in waiting and generation > before[index]:
                        waiting.discard(index)
                        latencies.append((at - acked) / 1e9)
            except TimeoutError:
                misses += len(waiting)
            if not count:
                time.sleep(0.05)
        out["controller_cpu_deltas_s"] = cpu_seconds(controller.pid) - cpu0
        out["delta"] = summary(latencies + [None] * misses) if count else None
        time.sleep(1.0)  # the last events reach every watcher before the counters are read
        out["api_after"] = api_watch_metrics(api)
        out["window_s"] = time.monotonic() - window_start
    finally:
        if subs is not None:
            subs.stop()
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--roster", default=os.environ.get("ROSTER_BIN", os.path.join(rc.REPO, "target/release/roster")))
    ap.add_argument("--fanout", default=os.path.join(rc.REPO, "target/release/examples/fanout"))
    ap.add_argument("--subscribers", default="0,10,1000", help="subscriber counts, in turn (0,10,1000)")
    ap.add_argument("--services", type=int, default=1000, help="headless services (1000)")
    ap.add_argument("--endpoints", type=int, default=100, help="ready endpoints per service (100)")
    ap.add_argument("--deltas", type=int, default=40, help="writes measured per subscriber count (40)")
    ap.add_argument("--fanout-timeout-s", type=float, default=600.0)
    ap.add_argument("--delta-timeout-s", type=float, default=30.0)
    ap.add_argument("--encoding", choices=["zstd", "plain"], default="zstd",
                    help="what the subscribers ask for (zstd, as replicas; each zstd decoder holds a window of up "
                         "to the frame's size, so 1,000 of them in one process need GiBs: plain then)")
    ap.add_argument("--max-subscriber-rss-mib", type=int, default=4096,
                    help="stop the subscriber process beyond this resident size (4096)")
    ap.add_argument("--quick", action="store_true", help="smoke run: 50 × 20 records, 0,10,100 subscribers")
    ap.add_argument("--workdir", default=os.environ.get("BENCH_WORKDIR", "/tmp/roster-bench") + "/watchers-real")
    ap.add_argument("--json", default=None, help="raw results (default bench/results/watchers-real-<date>.json)")
    args = ap.parse_args()

    # SIGTERM (bench/issue14.sh's bound) stops the cluster and the servers too.
    stopping = rc.SigtermStop()
    if args.quick:
        args.services, args.endpoints, args.subscribers, args.deltas = 50, 20, "0,10,100", 10
    for path in (args.roster, args.fanout):
        if not os.access(path, os.X_OK):
            sys.exit(f"{path} is not built (cargo build --release --bin roster --example fanout -p roster -p "
                     f"roster-controller)")
    counts = [int(x) for x in args.subscribers.split(",") if x]
    os.makedirs(args.workdir, exist_ok=True)
    workdir = tempfile.mkdtemp(prefix="run-", dir=args.workdir)
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    print(f"stream subscribers against a real API server, {stamp}; {rc.machine_line()}; logs in {workdir}",
          flush=True)
    cluster, controller = None, None
    results = {"date": stamp, "machine": rc.machine_line(), "args": vars(args), "phases": []}
    try:
        stopping.starting()
        cluster = rc.Cluster(workdir)
        cluster.apply_deploy()
        api = cluster.api()
        api.ensure_namespace(NAMESPACE)
        t = time.perf_counter()
        names = [f"s-{i}" for i in range(args.services)]
        rc.in_parallel(api, names, lambda a, name: a.create_service(NAMESPACE, name, headless=True))
        rc.in_parallel(api, list(enumerate(names)),
                       lambda a, job: a.create_endpoint_slice(NAMESPACE, job[1], args.endpoints, job[0]))
        results["create_s"] = time.perf_counter() - t
        print(f"  {args.services} services × {args.endpoints} endpoints created in {results['create_s']:.1f} s",
              flush=True)
        controller, stream_port, client_dir = rc.start_controller(args.roster, cluster, workdir,
                                                                   max_connections=max(counts) + 64)
        stopping.started()
        results["controller_ready_s"] = time.perf_counter() - t
        slices = [f"{name}-1" for name in names]
        ready_state = {"next": 0}
        for count in counts:
            print(f"  {count} subscribers ...", flush=True)
            phase = one_phase(args, api, controller, stream_port, client_dir, workdir, count, slices, ready_state)
            results["phases"].append(phase)
            print(json.dumps(phase), flush=True)
            if not controller.alive():
                raise RuntimeError(f"roster controller exited:\n{controller.tail()}")
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # the stopping below is bounded
        if controller is not None:
            controller.stop()
        if cluster is not None:
            cluster.down()
        elif os.path.exists(os.path.join(workdir, "cluster", "pids")):  # stopped while `cluster.sh up` ran
            rc.run([rc.CLUSTER_SH, "down", os.path.join(workdir, "cluster")], timeout=120)
        # What was measured is kept even when a later phase failed.
        print_tables(results, args)
        out = args.json or os.path.join(HERE, "results", f"watchers-real-{stamp[:10]}.json")
        with open(out, "w") as f:
            json.dump(results, f)
        print(f"raw results: {out}")
    return 0


def fmt(v, spec=".0f"):
    return "–" if v is None else format(v, spec)


def print_tables(results, args):
    print()
    print(f"{args.services} headless services × {args.endpoints} endpoints = {args.services * args.endpoints} pod "
          f"records; {args.encoding} stream; {args.deltas} writes per row; {results['machine']}")
    print()
    print("| subscribers | snapshot fan-out s | controller CPU s (fan-out) | delta ms p50 / p99 / max (API ack → "
          "subscriber, over writes × subscribers) | controller CPU s (deltas) | controller RSS MiB |")
    print("|---:|---:|---:|---|---:|---:|")
    for p in results["phases"]:
        d = p["delta"]
        delta = "–" if not d else (f"{fmt(d.get('p50'), '.1f')} / {fmt(d.get('p99'), '.1f')} / "
                                   f"{fmt(d.get('max'), '.1f')} ({d['timeouts']} missed)")
        print(f"| {p['subscribers']} | {fmt(p.get('fanout_s'), '.2f')} | {fmt(p.get('controller_cpu_fanout_s'), '.2f')} "
              f"| {delta} | {p['controller_cpu_deltas_s']:.2f} | {p['controller_rss_mib']:.0f} |")
    print()
    print("kube-apiserver /metrics (whole server: roster, kube-controller-manager, scheduler, kwok):")
    print()
    print("| subscribers | WATCH requests before / attached / after | write window s | watch events (all) "
          "| EndpointSlice watch events | EndpointSlice watch bytes |")
    print("|---:|---|---:|---:|---:|---:|")
    for p in results["phases"]:
        b, a, z = p["api_before"], p["api_attached"], p["api_after"]

        def diff(key):
            return None if z.get(key) is None or a.get(key) is None else z[key] - a[key]
        print(f"| {p['subscribers']} | {fmt(b['watches'])} / {fmt(a['watches'])} / {fmt(z['watches'])} "
              f"| {p['window_s']:.1f} | {fmt(diff('watch_events'))} | {fmt(diff('endpointslice_events'))} "
              f"| {fmt(diff('endpointslice_bytes'))} |")


if __name__ == "__main__":
    sys.exit(main())
