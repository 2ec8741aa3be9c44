"""A real control plane for the benchmarks (scripts/cluster.sh), roster run against it the way
tests/real_cluster.rs does (deploy/'s ServiceAccount token, mutual TLS on the record stream), CoreDNS
with kubeadm's Corefile, and a small HTTPS client of kube-apiserver with the admin certificate.

Only 127.0.0.1 is used; every wait is bounded; every process started here is stopped by its PID.
"""
import base64
import concurrent.futures
import http.client
import json
import os
import signal
import ssl
import subprocess
import sys
import threading
import time

import yaml

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.dirname(HERE))
from propagation import Proc, free_port  # noqa: E402

CLUSTER_SH = os.path.join(REPO, "scripts", "cluster.sh")


def run(args, stdin=None, timeout=300):
    out = subprocess.run(args, input=stdin, capture_output=True, text=True, timeout=timeout)
    if out.returncode != 0:
        raise RuntimeError(f"{' '.join(args[:4])} ...: exit {out.returncode}: {out.stderr[-2000:]}")
    return out.stdout


class Cluster:
    """`cluster.sh up DIR`; `down()` stops exactly what `up` started."""

    def __init__(self, workdir, flags=()):
        self.dir = os.path.join(workdir, "cluster")
        self.bin = run([CLUSTER_SH, "bin"]).strip()
        self.kubeconfig = os.path.join(self.dir, "kubeconfig")
        self.up = False
        run([CLUSTER_SH, "up", self.dir, *flags], timeout=600)
        self.up = True
        with open(os.path.join(self.dir, "api-port")) as f:
            self.api_port = int(f.read().strip())
        self.pki = os.path.join(self.dir, "pki")

    def down(self):
        if self.up:
            subprocess.run([CLUSTER_SH, "down", self.dir], capture_output=True, timeout=120)
            self.up = False

    def kubectl(self, args, stdin=None, kubeconfig=None, timeout=300):
        return run([os.path.join(self.bin, "kubectl"), "--kubeconfig", kubeconfig or self.kubeconfig, *args],
                   stdin=stdin, timeout=timeout)

    def apply_deploy(self):
        """deploy/overlays/kind, server-side, as tests/real_cluster.rs applies it (RBAC, the CRD)."""
        yaml_text = self.kubectl(["kustomize", os.path.join(REPO, "deploy", "overlays", "kind")])
        self.kubectl(["apply", "--server-side", "--field-manager=roster-bench", "-f", "-"], stdin=yaml_text)
        self.kubectl(["wait", "--for=condition=Established", "crd/identitysets.roster.dev", "--timeout=60s"])

    def token_kubeconfig(self, namespace, name):
        """A kubeconfig with nothing but a token of ServiceAccount namespace/name."""
        token = self.kubectl(["create", "token", name, "-n", namespace, "--duration", "2h"]).strip()
        path = os.path.join(self.dir, f"{namespace}-{name}.kubeconfig")
        config = {
            "apiVersion": "v1", "kind": "Config",
            "clusters": [{"name": "c", "cluster": {"server": f"https://127.0.0.1:{self.api_port}",
                                                   "certificate-authority": os.path.join(self.pki, "ca.crt")}}],
            "users": [{"name": name, "user": {"token": token}}],
            "contexts": [{"name": "c", "context": {"cluster": "c", "user": name}}],
            "current-context": "c",
        }
        with open(path, "w") as f:
            yaml.safe_dump(config, f)
        return path

    def api(self):
        return Api(self.api_port, self.pki)


