#!/usr/bin/env python3
"""Propagation latency of roster: API write acknowledged -> every DNS replica answers the new record.

For each replica count in --replicas (default 1 and 3):
  1. starts `roster local` (stand-in Kubernetes API + controller + one DNS server) on free 127.0.0.1
     ports, plus N-1 `roster dns --controller http://<stream>` replicas following its record stream;
  2. waits until every replica answers kubernetes.default.svc.<zone> A;
  3. optionally creates --background ClusterIP services (not measured) so that the zone is not tiny;
  4. performs --changes changes one after another through the Kubernetes HTTP API (keep-alive
     connection, plain http.client, JSON bodies): mostly `create Service p-<i>` (ClusterIP), and every
     --delete-every-th change a `delete` of the oldest still existing p-<j>;
  5. for each change, from the moment the HTTP response to the write has been read (the API
     acknowledged it) polls every replica with raw UDP DNS queries (A p-<i>.<ns>.svc.<zone>; one query
     per still-waiting replica per round, rounds every --poll-us microseconds, at most --timeout-s
     seconds) until the replica answers the new state: the A record equal to the clusterIP of the
     create response, or NXDOMAIN after a delete. The time of a replica is the receive time of the first
     response that shows the new state (so it includes one loopback round trip, ~0.1 ms);
  6. stops what it started, by PID.

Reports p50/p90/p99/max (ms) for "all replicas" (the slowest replica per change) and per replica,
for creates, deletes and both, and by position in the run (the zone grows). Raw samples go to --json.

Diagnostics (see bench/README.md): --trace (roster's logs split each change into ack → published →
applied → answered), --watch-probe plain|quickack (the benchmark's own watch of the Services),
--via-proxy N (a second `roster controller` watching through a TCP_NODELAY/TCP_QUICKACK relay, with N
replicas of its own), --perf (perf record of roster local).

Only 127.0.0.1 is used; every wait is bounded.
"""
import argparse
import datetime as dt
import http.client
import json
import os
import random
import re
import select
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)

# ------------------------------------------------------------------ tiny DNS client

QTYPE_A = 1


def encode_name(name):
    out = b""
    for label in name.rstrip(".").split("."):
        out += bytes([len(label)]) + label.encode()
    return out + b"\0"


def build_query(qid, qname):
    return struct.pack(">HHHHHH", qid, 0, 1, 0, 0, 0) + encode_name(qname) + struct.pack(">HH", QTYPE_A, 1)


def skip_name(msg, off):
    while True:
        n = msg[off]
        if n == 0:
            return off + 1
        if n & 0xC0 == 0xC0:
            return off + 2
        off += 1 + n


def read_name(msg, off):
    labels = []
    hops = 0
    while True:
        n = msg[off]
        if n == 0:
            break
        if n & 0xC0 == 0xC0:
            off = ((n & 0x3F) << 8) | msg[off + 1]
            hops += 1
            if hops > 20:
                raise ValueError("compression loop")
            continue
        labels.append(msg[off + 1:off + 1 + n].decode("ascii", "replace").lower())
        off += 1 + n
    return ".".join(labels)


def parse_response(msg):
    """(id, rcode, qname, [A addresses]) of a response."""
    qid, flags, qd, an, _ns, _ar = struct.unpack(">HHHHHH", msg[:12])
    off = 12
    qname = ""
    for i in range(qd):
        if i == 0:
            qname = read_name(msg, off)
        off = skip_name(msg, off) + 4
    addrs = []
    for _ in range(an):
        off = skip_name(msg, off)
        rtype, _rclass, _ttl, rdlen = struct.unpack(">HHIH", msg[off:off + 10])
        off += 10
        if rtype == QTYPE_A and rdlen == 4:
            addrs.append(socket.inet_ntoa(msg[off:off + 4]))
        off += rdlen
    return qid, flags & 0xF, qname, addrs


