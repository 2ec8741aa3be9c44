#!/usr/bin/env bash
# A real Kubernetes control plane on loopback, built from the Go modules pinned in tools/k8s/:
# etcd, kube-apiserver, kube-controller-manager, kube-scheduler, kubectl, and kwok for the kubelets
# (with tools/k8s/kwok/pod-finalizer.py completing pod deletions as a kubelet does).
#
#   scripts/cluster.sh build                 build the binaries into the cache (skips what exists)
#   scripts/cluster.sh bin                   print the directory holding them (builds first)
#   scripts/cluster.sh up DIR [--nodes N] [--without-statefulset-controller] [--feature-gates A=true,…]
#   scripts/cluster.sh down DIR              stop exactly what `up DIR` started
#   scripts/cluster.sh restart DIR COMPONENT stop one component and start it again (tests of outages)
#   scripts/cluster.sh compact DIR           compact etcd's history (watches resuming from before get 410)
#   scripts/cluster.sh ports N               print N free loopback ports, claimed for ten minutes
#
# `up` writes DIR/kubeconfig (admin) and returns once every node is Ready. The cache lives outside the
# repository: $ROSTER_K8S_CACHE, default ~/.cache/roster/k8s, one folder per pinned release.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TOOLS="$ROOT/tools/k8s"
CACHE="${ROSTER_K8S_CACHE:-$HOME/.cache/roster/k8s}"

die() { echo "cluster.sh: $*" >&2; exit 1; }

# Each Go module's programs are cached under a key of their own (the module's files hashed), so a new
# pin rebuilds only what it changes; `bin` is a folder of links to the current builds.
module_dir() {
  local module=$1 sum
  sum=$(cat "$TOOLS/$module"/go.mod "$TOOLS/$module"/go.sum $(find "$TOOLS/$module" -name '*.go' | sort) | sha256sum | cut -c1-12)
  echo "$CACHE/$module-$sum"
}

release_dir() {
  local sum
  sum=$(for module in kubernetes kwok coredns; do module_dir "$module"; done | sha256sum | cut -c1-12)
  echo "$CACHE/current-$sum"
}

build() {
  command -v go >/dev/null || die "Go is needed to build the control plane (go.dev toolchain 1.26 or newer)"
  command -v openssl >/dev/null || { apt-get update -qq && apt-get install -y -qq openssl >/dev/null; }
  local links; links="$(release_dir)/bin"
  mkdir -p "$links"
  export GOFLAGS="${GOFLAGS:--buildvcs=false}"
  local -a wanted=(
    "kubernetes etcd roster.local/tools/k8s/kubernetes/etcd"
    "kubernetes kube-apiserver k8s.io/kubernetes/cmd/kube-apiserver"
    "kubernetes kube-controller-manager k8s.io/kubernetes/cmd/kube-controller-manager"
    "kubernetes kube-scheduler k8s.io/kubernetes/cmd/kube-scheduler"
    "kubernetes kubectl k8s.io/kubernetes/cmd/kubectl"
    "kwok kwok sigs.k8s.io/kwok/cmd/kwok"
    "coredns coredns github.com/coredns/coredns"
  )
  local line module name package start out
  for line in "${wanted[@]}"; do
    read -r module name package <<<"$line"
    out="$(module_dir "$module")"
    mkdir -p "$out"
    if [[ ! -x "$out/$name" ]]; then
      start=$SECONDS
      echo "cluster.sh: building $name ($package)" >&2
      (cd "$TOOLS/$module" && go build -trimpath -ldflags='-s -w' -o "$out/$name.tmp.$$" "$package")
      mv "$out/$name.tmp.$$" "$out/$name"
      echo "cluster.sh: built $name in $((SECONDS - start)) s" >&2
    fi
    ln -sfn "$out/$name" "$links/$name"
  done
}

bin_dir() {
  build
  echo "$(release_dir)/bin"
}

