#!/usr/bin/env bash
# Build `syftchaos/peer:static`: the peer image with syncpeer linked statically (glibc's static
# libraries, `-C target-feature=+crt-static`) and no libfaketime preloaded. It stands for a daemon
# that libfaketime cannot reach (a static or Go binary reads the clock through the vDSO itself), so
# its clock faults must go through vDSO patching:
#
#   peer-image/scripts/build-static-image.sh
#   target/debug/chaos run chaos-plans/clock-skew.yaml --image syftchaos/peer:static --clock vdso
#
# 1. builds the peer image when missing (build-image.sh),
# 2. `cargo build --release -p syncpeer --target <host triple>` with crt-static, in its own target
#    folder (target/static: other RUSTFLAGS would rebuild the shared release cache every time),
# 3. checks the binary is static (no interpreter in its ELF header) and that it starts,
# 4. builds FROM syftchaos/peer:latest with the binary replaced and LD_PRELOAD emptied (legacy builder,
#    nothing pulled), tags `syftchaos/peer:static`.
#
# Environment: SYFTCHAOS_PEER_REPO (default syftchaos/peer), CARGO (default cargo).
set -euo pipefail

log() { printf '[build-static-image %s] %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }
die() { printf '[build-static-image] ERROR: %s\n' "$*" >&2; exit 1; }

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
REPO="${SYFTCHAOS_PEER_REPO:-syftchaos/peer}"
CARGO="${CARGO:-cargo}"
start=$SECONDS

docker image inspect "$REPO:latest" >/dev/null 2>&1 || "$root/peer-image/scripts/build-image.sh"

triple="$(rustc -vV | sed -n 's/^host: //p')"
[[ "$triple" == *-linux-gnu ]] || die "the host toolchain is $triple; a static glibc build needs a *-linux-gnu host"
target_dir="$root/target/static"
log "cargo build --release -p syncpeer --target $triple (crt-static, in $target_dir)"
# With --target, RUSTFLAGS reach only the target's code, not build scripts or proc macros.
(cd "$root" && RUSTFLAGS="-C target-feature=+crt-static" "$CARGO" build --release -p syncpeer \
  --target "$triple" --target-dir "$target_dir") || die "cargo build failed"
bin="$target_dir/$triple/release/syncpeer"
[[ -x "$bin" ]] || die "$bin is missing after the build"
# A static executable has no program interpreter (ld.so) in its ELF program headers.
if readelf -l "$bin" | grep -q 'Requesting program interpreter'; then
  die "$bin is dynamically linked: crt-static did not take"
fi
"$bin" --version >/dev/null || die "$bin does not start"

context="$(mktemp -d)"
trap 'rm -rf "$context"' EXIT
install -m 0755 "$bin" "$context/syncpeer"
cat >"$context/Dockerfile" <<EOF
FROM $REPO:latest
# A static syncpeer: libfaketime cannot reach it (there is no dynamic loader to preload it into), so
# nothing preloads it; clock faults come from the fault agent patching its vDSO (\`--clock vdso\`).
ENV LD_PRELOAD=
LABEL io.syftchaos.static=true
COPY syncpeer /usr/local/bin/syncpeer
EOF
log "building $REPO:static from $REPO:latest (legacy builder, no pull)"
DOCKER_BUILDKIT=0 docker build --pull=false --force-rm -q -t "$REPO:static" "$context" >/dev/null 2>&1 \
  || die "docker build of $REPO:static failed"
out="$(docker run --rm --network none --label io.syftchaos.managed=true --entrypoint /usr/local/bin/syncpeer \
  "$REPO:static" --version 2>&1)" || die "the static image does not start syncpeer: $out"
log "built $REPO:static ($out) in $((SECONDS - start))s"
