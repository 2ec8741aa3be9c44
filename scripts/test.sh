#!/usr/bin/env bash
# Runs every test of roster. Installs what a fresh machine lacks first (Debian packages), so that
# `scripts/test.sh` works on a new machine and in CI alike.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

need_apt=()
command -v dig >/dev/null || need_apt+=(dnsutils)
if ((${#need_apt[@]})); then
  echo "installing: ${need_apt[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings
cargo test --workspace --locked
