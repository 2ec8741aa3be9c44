#!/usr/bin/env python3
"""Generate sim/src/proto/schema.txt: the Kubernetes protobuf message layouts (field numbers, JSON names,
wire kinds) the stand-in needs to turn `application/vnd.kubernetes.protobuf` bodies into JSON.

Inputs are the published crates' sources in the cargo registry: k8s-pb (the messages, generated from
Kubernetes' .proto files) and k8s-openapi (the JSON field names). Usage:
    python3 sim/tools/gen_proto_schema.py ~/.cargo/registry/src/*/k8s-pb-0.9.0 \
        ~/.cargo/registry/src/*/k8s-openapi-0.29.0 > sim/src/proto/schema.txt
"""
import os
import re
import sys

pb_root, openapi_root = sys.argv[1], sys.argv[2]

json_names = {}
for dirpath, _, files in os.walk(os.path.join(openapi_root, "src", "v1_33")):
    for f in files:
        if f.endswith(".rs"):
            text = open(os.path.join(dirpath, f), encoding="utf-8").read()
            for name in re.findall(r'"([A-Za-z0-9]+)" => Field::Key_', text):
                json_names.setdefault(name.lower(), name)


def json_name(rust_field):
    rust_field = rust_field.removeprefix("r#")
    key = rust_field.replace("_", "").lower()
    if key in json_names:
        return json_names[key]
    parts = rust_field.split("_")
    return parts[0] + "".join(p[:1].upper() + p[1:] for p in parts[1:])


WRAPPERS = [
    "::core::option::Option<", "::prost::alloc::vec::Vec<", "::prost::alloc::collections::BTreeMap<",
    "::prost::alloc::boxed::Box<", "::prost::alloc::string::String,", ">", " ", "\n",
]


def resolve(module, typ):
    for w in WRAPPERS:
        typ = typ.replace(w, "")
    typ = typ.strip(",")
    parts = [p for p in typ.split("::") if p]
    mod = list(module)
    while parts and parts[0] == "super":
        mod.pop()
        parts.pop(0)
    return ".".join(mod + parts)


out = []
src = os.path.join(pb_root, "src")
for dirpath, _, files in sorted(os.walk(src)):
    for f in sorted(files):
        if f != "mod.rs":
            continue
        rel = os.path.relpath(dirpath, src)
        module = [] if rel == "." else rel.split(os.sep)
        lines = open(os.path.join(dirpath, f), encoding="utf-8").read().split("\n")
        i = 0
        current = None
        while i < len(lines):
            line = lines[i].strip()
            m = re.match(r"pub struct (\w+) \{", line)
            if m:
                current = ".".join(module + [m.group(1)])
                out.append(f"message {current}")
            elif line == "}":
                current = None
            m = re.match(r'#\[prost\((.*)\)\]$', line)
            if m and current:
                attr = m.group(1)
                j = i + 1
                decl = ""
                while j < len(lines):
                    decl += lines[j].strip() + " "
                    if lines[j].rstrip().endswith(",") and decl.count("<") == decl.count(">"):
                        break
                    j += 1
                fm = re.match(r"pub ([\w#]+):\s*(.*),\s*$", decl.strip())
                if not fm:
                    i += 1
                    continue
                field, typ = fm.group(1), fm.group(2)
                tag = re.search(r'tag = "(\d+)"', attr).group(1)
                repeated = "repeated" in attr
                if attr.startswith("btree_map"):
                    kv = re.search(r'btree_map = "([^"]+)"', attr).group(1).replace(" ", "")
                    _, vkind = kv.split(",")
                    if vkind == "message":
                        vkind = "msg:" + resolve(module, typ.split("String,", 1)[1])
                    kind = "map:" + vkind
                else:
                    kind = attr.split(",")[0].split(" ")[0].split("=")[0].strip()
                    if kind == "message":
                        kind = "msg:" + resolve(module, typ)
                name = json_name(field)
                # Go struct embedding (`json:",inline"`): the field is named after its type and its JSON
                # name is not a real one; its fields belong to the parent object
                inline = (
                    kind.startswith("msg:")
                    and name.lower() not in json_names
                    and kind.rsplit(".", 1)[-1].lower() == name.lower()
                )
                if inline:
                    kind = "inline:" + kind[4:]
                out.append(f"{tag} {name} {'*' if repeated else '-'} {kind}")
                i = j
            i += 1
print("\n".join(out))
