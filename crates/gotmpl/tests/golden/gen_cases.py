#!/usr/bin/env python3
"""Writes cases.in.json for oracle.go: the template cases of ../go_exec.rs and
../matchbox.rs, plus random templates built from template fragments (fixed seed).

    python3 gen_cases.py [RANDOM VALID SEED] > cases.in.json
    go run oracle.go < cases.in.json > cases.json
"""
import json
import random
import re
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
# Go 1.19 (Debian 12's toolchain) lacks these later additions; they are tested by hand.
NEWER_GO = ("else with", "range $i := 5", "range 5", "range 0", "range 64", "range 100",
            "range 1000000000", "range $i, $x := 5")

DATA = {
    "True": True, "I": 17, "X": "x", "S": "xyz", "U": {"V": "v"},
    "SI": [3, 4, 5], "SIEmpty": [], "SB": [True, False],
    "MSI": {"one": 1, "two": 2, "three": 3}, "MSIone": {"one": 1}, "MSIEmpty": {},
    "SMSI": [{"one": 1, "two": 2}, {"eleven": 11, "twelve": 12}],
    "Empty0": None, "Empty3": [7, 8], "Empty4": {"V": "UinEmpty"},
    "F": 1.5, "Big": 1000000, "PS": "a string",
    "N": [1e21, 1e20, 123456789, 0.1, 1e-5, -0.0, 5e-324, 1.7976931348623157e308, 100000,
          0.000123, 2.5, -1234.5678, 9007199254740993],
    "W": "h\u00e9llo\t\"w\u00f6rld\"\u00a0\u200b\u0007<&>='\\",
}
QUERY = {"mac": "52:54:00:00:00:01", "UUID": "abc", "os": "installed"}

RUST_STR = r'"((?:[^"\\]|\\.)*)"'


def rust_templates(path):
    """The second string of each ("name", "template", ...) tuple in a Rust test table."""
    text = path.read_text()
    for m in re.finditer(r'\(\s*' + RUST_STR + r',\s*' + RUST_STR + r',\s*(?:Out|Fails)\(', text):
        name, tmpl = (json.loads('"' + g + '"') for g in m.groups())
        yield name, tmpl


FRAGMENTS = [
    "{{", "}}", "{{- ", " -}}", "{{end}}", "{{else}}", "{{if .True}}", "{{if .Empty0}}",
    "{{range .SI}}", "{{range .MSI}}", "{{range $k, $v := .MSI}}", "{{range $i, $e := .SMSI}}",
    "{{with .U}}", "{{with .Empty0}}", "{{break}}", "{{continue}}", "{{/* c */}}",
    ".", ".X", ".I", ".F", ".Big", ".S", ".SI", ".MSI", ".U.V", ".Empty0", ".Empty3",
    ".SMSI", ".MSI.one", ".nope", "$", "$.X", "$x := ", "$x = ", "$x", "$k", "$v", "$e",
    " | ", "(", ")", " ", "\n", '"s"', '"%d"', '"%v"', '"%s"', '"%q"', '"%x"', '"%5.2f"',
    '"%-4v|"', '"%T"', "`r`", "3", "0", "-1.5e3", "1.5", "'c'", "nil", "true", "false",
    " index ", " len ", " slice ", " and ", " or ", " not ", " eq ", " ne ", " lt ", " le ",
    " gt ", " ge ", " print ", " printf ", " println ", " html ", " js ", " urlquery ",
]


