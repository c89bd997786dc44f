#!/usr/bin/env bash
# Build the peer image `syftchaos/peer:<hash12>` and the tools image `syftchaos/tools:<hash12>` (the
# fault-agent sidecar: netfault, iptables, tc, libfaketime) and tag each `:latest`.
#
#   peer-image/scripts/build-image.sh
#
# 1. makes the base image when missing (build-base.sh; no registry needed),
# 2. `cargo build --release -p syncpeer -p netfault` (one cargo call for both images),
# 3. stages the build contexts: peer-image/.build/context/ (Dockerfile, entrypoint.sh, bin/syncpeer and,
#    with SYFTCHAOS_PEER_NETFAULT=1, bin/netfault) and peer-image/.build/tools-context/ (the
#    Dockerfile of peer-image/tools/, bin/netfault),
# 4. hashes each context plus the base image id: an image is built only when <repo>:<hash12> is missing
#    (legacy builder, --pull=false: nothing is ever pulled), smoke-tested, then tagged :latest.
# A second run with nothing changed does cargo's up-to-date check and nothing else.
#
# Environment: SYFTCHAOS_PEER_REPO (default syftchaos/peer), SYFTCHAOS_TOOLS_REPO (default
# syftchaos/tools), SYFTCHAOS_PEER_NETFAULT (0, the default: the peer image carries only syncpeer, as
# faults come from the tools image's fault agents; 1: netfault too, for poking at a peer by hand), SYFTCHAOS_KEEP_IMAGES (older hash
# tags kept per repository, default 3), CARGO (default cargo).
set -euo pipefail

start=$SECONDS
log() { printf '[build-image %s] %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }
die() { printf '[build-image] ERROR: %s\n' "$*" >&2; exit 1; }

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
REPO="${SYFTCHAOS_PEER_REPO:-syftchaos/peer}"
TOOLS_REPO="${SYFTCHAOS_TOOLS_REPO:-syftchaos/tools}"
PEER_NETFAULT="${SYFTCHAOS_PEER_NETFAULT:-0}"
BASE_TAG="${SYFTCHAOS_BASE_TAG:-syftchaos/base:bookworm}"
KEEP="${SYFTCHAOS_KEEP_IMAGES:-3}"
CARGO="${CARGO:-cargo}"
context="$root/peer-image/.build/context"
tools_context="$root/peer-image/.build/tools-context"
case "$PEER_NETFAULT" in 0|1) ;; *) die "SYFTCHAOS_PEER_NETFAULT must be 0 or 1, not '$PEER_NETFAULT'" ;; esac

command -v "$CARGO" >/dev/null || die "cargo is not installed (a Rust toolchain 1.89+ is needed)"
command -v docker >/dev/null || die "the docker CLI is not installed"
docker info >/dev/null 2>&1 || die "cannot reach the Docker engine (is it running, and are you root or in the docker group?)"

# One build at a time (make test may start several): they share the staged contexts.
mkdir -p "$root/peer-image/.build"
exec 9>"$root/peer-image/.build/lock"
if ! flock -n 9; then
  log "another build-image.sh is running; waiting for it"
  flock 9
fi

# 1. base image
"$root/peer-image/scripts/build-base.sh" || die "the base image could not be made"
base_id="$(docker image inspect --format '{{.Id}}' "$BASE_TAG")"
case "$(docker image inspect --format '{{.Architecture}}' "$BASE_TAG")" in
  amd64) multiarch=x86_64-linux-gnu ;;
  arm64) multiarch=aarch64-linux-gnu ;;
  *) die "unsupported base image architecture" ;;
esac
libfaketime="/usr/lib/$multiarch/faketime/libfaketime.so.1"

# 2. binaries
metadata="$(cd "$root" && "$CARGO" metadata --no-deps --format-version 1)" || die "cargo metadata failed"
packages=(syncpeer netfault)
grep -q '"name":"netfault","version"' <<<"$metadata" || die "the workspace has no netfault package (the tools image needs it)"
target_dir="$(sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p' <<<"$metadata")"
[[ -n "$target_dir" ]] || die "cannot find cargo's target directory"
pkg_args=()
for p in "${packages[@]}"; do pkg_args+=(-p "$p"); done
log "cargo build --release ${pkg_args[*]}"
t0=$SECONDS
(cd "$root" && "$CARGO" build --release "${pkg_args[@]}") || die "cargo build failed"
cargo_s=$((SECONDS - t0))

# 3. build contexts
for p in "${packages[@]}"; do
  bin="$target_dir/release/$p"
  [[ -x "$bin" ]] || die "cargo built package $p but $bin is missing (is its binary named $p?)"
done
if ! ldd "$target_dir/release/syncpeer" >/dev/null 2>&1; then
  log "WARNING: $target_dir/release/syncpeer is not dynamically linked: libfaketime cannot skew its clock"
fi
peer_bins=(syncpeer)
if [[ "$PEER_NETFAULT" == 1 ]]; then peer_bins+=(netfault); fi
rm -rf "$context" "$tools_context"
mkdir -p "$context/bin" "$tools_context/bin"
cp "$root/peer-image/Dockerfile" "$root/peer-image/entrypoint.sh" "$context/"
chmod 0755 "$context/entrypoint.sh"
for p in "${peer_bins[@]}"; do install -m 0755 "$target_dir/release/$p" "$context/bin/$p"; done
cp "$root/peer-image/tools/Dockerfile" "$tools_context/"
install -m 0755 "$target_dir/release/netfault" "$tools_context/bin/netfault"