class Replica:
    def __init__(self, label, port):
        self.label = label
        self.port = port
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.connect(("127.0.0.1", port))
        self.sock.setblocking(False)

    def drain(self):
        while True:
            try:
                self.sock.recv(4096)
            except BlockingIOError:
                return

    def ask_once(self, qname, timeout=1.0):
        """One blocking query: (rcode, addrs) or None on timeout."""
        self.drain()
        qid = random.randrange(65536)
        self.sock.send(build_query(qid, qname))
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            r, _, _ = select.select([self.sock], [], [], left)
            if not r:
                return None
            try:
                msg = self.sock.recv(4096)
            except (BlockingIOError, ConnectionRefusedError):
                continue
            try:
                rid, rcode, rq, addrs = parse_response(msg)
            except (ValueError, IndexError, struct.error):
                continue
            if rid == qid and rq == qname.lower().rstrip("."):
                return rcode, addrs

    def close(self):
        self.sock.close()


def wait_until_seen(replicas, qname, check, poll_s, timeout_s, t0):
    """Polls every replica until `check(rcode, addrs)` holds for it. Returns {label: seconds since t0 or
    None on timeout} and the number of queries sent."""
    qname_l = qname.lower().rstrip(".")
    waiting = {r.label: r for r in replicas}
    seen = {r.label: None for r in replicas}
    by_fd = {r.sock.fileno(): r for r in replicas}
    by_label = {r.label: r for r in replicas}
    deadline = t0 + timeout_s
    queries = 0
    while waiting:
        round_start = time.perf_counter()
        if round_start > deadline:
            break
        outstanding = {}
        for label, r in waiting.items():
            qid = random.randrange(65536)
            try:
                r.sock.send(build_query(qid, qname))
            except (BlockingIOError, ConnectionRefusedError):
                continue
            outstanding[label] = qid
            queries += 1
        # Collect this round's answers (a lost datagram gives up after 50 ms).
        answer_deadline = round_start + 0.05
        while outstanding:
            left = answer_deadline - time.perf_counter()
            if left <= 0:
                break
            ready, _, _ = select.select([by_label[label].sock for label in outstanding], [], [], left)
            now = time.perf_counter()
            for sock in ready:
                r = by_fd[sock.fileno()]
                while True:
                    try:
                        msg = sock.recv(4096)
                    except (BlockingIOError, ConnectionRefusedError):
                        break
                    try:
                        rid, rcode, rq, addrs = parse_response(msg)
                    except (ValueError, IndexError, struct.error):
                        continue
                    if rq != qname_l:
                        continue
                    # Any answer to this name sent after t0 counts; only this round's id closes the round.
                    if r.label in waiting and check(rcode, addrs):
                        seen[r.label] = now - t0
                        del waiting[r.label]
                        outstanding.pop(r.label, None)
                    elif outstanding.get(r.label) == rid:
                        del outstanding[r.label]
        if waiting:
            pause = round_start + poll_s - time.perf_counter()
            if pause > 0:
                time.sleep(pause)
    return seen, queries


# ------------------------------------------------------------------ processes

def free_port():
    while True:
        udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        udp.bind(("127.0.0.1", 0))
        port = udp.getsockname()[1]
        tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            tcp.bind(("127.0.0.1", port))
            return port
        except OSError:
            continue
        finally:
            tcp.close()
            udp.close()


