#!/usr/bin/env python3
"""Generate a synthetic cluster.local dataset for DNS benchmarking.

Outputs (into --out DIR):
  cluster.local.zone     RFC 1035 master file: SOA, NS, headless services
                         (multi-A + per-pod A + SRV for the named port "http"),
                         ClusterIP services (single A + SRV).
  10.in-addr.arpa.zone   reverse zone: PTR for every pod IP and ClusterIP.
  queries.txt            dnsperf input: 60% pod A, 20% service A,
                         10% SRV, 10% NXDOMAIN (shuffled, seeded).
  queries-dual.txt       the same plus an AAAA twin for every A query
                         (NODATA in an IPv4 cluster), like real stub traffic.
  queries-<class>.txt    single-class files: podA svcA srv nx nodataAAAA ptr.
  checks.json            a handful of (qname, qtype, expectation) tuples the
                         harness uses to verify each server serves the data.
  meta.json              the parameters and record counts.

Naming follows the Kubernetes DNS spec (kubernetes/dns docs/specification.md):
  <svc>.<ns>.svc.cluster.local                       A (ClusterIP or all ready pod IPs)
  <hostname>.<svc>.<ns>.svc.cluster.local            A (headless service endpoints)
  _<port>._<proto>.<svc>.<ns>.svc.cluster.local      SRV
  <d>.<c>.<b>.<a>.in-addr.arpa                       PTR

Everything is deterministic for a given (services, pods, clusterip, seed).
"""
import argparse
import ipaddress
import json
import os
import random
import sys

PRESETS = {
    # name: (headless services, pods per headless service, ClusterIP services)
    "tiny": (50, 4, 50),
    "small": (1000, 10, 1000),
    "large": (10000, 10, 10000),
}

ZONE = "cluster.local."
REV_ZONE = "10.in-addr.arpa."
TTL = 5  # CoreDNS kubernetes plugin default record TTL
POD_BASE = int(ipaddress.IPv4Address("10.128.0.0"))
SVC_BASE = int(ipaddress.IPv4Address("10.96.0.0"))


def ip_str(n):
    return str(ipaddress.IPv4Address(n))


def rev_owner(n):
    """Owner name relative to 10.in-addr.arpa. for IPv4 integer n."""
    a, b, c, d = ipaddress.IPv4Address(n).packed
    assert a == 10
    return f"{d}.{c}.{b}"


def soa_ns(f, origin):
    f.write(f"$ORIGIN {origin}\n$TTL {TTL}\n")
    f.write(
        f"@ IN SOA ns.dns.cluster.local. hostmaster.cluster.local. "
        f"( 1 7200 1800 86400 {TTL} )\n"
    )
    f.write("@ IN NS ns.dns.cluster.local.\n")