# N loopback ports free for TCP and UDP, for a cluster's components and for tests (`ports N`; the tests'
# `free_port` asks here, so one file holds every claim). They are chosen below the kernel's ephemeral range, so no
# outgoing connection can take one between its choice and its component's bind, and claimed for
# ten minutes in a shared file under a lock, so clusters started side by side never share one.
free_ports() {
  python3 - "$1" "${TMPDIR:-/tmp}/roster-cluster-ports" <<'EOF'
import fcntl, os, random, socket, sys, time
count, claims = int(sys.argv[1]), sys.argv[2]
first_ephemeral = int(open("/proc/sys/net/ipv4/ip_local_port_range").read().split()[0])
low, high = (20000, first_ephemeral - 1) if first_ephemeral > 21000 else (1024, 65535)
with open(claims + ".lock", "a") as lock:
    fcntl.flock(lock, fcntl.LOCK_EX)
    now = time.time()
    try:
        lines = [line.split() for line in open(claims)]
    except FileNotFoundError:
        lines = []
    kept = [(float(t), int(p)) for t, p in lines if now - float(t) < 600]
    taken = {port for _, port in kept}
    chosen = []
    for _ in range(100000):
        if len(chosen) == count:
            break
        port = random.randint(low, high)
        if port in taken:
            continue
        try:
            for kind in (socket.SOCK_STREAM, socket.SOCK_DGRAM):
                with socket.socket(socket.AF_INET, kind) as probe:
                    probe.bind(("127.0.0.1", port))
        except OSError:
            continue
        taken.add(port)
        chosen.append(port)
    if len(chosen) < count:
        sys.exit(f"cluster.sh: found only {len(chosen)} of {count} free ports in {low}..{high}")
    with open(claims + ".tmp", "w") as out:
        for t, port in kept + [(now, port) for port in chosen]:
            out.write(f"{t} {port}\n")
    os.replace(claims + ".tmp", claims)
print(" ".join(map(str, chosen)))
EOF
}

# A certificate signed by the cluster's CA: name, subject, extensions.
issue_cert() {
  local dir=$1 name=$2 subject=$3 ext=$4
  openssl req -new -newkey rsa:2048 -nodes -keyout "$dir/$name.key" -subj "$subject" -out "$dir/$name.csr" 2>/dev/null
  printf '%s\n' "$ext" >"$dir/$name.ext"
  openssl x509 -req -in "$dir/$name.csr" -CA "$dir/ca.crt" -CAkey "$dir/ca.key" -CAcreateserial -days 30 \
    -extfile "$dir/$name.ext" -out "$dir/$name.crt" 2>/dev/null
  rm -f "$dir/$name.csr" "$dir/$name.ext"
}

write_kubeconfig() {
  local file=$1 server=$2 pki=$3 user=$4
  cat >"$file" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: roster-test
  cluster:
    server: $server
    certificate-authority: $pki/ca.crt
users:
- name: $user
  user:
    client-certificate: $pki/$user.crt
    client-key: $pki/$user.key
contexts:
- name: $user@roster-test
  context: {cluster: roster-test, user: $user}
current-context: $user@roster-test
EOF
}

# Starts a component in the background; its command line is kept so `restart` can run it again.
start() {
  local dir=$1 name=$2; shift 2
  mkdir -p "$dir/cmd"
  printf '%s\0' "$@" >"$dir/cmd/$name"
  "$@" >>"$dir/logs/$name.log" 2>&1 &
  echo "$! $name" >>"$dir/pids"
}

stop_pid() {
  local pid=$1
  kill "$pid" 2>/dev/null || return 0
  for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.1; done
  kill -9 "$pid" 2>/dev/null || true
}

wait_for() {
  local what=$1 seconds=$2; shift 2
  local deadline=$((SECONDS + seconds))
  until "$@" >/dev/null 2>&1; do
    ((SECONDS < deadline)) || die "timed out after ${seconds}s waiting for $what (logs in $DIR/logs)"
    sleep 0.2
  done
}

up() {
  DIR=""
  local nodes=3 statefulset=1 gates=""
  while (($#)); do
    case $1 in
      --nodes) nodes=${2:?--nodes needs a number}; shift 2 ;;
      --feature-gates) gates=${2:?--feature-gates needs a list}; shift 2 ;;
      --without-statefulset-controller) statefulset=0; shift ;;
      -*) die "unknown flag $1" ;;
      *) [[ -z $DIR ]] || die "one DIR only"; DIR=$1; shift ;;
    esac
  done
  [[ -n $DIR ]] || die "usage: cluster.sh up DIR [--nodes N] [--without-statefulset-controller]"
  [[ $nodes =~ ^[1-9][0-9]*$ ]] && ((nodes <= 250)) || die "--nodes must be 1..250"
  local bin; bin="$(bin_dir)"
  mkdir -p "$DIR"
  DIR="$(cd "$DIR" && pwd)"
  [[ ! -s $DIR/pids ]] || die "$DIR already holds a cluster (cluster.sh down $DIR first)"
  mkdir -p "$DIR/pki" "$DIR/logs" "$DIR/etcd" "$DIR/volumes"
  : >"$DIR/pids"
  local pki=$DIR/pki
  read -r etcd_port peer_port api_port kcm_port sched_port kwok_port <<<"$(free_ports 6)"

  # Certificates made for this cluster: a CA, the API server's serving certificate, one client
  # certificate per component, and the service-account signing key.
  openssl req -x509 -new -newkey rsa:2048 -nodes -keyout "$pki/ca.key" -out "$pki/ca.crt" -days 30 \
    -subj "/CN=roster-test-ca" 2>/dev/null
  issue_cert "$pki" apiserver "/CN=kube-apiserver" "subjectAltName=IP:127.0.0.1,IP:10.96.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local
