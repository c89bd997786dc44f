#!/usr/bin/env bash
# Build `syftchaos/peer-static:<hash12>` and tag it `:latest`: the peer image with syncpeer linked
# statically (glibc's static libraries, `-C target-feature=+crt-static`) and no libfaketime preloaded.
# It stands for a daemon that libfaketime cannot reach (a static or Go binary reads the clock through
# the vDSO itself), so its clock faults go through vDSO patching. The peer profile `syncpeer-static`
# names this script as its `image.build`, so `chaos run` builds the image when it is missing:
#
#   peer-image/scripts/build-static-image.sh
#   target/debug/chaos run chaos-plans/clock-skew.yaml --peer syncpeer-static
#
# 1. needs the peer image `syftchaos/peer:latest` (built by `make image`, which this script never runs
#    on its own: it would rebuild the tools image too); fails with that hint when it is missing,
# 2. `cargo rustc --release -p syncpeer --bin syncpeer -- -C target-feature=+crt-static`: the flag
#    reaches only syncpeer's own final compile and link, so every dependency is the release build
#    `make image` made (a RUSTFLAGS build rebuilds all of them: 2.5 min against 1.2 min here). Its
#    output replaces `<target>/release/syncpeer` and is copied out at once; the next
#    `cargo build --release` (`make image`) relinks the dynamic one,
# 3. checks the binary is static (no program interpreter in its ELF header) and that it starts,
# 4. hashes the build context (Dockerfile, binary) plus the peer image's id: when
#    `syftchaos/peer-static:<hash12>` exists, only `:latest` is moved; else builds it FROM
#    syftchaos/peer:latest with the binary replaced and LD_PRELOAD emptied (legacy builder, nothing
#    pulled), smoke-tests it (static, runs as uid 1000), tags `:latest`, keeps the newest hash tags.
# Host and image must share glibc's version (Debian 12, 2.36 both): a static glibc binary still loads
# NSS modules at run time for name lookups.
#
# Environment: SYFTCHAOS_PEER_REPO (default syftchaos/peer), SYFTCHAOS_PEER_STATIC_REPO (default
# syftchaos/peer-static), SYFTCHAOS_KEEP_IMAGES (older hash tags kept, default 3), CARGO (default cargo).
set -euo pipefail

start=$SECONDS
log() { printf '[build-static-image %s] %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }
die() { printf '[build-static-image] ERROR: %s\n' "$*" >&2; exit 1; }

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
PEER_REPO="${SYFTCHAOS_PEER_REPO:-syftchaos/peer}"
REPO="${SYFTCHAOS_PEER_STATIC_REPO:-syftchaos/peer-static}"
KEEP="${SYFTCHAOS_KEEP_IMAGES:-3}"
CARGO="${CARGO:-cargo}"

command -v "$CARGO" >/dev/null || die "cargo is not installed (a Rust toolchain 1.89+ is needed)"
command -v readelf >/dev/null || die "readelf is not installed (binutils)"
docker info >/dev/null 2>&1 || die "cannot reach the Docker engine (is it running, and are you root or in the docker group?)"
peer_id="$(docker image inspect --format '{{.Id}}' "$PEER_REPO:latest" 2>/dev/null)" \
  || die "$PEER_REPO:latest is missing: build it first with \`make image\`"

# 2. the static binary
triple="$(rustc -vV | sed -n 's/^host: //p')"
[[ "$triple" == *-linux-gnu ]] || die "the host toolchain is $triple; a static glibc build needs a *-linux-gnu host"
metadata="$(cd "$root" && "$CARGO" metadata --no-deps --format-version 1)" || die "cargo metadata failed"
target_dir="$(sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p' <<<"$metadata")"
[[ -n "$target_dir" ]] || die "cannot find cargo's target directory"
log "cargo rustc --release -p syncpeer --bin syncpeer -- -C target-feature=+crt-static"
t0=$SECONDS
(cd "$root" && "$CARGO" rustc --release -p syncpeer --bin syncpeer -- -C target-feature=+crt-static) \
  || die "cargo rustc failed"
cargo_s=$((SECONDS - t0))
bin="$target_dir/release/syncpeer"
[[ -x "$bin" ]] || die "$bin is missing after the build"
# A static executable has no program interpreter (ld.so) in its ELF program headers.
if readelf -l "$bin" | grep -q 'Requesting program interpreter'; then
  die "$bin is dynamically linked: crt-static did not take"
fi
"$bin" --version >/dev/null || die "$bin does not start"

# 3. the build context and its hash
context="$(mktemp -d)"
trap 'rm -rf "$context"' EXIT
install -m 0755 "$bin" "$context/syncpeer"
cat >"$context/Dockerfile" <<EOF
FROM $PEER_REPO:latest
# A static syncpeer: libfaketime cannot reach it (there is no dynamic loader to preload it into), so
# nothing preloads it; clock faults come from the fault agent patching its vDSO (\`clock: vdso\`).
ENV LD_PRELOAD=
LABEL io.syftchaos.static=true
COPY syncpeer /usr/local/bin/syncpeer
EOF
hash="$( { printf 'from %s\n' "$peer_id"
           (cd "$context" && find . -type f -printf '%m %p\n' | LC_ALL=C sort && find . -type f -print0 | LC_ALL=C sort -z | xargs -0 sha256sum)
         } | sha256sum | cut -c1-12)"
