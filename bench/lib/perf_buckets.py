#!/usr/bin/env python3
"""Attribute perf samples of roster's DNS server to coarse cost buckets.

    perf script -i FILE -F ip,sym | python3 perf_buckets.py -

Each sample is assigned to the first bucket whose pattern matches a frame,
scanning from the leaf towards the root (so a syscall made while encoding
counts as the syscall). Also lists the code that calls the allocator most.
"""
import collections
import re
import sys

BUCKETS = [
    (r"__libc_sendto|__sys_sendto|sendmmsg", "kernel: sendto (UDP send, loopback delivery, waking the client)"),
    (r"__libc_recvfrom|__sys_recvfrom|recvmmsg", "kernel: recvfrom"),
    (r"epoll_wait", "kernel: epoll_wait (idle)"),
    (r"store_label_pointer", "hickory encode: name-compression table (a Vec per label)"),
    (r"MessageResponse.*encode|emit_message_parts", "hickory encode: rest of the response encoding"),
    (r"ZoneStore::find", "roster lookup: ZoneStore::find (SipHash of the name, Node clone)"),
    (r"FrontHandler::decide|roster_dns::lookup", "roster lookup: rest of decide/answer"),
    (r"MessageResponseBuilder|FrontHandler as hickory_server.*handle_request",
     "roster handler: response builder, EDNS"),
    (r"MessageRequest|BinDecodable|Queries::read|Message::read|from_vec|read_records",
     "hickory: parse the request"),
    (r"JoinSet|reap_tasks|task::spawn|spawn_inner|drop_join_handle|OwnedTasks",
     "hickory server: a task spawned and reaped per query"),
    (r"handle_raw_request|ServerContext", "hickory server: request plumbing"),
    (r"handle_udp|UdpStream|BufDnsStreamHandle|mpsc", "hickory server: UDP stream loop, channels"),
]
ALLOC = re.compile(r"^(_int_malloc|malloc|malloc_consolidate|_int_free|_int_memalign|cfree@|"
                   r"__GI___libc_malloc|__GI___libc_free|unlink_chunk|__libc_calloc|_int_realloc|"
                   r"realloc|__libc_free|alloc::|__rust_alloc|__rust_dealloc|__rdl_|"
                   r"<alloc::alloc::Global|core::ptr::drop_in_place<alloc|<alloc::vec|"
                   r"<T as alloc::slice)")


def stacks(f):
    cur = []
    for line in f:
        s = line.strip()
        if not s:
            if cur:
                yield cur
            cur = []
            continue
        cur.append(re.sub(r"^[0-9a-f]+ ", "", s))
    if cur:
        yield cur


def main():
    f = sys.stdin if len(sys.argv) < 2 or sys.argv[1] == "-" else open(sys.argv[1])
    pats = [(re.compile(p), n) for p, n in BUCKETS]
    buckets, allocs, total, in_alloc = collections.Counter(), collections.Counter(), 0, 0
    for st in stacks(f):
        total += 1
        name = "other (tokio scheduler, timers, misc)"
        for frame in st:
            m = next((n for p, n in pats if p.search(frame)), None)
            if m:
                name = m
                break
        buckets[name] += 1
        if ALLOC.match(st[0]):
            in_alloc += 1
            site = next((fr for fr in st if not ALLOC.match(fr) and "(inlined)" not in fr), "?")
            allocs[site[:110]] += 1
    if not total:
        sys.exit("no samples")
    print(f"== cost buckets ({total} samples)")
    for n, k in buckets.most_common():
        print(f"{100 * k / total:5.1f}%  {n}")
    print(f"== allocator (malloc/free) self time: {100 * in_alloc / total:.1f}%, top callers")
    for n, k in allocs.most_common(8):
        print(f"{100 * k / total:5.1f}%  {n}")


if __name__ == "__main__":
    main()
