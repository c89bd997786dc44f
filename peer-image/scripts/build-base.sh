#!/usr/bin/env bash
# Make the base image of the peer image, `syftchaos/base:bookworm`, on a machine that may have no
# container registry.
#
#   peer-image/scripts/build-base.sh            # build when missing or when the recipe changed
#   peer-image/scripts/build-base.sh --force    # rebuild even when the tag is current
#
# * When `debian:bookworm-slim` can be pulled (a normal workstation), the packages are installed on it
#   with apt in a Dockerfile (also when that image is already local, e.g. `docker load`ed;
#   SYFTCHAOS_BASE_FROM names another Debian bookworm image to build on).
# * Else (no registry, the usual case in this lab) a bookworm rootfs is made with
#   `debootstrap --variant=minbase` (debootstrap is installed with apt-get when missing) and imported
#   with `docker import`. The Debian mirror is SYFTCHAOS_DEBIAN_MIRROR (security archive:
#   SYFTCHAOS_DEBIAN_SECURITY_MIRROR, `none` for no security line), else the one this machine's apt
#   uses for bookworm (bookworm-security); the image's /etc/apt/sources.list names the same ones.
#
# Cache: the image carries the label io.syftchaos.base.recipe=<hash of this recipe> (package list,
# iptables backend, recipe version). When `syftchaos/base:bookworm` exists with the same label, nothing
# is done. A changed package list gives another hash, so the next run rebuilds.
set -euo pipefail

BASE_TAG="${SYFTCHAOS_BASE_TAG:-syftchaos/base:bookworm}"
SUITE=bookworm
# The Debian mirror (debootstrap's source, and the written /etc/apt/sources.list) is never named here:
# it is SYFTCHAOS_DEBIAN_MIRROR / SYFTCHAOS_DEBIAN_SECURITY_MIRROR, else what this machine's apt uses
# for bookworm / bookworm-security (see debian_mirrors below). Only the debootstrap path needs it.
PULL_IMAGE="${SYFTCHAOS_BASE_FROM:-debian:bookworm-slim}"
PULL_TIMEOUT_S="${SYFTCHAOS_PULL_TIMEOUT_S:-20}"
# Bump when the way the image is made changes (not just the package list).
RECIPE_VERSION=1

# What the peer and the fault tooling need, and nothing else:
#   iproute2          ip, tc (htb/tbf bandwidth faults, ifb)
#   iptables          partitions (DROP rules in a SYFTCHAOS chain), NFQUEUE rules for the packet-fault agent
#   libfaketime       per-peer wall-clock skew (LD_PRELOAD, FAKETIME_TIMESTAMP_FILE)
#   ca-certificates   TLS trust roots
#   procps            ps, pkill, pgrep (process faults, debugging with docker exec)
#   tini              PID 1: forwards SIGTERM to the daemon, reaps zombies
#   iputils-ping      reachability measurements of network faults
#   netcat-openbsd    TCP reachability measurements of network faults
# util-linux (setpriv, used by the entrypoint to drop to uid 1000) is Essential, so always present.
PACKAGES=(iproute2 iptables libfaketime ca-certificates procps tini iputils-ping netcat-openbsd)

# iptables backend inside containers: the one the host's Docker engine uses. Docker writes its
# embedded-DNS NAT rules (DOCKER_OUTPUT/DOCKER_POSTROUTING) into every container's network namespace
# with the host's iptables; using the same backend inside keeps one coherent ruleset per namespace
# (`iptables -S` shows everything, no "legacy tables present" warnings). Measured on this lab's kernel
# (6.18, Docker 20.10, host iptables 1.8.9 nf_tables): both backends can add a DROP rule, an NFQUEUE
# rule and a statistic match inside a NET_ADMIN container, and Docker's DNS rules were in nft.
# Override with SYFTCHAOS_IPTABLES_BACKEND=legacy|nft.
detect_backend() {
  local v
  v="$(iptables -V 2>/dev/null || true)"
  case "$v" in
    *legacy*) echo legacy ;;
    *) echo nft ;;  # nf_tables, or no iptables on the host: Debian's default
  esac
}
IPTABLES_BACKEND="${SYFTCHAOS_IPTABLES_BACKEND:-$(detect_backend)}"