def generate(out, services, pods, clusterip, seed, nqueries, namespaces=None):
    os.makedirs(out, exist_ok=True)
    if namespaces is None:
        namespaces = max(1, (services + clusterip) // 200)
    rng = random.Random(seed)

    headless = []  # (svc, ns, [(hostname, ip_int)])
    cips = []  # (svc, ns, ip_int)
    pod_i = 0
    for i in range(services):
        ns = f"ns-{i % namespaces}"
        eps = []
        for k in range(pods):
            pod_i += 1
            eps.append((f"web-{k}", POD_BASE + pod_i))
        headless.append((f"hsvc-{i}", ns, eps))
    for i in range(clusterip):
        ns = f"ns-{i % namespaces}"
        cips.append((f"csvc-{i}", ns, SVC_BASE + 16 + i))
    if SVC_BASE + 16 + clusterip >= POD_BASE or pod_i >= (1 << 23):
        sys.exit("scale too large for the address plan")

    counts = {"A": 0, "SRV": 0, "PTR": 0}
    zpath = os.path.join(out, "cluster.local.zone")
    with open(zpath, "w") as f:
        soa_ns(f, ZONE)
        f.write(f"ns.dns IN A {ip_str(SVC_BASE + 10)}\n")
        f.write(f"kube-dns.kube-system.svc IN A {ip_str(SVC_BASE + 10)}\n")
        f.write(f"kubernetes.default.svc IN A {ip_str(SVC_BASE + 1)}\n")
        counts["A"] += 3
        w = None
        for svc, ns, eps in headless:
            base = f"{svc}.{ns}.svc"
            w = max(1, 100 // len(eps)) if eps else 100
            for _, ip in eps:
                f.write(f"{base} IN A {ip_str(ip)}\n")
            for host, ip in eps:
                f.write(f"{host}.{base} IN A {ip_str(ip)}\n")
            for host, _ in eps:
                f.write(f"_http._tcp.{base} IN SRV 0 {w} 80 {host}.{base}.{ZONE}\n")
            counts["A"] += 2 * len(eps)
            counts["SRV"] += len(eps)
        for svc, ns, ip in cips:
            base = f"{svc}.{ns}.svc"
            f.write(f"{base} IN A {ip_str(ip)}\n")
            f.write(f"_http._tcp.{base} IN SRV 0 100 80 {base}.{ZONE}\n")
            counts["A"] += 1
            counts["SRV"] += 1

    rpath = os.path.join(out, "10.in-addr.arpa.zone")
    with open(rpath, "w") as f:
        soa_ns(f, REV_ZONE)
        f.write(f"{rev_owner(SVC_BASE + 10)} IN PTR kube-dns.kube-system.svc.{ZONE}\n")
        f.write(f"{rev_owner(SVC_BASE + 1)} IN PTR kubernetes.default.svc.{ZONE}\n")
        counts["PTR"] += 2
        for svc, ns, eps in headless:
            for host, ip in eps:
                f.write(f"{rev_owner(ip)} IN PTR {host}.{svc}.{ns}.svc.{ZONE}\n")
                counts["PTR"] += 1
        for svc, ns, ip in cips:
            f.write(f"{rev_owner(ip)} IN PTR {svc}.{ns}.svc.{ZONE}\n")
            counts["PTR"] += 1

    # ---- the same data as Kubernetes API objects ---------------------------
    # A v1 List of Services and discovery.k8s.io/v1 EndpointSlices, so a server
    # fed by a Kubernetes watch can load exactly this dataset from a fixture.
    items = []
    port = [{"name": "http", "port": 80, "protocol": "TCP"}]
    for svc, ns, eps in headless:
        items.append({"apiVersion": "v1", "kind": "Service",
                      "metadata": {"name": svc, "namespace": ns},
                      "spec": {"clusterIP": "None", "clusterIPs": ["None"],
                               "selector": {"app": svc}, "ports": port}})
        items.append({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
                      "metadata": {"name": f"{svc}-0", "namespace": ns,
                                   "labels": {"kubernetes.io/service-name": svc}},
                      "addressType": "IPv4",
                      "ports": [{"name": "http", "port": 80, "protocol": "TCP"}],
                      "endpoints": [{"addresses": [ip_str(ip)], "hostname": host,
                                     "conditions": {"ready": True},
                                     "targetRef": {"kind": "Pod", "namespace": ns,
                                                   "name": f"{svc}-{host}"}}
                                    for host, ip in eps]})
    for svc, ns, ip in cips:
        items.append({"apiVersion": "v1", "kind": "Service",
                      "metadata": {"name": svc, "namespace": ns},
                      "spec": {"clusterIP": ip_str(ip), "clusterIPs": [ip_str(ip)],
                               "type": "ClusterIP", "selector": {"app": svc}, "ports": port}})
    with open(os.path.join(out, "kube-objects.json"), "w") as f:
        json.dump({"apiVersion": "v1", "kind": "List", "items": items}, f,
                  separators=(",", ":"))

    # ---- query mix -------------------------------------------------------
    lines = []
    n_pod = int(nqueries * 0.60)
    n_svc = int(nqueries * 0.20)
    n_srv = int(nqueries * 0.10)
    n_nx = nqueries - n_pod - n_svc - n_srv
    for _ in range(n_pod):
        svc, ns, eps = headless[rng.randrange(len(headless))]
        host, _ = eps[rng.randrange(len(eps))]
        lines.append(f"{host}.{svc}.{ns}.svc.{ZONE} A")
    for j in range(n_svc):
        if j % 2 == 0 or not cips:  # half headless (multi-A), half ClusterIP
            svc, ns, _ = headless[rng.randrange(len(headless))]
        else:
            svc, ns, _ = cips[rng.randrange(len(cips))]
        lines.append(f"{svc}.{ns}.svc.{ZONE} A")
    for j in range(n_srv):
        if j % 2 == 0 or not cips:
            svc, ns, _ = headless[rng.randrange(len(headless))]
        else:
            svc, ns, _ = cips[rng.randrange(len(cips))]
        lines.append(f"_http._tcp.{svc}.{ns}.svc.{ZONE} SRV")
    for j in range(n_nx):
        ns = f"ns-{rng.randrange(namespaces)}"
        kind = j % 3
        if kind == 0:  # service that does not exist
            lines.append(f"missing-{rng.randrange(1 << 20)}.{ns}.svc.{ZONE} A")
        elif kind == 1:  # ndots:5 search-path expansion of an external name
            lines.append(f"api-{rng.randrange(1000)}.example.com.{ns}.svc.{ZONE} A")
        else:  # search-path expansion of an in-cluster FQDN
            svc, ns2, _ = headless[rng.randrange(len(headless))]
            lines.append(f"{svc}.{ns2}.svc.{ZONE}{ns}.svc.{ZONE} A")
    # per-class files (used by the harness's --per-class runs) are cut from the
    # unshuffled mix; AAAA for existing pod/service names = NODATA (IPv4 cluster),
    # the twin query every glibc/musl stub sends next to A.
    cls = {
        "podA": lines[:n_pod],
        "svcA": lines[n_pod:n_pod + n_svc],
        "srv": lines[n_pod + n_svc:n_pod + n_svc + n_srv],
        "nx": lines[n_pod + n_svc + n_srv:],
    }
    cls["nodataAAAA"] = [l[:-2] + " AAAA" for l in cls["podA"][: n_pod // 2] + cls["svcA"]]
    ptr = []
    for _ in range(max(1, nqueries // 10)):
        svc, ns, eps = headless[rng.randrange(len(headless))]
        ptr.append(f"{rev_owner(eps[rng.randrange(len(eps))][1])}.{REV_ZONE} PTR")
    cls["ptr"] = ptr
    for name, ls in cls.items():
        ls = list(ls)
        rng.shuffle(ls)
        with open(os.path.join(out, f"queries-{name}.txt"), "w") as f:
            f.write("\n".join(ls[:50000]) + "\n")
    # "dual" mix: the main mix plus an AAAA twin for every A query, as a stub
    # resolver in an IPv4-only cluster sends them (A and AAAA in parallel)
    dual = lines + [l[:-2] + " AAAA" for l in lines if l.endswith(" A")]
    rng.shuffle(dual)
    with open(os.path.join(out, "queries-dual.txt"), "w") as f:
        f.write("\n".join(dual) + "\n")

    rng.shuffle(lines)
    with open(os.path.join(out, "queries.txt"), "w") as f:
        f.write("\n".join(lines) + "\n")

    # ---- correctness checks used by the harness ---------------------------
    hs, hns, heps = headless[-1]
    cs, cns, cip = cips[-1] if cips else (None, None, None)
    checks = [
        {"qname": f"{heps[-1][0]}.{hs}.{hns}.svc.{ZONE}", "qtype": "A",
         "rcode": 0, "answers": 1, "a": [ip_str(heps[-1][1])], "what": "pod A (last record)"},
        {"qname": f"{hs}.{hns}.svc.{ZONE}", "qtype": "A",
         "rcode": 0, "answers": len(heps), "what": "headless service multi-A"},
        {"qname": f"_http._tcp.{hs}.{hns}.svc.{ZONE}", "qtype": "SRV",
         "rcode": 0, "answers": len(heps), "what": "headless SRV"},
        {"qname": f"missing-1.{hns}.svc.{ZONE}", "qtype": "A",
         "rcode": 3, "answers": 0, "soa": True, "what": "NXDOMAIN"},
        {"qname": f"{rev_owner(heps[-1][1])}.{REV_ZONE}", "qtype": "PTR",
         "rcode": 0, "answers": 1, "what": "pod PTR"},
    ]
    if cips:
        checks.append({"qname": f"{cs}.{cns}.svc.{ZONE}", "qtype": "A", "rcode": 0,
                       "answers": 1, "a": [ip_str(cip)], "what": "ClusterIP A"})
        checks.append({"qname": f"_http._tcp.{cs}.{cns}.svc.{ZONE}", "qtype": "SRV",
                       "rcode": 0, "answers": 1, "what": "ClusterIP SRV"})
        checks.append({"qname": f"{rev_owner(cip)}.{REV_ZONE}", "qtype": "PTR",
                       "rcode": 0, "answers": 1, "what": "ClusterIP PTR"})
    checks += [
        # negative answers must carry the zone's SOA in the authority section ("soa")
        {"qname": f"{heps[-1][0]}.{hs}.{hns}.svc.{ZONE}", "qtype": "AAAA",
         "rcode": 0, "answers": 0, "soa": True, "what": "NODATA AAAA (pod)"},
        {"qname": f"api-1.example.com.{hns}.svc.{ZONE}", "qtype": "A",
         "rcode": 3, "answers": 0, "soa": True, "what": "NXDOMAIN (ndots:5 expansion)"},
        {"qname": f"web-{len(heps) + 7}.{hs}.{hns}.svc.{ZONE}", "qtype": "A",
         "rcode": 3, "answers": 0, "soa": True, "what": "NXDOMAIN (missing ordinal)"},
        {"qname": f"{hns}.svc.{ZONE}", "qtype": "A",
         "rcode": 0, "answers": 0, "soa": True, "what": "NODATA (empty non-terminal)"},
        {"qname": f"{heps[0][0]}.{hs}.{hns}.svc.{ZONE}".upper(), "qtype": "A",
         "rcode": 0, "answers": 1, "a": [ip_str(heps[0][1])], "what": "pod A, upper case"},
    ]
    with open(os.path.join(out, "checks.json"), "w") as f:
        json.dump(checks, f, indent=1)

    meta = {
        "headless_services": services, "pods_per_service": pods,
        "clusterip_services": clusterip, "namespaces": namespaces,
        "pod_records": services * pods, "seed": seed, "queries": len(lines),
        "rrs": counts, "rr_total": sum(counts.values()) + 6,
        "zone_bytes": os.path.getsize(zpath), "rev_zone_bytes": os.path.getsize(rpath),
        "ready_probe": checks[0],
        "mix": {"pod_A": n_pod, "svc_A": n_svc, "SRV": n_srv, "NXDOMAIN": n_nx},
    }
    with open(os.path.join(out, "meta.json"), "w") as f:
        json.dump(meta, f, indent=1)
    return meta


def generate_empty(out):
    """The same zones with nothing in them (SOA + NS at each apex; an empty `v1 List`):
    what a server holds before any record, the baseline of the memory-per-record figure."""
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, "cluster.local.zone"), "w") as f:
        soa_ns(f, ZONE)
        f.write(f"ns.dns IN A {ip_str(SVC_BASE + 10)}\n")
    with open(os.path.join(out, "10.in-addr.arpa.zone"), "w") as f:
        soa_ns(f, REV_ZONE)
    with open(os.path.join(out, "kube-objects.json"), "w") as f:
        json.dump({"apiVersion": "v1", "kind": "List", "items": []}, f)
    meta = {"empty": True, "rr_total": 0,
            "ready_probe": {"qname": ZONE, "qtype": "SOA", "rcode": 0, "answers": 1}}
    with open(os.path.join(out, "meta.json"), "w") as f:
        json.dump(meta, f, indent=1)
    return meta


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scale", choices=sorted(PRESETS), default="small")
    ap.add_argument("--services", type=int, help="headless services (overrides preset)")
    ap.add_argument("--pods", type=int, help="pods per headless service (overrides preset)")
    ap.add_argument("--clusterip", type=int, help="ClusterIP services (overrides preset)")
    ap.add_argument("--namespaces", type=int)
    ap.add_argument("--queries", type=int, default=200000)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    s, p, c = PRESETS[a.scale]
    meta = generate(a.out, a.services if a.services is not None else s,
                    a.pods if a.pods is not None else p,
                    a.clusterip if a.clusterip is not None else c,
                    a.seed, a.queries, a.namespaces)
    json.dump(meta, sys.stdout, indent=1)
    print()


if __name__ == "__main__":
    main()
