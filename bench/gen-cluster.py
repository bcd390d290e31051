#!/usr/bin/env python3
"""Writes a cluster file with N nodes (3 controllers, the rest workers) for benchmarks.

Usage: bench/gen-cluster.py N OUT_DIR
Every 10th worker carries an inline Butane snippet of its own, so per-node translation and
merging are part of what is measured; all nodes share the example's cluster-wide snippets.
"""
import os
import shutil
import sys

n = int(sys.argv[1])
out = sys.argv[2]
here = os.path.dirname(os.path.abspath(__file__))
example = os.path.join(here, "..", "examples", "mercury")
os.makedirs(out, exist_ok=True)
shutil.copytree(os.path.join(example, "snippets"), os.path.join(out, "snippets"), dirs_exist_ok=True)

lines = [
    'cluster {',
    '  name             = "bench"',
    '  asset_dir        = "assets"',
    '  ssh_pubkeys      = ["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIAEwEbST/X/2YKziaO3t8rbKsfdLARHKCbsKAl9kE5Ml bench@example"]',
    '  boot_server_http = "http://10.0.0.2:8080"',
    '  os_version       = "3815.2.0"',
    '  wipe_additional_disks = true',
    '  snippets = [file("snippets/node-exporter.bu"), file("snippets/sysctl.bu")]',
    '}',
    '',
]
for i in range(n):
    role = "controller" if i < 3 else "worker"
    name = f"{role}-{i}"
    mac = "52:54:%02x:%02x:%02x:%02x" % ((i >> 24) & 255, (i >> 16) & 255, (i >> 8) & 255, i & 255)
    ip = f"10.{(i >> 16) & 255}.{(i >> 8) & 255}.{i & 255}"
    lines += [f'node "{name}" {{', f'  role   = "{role}"', f'  mac    = "{mac}"', f'  domain = "{ip}"']
    if role == "worker" and i % 10 == 0:
        lines += [
            "  snippets = [<<-EOT",
            "    variant: flatcar",
            "    version: 1.0.0",
            "    storage:",
            "      files:",
            f"        - path: /etc/rack",
            "          contents:",
            f"            inline: rack-{i // 40}",
            "    EOT",
            "  ]",
        ]
    lines += ["}", ""]
with open(os.path.join(out, "cluster.hcl"), "w") as f:
    f.write("\n".join(lines))
