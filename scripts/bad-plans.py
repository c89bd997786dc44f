#!/usr/bin/env python3
"""Writes the malformed-plan corpus in orchestrator/tests/bad-plans/ (issue 13).

Each plan's first line is `# expect: [FILE:]LINE: NEEDLE`: `chaos validate` must exit 2 with one line
`PLAN:LINE:COL: ...` (or `FILE:LINE:COL: ...`, FILE relative to the corpus, for topology files)
containing NEEDLE. The cases are systematic: each plan key x {wrong type, out of range, overflow, empty,
unknown value, negative, huge}, near-misses of the shipped plans, YAML-level junk and topology files.
Run it again after changing the cases: `python3 scripts/bad-plans.py` (it rewrites the folder).
"""

import os
import re
import shutil

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
OUT = os.path.join(REPO, "orchestrator", "tests", "bad-plans")
SHIPPED = os.path.join(REPO, "chaos-plans")

cases = []  # (slug, text: str | bytes, expect: str)


def add(slug, body, where, needle, file=None, nth=0):
    """`where` is a line number in `body` (1-based; 0 for the file's first line, before the expect
    comment) or a substring whose first (or `nth`) line is meant."""
    if isinstance(where, str):
        lines = body.split("\n")
        hits = [i + 1 for i, l in enumerate(lines) if where in l]
        assert len(hits) > nth, f"{slug}: `{where}` not in body"
        where = hits[nth]
    line = max(where + 1, 1) if where else 1  # the expect comment comes first
    prefix = f"{file}:{where}" if file else f"{line}"
    cases.append((slug, f"# expect: {prefix}: {needle}\n" + body, None))


def plan(top=None, workload=None, steps=None, expect=None, peers="3"):
    """A valid plan with some lines replaced; each list is a list of YAML lines."""
    lines = ["name: bad", "seed: 7", f"peers: {peers}"]
    lines += top or []
    lines += ["workload:" + ("" if workload != [] else " []")] + (workload if workload is not None else ["  - {at: 1s, peer: p1, create: a.txt, size: 4KiB}"])
    lines += ["steps:"] + (steps if steps is not None else ["  - {name: cut, at: 2s, duration: 2s, partition: {shape: halves}}"])
    lines += ["expect:"] + (expect or ["  converge_within: 30s"])
    return "\n".join(lines) + "\n"


def top(key, value, needle, slug=None):
    body = plan() if key == "peers" else plan(top=[f"{key}: {value}"])
    if key == "peers":
        body = body.replace("peers: 3", f"peers: {value}")
    elif key in ("name", "seed"):
        body = plan().replace(f"{key}: {'bad' if key == 'name' else '7'}", f"{key}: {value}")
    add(slug or f"top-{key}-{tag(value)}", body, f"{key}:", needle)


def tag(value):
    s = re.sub(r"[^a-z0-9]+", "-", str(value).lower()).strip("-")
    return (s or "empty")[:24]


# ---------------------------------------------------------------------------------------------------
# Top-level keys.
for v, n in [("{a: 1}", "`name`"), ('""', "`name`"), ('"my plan!"', "`name`"), ("[a, b]", "`name`"),
             ("~", "`name`"), ("x" * 300, "`name`")]:
    top("name", v, n)
for v, n in [("abc", "`seed`"), ("-1", "`seed`"), ("1.5", "`seed`"), ("99999999999999999999999", "`seed`"),
             ("{}", "`seed`"), ("[1]", "`seed`"), ('""', "`seed`")]:
    top("seed", v, n)
for v, n in [("abc", "`peers`"), ("0", "`peers`"), ("-3", "`peers`"), ("201", "`peers`"),
             ("99999999999999999999", "`peers`"), ("1.5", "`peers`"), ("{}", "`peers`"), ('""', "`peers`"),
             ("1e9", "`peers`"), ("[3]", "`peers`"), ("~", "`peers`")]:
    top("peers", v, n)
# A missing key is reported where its map ends (the library's place for it).
add("top-peers-missing", "name: bad\nworkload: []\n", 2, "`peers` is required")
add("top-name-missing", "peers: 3\nworkload: []\n", 2, "`name` is required")
for v, n in [("zzz", "unknown topology `zzz`"), ("{kind: zzz}", "unknown topology kind `zzz`"),
             ("{kind: tree, fanout: 0}", "`fanout`"), ("{kind: tree, fanout: -1}", "`fanout`"),
             ("{kind: tree, fanout: abc}", "`fanout`"), ("{kind: random, degree: 5}", "`degree`"),
             ("{kind: random, degree: 99999999999999999999}", "`degree`"), ("{edges: [[p1, p9]]}", "unknown peer `p9`"),
             ("{edges: [[p1, p1]]}", "itself"), ("{edges: [[p1, p2]]}", "not connected"),
             ("{edges: [p1, p2]}", "`edges`"), ("{edges: []}", "not connected"), ("{kynd: ring}", "unknown key `kynd`"),
             ("42", "unknown topology `42`"), ("[ring]", "`topology`"), ('""', "unknown topology ``"),
             ("{kind: random, degree: 3}", "`degree`")]:
    top("topology", v, n)
for v in ['"UPPER/Case:tag"', '""', '"a b"', '"repo:tag:tag"', '"-bad"', '"x@sha256:zz"', '"' + "a" * 300 + '"',
          '"repo:"', '"repo/"', '"re..po"']:
    top("image", v, "`image`")