# 4. per image: content hash -> tag; build when that tag is missing, smoke-test, tag :latest, prune.
# build_image REPO CONTEXT KIND SMOKE_FN: KIND names the inputs label (io.syftchaos.<kind>.inputs);
# SMOKE_FN TAG fails (with a message on stderr) when the new image does not work.
built=()
build_image() {
  local repo=$1 ctx=$2 kind=$3 smoke=$4 hash tag t0 build_s size t
  hash="$( { printf 'base %s\nlibfaketime %s\n' "$base_id" "$libfaketime"
             (cd "$ctx" && find . -type f -printf '%m %p\n' | LC_ALL=C sort && find . -type f -print0 | LC_ALL=C sort -z | xargs -0 sha256sum)
           } | sha256sum | cut -c1-12)"
  tag="$repo:$hash"
  if docker image inspect "$tag" >/dev/null 2>&1; then
    docker tag "$tag" "$repo:latest"
    log "$tag is up to date (inputs unchanged); $repo:latest -> $hash; nothing built"
    return 0
  fi

  log "building $tag from $BASE_TAG with $(cd "$ctx/bin" && echo *) (legacy builder, no pull)"
  t0=$SECONDS
  if ! DOCKER_BUILDKIT=0 docker build --pull=false --force-rm \
    --build-arg "BASE=$BASE_TAG" --build-arg "LIBFAKETIME=$libfaketime" \
    --label io.syftchaos.image=true --label "io.syftchaos.$kind.inputs=$hash" \
    -t "$tag" "$ctx" 2>&1 \
    | { grep -v -e '^DEPRECATED: The legacy builder' -e 'BuildKit is currently disabled' -e 'Install the buildx' \
                -e '^ *https://docs.docker.com/go/buildx' -e '^ *environment-variable\.$' -e '^$' || true; } | sed 's/^/  /' >&2; then
    die "docker build of $tag failed (output above)"
  fi
  docker image inspect "$tag" >/dev/null 2>&1 || die "docker build reported success but $tag is missing"
  build_s=$((SECONDS - t0))

  "$smoke" "$tag" || die "smoke test of $tag failed (see above); $repo:latest is unchanged"

  docker tag "$tag" "$repo:latest"
  size="$(docker image inspect --format '{{.Size}}' "$tag" | awk '{printf "%.0f MB", $1/1e6}')"
  log "built $tag ($size) in ${build_s}s, tagged $repo:latest"
  built+=("$tag")

  # Keep the newest $KEEP hash tags; older ones go unless a container still uses them.
  local old
  mapfile -t old < <(docker images "$repo" --format '{{.Tag}}' | grep -v -x -e latest -e '<none>' | tail -n +"$((KEEP + 1))")
  for t in "${old[@]}"; do
    if docker image rm "$repo:$t" >/dev/null 2>&1; then log "removed old image $repo:$t"; fi
  done
}

smoke_run() {  # smoke_run [docker run options] IMAGE COMMAND...: a throwaway container, labelled
  docker run --rm --network none --label io.syftchaos.managed=true --label "io.syftchaos.pid=$$" "$@" 2>&1
}

# Peer: the entrypoint drops to uid 1000 and the binary runs with the image's glibc.
smoke_peer() {
  local out
  out="$(smoke_run "$1" sh -c 'id -u; syncpeer --help >/dev/null && echo runs')" || { echo "$out" >&2; return 1; }
  if ! { grep -qx 1000 <<<"$out" && grep -qx runs <<<"$out"; }; then echo "unexpected output: $out" >&2; return 1; fi
}

# Tools: netfault runs as root under tini, finds a working iptables and NFQUEUE in a NET_ADMIN
# container, tc and the libfaketime copy are there, and the default command idles (stops at once).
smoke_tools() {
  local out c
  out="$(smoke_run --cap-add NET_ADMIN "$1" sh -c 'set -e
      id -u; command -v tini iptables tc ip >/dev/null; tc -V >/dev/null
      test -f /opt/syftchaos/lib/libfaketime.so.1 && ! test -L /opt/syftchaos/lib/libfaketime.so.1
      ping -c1 -W1 127.0.0.2 >/dev/null || { echo "ping on loopback fails before any rule" >&2; exit 1; }
      iptables -N SYFTCHAOS; iptables -A SYFTCHAOS -d 127.0.0.2 -j DROP; iptables -I OUTPUT -j SYFTCHAOS
      if ping -c1 -W1 127.0.0.2 >/dev/null; then echo "iptables DROP has no effect" >&2; exit 1; fi
      netfault probe | tr -d " \n"; echo')" || { echo "$out" >&2; return 1; }
  if ! { grep -qx 0 <<<"$out" && grep -q '"nfqueue":true' <<<"$out"; }; then
    echo "unexpected output (want uid 0 and \"nfqueue\":true from netfault probe): $out" >&2; return 1
  fi
  c="$(docker run -d --network none --label io.syftchaos.managed=true --label "io.syftchaos.pid=$$" "$1")" || return 1
  out="$(docker exec "$c" ps -o comm= -p 1 2>&1)"
  docker rm -f "$c" >/dev/null 2>&1 || true
  [[ "$out" == tini ]] || { echo "the default command does not run under tini: $out" >&2; return 1; }
}

build_image "$REPO" "$context" peer smoke_peer
build_image "$TOOLS_REPO" "$tools_context" tools smoke_tools
log "${#built[@]} image(s) built${built[*]:+: ${built[*]}}; peer image with $(cd "$context/bin" && echo *); cargo ${cargo_s}s, total $((SECONDS - start))s"
