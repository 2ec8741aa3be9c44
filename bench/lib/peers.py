"""Server entries for the benchmark harness.

Each entry is a Peer: a name, a loopback port, a function that writes its
config into a private work dir, and the argv that starts it in the foreground.
The harness adds `taskset -c <server core>` in front of the argv, so a server
must stay in the foreground (no daemonising) and must not re-pin itself.

Adding the project's own server
-------------------------------
Use `command_peer(name, cmd, port)`: `cmd` is the command line that starts the
server in the foreground; these placeholders are filled in:

  {port}     the UDP/TCP port to listen on (127.0.0.1)
  {zonedir}  directory holding cluster.local.zone and 10.in-addr.arpa.zone
  {zone}     path of cluster.local.zone
  {revzone}  path of 10.in-addr.arpa.zone
  {objects}  path of kube-objects.json (Services + EndpointSlices, API JSON)
  {workdir}  a private scratch dir for this server

roster itself is a built-in entry (`roster`, EXTRA_PEERS below). Another
build or variant can be added on the command line without editing anything:

  bench/run.sh --server 'roster-old=/tmp/roster-old dns --objects {objects} --listen 127.0.0.1:{port} --ttl 5'
"""
import os
import shlex
import shutil
import subprocess

BASE_PORT = 15350


def _version(argv):
    try:
        p = subprocess.run(argv, capture_output=True, text=True, timeout=10)
        out = (p.stdout + p.stderr).strip().splitlines()
        return out[0].strip() if out else "?"
    except Exception as e:  # noqa: BLE001
        return f"? ({e})"


class Peer:
    def __init__(self, name, port, binary, argv_fn, prepare_fn=None, version_argv=None,
                 install_hint="", notes="", env=None):
        self.name = name
        self.env = env or {}  # extra environment for the server process
        self.port = port
        self.binary = binary
        self._argv_fn = argv_fn
        self._prepare_fn = prepare_fn
        self._version_argv = version_argv
        self.install_hint = install_hint
        self.notes = notes

    def resolve_binary(self):
        if self.binary is None:
            return None
        if os.path.isabs(self.binary):
            return self.binary if os.access(self.binary, os.X_OK) else None
        return shutil.which(self.binary)

    def available(self):
        if self.binary is None:
            return True, ""
        b = self.resolve_binary()
        if b:
            return True, b
        return False, f"{self.binary} not found ({self.install_hint})"

    def version(self):
        if self._version_argv:
            return _version(self._version_argv(self.resolve_binary() or self.binary))
        return "?"

    def prepare(self, workdir, ds):
        os.makedirs(workdir, exist_ok=True)
        if self._prepare_fn:
            self._prepare_fn(self, workdir, ds)

    def argv(self, workdir, ds):
        return self._argv_fn(self, workdir, ds)


# --------------------------------------------------------------------- Knot
def _knot_prepare(p, wd, ds):
    os.makedirs(os.path.join(wd, "db"), exist_ok=True)
    conf = f"""server:
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
  - domain: cluster.local
    file: cluster.local.zone
  - domain: 10.in-addr.arpa
    file: 10.in-addr.arpa.zone
"""
    with open(os.path.join(wd, "knot.conf"), "w") as f:
        f.write(conf)


knot = Peer(
    "knot", BASE_PORT + 1, "knotd",
    lambda p, wd, ds: [p.resolve_binary(), "-c", os.path.join(wd, "knot.conf")],
    _knot_prepare, lambda b: [b, "-V"], "apt-get install knot",
    "udp-workers=1 tcp-workers=1; zone files loaded whole, no journal")