class Proc:
    """A process this harness started; stopped by its PID only."""

    def __init__(self, label, args, log_path, env):
        self.label = label
        self.log_path = log_path
        self.log = open(log_path, "wb")
        self.popen = subprocess.Popen(args, stdout=self.log, stderr=subprocess.STDOUT, env=env,
                                      start_new_session=True)

    @property
    def pid(self):
        return self.popen.pid

    def alive(self):
        return self.popen.poll() is None

    def stop(self):
        if self.popen.poll() is None:
            try:
                os.kill(self.popen.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.popen.wait(timeout=10)
            except subprocess.TimeoutExpired:
                try:
                    os.kill(self.popen.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                self.popen.wait(timeout=10)
        self.log.close()

    def tail(self, n=30):
        try:
            with open(self.log_path, "rb") as f:
                return b"\n".join(f.read().splitlines()[-n:]).decode("utf-8", "replace")
        except OSError:
            return ""


def rss_kb(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def cpu_seconds(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return None


# ------------------------------------------------------------------ Kubernetes API

class Api:
    """Plain HTTP/1.1 keep-alive client for the stand-in's core/v1 Services."""

    def __init__(self, port, namespace):
        self.port = port
        self.namespace = namespace
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)

    def request(self, method, path, body=None):
        headers = {"Accept": "application/json"}
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        for attempt in (0, 1):
            try:
                self.conn.request(method, path, body=data, headers=headers)
                resp = self.conn.getresponse()
                payload = resp.read()
                return resp.status, payload
            except (http.client.HTTPException, ConnectionError, OSError):
                if attempt:
                    raise
                self.conn.close()
                self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        raise RuntimeError("unreachable")

    def create_service(self, name):
        body = {"apiVersion": "v1", "kind": "Service",
                "metadata": {"name": name, "namespace": self.namespace},
                "spec": {"ports": [{"name": "http", "port": 80, "protocol": "TCP"}],
                         "selector": {"app": name}}}
        status, payload = self.request("POST", f"/api/v1/namespaces/{self.namespace}/services", body)
        if status != 201:
            raise RuntimeError(f"create {name}: HTTP {status}: {payload[:300]!r}")
        return json.loads(payload)["spec"]["clusterIP"]

    def delete_service(self, name):
        status, payload = self.request("DELETE", f"/api/v1/namespaces/{self.namespace}/services/{name}")
        if status not in (200, 202):
            raise RuntimeError(f"delete {name}: HTTP {status}: {payload[:300]!r}")

    def ensure_namespace(self):
        if self.namespace == "default":
            return
        body = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": self.namespace}}
        status, payload = self.request("POST", "/api/v1/namespaces", body)
        if status not in (201, 409):
            raise RuntimeError(f"create namespace: HTTP {status}: {payload[:300]!r}")


class KubeClientApi(Api):
    """The same operations through the Python `kubernetes` client (--client kubernetes)."""

    def __init__(self, port, namespace):
        super().__init__(port, namespace)
        from kubernetes import client  # noqa: PLC0415
        config = client.Configuration()
        config.host = f"http://127.0.0.1:{port}"
        self.core = client.CoreV1Api(client.ApiClient(config))
        self.client = client

    def create_service(self, name):
        c = self.client
        svc = c.V1Service(metadata=c.V1ObjectMeta(name=name),
                          spec=c.V1ServiceSpec(ports=[c.V1ServicePort(name="http", port=80, protocol="TCP")],
                                               selector={"app": name}))
        return self.core.create_namespaced_service(self.namespace, svc).spec.cluster_ip

    def delete_service(self, name):
        self.core.delete_namespaced_service(name, self.namespace)


class WatchProbe(threading.Thread):
    """The benchmark's own watch on the namespace's Services (raw socket, chunked HTTP/1.1): when each
    ADDED/DELETED event reaches a client of the stand-in API. With quickack=True the socket re-arms
    TCP_QUICKACK after every read, so that it acknowledges at once (no delayed ACK); comparing both
    modes with roster's latency tells whether a sender's Nagle waits on the receiver's delayed ACK."""

    def __init__(self, port, namespace, quickack):
        super().__init__(daemon=True)
        self.quickack = quickack
        self.arrivals = {}
        self.stop_flag = False
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=1.0)
        req = (f"GET /api/v1/namespaces/{namespace}/services?watch=true&allowWatchBookmarks=false HTTP/1.1\r\n"
               f"Host: 127.0.0.1:{port}\r\nAccept: application/json\r\n\r\n")
        self.sock.sendall(req.encode())

    def run(self):
        buf = b""
        body = b""
        headers_done = False
        while not self.stop_flag:
            try:
                data = self.sock.recv(65536)
            except socket.timeout:
                continue
            except OSError:
                return
            now = time.perf_counter()
            if self.quickack:
                self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_QUICKACK, 1)
            if not data:
                return
            buf += data
            if not headers_done:
                end = buf.find(b"\r\n\r\n")
                if end < 0:
                    continue
                buf = buf[end + 4:]
                headers_done = True
            # de-chunk what is complete
            while True:
                line_end = buf.find(b"\r\n")
                if line_end < 0:
                    break
                size = int(buf[:line_end].split(b";")[0] or b"0", 16)
                if len(buf) < line_end + 2 + size + 2:
                    break
                body += buf[line_end + 2:line_end + 2 + size]
                buf = buf[line_end + 2 + size + 2:]
            while b"\n" in body:
                line, body = body.split(b"\n", 1)
                if not line.strip():
                    continue
                try:
                    event = json.loads(line)
                    key = (event["type"], event["object"]["metadata"]["name"])
                except (ValueError, KeyError, TypeError):
                    continue
                self.arrivals.setdefault(key, now)

    def close(self):
        self.stop_flag = True
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()


class QuickAckProxy(threading.Thread):
    """Diagnostic TCP relay 127.0.0.1:<port> → 127.0.0.1:<upstream>: TCP_NODELAY on both sides and
    TCP_QUICKACK re-armed after every read from the upstream, so that the upstream's Nagle never waits
    for a delayed ACK. What roster would see if the stand-in API set TCP_NODELAY (as Go's net/http, the
    real API server, does by default)."""

    def __init__(self, upstream_port):
        super().__init__(daemon=True)
        self.upstream_port = upstream_port
        self.listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(64)
        self.port = self.listener.getsockname()[1]
        self.socks = []
        self.closed = False

    @staticmethod
    def pump(src, dst, quickack):
        try:
            while True:
                data = src.recv(65536)
                if quickack:
                    src.setsockopt(socket.IPPROTO_TCP, socket.TCP_QUICKACK, 1)
                if not data:
                    break
                dst.sendall(data)
        except OSError:
            pass
        for sock in (src, dst):
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def run(self):
        while not self.closed:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(("127.0.0.1", self.upstream_port), timeout=5)
            except OSError:
                client.close()
                continue
            upstream.settimeout(None)
            for sock in (client, upstream):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            upstream.setsockopt(socket.IPPROTO_TCP, socket.TCP_QUICKACK, 1)
            self.socks += [client, upstream]
            threading.Thread(target=self.pump, args=(upstream, client, True), daemon=True).start()
            threading.Thread(target=self.pump, args=(client, upstream, False), daemon=True).start()

    def close(self):
        self.closed = True
        for sock in [self.listener] + self.socks:
            try:
                sock.close()
            except OSError:
                pass


# ------------------------------------------------------------------ statistics

def pct(sorted_vals, p):
    if not sorted_vals:
        return None
    k = (len(sorted_vals) - 1) * p / 100.0
    lo = int(k)
    hi = min(lo + 1, len(sorted_vals) - 1)
    return sorted_vals[lo] + (sorted_vals[hi] - sorted_vals[lo]) * (k - lo)


def summary(values_s):
    vals = sorted(v * 1000.0 for v in values_s if v is not None)
    missing = sum(1 for v in values_s if v is None)
    if not vals:
        return {"n": 0, "timeouts": missing}
    return {"n": len(vals), "timeouts": missing, "p50": pct(vals, 50), "p90": pct(vals, 90),
            "p99": pct(vals, 99), "max": vals[-1], "mean": sum(vals) / len(vals)}


def fmt_row(label, s):
    if not s.get("n"):
        return f"| {label} | 0 | – | – | – | – | {s.get('timeouts', 0)} |"
    return (f"| {label} | {s['n']} | {s['p50']:.2f} | {s['p90']:.2f} | {s['p99']:.2f} | {s['max']:.2f} "
            f"| {s['timeouts']} |")


# ------------------------------------------------------------------ one configuration

def run_config(args, replicas_n, workdir):
    env = dict(os.environ)
    env["ROSTER_LOG"] = args.log
    if args.trace:
        env["ROSTER_LOG"] = f"{args.log},roster_controller::kube_source=debug,roster_dns::subscriber=info"
        env["NO_COLOR"] = "1"
    api_port, dns_port, stream_port = free_port(), free_port(), free_port()
    procs = []
    logdir = os.path.join(workdir, f"r{replicas_n}")
    os.makedirs(logdir, exist_ok=True)
    local_args = [args.roster, "local", "--api", f"127.0.0.1:{api_port}", "--dns", f"127.0.0.1:{dns_port}",
                  "--stream", f"127.0.0.1:{stream_port}", "--pod-ready-ms", "200"]
    if args.data_dir:
        data_dir = os.path.join(logdir, "data")
        os.makedirs(data_dir, exist_ok=True)
        local_args += ["--data-dir", data_dir]
    replicas = []
    proxy = None
    result = {"replicas": replicas_n}
    try:
        local = Proc("local", local_args, os.path.join(logdir, "local.log"), env)
        procs.append(local)
        ports = [("local", dns_port)]
        for i in range(replicas_n - 1):
            port = free_port()
            p = Proc(f"dns{i + 1}", [args.roster, "dns", "--controller", f"http://127.0.0.1:{stream_port}",
                                     "--listen", f"127.0.0.1:{port}"],
                     os.path.join(logdir, f"dns{i + 1}.log"), env)
            procs.append(p)
            ports.append((f"dns{i + 1}", port))
        proxy = None
        publisher_of = {label: "local" for label, _ in ports}
        if args.via_proxy:
            # A second controller that watches the same stand-in through QuickAckProxy, and its replicas.
            proxy = QuickAckProxy(api_port)
            proxy.start()
            kubeconfig = os.path.join(logdir, "proxy.kubeconfig")
            with open(kubeconfig, "w") as f:
                f.write("apiVersion: v1\nkind: Config\nclusters:\n- name: p\n  cluster:\n"
                        f"    server: http://127.0.0.1:{proxy.port}\ncontexts:\n- name: p\n  context:\n"
                        "    cluster: p\n    user: p\ncurrent-context: p\nusers:\n- name: p\n  user: {}\n")
            px_stream = free_port()
            procs.append(Proc("pxctl", [args.roster, "controller", "--kubeconfig", kubeconfig,
                                        "--listen", f"127.0.0.1:{px_stream}"],
                              os.path.join(logdir, "pxctl.log"), env))
            for i in range(args.via_proxy):
                port = free_port()
                label = f"pxdns{i + 1}"
                procs.append(Proc(label, [args.roster, "dns", "--controller", f"http://127.0.0.1:{px_stream}",
                                          "--listen", f"127.0.0.1:{port}"], os.path.join(logdir, f"{label}.log"), env))
                ports.append((label, port))
                publisher_of[label] = "pxctl"
        result["publisher_of"] = publisher_of
        replicas = [Replica(label, port) for label, port in ports]

        probe = f"kubernetes.default.svc.{args.zone}"
        deadline = time.monotonic() + 60
        for r in replicas:
            while True:
                for p in procs:
                    if not p.alive():
                        raise RuntimeError(f"{p.label} exited:\n{p.tail()}")
                ans = r.ask_once(probe, timeout=0.5)
                if ans and ans[0] == 0 and ans[1]:
                    break
                if time.monotonic() > deadline:
                    raise RuntimeError(f"replica {r.label} not answering {probe}:\n" +
                                       "\n".join(p.tail() for p in procs))
                time.sleep(0.05)

        api_cls = KubeClientApi if args.client == "kubernetes" else Api
        api = api_cls(api_port, args.namespace)
        api.ensure_namespace()
        if args.background:
            t = time.perf_counter()
            for i in range(args.background):
                api.create_service(f"bg-{i}")
            # Wait until the last one is visible everywhere before measuring.
            last = f"bg-{args.background - 1}.{args.namespace}.svc.{args.zone}"
            seen, _ = wait_until_seen(replicas, last, lambda rc, a: rc == 0 and bool(a), 0.005, 60.0,
                                      time.perf_counter())
            if any(v is None for v in seen.values()):
                raise RuntimeError("background services never appeared")
            print(f"  [{replicas_n} replica(s)] {args.background} background services in "
                  f"{time.perf_counter() - t:.1f} s", flush=True)

        for i in range(args.warmup):
            name = f"warm-{i}"
            ip = api.create_service(name)
            wait_until_seen(replicas, f"{name}.{args.namespace}.svc.{args.zone}",
                            lambda rc, a, ip=ip: rc == 0 and a == [ip], args.poll_us / 1e6, args.timeout_s,
                            time.perf_counter())

        probe_w = None
        if args.watch_probe != "off":
            probe_w = WatchProbe(api_port, args.namespace, args.watch_probe == "quickack")
            probe_w.start()
            time.sleep(0.2)
        perf = None
        if args.perf:
            perf_data = os.path.join(logdir, "local.perf.data")
            perf = subprocess.Popen(["perf", "record", "-F", "199", "--call-graph", "dwarf,16384", "-p", str(local.pid), "-o", perf_data],
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            result["perf_data"] = perf_data
            time.sleep(0.5)
        cpu0 = {p.label: cpu_seconds(p.pid) for p in procs}
        samples = []
        alive = []
        next_id = 0
        started = time.perf_counter()
        for n in range(args.changes):
            if time.perf_counter() - started > args.max_seconds:
                print(f"  stopping after {n} changes: --max-seconds {args.max_seconds} reached", flush=True)
                break
            delete = bool(args.delete_every and (n + 1) % args.delete_every == 0 and alive)
            for r in replicas:
                r.drain()
            if delete:
                name = alive.pop(0)
                w0 = time.perf_counter()
                api.delete_service(name)
                t0 = time.perf_counter()
                wall0 = time.time()

                def check(rc, a):
                    return rc == 3
            else:
                name = f"p-{next_id}"
                next_id += 1
                w0 = time.perf_counter()
                ip = api.create_service(name)
                t0 = time.perf_counter()
                wall0 = time.time()
                alive.append(name)

                def check(rc, a, ip=ip):
                    return rc == 0 and a == [ip]
            qname = f"{name}.{args.namespace}.svc.{args.zone}"
            seen, queries = wait_until_seen(replicas, qname, check, args.poll_us / 1e6, args.timeout_s, t0)
            vals = list(seen.values())
            sample = {"op": "delete" if delete else "create", "name": name, "write_s": t0 - w0,
                      "ack_wall": wall0, "per_replica_s": seen, "all_s": None if None in vals else max(vals),
                      "queries": queries}
            if probe_w is not None:
                sample["t0"] = t0
            samples.append(sample)
            if args.gap_ms:
                time.sleep(args.gap_ms / 1000.0)
        elapsed = time.perf_counter() - started
        if perf is not None:
            perf.send_signal(signal.SIGINT)
            try:
                perf.wait(timeout=60)
            except subprocess.TimeoutExpired:
                perf.kill()
                perf.wait(timeout=10)
        if probe_w is not None:
            time.sleep(0.2)
            for sample in samples:
                arrived = probe_w.arrivals.get(("DELETED" if sample["op"] == "delete" else "ADDED", sample["name"]))
                sample["probe_watch_s"] = None if arrived is None else arrived - sample.pop("t0")
            probe_w.close()
        cpu1 = {p.label: cpu_seconds(p.pid) for p in procs}
        result.update({
            "changes": len(samples), "elapsed_s": elapsed, "logdir": logdir, "trace": args.trace,
            "labels": [p.label for p in procs],
            "cpu_s": {k: (cpu1[k] - cpu0[k]) if cpu0[k] is not None and cpu1[k] is not None else None
                      for k in cpu0},
            "rss_kb": {p.label: rss_kb(p.pid) for p in procs},
            "samples": samples,
        })
        for p in procs:
            if not p.alive():
                raise RuntimeError(f"{p.label} exited during the run:\n{p.tail()}")
        return result
    finally:
        for r in replicas:
            r.close()
        for p in reversed(procs):
            p.stop()
        if proxy is not None:
            proxy.close()


LOG_LINE = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d+)Z\s+\w+\s+([\w:]+): (published|applied records) "
                      r"generation=(\d+)")