LEXICAL = [
    '{{define "a"}}', '{{template "a" .}}', '{{template "a"}}', '{{block "b" .U}}', "0x1F",
    "0o17", "017", "08", "1_000", "0b101", "1__0", "_1", "0x_1", "'\\n'", "'\\x41'",
    "'\\u00e9'", "'ab'", "''", '"\\u00e9"', '"\\x41"', '"\\q"', '"\\400"', "1e", "1e+",
    "0x", "1.5i", "2i", "0x1p-2", "+3", "-.5", ".5", "1.", "$x.X", "$.MSI.one", "(.U).V",
    "{{$x := 1}}", "{{$x = 2}}", "é", "\t", "{{-/*x*/-}}", "{{- /*x*/ -}}", "{{/*", "*/}}",
    ",", "=", ":=", ":", "@", "#", "\r\n", "{{else if .True}}",
    "{{range $i := .SI}}", "{{range $i, $j, $k := .SI}}", "{{with $y := .U}}", "{{end}}{{end}}",
]


def random_templates(n, seed):
    rng = random.Random(seed)
    for i in range(n):
        # Every other template also draws on lexical corner cases.
        pool = FRAGMENTS + LEXICAL if i % 2 else FRAGMENTS
        parts = [rng.choice(pool) for _ in range(rng.randint(1, 12))]
        # Bias towards complete actions: wrap a short pipeline in braces.
        if rng.random() < 0.7:
            inner = "".join(rng.choice(FRAGMENTS[21:]) for _ in range(rng.randint(1, 5)))
            parts.insert(rng.randint(0, len(parts)), "{{" + inner + "}}")
        yield f"random-{i}", "".join(parts)


OPERANDS = [
    ".", "$", ".X", ".I", ".F", ".Big", ".S", ".SI", ".SIEmpty", ".MSI", ".MSIEmpty", ".U",
    ".U.V", ".Empty0", ".Empty3", ".SMSI", ".SB", ".True", ".PS", ".MSI.one", "3", "0", "-2",
    "1.5", "0.0", "1e6", "2.5e-7", "'a'", '"x"', '""', '"xyz"', "true", "false", "nil",
    "(index .SI 1)", "(len .S)", "(index .S 0)", "(slice .SI 1)", "(index .MSI \"one\")",
    "(print .I)", "(.U)", "(eq 1 1)", ".N", ".W", "(index .N 0)", "(index .N 3)",
    "(index .N 5)", "(index .N 6)", "(index .N 7)", "(index .N 11)", "(index .N 12)",
    "(slice .W 1 3)", ".request.query", ".request.query.os", "(index .request.query \"nope\")",
    "(index .request.query \"UUID\")",
]
FUNCS = ["index", "len", "slice", "and", "or", "not", "eq", "ne", "lt", "le", "gt", "ge",
         "print", "println", "html", "js", "urlquery"]
VERBS = ["%d", "%s", "%v", "%5.2f", "%x", "%X", "%q", "%t", "%-3v|", "%03d", "%e", "%g",
         "%.3g", "%c", "%U", "%o", "%b", "%T", "%%", "%8.3e", "%+d", "% d", "%.1s", "%6s",
         "%-6s|", "%05.1f", "%G", "%E", "%.0f", "%10v|"]


def valid_templates(n, seed):
    """Syntactically valid templates that exercise evaluation, printing and comparison."""
    rng = random.Random(seed)
    op = lambda: rng.choice(OPERANDS)
    for i in range(n):
        form = rng.randrange(7)
        if form == 0:
            t = "{{" + rng.choice(FUNCS) + " " + " ".join(op() for _ in range(rng.randint(0, 3))) + "}}"
        elif form == 1:
            fmt = "".join(rng.choice(VERBS) + rng.choice(["", " ", "-"]) for _ in range(rng.randint(1, 3)))
            t = "{{printf " + json.dumps(fmt) + " " + " ".join(op() for _ in range(rng.randint(0, 3))) + "}}"
        elif form == 2:
            t = "{{" + op() + " | " + rng.choice(FUNCS) + " " + " ".join(op() for _ in range(rng.randint(0, 2))) + "}}"
        elif form == 3:
            t = "{{if " + rng.choice(FUNCS) + " " + op() + " " + op() + "}}T{{else}}F{{end}}"
        elif form == 4:
            t = "{{range $i, $e := " + op() + "}}{{$i}}:{{$e}};{{else}}E{{end}}"
        elif form == 5:
            t = "{{with $x := " + op() + "}}{{.}}|{{$x}}{{else}}W{{end}}"
        else:
            t = "{{" + op() + "}}"
        yield f"valid-{i}", t, rng.random() < 0.3