extendedKeyUsage=serverAuth"
  issue_cert "$pki" admin "/O=system:masters/CN=kubernetes-admin" "extendedKeyUsage=clientAuth"
  issue_cert "$pki" controller-manager "/CN=system:kube-controller-manager" "extendedKeyUsage=clientAuth"
  issue_cert "$pki" scheduler "/CN=system:kube-scheduler" "extendedKeyUsage=clientAuth"
  # kwok plays every node's kubelet at once, so it acts as an administrator rather than one node.
  issue_cert "$pki" kwok "/O=system:masters/CN=kwok" "extendedKeyUsage=clientAuth"
  openssl genrsa -out "$pki/sa.key" 2048 2>/dev/null
  openssl rsa -in "$pki/sa.key" -pubout -out "$pki/sa.pub" 2>/dev/null

  local server=https://127.0.0.1:$api_port
  write_kubeconfig "$DIR/kubeconfig" "$server" "$pki" admin
  for component in controller-manager scheduler kwok; do
    write_kubeconfig "$DIR/$component.kubeconfig" "$server" "$pki" "$component"
  done

  start "$DIR" etcd "$bin/etcd" --name roster-test --data-dir "$DIR/etcd" \
    --listen-client-urls "http://127.0.0.1:$etcd_port" --advertise-client-urls "http://127.0.0.1:$etcd_port" \
    --listen-peer-urls "http://127.0.0.1:$peer_port" --initial-advertise-peer-urls "http://127.0.0.1:$peer_port" \
    --initial-cluster "roster-test=http://127.0.0.1:$peer_port" --unsafe-no-fsync --log-level warn
  echo "$etcd_port" >"$DIR/etcd-port"
  wait_for "etcd" 60 curl -sf "http://127.0.0.1:$etcd_port/health"

  # kubeadm's choices: Node and RBAC authorizers, the default admission plugins plus NodeRestriction.
  start "$DIR" kube-apiserver "$bin/kube-apiserver" --etcd-servers "http://127.0.0.1:$etcd_port" \
    --bind-address 127.0.0.1 --advertise-address 127.0.0.1 --secure-port "$api_port" \
    --tls-cert-file "$pki/apiserver.crt" --tls-private-key-file "$pki/apiserver.key" \
    --client-ca-file "$pki/ca.crt" --authorization-mode Node,RBAC --enable-admission-plugins NodeRestriction \
    --service-cluster-ip-range 10.96.0.0/12,fd00:10:96::/112 --allow-privileged \
    --service-account-issuer https://kubernetes.default.svc.cluster.local \
    --service-account-key-file "$pki/sa.pub" --service-account-signing-key-file "$pki/sa.key" \
    --endpoint-reconciler-type none --event-ttl 1h ${gates:+--feature-gates "$gates"}
  echo "$api_port" >"$DIR/api-port"
  wait_for "kube-apiserver" 120 curl -sf --cacert "$pki/ca.crt" "$server/readyz"

  local controllers='*'
  ((statefulset)) || controllers='*,-statefulset-controller'
  start "$DIR" kube-controller-manager "$bin/kube-controller-manager" \
    --kubeconfig "$DIR/controller-manager.kubeconfig" \
    --authentication-kubeconfig "$DIR/controller-manager.kubeconfig" \
    --authorization-kubeconfig "$DIR/controller-manager.kubeconfig" \
    --bind-address 127.0.0.1 --secure-port "$kcm_port" --leader-elect=false \
    --controllers "$controllers" --use-service-account-credentials \
    --service-account-private-key-file "$pki/sa.key" --root-ca-file "$pki/ca.crt" \
    --cluster-signing-cert-file "$pki/ca.crt" --cluster-signing-key-file "$pki/ca.key" \
    --service-cluster-ip-range 10.96.0.0/12,fd00:10:96::/112 \
    --enable-hostpath-provisioner ${gates:+--feature-gates "$gates"}
  start "$DIR" kube-scheduler "$bin/kube-scheduler" --kubeconfig "$DIR/scheduler.kubeconfig" \
    --authentication-kubeconfig "$DIR/scheduler.kubeconfig" --authorization-kubeconfig "$DIR/scheduler.kubeconfig" \
    --bind-address 127.0.0.1 --secure-port "$sched_port" --leader-elect=false
  start "$DIR" kwok "$bin/kwok" --kubeconfig "$DIR/kwok.kubeconfig" \
    --config "$TOOLS/kwok/stages.yaml" \
    --manage-nodes-with-annotation-selector kwok.x-k8s.io/node=fake \
    --cidr 10.244.0.0/16 --node-ip 127.0.0.1 --server-address "127.0.0.1:$kwok_port"

  start "$DIR" pod-finalizer python3 "$TOOLS/kwok/pod-finalizer.py" "$server" "$pki/ca.crt" "$pki/kwok.crt" "$pki/kwok.key"

  local kubectl=("$bin/kubectl" --kubeconfig "$DIR/kubeconfig")
  {
    for ((i = 0; i < nodes; i++)); do
      cat <<EOF
---
apiVersion: v1
kind: Node
metadata:
  name: kwok-node-$i
  annotations: {kwok.x-k8s.io/node: fake}
  labels: {kubernetes.io/hostname: kwok-node-$i, kubernetes.io/os: linux, type: kwok}
spec:
  podCIDR: 10.244.$i.0/24
  podCIDRs: [10.244.$i.0/24]
EOF
    done
    # Claims bind through kube-controller-manager's own host-path provisioner (test clusters only).
    cat <<EOF
---
apiVersion: storage.k8s.io/v1
kind: StorageClass
metadata:
  name: standard
  annotations: {storageclass.kubernetes.io/is-default-class: "true"}
provisioner: kubernetes.io/host-path
reclaimPolicy: Delete
volumeBindingMode: Immediate
EOF
  } >"$DIR/bootstrap.yaml"
  wait_for "the API to accept objects" 60 "${kubectl[@]}" apply -f "$DIR/bootstrap.yaml"
  wait_for "every node Ready" 120 "${kubectl[@]}" wait --for=condition=Ready node --all --timeout=1s
  # Pods are refused until the namespace's default ServiceAccount exists.
  wait_for "the default ServiceAccount" 60 "${kubectl[@]}" get serviceaccount default -n default
  echo "cluster.sh: up: $nodes nodes, API $server, kubeconfig $DIR/kubeconfig" >&2
}