def parse_log(path):
    """{"published": {gen: unix s}, "applied": {gen: unix s}} from a roster log with --trace levels."""
    out = {"published": {}, "applied": {}}
    try:
        with open(path, errors="replace") as f:
            for line in f:
                m = LOG_LINE.match(line)
                if not m:
                    continue
                ts = dt.datetime.strptime(m.group(1)[:26], "%Y-%m-%dT%H:%M:%S.%f").replace(
                    tzinfo=dt.timezone.utc).timestamp()
                kind = "published" if m.group(3) == "published" else "applied"
                out[kind].setdefault(int(m.group(4)), ts)
    except OSError:
        pass
    return out


def trace_breakdown(result):
    """Splits every change into ack → published (controller) → applied (per replica) → answered, from
    the roster logs: the generation that made a replica answer is the last one it applied before the
    answer was seen."""
    logs = {label: parse_log(os.path.join(result["logdir"], f"{label}.log")) for label in result["labels"]}
    rows = {}
    for s in result["samples"]:
        for label, seen in s["per_replica_s"].items():
            if seen is None:
                continue
            seen_wall = s["ack_wall"] + seen
            applied = logs[label]["applied"]
            published = logs[result.get("publisher_of", {}).get(label, "local")]["published"]
            gens = [g for g, t in applied.items() if t <= seen_wall + 0.0005]
            if not gens:
                continue
            g = max(gens)
            if g not in published:
                continue
            r = rows.setdefault(label, {"ack→published": [], "published→applied": [], "applied→answer seen": []})
            r["ack→published"].append(published[g] - s["ack_wall"])
            r["published→applied"].append(applied[g] - published[g])
            r["applied→answer seen"].append(seen_wall - applied[g])
    lines = ["", "Trace (roster logs; µs timestamps, same clock): where each change's time went", "",
             "| replica: segment (ms) | n | p50 | p90 | p99 | max |", "|---|---:|---:|---:|---:|---:|"]
    for label, r in rows.items():
        for seg, vals in r.items():
            v = sorted(x * 1000.0 for x in vals)
            lines.append(f"| {label}: {seg} | {len(v)} | {pct(v, 50):.2f} | {pct(v, 90):.2f} | {pct(v, 99):.2f} "
                         f"| {v[-1]:.2f} |")
    lines.append("")
    lines.append(f"{len(logs['local']['published'])} generations published for {len(result['samples'])} "
                 f"measured changes (+ warm-up/background).")
    return lines