tag="$REPO:$hash"
if docker image inspect "$tag" >/dev/null 2>&1; then
  docker tag "$tag" "$REPO:latest"
  log "$tag is up to date (inputs unchanged); $REPO:latest -> $hash; nothing built (cargo ${cargo_s}s)"
  exit 0
fi

# 4. build, smoke-test, tag, prune
log "building $tag from $PEER_REPO:latest (legacy builder, no pull)"
if ! DOCKER_BUILDKIT=0 docker build --pull=false --force-rm \
  --label io.syftchaos.image=true --label "io.syftchaos.peer-static.inputs=$hash" -t "$tag" "$context" 2>&1 \
  | { grep -v -e '^DEPRECATED: The legacy builder' -e 'BuildKit is currently disabled' -e 'Install the buildx' \
              -e '^ *https://docs.docker.com/go/buildx' -e '^ *environment-variable\.$' -e '^$' || true; } | sed 's/^/  /' >&2; then
  die "docker build of $tag failed (output above)"
fi
docker image inspect "$tag" >/dev/null 2>&1 || die "docker build reported success but $tag is missing"

# Smoke: a failed image loses its hash tag, or the next run would take it as up to date.
fail() { docker image rm "$tag" >/dev/null 2>&1 || true; die "$*"; }
# The entrypoint drops to uid 1000, the binary in the image is the static one and starts.
out="$(docker run --rm --network none --label io.syftchaos.managed=true --label "io.syftchaos.pid=$$" "$tag" \
  sh -c 'id -u; syncpeer --version >/dev/null && echo runs; ldd /usr/local/bin/syncpeer 2>&1 || true' 2>&1)" \
  || fail "smoke test of $tag failed: $out"
# glibc's ldd says "statically linked" of a static-pie (what crt-static makes), "not a dynamic
# executable" of a non-PIE static binary; a dynamic one lists libc.so.
if ! { grep -qx 1000 <<<"$out" && grep -qx runs <<<"$out" && grep -qE 'statically linked|not a dynamic executable' <<<"$out"; }; then
  fail "smoke test of $tag: unexpected output (want uid 1000, runs, and ldd: statically linked): $out"
fi
docker tag "$tag" "$REPO:latest"
log "built $tag, tagged $REPO:latest (cargo ${cargo_s}s, total $((SECONDS - start))s)"

mapfile -t old < <(docker images "$REPO" --format '{{.Tag}}' | grep -v -x -e latest -e '<none>' | tail -n +"$((KEEP + 1))")
for t in "${old[@]}"; do
  if docker image rm "$REPO:$t" >/dev/null 2>&1; then log "removed old image $REPO:$t"; fi
done
