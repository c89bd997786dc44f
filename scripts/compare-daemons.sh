#!/usr/bin/env bash
# Runs every plan against several daemons (peer profiles) and prints one Markdown table: per plan and
# daemon, the verdict, the checks that were not valid, the recovery after the final heal, and the
# run folder. A plan a profile cannot take is listed with the reason `chaos validate` gives.
#
#   scripts/compare-daemons.sh                                   # every plan, syncpeer and syncthing
#   PEERS="syncthing" PLANS="chaos-plans/smoke.yaml" scripts/compare-daemons.sh
#
# Environment: PEERS (default "syncpeer syncthing"), PLANS (default chaos-plans/*.yaml), CHAOS (default
# target/debug/chaos), REPORTS (default reports). Needs python3 to read result.json.
set -uo pipefail
cd "$(dirname "$0")/.."

PEERS="${PEERS:-syncpeer syncthing}"
CHAOS="${CHAOS:-target/debug/chaos}"
REPORTS="${REPORTS:-reports}"
# shellcheck disable=SC2206 # word splitting of the plan list is intended
plans=(${PLANS:-chaos-plans/*.yaml})

summary() {
  python3 - "$1" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
bad = [f"{c['name']} {c['verdict']}" for c in r["checks"] if c["verdict"] != "valid"]
final = [x for x in r["recovery"] if x["fault"] == "heal-all"]
rec = final[-1]["converged_after_ms"] if final else None
rec = "never" if final and rec is None else ("n/a" if rec is None else f"{rec / 1000:.1f} s")
print(f"{r['verdict']} | {', '.join(bad) or '-'} | {rec}")
PY
}

echo "| plan | daemon | verdict | checks not valid | recovery after the final heal | run |"
echo "|---|---|---|---|---|---|"
for plan in "${plans[@]}"; do
  name="$(basename "$plan" .yaml)"
  for peer in $PEERS; do
    args=(--peer "$peer")
    # The legacy plans pick syncpeer's legacy flavor; other daemons have none, so run their default.
    if [[ "$peer" != syncpeer ]] && grep -q '^flavor:' "$plan"; then args+=(--flavor default); fi
    if ! why="$("$CHAOS" validate "$plan" "${args[@]}" 2>&1)"; then
      echo "| $name | $peer | not run | ${why##*: } | | |"
      continue
    fi
    # --keep-runs all: the table names every run folder, so none may be rotated away meanwhile.
    out="$("$CHAOS" run "$plan" --reports "$REPORTS" --keep-runs all "${args[@]}" 2>&1)"
    code=$?
    folder="$(sed -n 's/^report: \(.*\)\/index.html$/\1/p' <<<"$out")"
    if [[ -z "$folder" || ! -f "$folder/result.json" ]]; then
      echo "| $name | $peer | harness error (exit $code) | $(tail -n1 <<<"$out" | cut -c1-120) | | |"
      continue
    fi
    echo "| $name | $peer | $(summary "$folder/result.json") | \`$folder\` |"
  done
done