restart() {
  DIR=${1:?usage: cluster.sh restart DIR COMPONENT}
  local name=${2:?usage: cluster.sh restart DIR COMPONENT}
  [[ -f $DIR/cmd/$name ]] || die "$DIR has no component $name"
  local pid
  pid=$(awk -v n="$name" '$2 == n {print $1}' "$DIR/pids" | tail -1)
  [[ -n $pid ]] && stop_pid "$pid"
  grep -v " $name\$" "$DIR/pids" >"$DIR/pids.new" || true
  mv "$DIR/pids.new" "$DIR/pids"
  local -a command
  mapfile -d '' command <"$DIR/cmd/$name"
  start "$DIR" "$name" "${command[@]}"
  if [[ $name == kube-apiserver ]]; then
    wait_for "kube-apiserver" 120 curl -sf --cacert "$DIR/pki/ca.crt" "https://127.0.0.1:$(cat "$DIR/api-port")/readyz"
  fi
}

# Compacts etcd's history up to its current revision, through etcd's JSON gateway.
compact() {
  DIR=${1:?usage: cluster.sh compact DIR}
  local url revision
  url="http://127.0.0.1:$(cat "$DIR/etcd-port")"
  revision=$(curl -sf -X POST "$url/v3/kv/range" -d '{"key":"AA=="}' | python3 -c 'import json,sys; print(json.load(sys.stdin)["header"]["revision"])')
  curl -sf -X POST "$url/v3/kv/compaction" -d "{\"revision\": \"$revision\", \"physical\": true}" >/dev/null
  echo "cluster.sh: compacted etcd at revision $revision" >&2
}

down() {
  local dir=${1:?usage: cluster.sh down DIR}
  [[ -f $dir/pids ]] || return 0
  local pid name
  # Reverse order: the API's clients first, etcd last.
  tac "$dir/pids" | while read -r pid name; do
    stop_pid "$pid"
  done
  : >"$dir/pids"
}

case ${1:-} in
  build) build ;;
  bin) bin_dir ;;
  up) shift; up "$@" ;;
  down) shift; down "$@" ;;
  restart) shift; restart "$@" ;;
  compact) shift; compact "$@" ;;
  ports) free_ports "${2:?usage: cluster.sh ports N}" ;;
  *) die "usage: cluster.sh build | bin | up DIR [--nodes N] [--without-statefulset-controller] | down DIR | restart DIR COMPONENT | compact DIR | ports N" ;;
esac
