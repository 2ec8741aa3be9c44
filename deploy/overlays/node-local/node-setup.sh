#!/bin/sh
# Node setup for roster's node-local DNS replicas, run by the DaemonSet's init container (root, NET_ADMIN
# and NET_RAW, host network) before the non-root replica starts: the link-local address on a dummy
# interface, and NOTRACK for DNS to and from it, as NodeLocal DNSCache sets them up. Idempotent: it runs
# again on every start of the pod and adds nothing twice.
#   NODE_DNS_ADDRESS  the address pods query (kubelet --cluster-dns), e.g. 169.254.20.10
#   NODE_DNS_DEVICE   the interface that holds it (default nodelocaldns, made as a dummy if missing)
set -eu
address="${NODE_DNS_ADDRESS:?NODE_DNS_ADDRESS is not set}"
device="${NODE_DNS_DEVICE:-nodelocaldns}"

# The interface outlives the pod on purpose: while it holds the address and nothing listens, a query is
# refused at once (ICMP port unreachable) and resolvers move on to their next nameserver, kube-dns.
ip link show "$device" >/dev/null 2>&1 || ip link add "$device" type dummy
ip link set "$device" up
ip addr replace "$address/32" dev "$device"

# Adds a rule unless it is there. -w: wait for the xtables lock kube-proxy also takes (mounted from the host).
rule() {
  table="$1"
  shift
  iptables -w 60 -t "$table" -C "$@" 2>/dev/null || iptables -w 60 -t "$table" -A "$@"
}
for proto in udp tcp; do
  # No connection tracking for DNS to and from the address: no conntrack entries to race or fill the
  # table, and kube-proxy's NAT rules never see these packets.
  rule raw PREROUTING -d "$address/32" -p "$proto" --dport 53 -j NOTRACK
  rule raw OUTPUT -d "$address/32" -p "$proto" --dport 53 -j NOTRACK
  rule raw OUTPUT -s "$address/32" -p "$proto" --sport 53 -j NOTRACK
  # Untracked packets are neither NEW nor ESTABLISHED: accept them before a host firewall's state rules.
  rule filter INPUT -d "$address/32" -p "$proto" --dport 53 -j ACCEPT
  rule filter OUTPUT -s "$address/32" -p "$proto" --sport 53 -j ACCEPT
done
echo "node-local DNS address $address on $device, NOTRACK for port 53"