class Api:
    """kube-apiserver's HTTPS API as the admin (client certificate); one keep-alive connection."""

    def __init__(self, port, pki):
        self.port = port
        self.ctx = ssl.create_default_context(cafile=os.path.join(pki, "ca.crt"))
        self.ctx.load_cert_chain(os.path.join(pki, "admin.crt"), os.path.join(pki, "admin.key"))
        self.pki = pki
        self.conn = None

    def clone(self):
        return Api(self.port, self.pki)

    def request(self, method, path, body=None, content_type="application/json"):
        headers = {"Accept": "application/json"}
        data = None
        if body is not None:
            data = body if isinstance(body, bytes) else json.dumps(body).encode()
            headers["Content-Type"] = content_type
        for attempt in (0, 1):
            try:
                if self.conn is None:
                    self.conn = http.client.HTTPSConnection("127.0.0.1", self.port, context=self.ctx, timeout=60)
                self.conn.request(method, path, body=data, headers=headers)
                resp = self.conn.getresponse()
                return resp.status, resp.read()
            except (http.client.HTTPException, ConnectionError, OSError):
                self.conn = None
                if attempt:
                    raise
        raise RuntimeError("unreachable")

    def ok(self, method, path, body=None, statuses=(200, 201), content_type="application/json"):
        status, payload = self.request(method, path, body, content_type)
        if status not in statuses:
            raise RuntimeError(f"{method} {path}: HTTP {status}: {payload[:300]!r}")
        return json.loads(payload) if payload else None

    def ensure_namespace(self, name):
        self.ok("POST", "/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}},
                statuses=(201, 409))

    def create_service(self, namespace, name, headless=False):
        """A Service; returns its clusterIP (the real allocator's), or None when headless."""
        spec = {"ports": [{"name": "http", "port": 80, "protocol": "TCP"}]}
        if headless:
            spec["clusterIP"] = "None"
        else:
            spec["selector"] = {"app": name}
        svc = self.ok("POST", f"/api/v1/namespaces/{namespace}/services",
                      {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": namespace},
                       "spec": spec}, statuses=(201,))
        return svc["spec"].get("clusterIP")

    def delete_service(self, namespace, name):
        self.ok("DELETE", f"/api/v1/namespaces/{namespace}/services/{name}", statuses=(200, 202))

    def create_endpoint_slice(self, namespace, service, endpoints, base):
        """`endpoints` ready endpoints with hostnames h-<i> and addresses from 10.<base>... (no selector: the
        EndpointSlice controller leaves them alone)."""
        eps = []
        for i in range(endpoints):
            n = base * endpoints + i
            eps.append({"addresses": [f"10.{100 + (n >> 16) % 100}.{(n >> 8) & 255}.{n & 255}"],
                        "hostname": f"h-{i}", "conditions": {"ready": True}})
        body = {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
                "metadata": {"name": f"{service}-1", "namespace": namespace,
                             "labels": {"kubernetes.io/service-name": service}},
                "addressType": "IPv4", "ports": [{"name": "http", "port": 80, "protocol": "TCP"}], "endpoints": eps}
        self.ok("POST", f"/apis/discovery.k8s.io/v1/namespaces/{namespace}/endpointslices", body, statuses=(201,))

    def set_endpoint_ready(self, namespace, slice_name, ready):
        """Flips the first endpoint's readiness (JSON patch): one record appears or disappears."""
        patch = [{"op": "replace", "path": "/endpoints/0/conditions/ready", "value": ready}]
        self.ok("PATCH", f"/apis/discovery.k8s.io/v1/namespaces/{namespace}/endpointslices/{slice_name}",
                json.dumps(patch).encode(), content_type="application/json-patch+json")

    def metrics(self):
        status, payload = self.request("GET", "/metrics")
        if status != 200:
            raise RuntimeError(f"/metrics: HTTP {status}")
        return payload.decode()


def in_parallel(api, jobs, fn, workers=8, limit_s=900):
    """Runs fn(api_clone, job) for every job on `workers` connections; bounded in time."""
    local = threading.local()
    deadline = time.monotonic() + limit_s

    def one(job):
        if time.monotonic() > deadline:
            raise RuntimeError(f"in_parallel: more than {limit_s} s")
        if not hasattr(local, "api"):
            local.api = api.clone()
        return fn(local.api, job)

    with concurrent.futures.ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(one, jobs))


def stream_certs(roster, workdir):
    """`roster certs` material for 127.0.0.1: (server dir, client dir), as tests/stream_support does."""
    text = run([roster, "certs", "--server-name", "127.0.0.1", "--server-name", "localhost"])
    dirs = {}
    for doc in yaml.safe_load_all(text):
        if not doc:
            continue
        kind = {"roster-stream-server": "server", "roster-stream-client": "client"}[doc["metadata"]["name"]]
        d = os.path.join(workdir, "stream-" + kind)
        os.makedirs(d, exist_ok=True)
        for name in ("ca.crt", "tls.crt", "tls.key"):
            value = doc.get("stringData", {}).get(name)
            if value is None:
                value = base64.b64decode(doc["data"][name]).decode()
            with open(os.path.join(d, name), "w") as f:
                f.write(value)
        dirs[kind] = d
    return dirs["server"], dirs["client"]


def tls_args(d):
    return ["--tls-cert", os.path.join(d, "tls.crt"), "--tls-key", os.path.join(d, "tls.key"),
            "--tls-ca", os.path.join(d, "ca.crt")]


def env_for(log):
    env = dict(os.environ)
    env["ROSTER_LOG"] = log
    return env