top("image", "{a: 1}", "`image`", slug="top-image-map")
for v, n in [('""', "`peer`"), ("nosuch", "peer profile `nosuch`"), ("{a: 1}", "`peer`"), ("[syncpeer]", "`peer`")]:
    top("peer", v, n)
for v, n in [("zzz", "flavor `zzz`"), ('""', "flavor"), ("[a]", "`flavor`"), ("{}", "`flavor`")]:
    top("flavor", v, n)
for key in ("anti_entropy", "quarantine"):
    for v in ["soon", "-1s", "0s", "99999999999d", "1e300", "{}", '""', "[1s]", "18446744073709551615", "25h"]:
        top(key, v, f"`{key}`")
for v in ["abc", "-5", "1KiB", "99999999999GiB", "1e30", "{}", '""', "5 parsecs", "1.5.5MiB", "2TiB"]:
    top("disk_limit", v, "`disk_limit`")
for v, n in [("zzz", "engine `zzz`"), ('""', "engine"), ("{}", "`engine`"), ("[auto]", "`engine`")]:
    top("engine", v, n)
for v in ["{a: 1}", "[1]"]:
    top("description", v, "`description`")
for k in ["stepz", "Peers", "workloads", "steps_"]:
    add(f"top-unknown-{tag(k)}", plan(top=[f"{k}: []"]), f"{k}:", f"unknown key `{k}`")
for v in ["soon", "-1s", "99999999999d", "1e300", "{}", "0s", "25h"]:
    add(f"expect-converge-{tag(v)}", plan(expect=[f"  converge_within: {v}"]), "converge_within", "`converge_within`")
for v in ["soon", "-1", "[1]", "99999999999999999999999"]:
    add(f"expect-quiet-{tag(v)}", plan(expect=["  converge_within: 30s", f"  quiet: {v}"]), "quiet", "`quiet`")
add("expect-list", plan(expect=["  - 1"]), "  - 1", "`expect`")
add("expect-unknown", plan(expect=["  foo: 1"]), "foo", "unknown key `foo`")

# ---------------------------------------------------------------------------------------------------
# Workload entries.
def wl(entry, needle, slug, where=None):
    add(f"workload-{slug}", plan(workload=[entry]), where or entry.strip()[:20], needle)

for v in ["soon", "-1s", "99999999999999999999", "1e300", "{}", "25h", "18446744073709551615"]:
    wl(f"  - {{at: {v}, peer: p1, create: a.txt}}", "`at`", f"at-{tag(v)}")
wl("  - {peer: p1, create: a.txt}", "`at`", "at-missing")
for v, n in [("p9", "unknown peer `p9`"), ("[]", "empty peer list"), ("{random: 0}", "`random`"),
             ("{random: 9}", "`random`"), ("{random: -1}", "`random`"), ("{random: abc}", "`random`"),
             ("{rand: 1}", "unknown key `rand`"), ("42", "unknown peer `42`"), ("[p1, p9]", "unknown peer `p9`"),
             ("[[p1]]", "`peer`"), ("{random: 99999999999999999999999}", "`random`"), ("[p1, p1]", "twice")]:
    wl(f"  - {{at: 1s, peer: {v}, create: a.txt}}", n, f"peer-{tag(v)}")
wl("  - {at: 1s, create: a.txt}", "`peer`", "peer-missing")
for v in ["/etc/passwd", "../x", '""', ".syncpeer/x", "a/../../b", '"a\\0b"']:
    wl(f"  - {{at: 1s, peer: p1, create: {v}}}", "path", f"create-{tag(v)}")
wl("  - {at: 1s, peer: p1, create: {}}", "`create`", "create-map")
wl("  - {at: 1s, peer: p1, delete: [a]}", "`delete`", "delete-list")
wl("  - {at: 1s, peer: p1, create: a.txt, delete: a.txt}", "exactly one", "two-ops")
wl("  - {at: 1s, peer: p1}", "needs one of", "no-op")
wl("  - {at: 1s, peer: p1, create: " + "d/" * 3000 + "a}", "path", "path-huge")
for v in ["abc", "-1", "1KiB..abc", "64KiB..1KiB", "99999999999GiB", "1e30", "{}", "2GiB", "1.5.5KiB",
          "18446744073709551615", "0..99999999999999999999999"]:
    wl(f"  - {{at: 1s, peer: p1, create: a.txt, size: {v}}}", "`size`", f"size-{tag(v)}")
def rnd(inner, needle, slug):
    wl(f"  - {{at: 1s, peer: all, random: {{{inner}}}}}", needle, f"random-{slug}")
for v in ["soon", "-1s", "99999999999d", "1e300", "18446744073709551615"]:
    rnd(f"duration: {v}, rate: 1", "`duration`", f"duration-{tag(v)}")
for v in ["0", "-1", "abc", "1e308", ".nan", ".inf", "1001", "{}"]:
    rnd(f"duration: 5s, rate: {v}", "`rate`", f"rate-{tag(v)}")
for v in ["0", "-1", "99999999999", "abc", "100001"]:
    rnd(f"duration: 5s, rate: 1, files: {v}", "`files`", f"files-{tag(v)}")
