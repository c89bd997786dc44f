#!/usr/bin/env python3
"""The mutation matrix (issue 15): every syncpeer mutant under the plan that should expose it, and the
honest daemon on the same plans; prints mutant x check with the evidence line of each expected catch.

    scripts/mutants.py [--reports DIR] [--chaos PATH] [--markdown FILE] [--only NAME ...]

A mutant is a syncpeer flavor named `mutant-*` (docs/PEER.md "Mutants"). A cell is `invalid`,
`unknown` or `valid`; `!` marks a cell that is not what the matrix expects. Expected: on the
honest rows every check `valid`; on a mutant's row its checks (EXPECT below) `invalid` and every
other check not `invalid` (a check that cannot judge a broken run says `unknown`, with its reason).
Exit 0 when every cell is as expected, 1 when one is not, 2 on bad arguments or a run that ended in
an error (no result.json).
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PLANS = {
    "smoke": "chaos-plans/smoke.yaml",
    "mutants": "orchestrator/tests/plans/mutants.yaml",
    "mutants-tamper": "orchestrator/tests/plans/mutants-tamper.yaml",
    "mutants-catch-up": "orchestrator/tests/plans/mutants-catch-up.yaml",
}
# (flavor, plan, the checks that must be invalid): one row each. The honest daemon runs every plan.
EXPECT = [
    ("mutant-echo-loop", "smoke", ["no-loop"]),
    ("mutant-metadata-loop", "mutants", ["no-metadata-version"]),
    ("mutant-software-bug", "mutants", ["no-crash"]),
    # The honest peers write the tampered bytes, then author them as a local edit (the file no longer
    # hashes to its entry), so they spread to every peer, the liar too: the liar's two writes are
    # replaced everywhere (right-final-state, no-lost-update). no-poisoning and no-corruption are
    # the checks it proves. no-loop is invalid when the monitor saw the liar hold its own content
    # and then the poison (a second version of a path written once), valid when the poison came
    # first: either is right (MAYBE).
    ("mutant-data-poisoning", "mutants-tamper",
     ["no-poisoning", "no-corruption", "right-final-state", "no-lost-update"]),
    # Never converged, so no-loop has no quiet window to watch the counters in: `unknown`, not invalid.
    ("mutant-consensus-failure", "mutants", ["converged", "recovered-in-time"]),
    # The partition is healed, but the peers leave each other alone for a minute: the run judges the
    # trees when converge_within (20 s) passes, so converged fails with recovered-in-time, and the
    # file each side wrote during the cut is still missing on the other (right-final-state,
    # no-lost-update: a write that has not arrived when the run is judged is a lost one).
    ("mutant-slow-catch-up", "mutants-catch-up",
     ["converged", "recovered-in-time", "right-final-state", "no-lost-update"]),
]
ROWS = [("default", plan, []) for plan in PLANS] + EXPECT
# (flavor, check): either verdict is right, for the reason given where the row is.
MAYBE = {("mutant-data-poisoning", "no-loop")}
SHORT = {"valid": "valid", "invalid": "INVALID", "unknown": "unknown", None: "-"}


def run_dir(reports):
    """The one run folder under `reports` (the newest, by its `latest` link when there is one)."""
    latest = os.path.join(reports, "latest")
    if os.path.isdir(latest):
        return latest
    dirs = sorted(d for d in os.listdir(reports) if os.path.isdir(os.path.join(reports, d)))
    return os.path.join(reports, dirs[-1]) if dirs else None


def first_problem(check):
    ev = check.get("evidence")
    problems = ev.get("problems") if isinstance(ev, dict) else None
    if isinstance(problems, list) and problems:
        # A loop's counters: the versions themselves say most about the bug, traffic follows them.
        named = [p for p in problems if any(w in json.dumps(p) for w in ("versions_applied", "local_changes"))]
        return json.dumps((named or problems)[0], separators=(",", ":"))[:240]
    if isinstance(ev, dict):
        return json.dumps(ev, separators=(",", ":"))[:240]
    return ""


def run_row(chaos, flavor, plan, reports):
    folder = os.path.join(reports, f"{flavor}@{plan}")
    os.makedirs(folder, exist_ok=True)
    cmd = [chaos, "run", PLANS[plan], "--flavor", flavor, "--reports", folder]
    print(f"=== {' '.join(cmd)}", file=sys.stderr, flush=True)
    with open(os.path.join(folder, "stderr.log"), "wb") as err:
        code = subprocess.run(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=err).returncode
    return read_row(flavor, plan, reports, code)


def read_row(flavor, plan, reports, code=None):
    """The result of the row's run in `reports` (None when it has none)."""
    folder = os.path.join(reports, f"{flavor}@{plan}")
    d = run_dir(folder) if os.path.isdir(folder) else None
    path = os.path.join(d, "result.json") if d else None
    if not path or not os.path.exists(path):
        return code, None, d
    with open(path) as f:
        return code, json.load(f), d


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--reports", help="where the run folders go (default: a new temp folder)")
    ap.add_argument("--chaos", default=os.path.join(ROOT, "target/debug/chaos"))
    ap.add_argument("--markdown", help="also write the matrix as a Markdown table to this file")
    ap.add_argument("--from", dest="again", metavar="DIR", help="print the matrix of the runs already in DIR (a --reports folder of an earlier call), running nothing")
    ap.add_argument("--only", nargs="*", default=[], help="only these flavors (e.g. default mutant-echo-loop)")
    args = ap.parse_args()
    known = {r[0] for r in ROWS}
    for name in args.only:
        if name not in known:
            print(f"--only: unknown flavor `{name}`; allowed: {', '.join(sorted(known))}", file=sys.stderr)
            return 2
    if args.again and not os.path.isdir(args.again):
        print(f"--from: {args.again} is not a folder", file=sys.stderr)
        return 2
    if not args.again and not os.access(args.chaos, os.X_OK):
        print(f"--chaos: {args.chaos} is not an executable (run `cargo build -p syftchaos --bin chaos`)", file=sys.stderr)
        return 2
    reports = args.again or args.reports or tempfile.mkdtemp(prefix="mutants-")
    rows = [r for r in ROWS if not args.only or r[0] in args.only]

    results = []
    errors = 0
    for flavor, plan, want in rows:
        if args.again:
            code, result, d = read_row(flavor, plan, reports)
        else:
            code, result, d = run_row(args.chaos, flavor, plan, reports)
        if result is None:
            print(f"{flavor} @ {plan}: exit {code} without result.json (see {d or reports})", file=sys.stderr)
            errors += 1
        results.append((flavor, plan, want, code, result, d))

    # The columns: every check any run judged, in the order result.json lists them.
    columns = []
    for *_, result, _ in results:
        for c in (result or {}).get("checks", []):
            if c["name"] not in columns:
                columns.append(c["name"])
    bad = 0
    head = ["flavor @ plan"] + columns
    table = []
    for flavor, plan, want, code, result, d in results:
        checks = {c["name"]: c for c in (result or {}).get("checks", [])}
        cells = []
        for col in columns:
            v = checks.get(col, {}).get("verdict")
            if col in want:
                ok = v == "invalid"
            elif (flavor, col) in MAYBE:
                ok = True
            elif flavor == "default":
                ok = v in (None, "valid")
            else:
                ok = v != "invalid"
            bad += 0 if ok else 1
            cells.append(SHORT[v] + ("" if ok else " !"))
        table.append([f"{flavor} @ {plan}"] + cells)

    widths = [max(len(r[i]) for r in [head] + table) for i in range(len(head))]
    fmt = lambda r: "  ".join(c.ljust(w) for c, w in zip(r, widths))
    print(fmt(head))
    for r in table:
        print(fmt(r))
    print()
    print("evidence (each expected catch):")
    for flavor, plan, want, code, result, d in results:
        checks = {c["name"]: c for c in (result or {}).get("checks", [])}
        for name in want:
            c = checks.get(name)
            if c:
                print(f"  {flavor} -> {name}: {c['summary']}")
                print(f"      {first_problem(c)}")
        if want:
            print(f"      run: {d}")
    print()
    print(f"mutants: {bad} cell(s) not as expected, {errors} run(s) without a result; run folders in {reports}")

    if args.markdown:
        with open(args.markdown, "w") as f:
            f.write("| " + " | ".join(head) + " |\n|" + "---|" * len(head) + "\n")
            for r in table:
                f.write("| " + " | ".join(r) + " |\n")
    if errors:
        return 2
    return 0 if bad == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