log() { printf '[build-base %s] %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }
die() { printf '[build-base] ERROR: %s\n' "$*" >&2; exit 1; }

# Print "URI SUITE LABEL" for every binary (`deb`) entry of this machine's apt sources, URI without a
# trailing slash, LABEL the repository's Release label when apt has fetched it (else "-"), in apt's
# order, without repeats.
# `apt-get indextargets` is apt's own parser (deb822 and one-line files, `Enabled: no`, options in
# brackets, Dir::Etc settings); without apt-get, /etc/apt/sources.list and sources.list.d/*.list
# (one-line) and *.sources (deb822) are read directly.
apt_sources() {
  if command -v apt-get >/dev/null 2>&1; then
    apt-get indextargets --format '$(TARGET_OF) $(REPO_URI) $(RELEASE) $(LABEL)' 2>/dev/null \
      | awk '$1 == "deb" { u = $2; sub(/\/+$/, "", u); print u, $3, ($4 == "" ? "-" : $4) }' \
      | awk '!seen[$0]++'
    return 0
  fi
  local f
  for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
    [[ -r "$f" ]] || continue
    # deb [opt=val ...] URI SUITE COMPONENT...
    sed -e 's/#.*//' -e 's/\[[^]]*\]//' "$f" | awk '$1 == "deb" && NF >= 3 { u = $2; sub(/\/+$/, "", u); print u, $3, "-" }'
  done
  for f in /etc/apt/sources.list.d/*.sources; do
    [[ -r "$f" ]] || continue
    # deb822 stanzas separated by blank lines; each URI x each suite, when Types has deb and Enabled
    # is not no. (Continuation lines of multi-line fields, e.g. an inline Signed-By key, start with
    # a space and are skipped.)
    awk 'function flush(  i, j, nu, ns, us, ss) {
           if (types ~ /(^| )deb( |$)/ && tolower(enabled) != "no") {
             nu = split(uris, us, " "); ns = split(suites, ss, " ")
             for (i = 1; i <= nu; i++) for (j = 1; j <= ns; j++) { sub(/\/+$/, "", us[i]); print us[i], ss[j], "-" }
           }
           types = uris = suites = enabled = ""
         }
         /^[ \t]*#/ { next }
         /^[ \t]*$/ { flush(); next }
         /^[ \t]/ { next }
         { k = tolower($1); v = $0; sub(/^[^:]*:[ \t]*/, "", v)
           if (k == "types:") types = v; else if (k == "uris:") uris = v
           else if (k == "suites:") suites = v; else if (k == "enabled:") enabled = v }
         END { flush() }' "$f"
  done | awk '!seen[$0]++'
}

# Set MIRROR and SECURITY_MIRROR (empty when SYFTCHAOS_DEBIAN_SECURITY_MIRROR=none: no security line).
# Preference: the environment; else the apt entry whose suite is bookworm (bookworm-security); else,
# when apt has fetched the Release files, any entry labelled Debian (Debian-Security), since a Debian
# archive serves every suite (e.g. a trixie host).
debian_mirrors() {
  local sources shown
  sources="$(apt_sources || true)"
  shown="${sources//$'\n'/; }"
  pick() {  # pick SUITE LABEL: the URI of the first entry for SUITE, else of the first labelled LABEL
    awk -v s="$1" -v l="$2" '$2 == s && !bys { bys = $1 } $3 == l && !byl { byl = $1 }
                             END { if (bys) print bys; else if (byl) print byl }' <<<"$sources"
  }
  MIRROR="${SYFTCHAOS_DEBIAN_MIRROR:-$(pick "$SUITE" Debian)}"
  SECURITY_MIRROR="${SYFTCHAOS_DEBIAN_SECURITY_MIRROR:-$(pick "$SUITE-security" Debian-Security)}"
  if [[ -z "$MIRROR" ]]; then
    die "no Debian mirror for $SUITE: set SYFTCHAOS_DEBIAN_MIRROR=<URL of a Debian archive>, or add a
  '$SUITE' entry to apt's sources (/etc/apt/sources.list.d/*.sources or /etc/apt/sources.list); apt's
  binary sources here are: ${shown:-(none)}"
  fi
  if [[ -z "$SECURITY_MIRROR" ]]; then
    die "no Debian security mirror for $SUITE-security: set SYFTCHAOS_DEBIAN_SECURITY_MIRROR=<URL> (or
  =none to write no security line into the image's sources.list), or add a '$SUITE-security' entry to
  apt's sources; apt's binary sources here are: ${shown:-(none)}"
  fi
  [[ "$SECURITY_MIRROR" != none ]] || SECURITY_MIRROR=
}