for v, n in [("{create: 0}", "`mix`"), ("{create: -1}", "`create`"), ("{create: abc}", "`create`"),
             ("{foo: 1}", "unknown key `foo`"), ("{create: 99999999999}", "`create`"),
             ("{create: 4294967295, modify: 4294967295}", "`mix`"), ("[1, 2]", "`mix`")]:
    rnd(f"duration: 5s, rate: 1, mix: {v}", n, f"mix-{tag(v)}")
rnd("rate: 1", "`duration`", "duration-missing")
rnd("duration: 5s", "`rate`", "rate-missing")
rnd("duration: 23h, rate: 1000", "workload operations", "ops-23h")
rnd("duration: 24h, rate: 1", "past the end", "ends-past-24h")
rnd("duration: 1h, rate: 1000", "workload operations", "ops-1h")
wl("  - {at: 1s, peer: all, random: {duration: 1s, rate: 1}, create: a.txt}", "exactly one", "random-and-create")
add("workload-many-singles", plan(peers="200", workload=["  - {at: 1s, peer: all, create: a.txt}"] * 500 +
                                  ["  - {at: 2s, peer: all, create: last.txt}"]),
    "last.txt", "workload operations")
add("workload-not-a-list", plan(workload=["  at: 1s"]), "at: 1s", "`workload` cannot be a map")
add("workload-random-sum", plan(workload=["  - {at: 1s, peer: all, random: {duration: 600s, rate: 100}}",
                                         "  - {at: 1s, peer: all, random: {duration: 601s, rate: 100}}"]),
    "601s", "workload operations")

# ---------------------------------------------------------------------------------------------------
# Fault steps.
def st(entry, needle, slug, where=None, extra=None):
    add(f"step-{slug}", plan(steps=(extra or []) + [entry]), where or entry.strip()[:24], needle)

HALVES = "partition: {shape: halves}"
for v in ['""', "{}", "[a]", '"a b"', "'cut#1'", "x" * 100]:
    st(f"  - {{name: {v}, at: 1s, {HALVES}}}", "`name`", f"name-{tag(v)}")
st(f"  - {{name: cut, at: 5s, {HALVES}}}", "step name `cut`", "name-duplicate",
   extra=[f"  - {{name: cut, at: 1s, duration: 1s, {HALVES}}}"], where="at: 5s")
st(f"  - {{name: step-1, at: 5s, {HALVES}}}", "step name `step-1`", "name-collides-default",
   extra=[f"  - {{at: 1s, duration: 1s, {HALVES}}}"], where="name: step-1")
for v in ["soon", "-1s", "99999999999999999999s", "1e300", "25h", "18446744073709551615", "{}", "[1s]"]:
    st(f"  - {{at: {v}, {HALVES}}}", "`at`", f"at-{tag(v)}")
st(f"  - {{{HALVES}}}", "`at`", "at-missing")
for v in ["-1", "18446744073709551615", "99999999999d", "1e300", "0s", "{}", "soon", "25h"]:
    st(f"  - {{at: 1s, duration: {v}, {HALVES}}}", "`duration`", f"duration-{tag(v)}")
st(f"  - {{at: 18446744073709551615, duration: 10s, {HALVES}}}", "`at`", "at-plus-duration-overflow")
st(f"  - {{at: 20h, duration: 5h, {HALVES}}}", "past the end", "past-the-end")
st(f"  - {{at: 86399s, duration: 2s, {HALVES}}}", "past the end", "past-the-end-by-a-second")
for v, n in [("0s", "`every`"), ("-1s", "`every`"), ("soon", "`every`"), ("10s", "`every`")]:
    st(f"  - {{at: 1s, duration: 5s, every: {v}, {HALVES}}}", n, f"every-{tag(v)}")
st(f"  - {{at: 0s, duration: 24h, every: 1ms, {HALVES}}}", "`every`", "every-1ms-24h")
st(f"  - {{at: 0s, duration: 23h, every: 100ms, {HALVES}}}", "fault steps", "every-100ms-23h")
add("steps-flapping-sum", plan(steps=[f"  - {{name: f{i}, at: 0s, duration: 1h, every: 1s, link: {{delay: 1ms}}}}"
                                      for i in range(1, 4)]), "name: f3", "fault steps")
st("  - {at: 0s, duration: 2h, every: 100ms, clock: {peers: p1, strobe: [+0s, +1h]}}", "fault steps", "strobe-too-many")
st("  - {at: 1s, every: 2s, partition: {shape: halves}}", "`every` needs a `duration`", "every-no-duration")
st("  - {at: 1s, duration: 4s, every: 2s, kill: {peers: p1}}", "`every`", "every-on-kill")
st("  - {at: 1s}", "needs a fault", "no-fault")
st("  - {at: 1s, kill: {peers: p1}, pause: {peers: p2}}", "exactly one fault", "two-faults")
st("  - {at: 1s, explode: {peers: p1}}", "unknown key `explode`", "unknown-fault")
st("  - at 1s", "`steps`", "not-a-map")
# partition
for v, n in [("{shape: zzz}", "unknown partition shape `zzz`"), ('{shape: ""}', "partition shape"),
             ("{groups: [[p1]]}", "two groups"), ("{groups: [[p1], [p9]]}", "unknown peer `p9`"),
             ("{groups: [[p1], [p2]], shape: halves}", "both"), ("{}", "`groups` or `shape`"),
             ("{shape: halves, mode: zzz}", "`mode`"), ("{shape: halves, port: 99999}", "`port`"),
             ("{shape: halves, port: -1}", "`port`"), ("{shape: halves, port: nosuch}", "no port named `nosuch`"),
             ("{shape: halves, port: {}}", "`port`"), ("{shape: one-way, from: p1}", "`from` and `to`"),
             ("{shape: isolate, peers: p9}", "unknown peer `p9`"), ("{shape: rolling}", "`every`"),
             ("{groups: [[], []]}", "empty"), ("{shape: halves, peers: p1}", "`peers`"),
             ("{groups: [p1, p2]}", "`groups`"), ("{shape: one-way, from: p1, to: p1}", "`to`"),
             ("{shape: halves, port: 0}", "`port`"), ("[halves]", "`partition`"),
             ("{shape: one-way, from: p1, to: [p1, p2]}", "`to`"), ("{shape: islands, from: p1}", "`from`")]:
    st(f"  - {{at: 1s, duration: 2s, partition: {v}}}", n, f"partition-{tag(v)}")