# ---------------------------------------------------------------------- NSD
def _nsd_prepare(p, wd, ds):
    conf = f"""server:
    ip-address: 127.0.0.1
    port: {p.port}
    server-count: 1
    ip4-only: yes
    username: ""
    chroot: ""
    zonesdir: "{ds['dir']}"
    database: ""
    zonelistfile: "{wd}/zone.list"
    xfrdfile: "{wd}/xfrd.state"
    xfrdir: "{wd}"
    pidfile: "{wd}/nsd.pid"
    logfile: "{wd}/nsd.log"
    verbosity: 0
    hide-version: yes
    # Debian builds NSD with RRL on (200 qps per source /24 by default), which
    # would throttle a single loopback client: turn it off like the others.
    rrl-ratelimit: 0
    rrl-whitelist-ratelimit: 0
remote-control:
    control-enable: no
zone:
    name: "cluster.local"
    zonefile: "cluster.local.zone"
zone:
    name: "10.in-addr.arpa"
    zonefile: "10.in-addr.arpa.zone"
"""
    with open(os.path.join(wd, "nsd.conf"), "w") as f:
        f.write(conf)


nsd = Peer(
    "nsd", BASE_PORT + 2, "nsd",
    lambda p, wd, ds: [p.resolve_binary(), "-d", "-c", os.path.join(wd, "nsd.conf")],
    _nsd_prepare, lambda b: [b, "-v"], "apt-get install nsd",
    "server-count=1, database \"\" (zones parsed at start, no nsd.db); "
    "NSD forks (main + xfrd + 1 server): memory is summed over the tree as PSS")


# --------------------------------------------------------------------- BIND
def _bind_prepare(p, wd, ds):
    conf = f"""options {{
    directory "{wd}";
    listen-on port {p.port} {{ 127.0.0.1; }};
    listen-on-v6 {{ none; }};
    recursion no;
    notify no;
    dnssec-validation no;
    pid-file "{wd}/named.pid";
    session-keyfile "{wd}/session.key";
    managed-keys-directory "{wd}";
}};
controls {{ }};
zone "cluster.local" {{ type primary; file "{ds['dir']}/cluster.local.zone"; }};
zone "10.in-addr.arpa" {{ type primary; file "{ds['dir']}/10.in-addr.arpa.zone"; }};
"""
    with open(os.path.join(wd, "named.conf"), "w") as f:
        f.write(conf)


bind9 = Peer(
    "bind9", BASE_PORT + 3, "named",
    lambda p, wd, ds: [p.resolve_binary(), "-g", "-n", "1", "-c",
                       os.path.join(wd, "named.conf")],
    _bind_prepare, lambda b: [b, "-v"], "apt-get install bind9",
    "-n 1 (one worker thread), recursion no, otherwise defaults")


# ------------------------------------------------------------------ Hickory
def _hickory_prepare(p, wd, ds):
    conf = f"""listen_addrs_ipv4 = ["127.0.0.1"]
listen_port = {p.port}
directory = "{ds['dir']}"
drop_privileges = false

[[zones]]
zone = "cluster.local"
zone_type = "Primary"
stores = {{ type = "file", zone_path = "cluster.local.zone" }}

[[zones]]
zone = "10.in-addr.arpa"
zone_type = "Primary"
stores = {{ type = "file", zone_path = "10.in-addr.arpa.zone" }}
"""
    with open(os.path.join(wd, "hickory.toml"), "w") as f:
        f.write(conf)


def _hickory_bin():
    for c in (os.environ.get("HICKORY_DNS_BIN"), "/opt/hickory-dns/bin/hickory-dns",
              os.path.expanduser("~/.cargo/bin/hickory-dns")):
        if c and os.access(c, os.X_OK):
            return c
    return "hickory-dns"


hickory = Peer(
    "hickory-dns", BASE_PORT + 4, _hickory_bin(),
    lambda p, wd, ds: [p.resolve_binary(), "-q", "-c", os.path.join(wd, "hickory.toml")],
    _hickory_prepare, lambda b: [b, "--version"],
    "cargo install hickory-dns --locked --root /opt/hickory-dns",
    "stock 0.26 binary, file store, tokio workers = available_parallelism (1 when pinned), -q")


