#!/usr/bin/env bash
# Runs every test of roster. Installs what a fresh machine lacks first (Debian packages), so that
# `scripts/test.sh` works on a new machine and in CI alike.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

need_apt=()
command -v dig >/dev/null || need_apt+=(dnsutils)
command -v kubectl >/dev/null || need_apt+=(kubectl)
command -v ip >/dev/null || need_apt+=(iproute2)
command -v iptables >/dev/null || need_apt+=(iptables)   # tests/node_local.rs: the node-local overlay's NOTRACK rules
command -v setpriv >/dev/null || need_apt+=(util-linux)
command -v script >/dev/null || need_apt+=(bsdutils)   # tests/local_exec.rs: kubectl on a terminal
command -v knotd >/dev/null || need_apt+=(knot)
command -v openssl >/dev/null || need_apt+=(openssl)
command -v curl >/dev/null || need_apt+=(curl)
if ((${#need_apt[@]})); then
  echo "installing: ${need_apt[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq "${need_apt[@]}" >/dev/null || {
    # Debian proper ships kubectl as kubernetes-client.
    apt-get install -y -qq dnsutils kubernetes-client iproute2 iptables knot >/dev/null
  }
fi
python3 -c 'import kubernetes' 2>/dev/null || pip install -q kubernetes

# The real control plane the tests run against (tests/real_*.rs): Kubernetes' own programs, built from
# the Go modules pinned in tools/k8s/ into a cache outside the repository (minutes cold, nothing warm).
command -v go >/dev/null || export PATH="$PATH:/usr/local/go/bin"
start=$SECONDS
scripts/cluster.sh build
echo "control plane binaries ready in $((SECONDS - start)) s"

# Disk is the scarcest resource on CI machines; say how much there is so a failure is easy to read.
df -h . | tail -1 | awk '{print "disk free for target/: " $4}'

# Incremental caches double the size of target/ and CI starts clean anyway.
export CARGO_INCREMENTAL="${CARGO_INCREMENTAL:-0}"

cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings
# The container image's build (the stand-in left out) must stay clean too.
cargo clippy -p roster --no-default-features --locked -- -D warnings
cargo test --workspace --locked

# A short run of each fuzz target from its committed seeds (the long runs: bench/fuzz.sh 600). A debug
# build without sanitizer: its cold build is the bulk of this step, and the targets' own assertions do
# the checking. cargo-fuzz needs nightly flags; RUSTC_BOOTSTRAP=1 (set by bench/fuzz.sh) allows them.
# FUZZ_SECONDS=0 skips it.
if [[ ${FUZZ_SECONDS:-20} != 0 ]]; then
  command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
  start=$SECONDS
  FUZZ_BUILD_FLAGS="--dev -s none" bench/fuzz.sh "${FUZZ_SECONDS:-20}"
  echo "fuzz smoke run done in $((SECONDS - start)) s"
fi