def report(result):
    samples = result["samples"]
    labels = list(samples[0]["per_replica_s"].keys()) if samples else []
    lines = []
    n = result["replicas"]
    lines.append(f"### {n} replica{'s' if n > 1 else ''}: {result['changes']} changes in "
                 f"{result['elapsed_s']:.1f} s")
    lines.append("")
    lines.append("| ms (write acked → answer seen) | n | p50 | p90 | p99 | max | timeouts |")
    lines.append("|---|---:|---:|---:|---:|---:|---:|")
    for op in ("all", "create", "delete"):
        sel = [s for s in samples if op == "all" or s["op"] == op]
        if not sel:
            continue
        tag = {"all": "changes", "create": "creates", "delete": "deletes"}[op]
        groups = {}
        for label, publisher in result.get("publisher_of", {}).items():
            groups.setdefault(publisher, []).append(label)
        if len(groups) > 1:
            for publisher, members in groups.items():
                name = "roster local's controller" if publisher == "local" else "the proxied controller"
                vals = [None if any(s["per_replica_s"][m] is None for m in members)
                        else max(s["per_replica_s"][m] for m in members) for s in sel]
                lines.append(fmt_row(f"{tag}: slowest of {'+'.join(members)} ({name})", summary(vals)))
        if len(labels) > 1:
            lines.append(fmt_row(f"{tag}: all replicas (slowest)", summary([s["all_s"] for s in sel])))
            for label in labels:
                lines.append(fmt_row(f"{tag}: {label}", summary([s["per_replica_s"][label] for s in sel])))
        else:
            lines.append(fmt_row(tag, summary([s["all_s"] for s in sel])))
    lines.append(fmt_row("API write round trip (not included)", summary([s["write_s"] for s in samples])))
    if samples and "probe_watch_s" in samples[0]:
        vals = [s["probe_watch_s"] for s in samples]
        early = sum(1 for v in vals if v is not None and v < 0)
        lines.append(fmt_row(f"benchmark's own watch event (diagnostic; {early} before the ack)",
                             summary([None if v is None else max(v, 0.0) for v in vals])))
    lines.append("")
    cpu = ", ".join(f"{k} {v:.1f} s" for k, v in result["cpu_s"].items() if v is not None)
    rss = ", ".join(f"{k} {v / 1024:.0f} MiB" for k, v in result["rss_kb"].items() if v is not None)
    q = sum(s["queries"] for s in samples)
    lines.append(f"CPU during the changes: {cpu}; RSS after: {rss}; {q} DNS polls "
                 f"({q / max(1, len(samples)):.1f} per change).")
    # The controller re-synthesises the whole zone per batch: show how latency moves as the zone grows.
    if len(samples) >= 400:
        lines.append("")
        lines.append("By position in the run (the zone grows: live p-* services at the end of each window):")
        lines.append("")
        lines.append("| changes | live services | p50 | p90 | p99 | max |")
        lines.append("|---|---:|---:|---:|---:|---:|")
        window = len(samples) // 4
        live = 0
        for k in range(4):
            part = samples[k * window:(k + 1) * window]
            live += sum(1 if x["op"] == "create" else -1 for x in part)
            sm = summary([x["all_s"] for x in part])
            if sm.get("n"):
                lines.append(f"| {k * window + 1}–{(k + 1) * window} | {live} | {sm['p50']:.2f} | {sm['p90']:.2f} "
                             f"| {sm['p99']:.2f} | {sm['max']:.2f} |")
    if result.get("trace"):
        lines += trace_breakdown(result)
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--roster", default=os.environ.get("ROSTER_BIN", os.path.join(REPO, "target/release/roster")))
    ap.add_argument("--replicas", default="1,3", help="comma-separated replica counts (default 1,3)")
    ap.add_argument("--changes", type=int, default=1200, help="measured changes per configuration (1200)")
    ap.add_argument("--delete-every", type=int, default=4,
                    help="every Nth change deletes the oldest p-<i> (4; 0 = creates only)")
    ap.add_argument("--warmup", type=int, default=20, help="unmeasured creates first (20)")
    ap.add_argument("--background", type=int, default=0,
                    help="ClusterIP services created (unmeasured) before the run, to grow the zone (0)")
    ap.add_argument("--poll-us", type=int, default=500, help="DNS poll round interval in µs (500)")
    ap.add_argument("--timeout-s", type=float, default=5.0, help="give up on one change after this (5)")
    ap.add_argument("--max-seconds", type=float, default=600.0, help="bound per configuration (600)")
    ap.add_argument("--gap-ms", type=float, default=0.0, help="pause between changes (0)")
    ap.add_argument("--namespace", default="default")
    ap.add_argument("--zone", default="cluster.local")
    ap.add_argument("--client", choices=["http", "kubernetes"], default="http",
                    help="write through plain http.client (default) or the Python kubernetes client")
    ap.add_argument("--data-dir", action="store_true",
                    help="give roster local a --data-dir (durable stand-in: writes acked after fsync)")
    ap.add_argument("--watch-probe", choices=["off", "plain", "quickack"], default="off",
                    help="diagnostic: also time each change's event on the benchmark's own watch of the "
                         "Services (plain socket, or one that acknowledges at once: TCP_QUICKACK)")
    ap.add_argument("--via-proxy", type=int, default=0, metavar="N",
                    help="diagnostic: also run `roster controller` watching the stand-in through a TCP relay "
                         "that sets TCP_NODELAY/TCP_QUICKACK, with N replicas of its own (measured too)")
    ap.add_argument("--perf", action="store_true",
                    help="diagnostic: `perf record -g` roster local during the measured changes "
                         "(<logdir>/r<N>/local.perf.data, DWARF call graphs; read it with `perf report --children`)")
    ap.add_argument("--trace", action="store_true",
                    help="diagnostic: roster logs each publication and each applied frame (debug/info); "
                         "the report splits each change into ack → published → applied → answered")
    ap.add_argument("--log", default="warn", help="ROSTER_LOG for the started processes (warn)")
    ap.add_argument("--workdir", default=os.environ.get("BENCH_WORKDIR", "/tmp/roster-bench") + "/propagation")
    ap.add_argument("--json", default=None, help="raw results (default bench/results/propagation-<date>.json)")
    args = ap.parse_args()
    if not os.access(args.roster, os.X_OK):
        sys.exit(f"{args.roster} is not built (cargo build --release)")
    os.makedirs(args.workdir, exist_ok=True)
    workdir = tempfile.mkdtemp(prefix="run-", dir=args.workdir)

    def on_signal(signum, _frame):
        raise KeyboardInterrupt(f"signal {signum}")
    signal.signal(signal.SIGTERM, on_signal)

    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    print(f"roster propagation benchmark, {stamp}, {args.roster}; load average "
          f"{os.getloadavg()[0]:.1f}; logs in {workdir}", flush=True)
    results = []
    for n in [int(x) for x in args.replicas.split(",") if x]:
        print(f"  running with {n} replica(s) ...", flush=True)
        results.append(run_config(args, n, workdir))
        print(report(results[-1]), flush=True)
        print(flush=True)
    out = args.json or os.path.join(HERE, "results", f"propagation-{stamp[:10]}.json")
    os.makedirs(os.path.dirname(out), exist_ok=True)
    with open(out, "w") as f:
        json.dump({"date": stamp, "args": vars(args), "loadavg": os.getloadavg(), "results": results}, f)
    print(f"raw samples: {out}")
    worst = [summary([s["all_s"] for s in r["samples"]]) for r in results]
    ok = all(w.get("n") and w["p99"] < 50.0 and not w["timeouts"] for w in worst)
    print("target p99 < 50 ms (all replicas):", "met" if ok else "NOT met")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