# ------------------------------------------------------------------ CoreDNS
# The same zone files through CoreDNS's `file` plugin: the fair authoritative comparison (its
# `kubernetes` plugin answers from API watches, which this dataset does not have; that one is
# compared for answers in tests/real_coredns.rs). The binary is the one scripts/cluster.sh builds
# (v1.15.0); COREDNS_BIN overrides it. GOMAXPROCS follows the one-core affinity the harness sets.
def _coredns_prepare(p, wd, ds):
    blocks = "".join(
        f"""{zone}:{p.port} {{
    bind 127.0.0.1
    file {os.path.join(ds['dir'], fname)} {zone}
}}
""" for zone, fname in (("cluster.local", "cluster.local.zone"),
                        ("10.in-addr.arpa", "10.in-addr.arpa.zone")))
    with open(os.path.join(wd, "Corefile"), "w") as f:
        f.write(blocks)


def _coredns_bin():
    return os.environ.get("COREDNS_BIN") or "coredns"


coredns = Peer(
    "coredns", BASE_PORT + 6, _coredns_bin(),
    lambda p, wd, ds: [p.resolve_binary(), "-conf", os.path.join(wd, "Corefile"), "-quiet"],
    _coredns_prepare, lambda b: [b, "-version"],
    "scripts/cluster.sh build (COREDNS_BIN=$(scripts/cluster.sh bin)/coredns)",
    "file plugin with the same zone files, one server block per zone, no cache/log plugins")


# ------------------------------------------------------------- command peer
def command_peer(name, cmd, port, version_cmd=None, notes=""):
    """A server started by an arbitrary command line (see module docstring)."""

    def argv(p, wd, ds):
        return shlex.split(cmd.format(port=p.port, zonedir=ds["dir"],
                                      zone=os.path.join(ds["dir"], "cluster.local.zone"),
                                      revzone=os.path.join(ds["dir"], "10.in-addr.arpa.zone"),
                                      objects=os.path.join(ds["dir"], "kube-objects.json"),
                                      workdir=wd))

    first = shlex.split(cmd)[0]
    vfn = (lambda b: shlex.split(version_cmd)) if version_cmd else None
    return Peer(name, port, first if "{" not in first else None, argv, None, vfn,
                "custom command", notes or f"command: {cmd}")


# ------------------------------------------------------------------- roster
# The project's own server, fed the identical dataset as Kubernetes objects
# (kube-objects.json: a v1 List of Services and EndpointSlices). Built with
# `cargo build --release` in the repository root; ROSTER_BIN overrides the path.
REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _roster_bin():
    return os.environ.get("ROSTER_BIN") or os.path.join(REPO_ROOT, "target", "release", "roster")


def _roster_argv(p, wd, ds):
    return [p.resolve_binary(), "dns", "--objects", os.path.join(ds["dir"], "kube-objects.json"),
            "--listen", f"127.0.0.1:{p.port}", "--ttl", "5"]


roster = Peer(
    "roster", BASE_PORT + 5, _roster_bin(), _roster_argv, None,
    lambda b: [b, "--version"], "cd <repo> && cargo build --release",
    "roster dns --objects kube-objects.json --ttl 5 (the dataset's TTL); tokio workers = "
    "available parallelism (1 when pinned); ROSTER_LOG=warn",
    env={"ROSTER_LOG": "warn"})

BUILTIN = [knot, nsd, bind9, hickory, coredns]
# The project's own server (more can be added with run.sh --server NAME=CMD).
EXTRA_PEERS = [roster]


def all_peers(extra_specs=()):
    peers = list(BUILTIN) + list(EXTRA_PEERS)
    port = BASE_PORT + 10
    for spec in extra_specs:
        name, _, cmd = spec.partition("=")
        if not cmd:
            raise SystemExit(f"--server expects NAME=COMMAND, got {spec!r}")
        peers.append(command_peer(name.strip(), cmd.strip(), port))
        port += 1
    return peers
