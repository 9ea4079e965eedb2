#!/usr/bin/env python3
"""Compare shardproxy's command table with a live redis-server's COMMAND reply.

Usage: cmdcheck.py CHECK COMMAND.json TABLE.txt

COMMAND.json is `redis-cli --json COMMAND` (each entry: name, arity, flags,
first, last, step, acl categories, tips, key specs, subcommands); TABLE.txt is
the output of test/cmddump (name, arity, kind, flags, specs; tab-separated).  CHECK
is one of:

  rows    every server command and subcommand has a row with the server's
          arity and key specs, flagged write exactly where the server flags
          it write (and for the scripts in MAY_WRITE), and every row is a server command (except
          client|setinfo and client|no-touch, Redis 7.2 commands the proxy
          answers itself)
  sorted  rows are in strictly increasing strcmp() order (bsearch needs it)
  kinds   kinds follow the routing policy: a command without key specs is
          not ONE, SPLIT or SAME; ONE has exactly one fixed one-key spec;
          SPLIT only for the commands the proxy knows how to merge; commands
          with subcommands are CONTAINER and no other is; every command the
          server flags "blocking" (but those in BLOCKING_SERVED) is REFUSE;
          one it flags "pubsub" has its kind in PUBSUB_SERVED; client|setinfo is LOCAL with arity 4, client|no-touch with 3
  all     all of the above

Prints one line per disagreement and exits 1 if there is any, else 0.
"""
import json
import sys

KINDS = {"CMD_ONE", "CMD_SPLIT", "CMD_SAME", "CMD_LOCAL", "CMD_ANY",
         "CMD_ALL", "CMD_REFUSE", "CMD_CONTAINER"}
KEYED_KINDS = {"CMD_ONE", "CMD_SPLIT", "CMD_SAME"}
# Commands whose replies the proxy knows how to merge across backends.
SPLITTABLE = {"mget", "mset", "del", "unlink", "exists", "touch"}
# Blocking commands served, on a dedicated connection while they block.
BLOCKING_SERVED = {"xread", "xreadgroup", "blpop", "brpop", "brpoplpush", "blmove", "blmpop",
                   "bzpopmin", "bzpopmax", "bzmpop"}
# Pub/sub commands, each served by its kind: (un)subscribing and PUBLISH by
# the proxy (sub_), SPUBLISH by its channel as a key, PUBSUB merged.
PUBSUB_SERVED = {"subscribe": "CMD_LOCAL", "psubscribe": "CMD_LOCAL", "ssubscribe": "CMD_LOCAL",
                 "unsubscribe": "CMD_LOCAL", "punsubscribe": "CMD_LOCAL",
                 "sunsubscribe": "CMD_LOCAL", "publish": "CMD_LOCAL", "spublish": "CMD_ONE",
                 "pubsub|channels": "CMD_ALL", "pubsub|numpat": "CMD_ALL",
                 "pubsub|numsub": "CMD_ALL", "pubsub|shardchannels": "CMD_ALL",
                 "pubsub|shardnumsub": "CMD_ALL", "pubsub|help": "CMD_ANY"}
# Scripts: not flagged write by the server, but they may write (WAIT counts them).
MAY_WRITE = {"eval", "evalsha", "fcall"}
# Rows that are not in Redis 7.0's COMMAND reply: name -> (arity, kind).
EXTRA_ROWS = {"client|setinfo": (4, "CMD_LOCAL"), "client|no-touch": (3, "CMD_LOCAL")}


def canon_spec(ks):
    """A server key spec in cmddump's canonical text form."""
    b, f = ks["begin_search"], ks["find_keys"]
    if b["type"] == "unknown" or f["type"] == "unknown":
        return "unknown"
    bs, fs = b.get("spec", {}), f.get("spec", {})
    if b["type"] == "index":
        head = "index:%d" % bs["index"]
    elif b["type"] == "keyword":
        head = "keyword:%s:%d" % (bs["keyword"], bs["startfrom"])
    else:
        head = "begin_search?%s" % b["type"]
    if f["type"] == "range":
        tail = "range:%d,%d,%d" % (fs["lastkey"], fs["keystep"], fs["limit"])
    elif f["type"] == "keynum":
        tail = "keynum:%d,%d,%d" % (fs["keynumidx"], fs["firstkey"], fs["keystep"])
    else:
        tail = "find_keys?%s" % f["type"]
    return head + "," + tail


def load_server(path):
    """name -> dict(arity, flags, specs, container) for commands and subcommands."""
    with open(path, encoding="utf-8") as fp:
        reply = json.load(fp)
    cmds = {}

    def walk(entry):
        name = entry[0].lower()
        subs = entry[9] if len(entry) > 9 else []
        specs = entry[8] if len(entry) > 8 else []
        cmds[name] = {
            "arity": int(entry[1]),
            "flags": set(entry[2]),
            "specs": " ".join(canon_spec(k) for k in specs) or "-",
            "container": bool(subs),
        }
        for sub in subs:
            walk(sub)

    for entry in reply:
        walk(entry)
    return cmds


def load_table(path):
    """List of (line number, name, arity, kind, specs, trouble, flags) in table order."""
    rows = []
    with open(path, encoding="utf-8") as fp:
        for no, line in enumerate(fp, 1):
            f = line.rstrip("\n").split("\t")
            if len(f) < 5:
                rows.append((no, line.strip(), None, None, None, "malformed dump line", None))
                continue
            try:
                arity = int(f[1])
            except ValueError:
                arity = None
            rows.append((no, f[0], arity, f[2], f[4], f[5] if len(f) > 5 else None, f[3]))
    return rows


