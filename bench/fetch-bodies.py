#!/usr/bin/env python3
"""Fetches what a boot server answers for every MAC and stores the bodies as static files.

Usage: bench/fetch-bodies.py BASE_URL MACS_FILE OUT_DIR
For each MAC (hyphen form, one per line) writes OUT_DIR/ignition/<mac> (the answer to
/ignition?mac=<mac>&os=installed) and OUT_DIR/ipxe/<mac> (the answer to /ipxe?mac=<mac>), so a
static file server can serve exactly the same bytes. Fails on any non-200 answer.
"""
import http.client
import os
import sys
import urllib.parse

base, macs_file, out = sys.argv[1], sys.argv[2], sys.argv[3]
url = urllib.parse.urlsplit(base)
conn = http.client.HTTPConnection(url.hostname, url.port, timeout=30)
routes = {"ignition": "/ignition?mac={}&os=installed", "ipxe": "/ipxe?mac={}"}
for name in routes:
    os.makedirs(os.path.join(out, name), exist_ok=True)
with open(macs_file) as f:
    macs = [line.strip() for line in f if line.strip()]
total = 0
for mac in macs:
    for name, fmt in routes.items():
        conn.request("GET", fmt.format(mac))
        resp = conn.getresponse()
        body = resp.read()
        if resp.status != 200:
            sys.exit(f"{fmt.format(mac)}: HTTP {resp.status}: {body[:200]!r}")
        with open(os.path.join(out, name, mac), "wb") as w:
            w.write(body)
        total += len(body)
print(f"{len(macs)} MACs, {2 * len(macs)} bodies, {total} bytes", file=sys.stderr)
