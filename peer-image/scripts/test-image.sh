#!/usr/bin/env bash
# Check that the peer image keeps the promises of docs/PEER-CONTRACT.md and docs/IMAGE.md with the
# real daemon, on a throwaway 2-peer network:
#
#   peer-image/scripts/test-image.sh [IMAGE]      # default syftchaos/peer:latest
#
#   * both peers answer GET /v1/status; the daemon runs as uid 1000 with no capabilities;
#   * the `id` a peer reports is the public key derived (openssl) from the key file we wrote;
#   * /data/faketime `+3600` shows in wall_clock_ms (within 1 s), a rewrite to `-7200` shows without
#     a restart (same pid), and the other peer's clock stays within 1 s of the host's;
#   * `docker exec -u root ... iptables -A OUTPUT -d <other> -j DROP` cuts TCP to the other peer,
#     the same as uid 1000 is refused, and flushing heals;
#   * `docker stop` delivers SIGTERM: the daemon exits 0 within 5 s.
# Everything it creates is labelled io.syftchaos.managed=true and removed on exit, also on failure. It
# also carries io.syftchaos.pid=<this script's pid>, which the orchestrator's reaper of stale runs reads
# to spare live owners: a `chaos run` starting meanwhile leaves this test alone, `chaos clean` does not
# (so do not run it at the same time as `chaos clean` or a test that calls it).
set -euo pipefail

IMAGE="${1:-syftchaos/peer:latest}"
id="$$"
net="sc-test-image-$id"
tmp="$(mktemp -d /tmp/sc-test-image.XXXXXX)"
failures=0