add("step-partition-one-peer", plan(peers="1", workload=[], steps=[f"  - {{at: 1s, {HALVES}}}"]), "partition",
    "two peers")
# link
def link(inner, needle, slug):
    st(f"  - {{at: 1s, duration: 2s, link: {{{inner}}}}}", needle, f"link-{slug}")

link("peers: p1", "at least one of", "nothing")
for key in ["loss", "loss_correlation", "corrupt", "duplicate", "reorder"]:
    for v in ["101", "-1", "abc", "1e400", ".nan", "{}"]:
        link(f"{key}: {v}" + (", loss: 1" if key == "loss_correlation" else "") + (", delay: 1ms" if key != "loss" else ""),
             f"`{key}`", f"{key}-{tag(v)}")
for key, v in [("direction", "zzz"), ("distribution", "gaussian"), ("engine", "zzz"), ("direction", "{}")]:
    link(f"delay: 10ms, {key}: {v}", f"`{key}`", f"{key}-{tag(v)}")
for v in ["0kbit", "abc", "99999999999999999999gbit", "2mbps", "-1mbit", "{}", "1e400kbit", "0.0001kbit"]:
    link(f"rate: {v}", "`rate`", f"rate-{tag(v)}")
for key in ["delay", "jitter", "reorder_delay"]:
    for v in ["-1s", "99999999999d", "soon", "2h"]:
        extra = ", delay: 10ms" if key == "jitter" else ", reorder: 5, delay: 10ms" if key == "reorder_delay" else ""
        link(f"{key}: {v}{extra}", f"`{key}`", f"{key}-{tag(v)}")
link("jitter: 5ms, loss: 1", "`jitter` needs a `delay`", "jitter-without-delay")
link("peers: p9, delay: 1ms", "unknown peer `p9`", "peers-p9")
link("to: [], delay: 1ms", "empty peer list", "to-empty")
link("lose: 5", "unknown key `lose`", "unknown-key")
# clock
def clock(inner, needle, slug, every=""):
    st(f"  - {{at: 1s, duration: 4s, {every}clock: {{{inner}}}}}", needle, f"clock-{slug}")

for v in ["+292277025y", "+9999999999d", "soon", '""', "-292277025y", "+1e300s", "+18446744073709551615s",
          "+11y", "{}", "[+1h]"]:
    clock(f"peers: p1, offset: {v}", "`offset`", f"offset-{tag(v)}")
for v, n in [("[+0s]", "`strobe`"), ("[+0s, +1h, +2h]", "`strobe`"), ("[+0s, soon]", "`strobe`"),
             ("+1h", "`strobe`"), ("[+0s, +292277025y]", "`strobe`")]:
    clock(f"peers: p1, strobe: {v}", n, f"strobe-{tag(v)}", every="every: 2s, ")
clock("peers: p1, strobe: [+0s, +1h]", "`every`", "strobe-without-every")
for v in ["0", "-1", "1000", "abc", ".nan", ".inf"]:
    clock(f"peers: p1, rate: {v}", "`rate`", f"rate-{tag(v)}")
clock("peers: p1, offset: +1h, rate: 2", "one of", "offset-and-rate")
clock("peers: p1", "one of", "nothing")
clock("peers: p1, offset: +1h", "strobe", "every-with-offset", every="every: 2s, ")
clock("peers: p9, offset: +1h", "unknown peer `p9`", "peers-p9")
clock("offset: +1h", "`peers`", "peers-missing")
# processes
for verb in ["kill", "stop", "pause"]:
    st(f"  - {{at: 1s, duration: 2s, {verb}: {{peers: p9}}}}", "unknown peer `p9`", f"{verb}-p9")
    st(f"  - {{at: 1s, duration: 2s, {verb}: {{}}}}", "`peers`", f"{verb}-empty")
    st(f"  - {{at: 1s, duration: 2s, {verb}: p1}}", f"`{verb}`", f"{verb}-wrong-type")
    st(f"  - {{at: 1s, duration: 2s, {verb}: {{peers: p1, signal: 9}}}}", "unknown key `signal`", f"{verb}-unknown-key")