force=0
case "${1:-}" in
  --force) force=1 ;;
  "") ;;
  -h|--help) sed -n '2,19p' "$0"; exit 0 ;;
  *) die "unknown argument '$1' (usage: $0 [--force])" ;;
esac

case "$IPTABLES_BACKEND" in legacy|nft) ;; *) die "SYFTCHAOS_IPTABLES_BACKEND must be legacy or nft, not '$IPTABLES_BACKEND'" ;; esac

command -v docker >/dev/null || die "the docker CLI is not installed"
docker info >/dev/null 2>&1 || die "cannot reach the Docker engine (is it running, and are you root or in the docker group?)"

# One base build at a time on this machine.
exec 8>/tmp/syftchaos-build-base.lock
if ! flock -n 8; then
  log "another build-base.sh is running; waiting for it"
  flock 8
fi

recipe_hash="$(printf '%s\n' "recipe=$RECIPE_VERSION" "suite=$SUITE" "iptables=$IPTABLES_BACKEND" "${PACKAGES[@]}" \
  | sha256sum | cut -c1-12)"

current="$(docker image inspect --format '{{ index .Config.Labels "io.syftchaos.base.recipe" }}' "$BASE_TAG" 2>/dev/null || true)"
if [[ $force -eq 0 && "$current" == "$recipe_hash" ]]; then
  log "$BASE_TAG is up to date (recipe $recipe_hash); nothing to do"
  exit 0
fi
if [[ -n "$current" ]]; then
  log "$BASE_TAG exists with recipe '${current}', want $recipe_hash: rebuilding"
else
  log "$BASE_TAG is missing: building (recipe $recipe_hash)"
fi

old_id="$(docker image inspect --format '{{.Id}}' "$BASE_TAG" 2>/dev/null || true)"
start=$SECONDS
tmp="$(mktemp -d /tmp/syftchaos-base.XXXXXX)"
deboot_pid=
progress_pid=
# Stop debootstrap (its own session, see below) and everything it started, e.g. dpkg in the chroot.
stop_debootstrap() {
  local pid=$deboot_pid
  [[ -n "$pid" ]] || return 0
  deboot_pid=
  if kill -0 "$pid" 2>/dev/null; then
    log "stopping debootstrap (pid $pid)"
    kill -TERM -- "-$pid" 2>/dev/null || true
    for _ in 1 2 3 4 5; do kill -0 "$pid" 2>/dev/null || break; sleep 1; done
    kill -KILL -- "-$pid" 2>/dev/null || true
  fi
  wait "$pid" 2>/dev/null || true
}
cleanup() {
  local rc=$?
  trap - INT TERM
  stop_debootstrap
  if [[ -n "$progress_pid" ]]; then kill "$progress_pid" 2>/dev/null || true; fi
  # debootstrap mounts proc/sys inside the target; a failed or interrupted run can leave them mounted.
  # Unmount everything below $tmp (deepest first) before deleting, and never cross into another
  # filesystem.
  if [[ -d "$tmp" ]]; then
    local m
    while read -r m; do
      umount -l "$m" 2>/dev/null || true
    done < <(awk -v p="$tmp/" 'index($2, p) == 1 { print $2 }' /proc/mounts | sort -r)
    rm -rf --one-file-system "$tmp"
  fi
  if [[ $rc -ne 0 ]]; then
    printf '[build-base] FAILED after %ss (exit %s); temporary files removed\n' "$((SECONDS - start))" "$rc" >&2
  fi
}
trap cleanup EXIT
# debootstrap ignores SIGINT, so Ctrl-C must not just wait for it: the traps stop it at once.
trap 'log "interrupted"; exit 130' INT
trap 'log "terminated"; exit 143' TERM

labels=(
  "io.syftchaos.image=true"
  "io.syftchaos.base.recipe=$recipe_hash"
  "io.syftchaos.base.packages=${PACKAGES[*]}"
  "io.syftchaos.base.iptables=$IPTABLES_BACKEND"
)

