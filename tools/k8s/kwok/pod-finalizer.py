#!/usr/bin/env python3
"""Completes pod deletions on the test cluster's kwok nodes, the way a kubelet does.

Once a scheduled pod is terminating, delete it with grace period 0 and a UID precondition. kwok's own
delete stage deletes by name alone, from a queue that can hold a stale copy of the pod: when a
StatefulSet controller replaces a pod at once (same name, new UID), that stale delete removes the new
pod, something no kubelet does. The UID precondition makes such a delete fail harmlessly instead.

Usage: pod-finalizer.py SERVER CA_FILE CLIENT_CERT CLIENT_KEY (started by scripts/cluster.sh up).
Standard library only.
"""
import json
import ssl
import sys
import time
import urllib.error
import urllib.request

SERVER, CA, CERT, KEY = sys.argv[1:5]
CONTEXT = ssl.create_default_context(cafile=CA)
CONTEXT.load_cert_chain(CERT, KEY)


def request(method, path, body=None, timeout=30):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(SERVER + path, data=data, method=method)
    req.add_header("Content-Type", "application/json")
    return urllib.request.urlopen(req, context=CONTEXT, timeout=timeout)


def finish(pod):
    meta = pod["metadata"]
    if not meta.get("deletionTimestamp") or not pod.get("spec", {}).get("nodeName"):
        return
    options = {
        "kind": "DeleteOptions",
        "apiVersion": "v1",
        "gracePeriodSeconds": 0,
        "preconditions": {"uid": meta["uid"]},
    }
    path = f"/api/v1/namespaces/{meta['namespace']}/pods/{meta['name']}"
    try:
        request("DELETE", path, options).close()
    except urllib.error.HTTPError as error:
        # 404: already gone; 409: the name now belongs to another pod (the precondition at work).
        if error.code not in (404, 409):
            print(f"pod-finalizer: delete {path}: {error.code} {error.reason}", file=sys.stderr, flush=True)


def run():
    while True:
        try:
            with request("GET", "/api/v1/pods") as response:
                listing = json.load(response)
            for pod in listing["items"]:
                finish(pod)
            version = listing["metadata"]["resourceVersion"]
            path = f"/api/v1/pods?watch=1&allowWatchBookmarks=true&resourceVersion={version}&timeoutSeconds=300"
            with request("GET", path, timeout=330) as stream:
                for line in stream:
                    event = json.loads(line)
                    if event["type"] == "ERROR":
                        break  # e.g. 410 Gone: list again
                    if event["type"] in ("ADDED", "MODIFIED"):
                        finish(event["object"])
        except (OSError, ValueError, KeyError) as error:
            print(f"pod-finalizer: {error}; retrying", file=sys.stderr, flush=True)
            time.sleep(1)


if __name__ == "__main__":
    run()
