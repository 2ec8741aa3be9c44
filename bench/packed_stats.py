#!/usr/bin/env python3
"""Where the bytes of a packed snapshot (version 4, shared/src/packed.rs) go: names, groups, targets by
record type, addresses, clients. Make one with
`PACKED_DUMP=/tmp/snapshot.rspk PACKED_DECODE_ONLY=1 target/release/examples/packed_size 10000 10 1`, then
`python3 bench/packed_stats.py /tmp/snapshot.rspk`. It trusts its input (the decoder in Rust checks)."""
import collections
import sys

TYPES = {1: "A", 2: "AAAA", 3: "SRV", 4: "PTR", 5: "CNAME", 6: "TXT", 7: "NS"}
REPEAT = 8
MEMBER_ADDRESSES = 9
MEMBER_SRV = 10


def main(path):
    data = open(path, "rb").read()
    if data[:4] != b"RSPK" or data[4] != 4:
        sys.exit(f"{path}: not a version 4 packed snapshot")
    pos = 5

    def varint():
        nonlocal pos
        value = shift = 0
        while True:
            byte = data[pos]
            pos += 1
            value |= (byte & 0x7F) << shift
            shift += 7
            if byte < 0x80:
                return value

    def labels(part):
        nonlocal pos
        start = pos
        varint()
        for _ in range(varint()):
            pos += 1 + data[pos]
        sizes[part] += pos - start

    sizes, counts = collections.Counter(), collections.Counter()
    names, records, clients = varint(), varint(), varint()
    sizes["header"] = pos
    previous = collections.Counter()  # record types of the last name that had records
    group = (0, 0)  # the open group's members and IPv4 addresses (a group stays open over its subtree)
    left_names = names
    while left_names > 0:
        labels("names")
        left_names -= 1
        start = pos
        head = varint()
        left = head >> 1
        sizes["record counts"] += pos - start
        if head & 1:
            start = pos
            members, v4 = varint(), 0
            pos += 1  # flags
            for _ in range(members):
                pos += 2 + data[pos + 1]  # shared bytes, rest length, rest
                for _ in range(varint()):
                    v4 += data[pos] == 4
                    pos += 5 if data[pos] == 4 else 17
            sizes["groups (members)"] += pos - start
            counts["members"] += members
            left_names -= members
            group = (members, v4)
        current = collections.Counter()
        while left > 0:
            start = pos
            kind = data[pos]
            pos += 1
            if kind == REPEAT:
                repeated = data[pos]
                pos += 1
                sizes["repeats"] += pos - start
                counts[f"{TYPES[repeated]} (repeated)"] += previous[repeated]
                current[repeated] += previous[repeated]
                left -= previous[repeated]
                continue
            if kind == MEMBER_ADDRESSES:
                family = data[pos]
                pos += 1
                made = group[1] if family == 4 else group[0] - group[1]
                sizes["member expansions"] += pos - start
                counts[f"{'A' if family == 4 else 'AAAA'} (members')"] += made
                current[1 if family == 4 else 2] += made
                left -= made
                continue
            if kind == MEMBER_SRV:
                varint(), varint(), varint()
                sizes["member expansions"] += pos - start
                counts["SRV (members')"] += group[0]
                current[3] += group[0]
                left -= group[0]
                continue
            name = TYPES[kind]
            if kind in (1, 2):
                pos += 4 if kind == 1 else 16
            elif kind == 3:
                varint(), varint(), varint()
            elif kind == 6:
                length = varint()  # (`pos += varint()` would add to the position before the varint)
                pos += length
            sizes[f"{name} data"] += pos - start
            if kind in (3, 4, 5, 7):
                labels(f"{name} targets")
            counts[name] += 1
            current[kind] += 1
            left -= 1
        if current:
            previous = current
    sizes["clients"] = len(data) - pos
    print(f"{path}: {len(data):,} bytes; {names:,} names, {records:,} records, {clients:,} clients")
    for part, size in sizes.most_common():
        print(f"  {part:<20} {size:>11,}  {100 * size / len(data):5.1f} %")
    print("  records:", ", ".join(f"{kind} {n:,}" for kind, n in sorted(counts.items())))


if __name__ == "__main__":
    main(sys.argv[1])