if docker image inspect "$PULL_IMAGE" >/dev/null 2>&1; then
  have_from=1  # already local (pulled before, or `docker load`ed from a tarball)
  log "$PULL_IMAGE is present locally"
else
  have_from=0
  log "trying 'docker pull $PULL_IMAGE' (timeout ${PULL_TIMEOUT_S}s)"
  if timeout "$PULL_TIMEOUT_S" docker pull --quiet "$PULL_IMAGE" >"$tmp/pull.log" 2>&1; then have_from=1; fi
fi
if [[ $have_from -eq 1 ]]; then
  method="apt on $PULL_IMAGE"
  log "building on $PULL_IMAGE: installing the packages with apt in a Dockerfile"
  cat >"$tmp/Dockerfile" <<DOCKERFILE
FROM $PULL_IMAGE
RUN apt-get update \\
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends ${PACKAGES[*]} \\
 && update-alternatives --set iptables /usr/sbin/iptables-$IPTABLES_BACKEND \\
 && update-alternatives --set ip6tables /usr/sbin/ip6tables-$IPTABLES_BACKEND \\
 && apt-get clean && rm -rf /var/lib/apt/lists/*
DOCKERFILE
  label_args=()
  for l in "${labels[@]}" "io.syftchaos.base.method=apt-on-$PULL_IMAGE"; do label_args+=(--label "$l"); done
  DOCKER_BUILDKIT=0 docker build --pull=false "${label_args[@]}" -t "$BASE_TAG" "$tmp" \
    || die "docker build of the base image on $PULL_IMAGE failed (see above)"
else
  method=debootstrap
  log "no registry ($(tail -n1 "$tmp/pull.log" | cut -c1-120)); using debootstrap"
  debian_mirrors
  log "Debian mirror $MIRROR, security ${SECURITY_MIRROR:-(none)}"
  if ! command -v debootstrap >/dev/null; then
    log "installing debootstrap with apt-get"
    if ! DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y --no-install-recommends debootstrap >"$tmp/apt.log" 2>&1; then
      log "apt-get install failed; running apt-get update and retrying"
      apt-get -o DPkg::Lock::Timeout=600 update >>"$tmp/apt.log" 2>&1 || { cat "$tmp/apt.log" >&2; die "apt-get update failed: cannot install debootstrap"; }
      DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y --no-install-recommends debootstrap >>"$tmp/apt.log" 2>&1 \
        || { tail -n 20 "$tmp/apt.log" >&2; die "cannot install debootstrap with apt-get (needs root and a Debian/Ubuntu host)"; }
    fi
  fi
  [[ $EUID -eq 0 ]] || die "debootstrap needs root (run as root, or on a machine where '$PULL_IMAGE' can be pulled)"

  rootfs="$tmp/rootfs"
  include="$(IFS=,; echo "${PACKAGES[*]}")"
  log "debootstrap --variant=minbase $SUITE from $MIRROR (about a minute; log: $tmp/debootstrap.log)"
  t0=$SECONDS
  # debootstrap runs in the background in its own session (so that it and its children can be
  # stopped as a group) while `wait` stays interruptible; progress: one line per phase.
  setsid debootstrap --variant=minbase --include="$include" "$SUITE" "$rootfs" "$MIRROR" >"$tmp/debootstrap.log" 2>&1 &
  deboot_pid=$!
  tail -n +1 -f --pid="$deboot_pid" "$tmp/debootstrap.log" \
    | grep --line-buffered -E '^I: (Retrieving Release|Resolving dependencies of base|Checking component|Installing core|Unpacking the base|Configuring the base|Base system installed)' \
    | sed -u 's/^I: /  debootstrap: /' >&2 &
  progress_pid=$!
  deboot_rc=0
  wait "$deboot_pid" || deboot_rc=$?
  deboot_pid=
  wait "$progress_pid" 2>/dev/null || true
  progress_pid=
  [[ $deboot_rc -eq 0 ]] || log "debootstrap exited with status $deboot_rc"
  grep -q '^I: Base system installed successfully' "$tmp/debootstrap.log" \
    || { tail -n 30 "$tmp/debootstrap.log" >&2; die "debootstrap failed (last lines above)"; }
  log "debootstrap done in $((SECONDS - t0))s"

  # Make it look like a container image: the backend choice, no apt caches, no docs, no host files.
  chroot "$rootfs" update-alternatives --set iptables "/usr/sbin/iptables-$IPTABLES_BACKEND" >/dev/null
  chroot "$rootfs" update-alternatives --set ip6tables "/usr/sbin/ip6tables-$IPTABLES_BACKEND" >/dev/null
  chroot "$rootfs" apt-get clean
  rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/*.bin "$rootfs"/var/log/*.log \
         "$rootfs"/var/log/apt/* "$rootfs"/usr/share/doc/* "$rootfs"/usr/share/man/* "$rootfs"/usr/share/info/* \
         "$rootfs"/tmp/* "$rootfs"/var/tmp/*
  # The build host's resolv.conf/hostname leak in through debootstrap; Docker provides its own.
  : >"$rootfs/etc/resolv.conf"
  : >"$rootfs/etc/hostname"
  {
    printf 'deb %s %s main\ndeb %s %s-updates main\n' "$MIRROR" "$SUITE" "$MIRROR" "$SUITE"
    if [[ -n "$SECURITY_MIRROR" ]]; then printf 'deb %s %s-security main\n' "$SECURITY_MIRROR" "$SUITE"; fi
  } >"$rootfs/etc/apt/sources.list"
  mounted="$(awk -v p="$rootfs/" 'index($2, p) == 1 { print $2 }' /proc/mounts)"
  [[ -z "$mounted" ]] || die "filesystems still mounted in the rootfs: $mounted"

  log "rootfs is $(du -sh --one-file-system "$rootfs" | cut -f1); importing as $BASE_TAG"
  change_args=()
  for l in "${labels[@]}" "io.syftchaos.base.method=debootstrap"; do change_args+=(--change "LABEL ${l%%=*}=\"${l#*=}\""); done
  change_args+=(--change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' --change 'CMD ["/bin/bash"]')
  t0=$SECONDS
  tar --numeric-owner --xattrs -C "$rootfs" -c . \
    | docker import "${change_args[@]}" --message "syftchaos base: debootstrap $SUITE minbase + ${PACKAGES[*]}" - "$BASE_TAG" >/dev/null \
    || die "docker import failed"
  log "docker import done in $((SECONDS - t0))s"
fi

# Smoke test: the tools the faults rely on are there, the libfaketime library exists, and the chosen
# iptables backend really drops packets inside a NET_ADMIN container on this kernel.
log "smoke test: tools present, iptables ($IPTABLES_BACKEND) DROP works with NET_ADMIN"
libfaketime="$(docker run --rm --network none --cap-add NET_ADMIN --label io.syftchaos.managed=true --label "io.syftchaos.pid=$$" "$BASE_TAG" \
  sh -c 'set -e; for t in ip tc iptables setpriv tini ps pkill ping nc; do command -v $t >/dev/null || { echo "missing $t" >&2; exit 1; }; done
         ping -c1 -W1 127.0.0.2 >/dev/null || { echo "ping on loopback fails before any rule" >&2; exit 1; }
         iptables -A OUTPUT -d 127.0.0.2 -j DROP || { echo "iptables cannot add a rule" >&2; exit 1; }
         if ping -c1 -W1 127.0.0.2 >/dev/null; then echo "iptables DROP rule has no effect" >&2; exit 1; fi
         ls /usr/lib/*/faketime/libfaketime.so.1' 2>&1)" \
  || die "smoke test of the new base image failed: $libfaketime (try SYFTCHAOS_IPTABLES_BACKEND=legacy or nft, then --force)"
# The replaced image is now untagged; remove it unless something still uses it.
new_id="$(docker image inspect --format '{{.Id}}' "$BASE_TAG")"
if [[ -n "$old_id" && "$old_id" != "$new_id" ]]; then
  if docker image rm "$old_id" >/dev/null 2>&1; then log "removed the replaced image ${old_id:7:12}"; fi
fi
log "built $BASE_TAG by $method in $((SECONDS - start))s: $(docker image inspect --format '{{.Size}}' "$BASE_TAG" | awk '{printf "%.0f MB", $1/1e6}'), iptables $IPTABLES_BACKEND, libfaketime at $libfaketime"
