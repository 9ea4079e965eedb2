#!/usr/bin/env python3
"""readme_check.py -- README.md's reference tables against shardproxy.c.

Usage: readme_check.py ROOT WHAT, WHAT one of: directives, stats, admin, flags.
Each check reads the single source in shardproxy.c (the directive table, the
STATS_PROXY / STATS_BACKEND X-macros, admin_help, usage()) and the matching
README table, prints every difference, and exits 1 if there is any.  Nothing
is hard-coded here but the shape of the tables.
"""
import re
import sys


def c_block(src, start, end):
    a = src.index(start)
    return src[a:src.index(end, a)]


def code_directives(src):
    body = c_block(src, "static const struct config_directive config_directives[] = {", "\n};")
    rows = re.findall(r'\{"(\w+)",\s*config_parse_\w+,.*?,\s*(NULL|"[^"]*"),\s*CONFIG_(RELOADS|RESTART)\}',
                      body, re.S)
    return [(n, None if d == "NULL" else d.strip('"'), r) for n, d, r in rows]


def code_stats(src, macro):
    m = re.search(r"#define %s\([^)]*\)\s*\\\n(.*?)\n\n" % macro, src, re.S)
    body = re.sub(r"\\\n", " ", m.group(1))
    rows = []
    for kind, args in re.findall(r"\b([CGS])\((.*?)\)\s*(?=[CGS]\(|$)", body.strip() + " "):
        parts = [p.strip() for p in re.split(r',(?=(?:[^"]*"[^"]*")*[^"]*$)', args)]
        if kind == "C":
            rows.append({"name": parts[0], "kind": "counter",
                         "info": None if parts[2] == "NULL" else parts[2].strip('"'), "metric": None})
        elif kind == "G":
            rows.append({"name": parts[0], "kind": "gauge", "metric": parts[1].strip('"'),
                         "info": None if parts[3] == "NULL" else parts[3].strip('"')})
        else:
            rows.append({"name": parts[0], "kind": "string", "info": parts[0], "metric": None})
    return rows


def readme_table(readme, header_re):
    """Rows (lists of cells) of the first table whose header row matches."""
    lines = readme.split("\n")
    for i, line in enumerate(lines):
        if line.startswith("|") and re.search(header_re, line):
            rows = []
            for row in lines[i + 2:]:
                if not row.startswith("|"):
                    break
                cells = re.split(r"(?<!\\)\|", row.strip())[1:-1]
                rows.append([c.strip() for c in cells])
            return rows
    raise SystemExit("README.md: no table with a header matching %r" % header_re)


def ticks(cell):
    return re.findall(r"`([^`]*)`", cell)


def check_directives(src, readme, say):
    code = code_directives(src)
    if len(code) < 10:
        say("found only %d directive rows in shardproxy.c: the table's shape changed?" % len(code))
    table = {ticks(r[0])[0].split()[0]: r for r in readme_table(readme, r"^\| directive \| default")}
    for name, default, reload in code:
        if name not in table:
            say("directive %s is not in README's configuration table" % name)
            continue
        cell = table[name][1]
        shown = ticks(cell)[0] if cell.startswith("`") else None
        if shown != default:
            say("directive %s: README default %r, code default %r" % (name, shown, default))
    for name in table:
        if name not in [c[0] for c in code]:
            say("README documents directive %s, which the code does not have" % name)
    restart = sorted(n for n, _, r in code if r == "RESTART")
    rows = [r for r in readme_table(readme, r"^\| change \| effect") if "restart" in r[1]]
    documented = sorted(t for r in rows for t in ticks(r[0]))
    if documented != restart:
        say("restart-only directives: README %s, code %s" % (documented, restart))
    print("directives: %d in the code, %d in README, %d restart-only" % (len(code), len(table), len(restart)))


def check_stats(src, readme, say):
    code = [("proxy", r) for r in code_stats(src, "STATS_PROXY")] + \
           [("backend", r) for r in code_stats(src, "STATS_BACKEND")]
    rows = readme_table(readme, r"^\| scope \| stat \| kind \| INFO field \| Prometheus")
    doc = {}
    for r in rows:
        doc[(r[0], ticks(r[1])[0])] = {"kind": r[2], "info": (ticks(r[3]) or [None])[0],
                                       "metric": (ticks(r[4]) or [None])[0]}
    for scope, r in code:
        d = doc.get((scope, r["name"]))
        if not d:
            say("%s stat %s is not in README's stats table" % (scope, r["name"]))
            continue
        if d["kind"] != r["kind"]:
            say("%s stat %s: README kind %s, code %s" % (scope, r["name"], d["kind"], r["kind"]))
        if d["info"] != r["info"]:
            say("%s stat %s: README INFO field %r, code %r" % (scope, r["name"], d["info"], r["info"]))
        prefix = "shardproxy_" + ("backend_" if scope == "backend" else "")
        metric = "shardproxy_" + r["metric"] if r["metric"] else \
            prefix + r["name"] + "_total" if r["kind"] == "counter" else None
        if metric and d["metric"] != metric:
            say("%s stat %s: README Prometheus %r, code %r" % (scope, r["name"], d["metric"], metric))
    for scope, name in doc:
        if not any(s == scope and r["name"] == name for s, r in code):
            say("README documents %s stat %s, which the code does not have" % (scope, name))
    print("stats: %d rows in the code, %d in README" % (len(code), len(doc)))


def check_admin(src, readme, say):
    m = re.search(r"static const char admin_help\[\] =(.*?);\n", src, re.S)
    text = "".join(re.findall(r'"((?:[^"\\]|\\.)*)"', m.group(1))).replace("\\n", "\n")
    code = [re.split(r"\s{2,}", l.strip())[0] for l in text.split("\n") if l.strip()]
    doc = [ticks(r[0])[0] for r in readme_table(readme, r"^\| command \| reply")]
    norm = lambda s: s.replace("…", "...")
    if sorted(map(norm, code)) != sorted(map(norm, doc)):
        say("admin commands: help lists %s, README %s" % (code, doc))
    print("admin commands: %d in help, %d in README" % (len(code), len(doc)))


def check_flags(src, readme, say):
    body = c_block(src, "static void usage(FILE *f)", "\n}\n")
    code = re.findall(r'"  (-[-\w]+(?: [A-Z]+)?)', body)
    doc = [ticks(r[0])[0] for r in readme_table(readme, r"^\| flag \| meaning")]
    if sorted(code) != sorted(doc):
        say("flags: usage() lists %s, README %s" % (code, doc))
    print("flags: %d in usage(), %d in README" % (len(code), len(doc)))


def main():
    root, what = sys.argv[1], sys.argv[2]
    src = open(root + "/shardproxy.c").read()
    readme = open(root + "/README.md").read()
    problems = []
    {"directives": check_directives, "stats": check_stats, "admin": check_admin,
     "flags": check_flags}[what](src, readme, problems.append)
    for p in problems:
        print("MISMATCH: " + p)
    sys.exit(1 if problems else 0)


if __name__ == "__main__":
    main()