for a, b, slug in [("kill: {peers: p1}", "kill: {peers: p1}", "kill-kill"),
                   ("kill: {peers: p1}", "pause: {peers: [p1, p2]}", "kill-pause"),
                   ("stop: {peers: all}", "kill: {peers: p3}", "stop-all-kill"),
                   ("pause: {peers: one}", "pause: {peers: p2}", "pause-seeded")]:
    st(f"  - {{name: second, at: 4s, duration: 4s, {b}}}", "overlap", f"overlap-{slug}",
       extra=[f"  - {{name: first, at: 2s, duration: 4s, {a}}}"], where="name: second")
st("  - {name: second, at: 9s, duration: 1s, kill: {peers: p1}}", "overlap", "overlap-until-heal",
   extra=["  - {name: first, at: 2s, kill: {peers: p1}}"], where="name: second")
# lock
for v, n in [("{peers: p1}", "one of"), ("{peers: p1, stale: /abs}", "path"), ('{peers: p1, stale: ""}', "path"),
             ("{peers: p1, unwritable: false}", "one of"), ("{peers: p1, stale: a, unwritable: true}", "one of"),
             ("{peers: p1, unwritable: abc}", "`unwritable`"), ("{peers: p1, unwritable: 1}", "`unwritable`")]:
    st(f"  - {{at: 1s, duration: 2s, lock: {v}}}", n, f"lock-{tag(v)}")
# disk
for v, n in [("{peers: p1}", "one of"), ("{peers: p1, corrupt: false}", "`corrupt`"),
             ("{peers: p1, corrupt: /etc/passwd}", "path"), ("{peers: p1, fill: false}", "one of"),
             ("{peers: p1, corrupt: true, fill: true}", "one of"), ("{peers: p1, truncate: 5}", "`truncate`"),
             ("{peers: p1, fill: abc}", "`fill`"), ("{peers: p1, truncate: ../x}", "path")]:
    st(f"  - {{at: 1s, duration: 2s, disk: {v}}}", n, f"disk-{tag(v)}")
# byzantine
for v, n in [("lie", "unknown byzantine behaviour `lie`"), ("[]", "`behaviour`"), ("[tamper, tamper]", "twice"),
             ("{random: 1}", "`behaviour`"), ("42", "unknown byzantine behaviour `42`"), ("{}", "`behaviour`")]:
    st(f"  - {{at: 1s, duration: 2s, byzantine: {{peers: p1, behaviour: {v}}}}}", n, f"byzantine-{tag(v)}")
st("  - {at: 1s, duration: 2s, byzantine: {peers: p1}}", "`behaviour`", "byzantine-missing")


# ---------------------------------------------------------------------------------------------------
# YAML-level junk.
add("yaml-tab-indent", "name: bad\npeers: 3\nsteps:\n\t- {at: 1s, partition: {shape: halves}}\n", 4, "tab")
add("yaml-duplicate-top-key", "name: bad\npeers: 3\npeers: 4\n", 3, "`peers`")
add("yaml-duplicate-step-key", plan(steps=["  - at: 1s", "    at: 2s", "    partition: {shape: halves}"]),
    "at: 2s", "`at`")
add("yaml-duplicate-flow-key", plan(workload=["  - {at: 1s, at: 2s, peer: p1, create: a}"]), "at: 2s", "`at`")
lol = ["name: bad", "peers: 3", "a: &a [x, x, x, x, x, x, x, x, x, x]"]
for i, (p, q) in enumerate(zip("abcdefgh", "bcdefghi")):
    lol.append(f"{q}: &{q} [*{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}]")
add("yaml-billion-laughs", "\n".join(lol) + "\n", 3, "unknown key `a`")
add("yaml-billion-laughs-in-description", "name: bad\npeers: 3\ndescription:\n  " + "\n".join(lol[2:]).replace("\n", "\n  ") + "\n",
    4, "`description` cannot be a map")
add("yaml-deep-flow", "name: bad\npeers: 3\ndescription: " + "[" * 5000 + "]" * 5000 + "\n", 3, "`description`")
add("yaml-deep-flow-in-peer-list", plan(workload=["  - {at: 1s, peer: " + "[" * 5000 + "]" * 5000 + ", create: a}"]),
    "peer: [[", "")
add("yaml-deep-block", "name: bad\npeers: 3\ndescription:\n" +
    "".join(" " * i + f"k{i}:\n" for i in range(1, 400)), 4, "`description` cannot be a map")
add("yaml-multi-doc", plan() + "---\nname: other\npeers: 2\n", "---", "document")
add("yaml-scalar", "hello\n", 1, "plan")
add("yaml-list", "- name: bad\n- peers: 3\n", 1, "plan")
add("yaml-unclosed-bracket", "name: bad\npeers: [3\n", 2, "`peers`")
add("yaml-unclosed-quote", 'name: "bad\npeers: 3\n', 1, "")
add("yaml-bad-indent", "name: bad\n  peers: 3\n", 2, "")
add("yaml-undefined-alias", "name: *nope\npeers: 3\n", 1, "alias")
add("yaml-merge-key", "base: &b {peers: 3}\nname: bad\n<<: *b\n", 1, "unknown key `base`")
add("yaml-int-tag", "name: bad\npeers: !!str 3\n", 2, "`peers`")
add("yaml-complex-key", "? [a, b]\n: 1\nname: bad\npeers: 3\n", 1, "")
add("yaml-null-doc", "~\n", 1, "")
add("yaml-only-comments", "# nothing here\n", 0, "empty")
add("yaml-long-line", "name: " + "n" * 100_000 + "\npeers: 3\n", 1, "`name`")
add("yaml-control-char", "name: b\x01ad\npeers: 3\n", 1, "")
add("yaml-anchor-loop", "name: &a bad\npeers: 3\nsteps: &s [*s]\n", 3, "")
add("yaml-many-aliases", "name: bad\npeers: 3\nx: &x " + "y" * 1000 + "\ndescription: [" + ", ".join(["*x"] * 20000) + "]\n", 3, "unknown key `x`")
add("yaml-many-aliases-in-a-list", "name: &x bad\npeers: 3\nworkload: [" + ", ".join(["*x"] * 5000) + "]\n", 3, "")
add("yaml-aliases-over-the-limit", "name: bad\npeers: 3\nworkload:\n  - &w {at: 1s, peer: p1, create: a.txt}\n" +
    "  - *w\n" * 1500, 1005, "too many aliases")