def check_rows(server, table, say):
    seen = {}
    for no, name, arity, kind, specs, trouble, flags in table:
        if trouble:
            say("row %d %s: %s" % (no, name, trouble))
        if name in seen:
            say("row %d %s: duplicate of row %d" % (no, name, seen[name]))
            continue
        seen[name] = no
        if name in server:
            want = server[name]
            if arity != want["arity"]:
                say("%s: arity %s in the table, server says %d" % (name, arity, want["arity"]))
            if specs != want["specs"]:
                say("%s: key specs differ\n    table:  %s\n    server: %s"
                    % (name, specs, want["specs"]))
            writes = "write" in want["flags"] or name in MAY_WRITE
            if (flags == "write") != writes:
                say("%s: flags %s in the table, the server's flags are %s"
                    % (name, flags, " ".join(sorted(want["flags"]))))
        elif name in EXTRA_ROWS:
            if arity != EXTRA_ROWS[name][0]:
                say("%s: arity %s in the table, expected %d" % (name, arity, EXTRA_ROWS[name][0]))
            if specs != "-":
                say("%s: expected no key specs, table has %s" % (name, specs))
            if flags != "-":
                say("%s: expected no flags, table has %s" % (name, flags))
        else:
            say("%s: in the table (row %d) but not a command of this server" % (name, no))
    for name in sorted(server):
        if name not in seen:
            want = server[name]
            say("%s: missing from the table (server: arity %d, specs %s)"
                % (name, want["arity"], want["specs"]))


def check_sorted(table, say):
    prev = None
    for no, name, _, _, _, _, _ in table:
        key = name.encode("utf-8")
        if prev is not None and not prev[1] < key:
            say("row %d %s: not after row %d %s in strcmp order"
                % (no, name, prev[0], prev[1].decode("utf-8")))
        prev = (no, key)


def one_key_spec(spec):
    """True for a fixed index with range lastkey 0: exactly one key."""
    if spec == "-" or " " in spec or not spec.startswith("index:"):
        return False
    return ",range:0," in spec


def check_kinds(server, table, say):
    byname = {}
    for no, name, arity, kind, specs, _, _ in table:
        byname[name] = (arity, kind, specs)
        if kind not in KINDS:
            say("%s: unknown kind %s" % (name, kind))
            continue
        info = server.get(name)
        keyless = specs == "-" and (info is None or info["specs"] == "-")
        if keyless and kind in KEYED_KINDS:
            say("%s: %s but the command has no key specs" % (name, kind))
        if kind == "CMD_ONE" and not one_key_spec(specs):
            say("%s: CMD_ONE but its key specs are not one fixed one-key spec: %s"
                % (name, specs))
        if kind == "CMD_SPLIT":
            if name not in SPLITTABLE:
                say("%s: CMD_SPLIT but the proxy only splits %s"
                    % (name, " ".join(sorted(SPLITTABLE))))
            elif " " in specs or not specs.startswith("index:") or ",range:-1," not in specs:
                say("%s: CMD_SPLIT needs one index spec ranging to the end, has %s"
                    % (name, specs))
        if info is None:
            continue
        if info["container"] and kind != "CMD_CONTAINER":
            say("%s: has subcommands, so must be CMD_CONTAINER, not %s" % (name, kind))
        if not info["container"] and kind == "CMD_CONTAINER":
            say("%s: CMD_CONTAINER but the server lists no subcommands" % name)
        if "blocking" in info["flags"] and name not in BLOCKING_SERVED and kind != "CMD_REFUSE":
            say("%s: flagged blocking by the server, must be CMD_REFUSE, not %s" % (name, kind))
        if "pubsub" in info["flags"] and PUBSUB_SERVED.get(name) != kind:
            say("%s: flagged pubsub by the server, must be %s, not %s"
                % (name, PUBSUB_SERVED.get(name, "in PUBSUB_SERVED"), kind))
    for name, (arity, kind) in EXTRA_ROWS.items():
        if name not in byname:
            say("%s: missing from the table (expected arity %d, %s)" % (name, arity, kind))
        elif byname[name][1] != kind:
            say("%s: must be %s, not %s" % (name, kind, byname[name][1]))


def main(argv):
    if len(argv) != 4 or argv[1] not in ("rows", "sorted", "kinds", "all"):
        sys.stderr.write(__doc__)
        return 2
    check, server_path, table_path = argv[1:]
    server = load_server(server_path)
    table = load_table(table_path)
    problems = []
    say = problems.append
    if not server:
        say("the server's COMMAND reply lists no commands")
    if not table:
        say("the table dump has no rows")
    if check in ("rows", "all"):
        check_rows(server, table, say)
    if check in ("sorted", "all"):
        check_sorted(table, say)
    if check in ("kinds", "all"):
        check_kinds(server, table, say)
    for p in problems:
        print(p)
    if problems:
        print("%d disagreement(s) between cmd_table[] and the server (%s check)"
              % (len(problems), check))
        return 1
    print("ok: %d table rows, %d server commands and subcommands (%s check)"
          % (len(table), len(server), check))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