def matchbox_cases():
    """The installer template of ../matchbox.rs over matchbox-like data."""
    text = (HERE.parent / "matchbox.rs").read_text()
    installer = re.search(r'const INSTALLER: &str = r#"(.*?)"#;', text, re.S).group(1)
    query = {"mac": "52:54:00:a1:9c:ae", "uuid": "u-1"}
    base = {"ignition_endpoint": "http://matchbox.example:8080/ignition",
            "install_disk": "/dev/sda", "os_channel": "stable", "mac": "52:54:00:a1:9c:ae"}
    variants = [
        ("keys", dict(base, ssh_authorized_keys=["ssh-ed25519 AAAA one", "ssh-rsa BBBB two"])),
        ("baseurl", dict(base, baseurl="http://mirror/flatcar")),
        ("missing channel", {k: v for k, v in base.items() if k != "os_channel"}),
    ]
    for name, data in variants:
        yield {"name": f"matchbox installer: {name}", "template": installer, "data": data,
               "query": query}


def float_cases(chunks=2, per_chunk=200):
    """Random doubles of every magnitude through each float verb (%v shortest digits,
    fixed precisions, hex and binary forms)."""
    import struct
    rng = random.Random(42)
    fmt = ('{{range .f}}{{.}} {{printf "%e %.3g %f %.10f %g %.0e %.17g %8.2f %.1f %.0f %G '
           '%+.2e %x %.3x %b|" . . . . . . . . . . . . . . .}}\n{{end}}')
    for chunk in range(chunks):
        fs = []
        for _ in range(per_chunk):
            k = rng.randrange(5)
            if k == 0:
                f = rng.uniform(-1e6, 1e6)
            elif k == 1:
                f = struct.unpack("<d", struct.pack("<Q", rng.getrandbits(64)))[0]
            elif k == 2:
                f = rng.randint(-10**9, 10**9) * 10.0 ** rng.randint(-30, 30)
            elif k == 3:
                f = rng.choice([0.5, 1.5, 2.5, 0.125, 1e21, 1e20, 999999.5, 0.1, 1 / 3,
                                5e-324, 2.2250738585072014e-308, 1.7976931348623157e308,
                                -777337863668639.25])
            else:
                f = rng.uniform(-1, 1) * 10.0 ** rng.randint(-8, 22)
            if f != f or f in (float("inf"), float("-inf")):
                f = 1.0
            fs.append(f)
        yield {"name": f"floats-{chunk}", "template": fmt, "data": {"f": fs}}


def main():
    cases = list(matchbox_cases()) + list(float_cases())
    seen = set()
    for rs in ("go_exec.rs", "matchbox.rs"):
        for name, tmpl in rust_templates(HERE.parent / rs):
            if any(s in tmpl for s in NEWER_GO) or tmpl in seen:
                continue
            seen.add(tmpl)
            cases.append({"name": f"{rs}: {name}", "template": tmpl})
    seed = int(sys.argv[3]) if len(sys.argv) > 3 else 0
    for name, tmpl in random_templates(int(sys.argv[1]) if len(sys.argv) > 1 else 2500, 7 + seed):
        if tmpl in seen:
            continue
        seen.add(tmpl)
        cases.append({"name": name, "template": tmpl})
    for name, tmpl, query in valid_templates(int(sys.argv[2]) if len(sys.argv) > 2 else 2500, 11 + seed):
        if tmpl in seen:
            continue
        seen.add(tmpl)
        case = {"name": name, "template": tmpl}
        if query:
            case["query"] = QUERY
        cases.append(case)
    json.dump({"data": DATA, "cases": cases}, sys.stdout, indent=1, ensure_ascii=False)


main()