add("yaml-aliases-per-anchor", "name: bad\npeers: 3\nsteps:\n  - {at: 1s, duration: 1s, partition: {groups: &g [[p1], [p2, p3]]}}\n" +
    "".join(f"  - {{at: {i}s, duration: 1s, partition: {{groups: *g}}}}\n" for i in range(2, 902)), 905, "per anchor")
cases.append(("yaml-non-utf8", b"# expect: 2: UTF-8\nname: b\xff\xfead\npeers: 3\n", None))


# ---------------------------------------------------------------------------------------------------
# Topology files (in bad-plans/topologies/, named from the plan): errors point into the file.
topo_files = {
    "fanout-zero": ("# a tree with no children\nkind: tree\nfanout: 0\n", 3, "`fanout`"),
    "fanout-text": ("kind: tree\nfanout: many\n", 2, "`fanout`"),
    "degree-big": ("kind: random\ndegree: 7\n", 2, "`degree`"),
    "edge-unknown": ("edges:\n  - [p1, p2]\n  - [p2, p9]\n", 3, "unknown peer `p9`"),
    "edge-self": ("edges:\n  - [p1, p2]\n  - [p3, p3]\n", 3, "itself"),
    "kind-unknown": ("kind: hypercube\n", 1, "unknown topology kind `hypercube`"),
    "key-unknown": ("kind: ring\nfanin: 2\n", 2, "unknown key `fanin`"),
    "tab": ("kind: tree\n\tfanout: 2\n", 1, "tab"),
    "duplicate-key": ("kind: tree\nkind: ring\n", 2, "`kind`"),
    "empty": ("", 1, "the topology is empty"),
    "edges-shape": ("edges: [p1, p2]\n", 1, "`edges`"),
    "top-list": ("- kind: ring\n", 1, "holds a list where a map belongs"),
    "edges-three": ("edges:\n  - [p1, p2, p3]\n", 2, "`edges`"),
    "disconnected": ("edges:\n  - [p1, p2]\n", 1, "not connected"),
}
TOPO = {}
for name, (text, line, needle) in topo_files.items():
    TOPO[name] = text
    body = plan(top=[f"topology: t-{name}"])
    cases.append((f"topology-file-{name}",
                  f"# expect: topologies/t-{name}.yaml:{line}: {needle}\n" + body, None))