def start_controller(roster, cluster, workdir, log="warn", max_connections=256):
    """`roster controller` with deploy/'s ServiceAccount token and a mutual-TLS stream; waits for /readyz."""
    server_dir, client_dir = stream_certs(roster, workdir)
    token = cluster.token_kubeconfig("kube-system", "roster-controller")
    port = free_port()
    proc = Proc("controller", [roster, "controller", "--kubeconfig", token, "--listen", f"127.0.0.1:{port}",
                               "--max-stream-connections", str(max_connections), *tls_args(server_dir)],
                os.path.join(workdir, "controller.log"), env_for(log))
    ctx = ssl.create_default_context(cafile=os.path.join(client_dir, "ca.crt"))
    ctx.load_cert_chain(os.path.join(client_dir, "tls.crt"), os.path.join(client_dir, "tls.key"))
    deadline = time.monotonic() + 120
    while True:
        if not proc.alive():
            raise RuntimeError(f"roster controller exited:\n{proc.tail()}")
        try:
            conn = http.client.HTTPSConnection("127.0.0.1", port, context=ctx, timeout=5)
            conn.request("GET", "/readyz")
            if conn.getresponse().status == 200:
                conn.close()
                break
            conn.close()
        except (OSError, http.client.HTTPException):
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"roster controller not ready within 120 s:\n{proc.tail()}")
        time.sleep(0.3)
    return proc, port, client_dir


def start_dns(roster, label, stream_port, client_dir, workdir, log="warn"):
    port = free_port()
    proc = Proc(label, [roster, "dns", "--controller", f"https://127.0.0.1:{stream_port}", "--listen",
                        f"127.0.0.1:{port}", *tls_args(client_dir)],
                os.path.join(workdir, f"{label}.log"), env_for(log))
    return proc, port


def corefile(dns_port, kubeconfig, upstream_port, cache):
    """kubeadm's Corefile on loopback (health/ready/prometheus on free ports); `cache 30` unless cache=False."""
    health, ready, metrics = free_port(), free_port(), free_port()
    return f""".:{dns_port} {{
    bind 127.0.0.1
    errors
    health 127.0.0.1:{health} {{
        lameduck 1s
    }}
    ready 127.0.0.1:{ready}
    kubernetes cluster.local in-addr.arpa ip6.arpa {{
        kubeconfig {kubeconfig} admin@roster-test
        pods insecure
        fallthrough in-addr.arpa ip6.arpa
        ttl 30
    }}
    prometheus 127.0.0.1:{metrics}
    forward . 127.0.0.1:{upstream_port}
    {"cache 30" if cache else "# no cache"}
    loop
    reload
    loadbalance
}}
"""


def start_coredns(cluster, label, workdir, cache, upstream_port):
    port = free_port()
    path = os.path.join(workdir, f"{label}.Corefile")
    with open(path, "w") as f:
        f.write(corefile(port, cluster.kubeconfig, upstream_port, cache))
    proc = Proc(label, [os.path.join(cluster.bin, "coredns"), "-conf", path], os.path.join(workdir, f"{label}.log"),
                dict(os.environ))
    return proc, port


def metric_sum(text, name, **labels):
    """Sum of a Prometheus metric's samples whose labels include `labels`."""
    total = 0.0
    found = False
    for line in text.splitlines():
        if not line.startswith(name) or line.startswith("#"):
            continue
        rest = line[len(name):]
        if rest[:1] not in ("{", " "):
            continue
        if rest.startswith("{"):
            label_text, _, value = rest[1:].partition("} ")
            pairs = {}
            for part in label_text.split('",'):
                k, _, v = part.partition('="')
                pairs[k.strip()] = v.rstrip('"')
            if any(pairs.get(k) != v for k, v in labels.items()):
                continue
        else:
            value = rest.strip()
        try:
            total += float(value.split()[0])
            found = True
        except ValueError:
            continue
    return total if found else None


def machine_line(repo=REPO):
    commit = subprocess.run(["git", "-C", repo, "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True).stdout.strip()
    dirty = subprocess.run(["git", "-C", repo, "status", "--porcelain", "--untracked-files=no"], capture_output=True,
                           text=True).stdout.strip()
    cpu = "?"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return (f"roster {commit}{'+dirty' if dirty else ''}; {os.cpu_count()} CPUs ({cpu}); "
            f"load average {os.getloadavg()[0]:.1f}")


class SigtermStop:
    """SIGTERM (bench/issue14.sh's bound) ends the run through its `finally`, so that what it started is
    stopped: between `starting()` and `started()` (the cluster and servers coming up, not yet known to the
    `finally`) the signal waits; it acts once, so that a second signal does not cut the stopping short."""

    def __init__(self):
        self.deferring = False
        self.pending = None
        signal.signal(signal.SIGTERM, self._stop)

    def _stop(self, signum, _frame):
        if self.deferring:
            self.pending = signum
            return
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        raise SystemExit(f"interrupted by signal {signum}")

    def starting(self):
        self.deferring = True

    def started(self):
        self.deferring = False
        if self.pending:
            self._stop(self.pending, None)
