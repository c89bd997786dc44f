#!/usr/bin/env bash
# Build the peer image `syftchaos/peer:<hash12>` and tag it `syftchaos/peer:latest`.
#
#   peer-image/scripts/build-image.sh
#
# 1. makes the base image when missing (build-base.sh; no registry needed),
# 2. `cargo build --release -p syncpeer` (and `-p netfault` when the workspace has that package),
# 3. stages the build context in peer-image/.build/context/ (Dockerfile, entrypoint.sh, bin/*),
# 4. hashes the context plus the base image id: the image is built only when syftchaos/peer:<hash12>
#    is missing (legacy builder, --pull=false: nothing is ever pulled), then tagged :latest.
# A second run with nothing changed does cargo's up-to-date check and nothing else.
#
# Environment: SYFTCHAOS_PEER_REPO (default syftchaos/peer), SYFTCHAOS_KEEP_IMAGES (older hash tags
# kept, default 3), CARGO (default cargo).
set -euo pipefail

start=$SECONDS
log() { printf '[build-image %s] %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }
die() { printf '[build-image] ERROR: %s\n' "$*" >&2; exit 1; }

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
REPO="${SYFTCHAOS_PEER_REPO:-syftchaos/peer}"
BASE_TAG="${SYFTCHAOS_BASE_TAG:-syftchaos/base:bookworm}"
KEEP="${SYFTCHAOS_KEEP_IMAGES:-3}"
CARGO="${CARGO:-cargo}"
context="$root/peer-image/.build/context"

command -v "$CARGO" >/dev/null || die "cargo is not installed (https://rustup.rs)"
command -v docker >/dev/null || die "the docker CLI is not installed"
docker info >/dev/null 2>&1 || die "cannot reach the Docker engine (is it running, and are you root or in the docker group?)"

# One build at a time (make test may start several): they share the staged context.
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
packages=(syncpeer)
if grep -q '"name":"netfault","version"' <<<"$metadata"; then
  packages+=(netfault)
fi
target_dir="$(sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p' <<<"$metadata")"
[[ -n "$target_dir" ]] || die "cannot find cargo's target directory"
pkg_args=()
for p in "${packages[@]}"; do pkg_args+=(-p "$p"); done
log "cargo build --release ${pkg_args[*]}"
t0=$SECONDS
(cd "$root" && "$CARGO" build --release "${pkg_args[@]}") || die "cargo build failed"
cargo_s=$((SECONDS - t0))

# 3. build context
rm -rf "$context"
mkdir -p "$context/bin"
cp "$root/peer-image/Dockerfile" "$root/peer-image/entrypoint.sh" "$context/"
chmod 0755 "$context/entrypoint.sh"
for p in "${packages[@]}"; do
  bin="$target_dir/release/$p"
  [[ -x "$bin" ]] || die "cargo built package $p but $bin is missing (is its binary named $p?)"
  if ! ldd "$bin" >/dev/null 2>&1; then
    log "WARNING: $bin is not dynamically linked: libfaketime cannot skew its clock"
  fi
  install -m 0755 "$bin" "$context/bin/$p"
done

# 4. content hash -> tag
hash="$( { printf 'base %s\nlibfaketime %s\n' "$base_id" "$libfaketime"
           (cd "$context" && find . -type f -printf '%m %p\n' | LC_ALL=C sort && find . -type f -print0 | LC_ALL=C sort -z | xargs -0 sha256sum)
         } | sha256sum | cut -c1-12)"
tag="$REPO:$hash"
if docker image inspect "$tag" >/dev/null 2>&1; then
  docker tag "$tag" "$REPO:latest"
  log "$tag is up to date (inputs unchanged); $REPO:latest -> $hash; nothing built (cargo ${cargo_s}s, total $((SECONDS - start))s)"
  exit 0
fi

log "building $tag from $BASE_TAG with ${packages[*]} (legacy builder, no pull)"
t0=$SECONDS
if ! DOCKER_BUILDKIT=0 docker build --pull=false --force-rm \
  --build-arg "BASE=$BASE_TAG" --build-arg "LIBFAKETIME=$libfaketime" \
  --label io.syftchaos.image=true --label "io.syftchaos.peer.inputs=$hash" \
  -t "$tag" "$context" 2>&1 \
  | { grep -v -e '^DEPRECATED: The legacy builder' -e 'BuildKit is currently disabled' -e 'Install the buildx' \
              -e '^ *https://docs.docker.com/go/buildx' -e '^ *environment-variable\.$' -e '^$' || true; } | sed 's/^/  /' >&2; then
  die "docker build of $tag failed (output above)"
fi
docker image inspect "$tag" >/dev/null 2>&1 || die "docker build reported success but $tag is missing"
build_s=$((SECONDS - t0))

# Smoke test: the entrypoint drops to uid 1000 and the binary runs with the image's glibc.
out="$(docker run --rm --network none --label io.syftchaos.managed=true --label "io.syftchaos.pid=$$" "$tag" sh -c 'id -u; syncpeer --help >/dev/null && echo runs' 2>&1)" \
  || die "smoke test of $tag failed: $out"
if ! { grep -qx 1000 <<<"$out" && grep -qx runs <<<"$out"; }; then die "smoke test of $tag: unexpected output: $out"; fi

docker tag "$tag" "$REPO:latest"
size="$(docker image inspect --format '{{.Size}}' "$tag" | awk '{printf "%.0f MB", $1/1e6}')"
log "built $tag ($size) in ${build_s}s, tagged $REPO:latest; cargo ${cargo_s}s, total $((SECONDS - start))s"

# Keep the newest $KEEP hash tags; older ones go unless a container still uses them.
mapfile -t old < <(docker images "$REPO" --format '{{.Tag}}' | grep -v -x -e latest -e '<none>' | tail -n +"$((KEEP + 1))")
for t in "${old[@]}"; do
  if docker image rm "$REPO:$t" >/dev/null 2>&1; then log "removed old image $REPO:$t"; fi
done