# ---------------------------------------------------------------------------------------------------
# Near-misses of the shipped plans: one plausible slip each.
NEAR = [
    ("smoke", "topology: full-mesh", "topology: full_mesh", "unknown topology `full_mesh`"),
    ("smoke", "  converge_within: 30s", "  converge_with: 30s", "unknown key `converge_with`"),
    ("smoke", "partition: {groups: [[p1], [p2, p3]]}", "partition: {groups: [[p1], [p2, p4]]}", "unknown peer `p4`"),
    ("bandwidth", "rate: 2mbit", "rate: 2mbps", "`rate`"),
    ("bandwidth", "size: 3MiB", "size: 3 MiBs", "`size`"),
    ("byzantine-peer", "peers: 5", "peers: 4", "unknown peer `p5`", "peer: p5"),
    ("byzantine-peer", "behaviour: flood", "behaviour: flooding", "unknown byzantine behaviour `flooding`"),
    ("byzantine-peer", "name: flood,", "name: withhold,", "step name `withhold`", ("name: withhold,", 1)),
    ("clock-strobe", "every: 2s, ", "", "`every`"),
    ("clock-strobe", "strobe: [+0s, +2h]", "strobe: [+0s, +2h, +4h]", "`strobe`"),
    ("clock-skew", "offset:", "ofset:", "unknown key `ofset`"),
    ("disk-full", "disk_limit: 32MiB", "disk_limit: 32MiB2", "`disk_limit`"),
    ("disk-full", "fill: true", "fill: yes please", "`fill`"),
    ("kill-restart", "at: 4s, duration: 4s, kill", "at: 4s, duration: -4s, kill", "`duration`"),
    ("kill-restart", "kill: {peers: p2}", "kill: {peer: p2}", "unknown key `peer`"),
    ("latency-jitter", "distribution: normal", "distribution: gaussian", "`distribution`"),
    ("latency-jitter", "jitter: 100ms", "jitter: 100", "`jitter`"),
    ("lossy-links", "loss:", "los:", "unknown key `los`"),
    ("partition-asymmetric", "mode: new-connections", "mode: new_connections", "`mode`"),
    ("partition-asymmetric", "shape: one-way, from: p1, to: [p2, p3]}}", "shape: one-way, from: p1}}", "`from` and `to`"),
    ("partition-rolling", "every: 3s, ", "", "`every`"),
    ("partition-flapping", "every: 2s", "every: 0s", "`every`"),
    ("partition-halves", "shape: halves", "shape: halfs", "unknown partition shape `halfs`"),
    ("partition-partial", "port: sync", "port: synk", "no port named `synk`"),
    ("scale-100", "peers: 100", "peers: 1000", "`peers`"),
    ("scale-100", "degree: 4", "degree: 100", "`degree`"),
    ("scale-100", "rate: 20", "rate: 20000", "`rate`"),
    ("hidden-loop", "topology: hidden-loop", "topology: hiden-loop", "unknown topology `hiden-loop`"),
    ("lock-permission", "unwritable: true", "unwritable: always", "`unwritable`"),
    ("stale-lock", "stale:", "stale: /", "path"),
    ("islands", "shape: islands", "shape: island", "unknown partition shape `island`"),
    ("metadata-churn", "touch: meta", "tuch: meta", "unknown key `tuch`"),
    ("pause-unpause", "pause:", "freeze:", "unknown key `freeze`"),
    ("duplicate-reorder", "reorder: ", "reorder: -", "`reorder`"),
    ("packet-corruption", "corrupt: 2}", "corrupt: 200}", "`corrupt`"),
    ("scale-100", "size: 256..4KiB", "size: 256..4GiB", "`size`"),
    ("partition-rolling", "every: 3s", "every: 30s", "`every`"),
    ("smoke", "peers: 3", "peers: three", "`peers`"),
    ("kill-restart", "{name: crash-p2", "{name: crash-p2b, at: 6s, duration: 4s, kill: {peers: p2}}\n  - {name: crash-p2", "overlap"),
    ("partition-bridge", "shape: bridge", "shape: bridges", "unknown partition shape `bridges`"),
    ("legacy-clock-skew", "flavor: legacy", "flavor: legasy", "flavor `legasy`"),
    ("legacy-partition-delete", "flavor: legacy", "flavour: legacy", "unknown key `flavour`"),
    ("kill-mid-transfer", "kill:", "kil:", "unknown key `kil`"),
    ("clock-bump", "offset: ", "offset: ++", "`offset`"),
    ("disk-corruption", "corrupt:", "corupt:", "unknown key `corupt`"),
]
for plan_name, old, new, needle, *where in NEAR:
    with open(os.path.join(SHIPPED, plan_name + ".yaml")) as f:
        text = f.read()
    assert old in text, f"{plan_name}: `{old}` not found"
    body = text.replace(old, new, 1)
    nth = 0
    if where:
        where, nth = where[0] if isinstance(where[0], tuple) else (where[0], 0)
    else:
        where = new.split("\n")[0] if new else None
    if where is None or where.strip() == "":
        # The slip removed text: the error is at the step or entry that lost it.
        idx = text.index(old)
        where = text[:idx].count("\n") + 1
    add(f"near-{plan_name}-{tag(new or 'removed')}", body, where, needle, nth=nth)


# ---------------------------------------------------------------------------------------------------
# Soak sections (issue 12): added last, so the plans above keep their numbers.
SOAK = """name: bad
seed: 7
peers: 3
soak:
  duration: 1h
  window: 10m
  workload: {rate: 5, files: 50}
  max_concurrent: 2
  stagger: {min: 10s, max: 1m}
  exclusive: [[partition], [crash]]
  faults:
    - {weight: 3, partition: {shape: halves}}
    - {name: crash, duration: {min: 2s, max: 20s}, kill: {peers: one}}
"""


def soak(old, new, needle, slug, where=None, body=None):
    text = body if body is not None else SOAK
    assert old in text, f"soak-{slug}: `{old}` not in the soak plan"
    text = text.replace(old, new, 1)
    add(f"soak-{slug}", text, where or (new.split("\n")[0] or old), needle)


for v in ["31d", "0s", "soon", "-1h", "{}", "99999999999d", "0.0000001s", "9s"]:
    soak("duration: 1h", f"duration: {v}", "`duration`", f"duration-{tag(v)}")
for v in ["1s", "25h", "-1m", "[10m]"]:
    soak("window: 10m", f"window: {v}", "`window`", f"window-{tag(v)}")
for v, n in [("{rate: 0, files: 50}", "`rate`"), ("{rate: 1001}", "`rate`"), ("{rate: 5, files: 0}", "`files`"),
             ("{files: 50}", "`rate`"), ("{rate: 5, mix: {create: 0}}", "`mix`"), ("{rate: 5, peers: p9}", "unknown peer `p9`"),
             ("{rate: 5, size: 2GiB}", "`size`"), ("{rate: 5, at: 1s}", "unknown key `at`"), ("[5]", "`workload`")]:
    soak("{rate: 5, files: 50}", v, n, f"workload-{tag(v)}", where="workload:")
for v in ["0", "17", "abc", "-1"]:
    soak("max_concurrent: 2", f"max_concurrent: {v}", "`max_concurrent`", f"max-concurrent-{tag(v)}")
