#!/usr/bin/env bash
# Build the Syncthing peer image `syftchaos/syncthing:latest` (also tagged `:<hash12>`).
#
#   peer-image/profiles/syncthing/build.sh         # build when missing or when the inputs changed
#   peer-image/profiles/syncthing/build.sh --force # rebuild even when the tag is current
#
# 1. makes the base image syftchaos/base:bookworm when missing (peer-image/scripts/build-base.sh),
# 2. hashes the build inputs (Dockerfile, entrypoint.sh, this script) plus the base image id; when
#    syftchaos/syncthing:latest carries the label io.syftchaos.syncthing.inputs=<that hash>, stops here,
# 3. else stages a build context (Dockerfile, entrypoint.sh) in a temp folder and builds it with the
#    legacy builder, --pull=false: nothing is pulled from a registry; the Dockerfile installs Debian's
#    syncthing with apt from the mirror configured in the base image,
# 4. smoke test: `syncthing --version` runs in the image as uid 1000.
#
# Environment: SYFTCHAOS_SYNCTHING_REPO (default syftchaos/syncthing), SYFTCHAOS_BASE_TAG.
set -euo pipefail

start=$SECONDS
log() { printf '[build-syncthing %s] %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }
die() { printf '[build-syncthing] ERROR: %s\n' "$*" >&2; exit 1; }

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../../.." && pwd)"
REPO="${SYFTCHAOS_SYNCTHING_REPO:-syftchaos/syncthing}"
BASE_TAG="${SYFTCHAOS_BASE_TAG:-syftchaos/base:bookworm}"
LABEL=io.syftchaos.syncthing.inputs
force=0
case "${1:-}" in
  --force) force=1 ;;
  "") ;;
  *) die "usage: $0 [--force]" ;;
esac

command -v docker >/dev/null || die "the docker CLI is not installed"
docker info >/dev/null 2>&1 || die "cannot reach the Docker engine (is it running, and are you root or in the docker group?)"

# One build at a time (several runs may want the image at once).
lockfile="${TMPDIR:-/tmp}/syftchaos-syncthing-build.lock"
exec 9>"$lockfile"
if ! flock -n 9; then
  log "another build of $REPO is running; waiting for it"
  flock 9
fi

# 1. base image
if ! docker image inspect "$BASE_TAG" >/dev/null 2>&1; then
  log "$BASE_TAG is missing: making it with peer-image/scripts/build-base.sh"
  "$root/peer-image/scripts/build-base.sh" || die "the base image could not be made"
fi
base_id="$(docker image inspect --format '{{.Id}}' "$BASE_TAG")" || die "cannot inspect $BASE_TAG"

# 2. content hash of the inputs
inputs=(Dockerfile entrypoint.sh build.sh)
for f in "${inputs[@]}"; do [[ -f "$here/$f" ]] || die "missing $here/$f"; done
hash="$( { printf 'base %s\n' "$base_id"
           (cd "$here" && stat -c '%a %n' "${inputs[@]}" && sha256sum "${inputs[@]}")
         } | sha256sum | cut -c1-12)"
tag="$REPO:$hash"
current="$(docker image inspect --format "{{index .Config.Labels \"$LABEL\"}}" "$REPO:latest" 2>/dev/null || true)"
if [[ $force == 0 && "$current" == "$hash" ]]; then
  docker image inspect "$tag" >/dev/null 2>&1 || docker tag "$REPO:latest" "$tag"
  log "$REPO:latest is up to date (inputs $hash unchanged); nothing built (total $((SECONDS - start))s)"
  exit 0
fi

# 3. build
context="$(mktemp -d "${TMPDIR:-/tmp}/syftchaos-syncthing-context.XXXXXX")"
trap 'rm -rf "$context"' EXIT
install -m 0644 "$here/Dockerfile" "$context/Dockerfile"
install -m 0755 "$here/entrypoint.sh" "$context/entrypoint.sh"

log "building $tag from $BASE_TAG (legacy builder, no pull; apt-get install syncthing)"
t0=$SECONDS
if ! DOCKER_BUILDKIT=0 docker build --pull=false --force-rm \
  --build-arg "BASE=$BASE_TAG" \
  --label io.syftchaos.image=true --label "$LABEL=$hash" \
  -t "$tag" "$context" 2>&1 \
  | { grep -v -e '^DEPRECATED: The legacy builder' -e 'BuildKit is currently disabled' -e 'Install the buildx' \
              -e '^ *https://docs.docker.com/go/buildx' -e '^ *environment-variable\.$' -e '^$' || true; } | sed 's/^/  /' >&2; then
  die "docker build of $tag failed (output above)"
fi
docker image inspect "$tag" >/dev/null 2>&1 || die "docker build of $tag failed (output above)"
build_s=$((SECONDS - t0))

# 4. smoke test: the entrypoint drops to uid 1000 and syncthing runs.
out="$(docker run --rm --network none --label io.syftchaos.managed=true --label "io.syftchaos.pid=$$" \
  "$tag" sh -c 'id -u; syncthing --version' 2>&1)" || die "smoke test of $tag failed: $out"
grep -qx 1000 <<<"$out" || die "smoke test of $tag: not running as uid 1000: $out"
version="$(grep -m1 '^syncthing v' <<<"$out")" || die "smoke test of $tag: syncthing --version printed: $out"

docker tag "$tag" "$REPO:latest"
size="$(docker image inspect --format '{{.Size}}' "$tag" | awk '{printf "%.0f MB", $1/1e6}')"
log "built $tag ($size, $version) in ${build_s}s, tagged $REPO:latest; total $((SECONDS - start))s"

# Keep the newest 3 hash tags; older ones go unless a container still uses them.
mapfile -t old < <(docker images "$REPO" --format '{{.Tag}}' | grep -v -x -e latest -e '<none>' -e "$hash" | tail -n +3)
for t in "${old[@]}"; do
  if docker image rm "$REPO:$t" >/dev/null 2>&1; then log "removed old image $REPO:$t"; fi
done