log() { printf '[test-image %s] %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }
ok() { printf '  ok    %s\n' "$*" >&2; }
bad() { printf '  FAIL  %s\n' "$*" >&2; failures=$((failures + 1)); }
die() { printf '[test-image] ERROR: %s\n' "$*" >&2; exit 2; }

cleanup() {
  local rc=$?
  if [[ $rc -ne 0 ]]; then
    local c
    for c in "sc-test-image-$id-a" "sc-test-image-$id-b"; do
      docker inspect --format "$c: {{.State.Status}}, exit {{.State.ExitCode}}, OOM {{.State.OOMKilled}}" "$c" >&2 2>/dev/null || continue
      docker logs --tail 15 "$c" 2>&1 | sed 's/^/    /' >&2
    done
  fi
  docker rm -f "sc-test-image-$id-a" "sc-test-image-$id-b" >/dev/null 2>&1 || true
  docker network rm "$net" >/dev/null 2>&1 || true
  # The peers chowned their folders to uid 1000; root removes them anyway, others need a container.
  rm -rf "$tmp" 2>/dev/null \
    || docker run --rm --network none --entrypoint rm -v "$tmp:/t" "$IMAGE" -rf /t/a /t/b >/dev/null 2>&1 || true
  rm -rf "$tmp" 2>/dev/null || true
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

for t in docker curl openssl xxd python3; do command -v "$t" >/dev/null || die "$t is needed"; done
docker image inspect "$IMAGE" >/dev/null 2>&1 || die "no image $IMAGE (run peer-image/scripts/build-image.sh)"

# A /24 no existing network uses.
mapfile -t nets < <(docker network ls -q)
used="$(docker network inspect --format '{{range .IPAM.Config}}{{.Subnet}} {{end}}' "${nets[@]}")"
subnet=
for i in $(seq 200 250); do
  if ! grep -q "10\.218\.$i\." <<<"$used"; then subnet="10.218.$i"; break; fi
done
[[ -n "$subnet" ]] || die "no free subnet in 10.218.200-250.0/24"
docker network create --label io.syftchaos.managed=true --label "io.syftchaos.pid=$$" --subnet "$subnet.0/24" "$net" >/dev/null

pubkey() {
  { printf '302e020100300506032b657004220420'; tr -d '\n' <"$1"; } | xxd -r -p \
    | openssl pkey -inform DER -pubout -outform DER | tail -c 32 | xxd -p -c 64
}
declare -A ip=([a]="$subnet.11" [b]="$subnet.12") pub
for p in a b; do
  mkdir -p "$tmp/$p"
  (umask 077; openssl rand -hex 32 >"$tmp/$p/identity.key")
  pub[$p]="$(pubkey "$tmp/$p/identity.key")"
done
for p in a b; do
  o=$([[ $p == a ]] && echo b || echo a)
  cat >"$tmp/$p/config.yaml" <<YAML
name: $p
listen: 0.0.0.0:7000
http: 0.0.0.0:9100
sync_dir: /data/sync
state_dir: /data/state
key_file: /data/identity.key
peers:
  - {name: $o, addr: "${ip[$o]}:7000", public_key: ${pub[$o]}}
trusted:
  - {name: $p, public_key: ${pub[$p]}}
YAML
done
echo "+3600" >"$tmp/a/faketime"

log "starting 2 peers of $IMAGE on $subnet.0/24"
for p in a b; do
  docker run -d --name "sc-test-image-$id-$p" --label io.syftchaos.managed=true --label "io.syftchaos.pid=$$" --cap-add NET_ADMIN \
    --network "$net" --ip "${ip[$p]}" -v "$tmp/$p:/data" "$IMAGE" >/dev/null
done

status() { curl -sf --max-time 2 "http://${ip[$1]}:9100/v1/status"; }
field() { python3 -c "import sys, json; print(json.load(sys.stdin)[\"$1\"])"; }
# wall_clock_ms minus the host's clock, in ms (the host clock is read around the request).
offset_ms() {
  local h0 h1 w
  h0=$(date +%s%3N); w=$(status "$1" | field wall_clock_ms); h1=$(date +%s%3N)
  echo $((w - (h0 + h1) / 2))
}
within() { local v=$1 want=$2 tol=$3; (( v - want <= tol && want - v <= tol )); }

t0=$(date +%s%3N)
for _ in $(seq 1 100); do status a >/dev/null && status b >/dev/null && break; sleep 0.1; done
if status a >/dev/null && status b >/dev/null; then ok "both peers answer /v1/status ($(( $(date +%s%3N) - t0 )) ms after start)"
else bad "status did not answer within 10 s"; docker logs "sc-test-image-$id-a" 2>&1 | tail -5 >&2; exit 1; fi

ps_out="$(docker exec "sc-test-image-$id-a" ps -o user=,pid=,comm= -C syncpeer)"
pid_before="$(awk '{print $2}' <<<"$ps_out")"
if [[ "$(awk '{print $1}' <<<"$ps_out")" == syncpeer ]]; then ok "daemon runs as syncpeer (pid $pid_before)"; else bad "daemon user: $ps_out"; fi
caps="$(docker exec "sc-test-image-$id-a" sh -c "grep -E '^Cap(Eff|Bnd)' /proc/$pid_before/status | awk '{print \$2}' | sort -u")"
if [[ "$caps" == 0000000000000000 ]]; then ok "daemon has no capabilities"; else bad "daemon capabilities: $caps"; fi
if [[ "$(status a | field id)" == "${pub[a]}" ]]; then ok "reported id = public key derived from identity.key"; else bad "reported id differs from the derived key"; fi

off=$(offset_ms a); offb=$(offset_ms b)
if within "$off" 3600000 1000; then ok "faketime +3600: a is ${off} ms ahead"; else bad "faketime +3600: a is off by ${off} ms"; fi
if within "$offb" 0 1000; then ok "b unskewed: ${offb} ms"; else bad "b is off by ${offb} ms"; fi
printf -- '-7200\n' >"$tmp/a/.faketime.tmp" && mv "$tmp/a/.faketime.tmp" "$tmp/a/faketime"
sleep 0.3
off=$(offset_ms a); offb=$(offset_ms b)
pid_after="$(docker exec "sc-test-image-$id-a" ps -o pid= -C syncpeer | tr -d ' ')"
if within "$off" -7200000 1000 && [[ "$pid_after" == "$pid_before" ]]; then ok "faketime -7200 at run time: a is ${off} ms, same pid $pid_after"
else bad "faketime -7200: a is ${off} ms (pid $pid_before -> $pid_after)"; fi
if within "$offb" 0 1000; then ok "b still unskewed: ${offb} ms"; else bad "b is off by ${offb} ms"; fi

ex() { docker exec "$@"; }
alive() {
  local p
  for p in a b; do
    local state
    if ! state="$(docker inspect --format '{{.State.Running}}' "sc-test-image-$id-$p" 2>/dev/null)"; then
      bad "peer $p's container was removed by someone else (a concurrent \`chaos clean\`?)"; exit 1
    fi
    if [[ "$state" != true ]]; then
      bad "peer $p is not running any more (see its log below)"; exit 1
    fi
  done
}
alive
if ex "sc-test-image-$id-a" nc -z -w 2 "${ip[b]}" 7000; then ok "a reaches b:7000"; else bad "a cannot reach b:7000 before any fault"; fi
ex -u root "sc-test-image-$id-a" iptables -A OUTPUT -d "${ip[b]}" -j DROP
if ex "sc-test-image-$id-a" nc -z -w 2 "${ip[b]}" 7000; then bad "a still reaches b after the DROP rule"; else ok "iptables DROP (as root via docker exec) cuts a -> b"; fi
if ex -u syncpeer "sc-test-image-$id-a" iptables -F OUTPUT 2>/dev/null; then bad "uid 1000 could flush iptables"; else ok "uid 1000 cannot touch iptables"; fi
alive
ex -u root "sc-test-image-$id-a" iptables -D OUTPUT -d "${ip[b]}" -j DROP
if ex "sc-test-image-$id-a" nc -z -w 2 "${ip[b]}" 7000; then ok "heal: a reaches b again"; else bad "a cannot reach b after the heal"; fi

alive
t0=$(date +%s%3N)
docker stop -t 5 "sc-test-image-$id-a" >/dev/null
stop_ms=$(( $(date +%s%3N) - t0 ))
code="$(docker inspect --format '{{.State.ExitCode}}' "sc-test-image-$id-a")"
# How long the daemon itself took, from its log lines' Docker timestamps (the rest is Docker's).
daemon_ms="$(docker logs -t "sc-test-image-$id-a" 2>&1 | python3 -c '
import sys, datetime
t = {}
for line in sys.stdin:
    for key in ("shutting down", "stopped"):
        if key in line:
            t[key] = datetime.datetime.fromisoformat(line.split()[0][:26]).timestamp()
print(round((t["stopped"] - t["shutting down"]) * 1000) if len(t) == 2 else "?")')"
if [[ "$code" == 0 ]] && (( stop_ms < 5000 )); then ok "docker stop: exit 0 after ${stop_ms} ms, ${daemon_ms} ms of it in the daemon's shutdown (SIGTERM reached it)"
else bad "docker stop: exit $code after ${stop_ms} ms"; fi

if (( failures > 0 )); then log "$failures check(s) failed"; exit 1; fi
log "all checks passed"