for v, n in [("{min: 1m, max: 10s}", "`stagger`"), ("{min: 10ms, max: 1s}", "`stagger`"), ("{min: 10s}", "`max`"),
             ("10s", "`stagger`"), ("{min: soon, max: 1m}", "`min`")]:
    soak("stagger: {min: 10s, max: 1m}", f"stagger: {v}", n, f"stagger-{tag(v)}", where="stagger:")
for v, n in [("[[partition], [nosuch]]", "`exclusive` names `nosuch`"), ("[[]]", "empty `exclusive` group"),
             ("[partition]", "`exclusive`"), ("{a: 1}", "`exclusive`")]:
    soak("exclusive: [[partition], [crash]]", f"exclusive: {v}", n, f"exclusive-{tag(v)}", where="exclusive:")
for v, n in [("{weight: -1, partition: {shape: halves}}", "`weight`"),
             ("{weight: 3, partition: {shape: halfs}}", "unknown partition shape `halfs`"),
             ("{weight: 3, every: 10s, partition: {shape: halves}}", "`every`"),
             ("{weight: 3, at: 1s, partition: {shape: halves}}", "unknown key `at`"),
             ("{weight: 3, partition: {shape: halves}, kill: {peers: p1}}", "exactly one fault"),
             ("{weight: 3}", "needs a fault"),
             ("{weight: 3, every: 2s, partition: {shape: rolling}, duration: {min: 1s, max: 5s}}", "`every`"),
             ("{weight: 3, kill: {peers: p9}}", "unknown peer `p9`")]:
    soak("{weight: 3, partition: {shape: halves}}", v, n, f"fault-{tag(v)}", where="- {weight")
for v, n in [("{min: 2s, max: 20m}", "longer than a window"), ("{min: 20s, max: 2s}", "`duration`"),
             ("{min: 0s, max: 2s}", "`duration`"), ("5s", "`duration`")]:
    soak("duration: {min: 2s, max: 20s}", f"duration: {v}", n, f"fault-duration-{tag(v)}", where="name: crash")
soak("name: crash", "name: kill", "not a fault key", "fault-name-is-a-key", where="name: kill")
soak("name: crash", "name: \"a b\"", "`name`", "fault-name-bad", where="name: \"a b")
soak("  faults:", "  foo: 1\n  faults:", "unknown key `foo`", "unknown-key", where="foo: 1")
soak("stagger: {min: 10s, max: 1m}", "stagger: {min: 1s, max: 2s}", "fault intervals", "window-too-many-faults",
     body=SOAK.replace("window: 10m", "window: 24h"), where="stagger:")
soak("peers: 3\n", "peers: 3\nsteps:\n  - {at: 1s, partition: {shape: halves}}\n", "`soak`", "with-steps",
     where="- {at: 1s")


# ---------------------------------------------------------------------------------------------------
# expect.criteria: each threshold's type and range, an unknown threshold, the section's shape.
def crit(key, value, needle):
    add(f"criteria-{key}-{tag(value)}", plan(expect=["  converge_within: 30s", "  criteria:", f"    {key}: {value}"]),
        f"{key}: ", needle)

for k in ["recovery", "propagation_p50", "propagation_p95", "propagation_p99"]:
    for v, n in [("soon", "`soon` is not a duration"), ("-1s", "negative"), ("0ms", f"`criteria.{k}` is 0"),
                 ("25h", "too long"), ("[1s]", f"`{k}`")]:
        crit(k, v, n)
for k in ["bytes_ratio", "messages_ratio"]:
    for v in ["0", "-1.5", "1e300", "many", ".nan"]:
        crit(k, v, f"{k}`")  # `criteria.{k}` (a range) or `{k}` (a type)
for v in ["-0.1", "100.5", "lots", "{}"]:
    crit("conflict_pct", v, "conflict_pct`")
for v in ["0", "-3", "1e30", "ten"]:
    crit("cpu_pct", v, "cpu_pct`")
for v, n in [("0", "`criteria.memory` is 0 bytes"), ("-5", "negative"), ("lots", "not a size"), ("[1]", "`memory`"),
             ("99999999999999GiB", "`memory`")]:
    crit("memory", v, n)
crit("p99", "100ms", "unknown key `p99`; allowed: recovery, propagation_p50")
add("criteria-list", plan(expect=["  criteria: [1]"]), "criteria", "`criteria` cannot be a list")
add("criteria-scalar", plan(expect=["  criteria: seed"]), "criteria", "`criteria`")

def main():
    # Rewrite the plans and topology files; keep the README.
    shutil.rmtree(os.path.join(OUT, "topologies"), ignore_errors=True)
    os.makedirs(os.path.join(OUT, "topologies"))
    for old in os.listdir(OUT):
        if old.endswith(".yaml"):
            os.remove(os.path.join(OUT, old))
    seen = set()
    for i, (slug, text, _) in enumerate(cases, 1):
        base, k = slug, 2
        while slug in seen:  # `""` and `~` both tag as "empty"
            slug, k = f"{base}-{k}", k + 1
        seen.add(slug)
        path = os.path.join(OUT, f"{i:03}-{slug}.yaml")
        data = text if isinstance(text, bytes) else text.encode()
        with open(path, "wb") as f:
            f.write(data)
    for name, text in TOPO.items():
        with open(os.path.join(OUT, "topologies", f"t-{name}.yaml"), "w") as f:
            f.write(text)
    print(f"{len(cases)} plans, {len(TOPO)} topology files in {OUT}")


main()
