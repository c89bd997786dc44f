#!/bin/sh
# Entrypoint of the syncpeer image (see docs/PEER-CONTRACT.md and docs/IMAGE.md).
#
# Runs as root under tini. Prepares /data (the peer's bind-mounted folder), then drops to the
# unprivileged user syncpeer (uid 1000) and exec's the command, so the daemon is tini's direct child and
# receives SIGTERM itself.
#
#   (no arguments)                     syncpeer run --config /data/config.yaml
#   run --config X / -h / keygen ...   arguments for syncpeer (the first is not a program in PATH)
#   any program in PATH, e.g. sh -c    that program, also as uid 1000 (to debug as root:
#                                      `docker exec -u root` or `--entrypoint sh`)
set -eu

DATA=/data
SYNCPEER_UID=1000
SYNCPEER_GID=1000

log() { printf 'entrypoint: %s\n' "$*" >&2; }

if [ $# -eq 0 ]; then
  set -- syncpeer run --config "$DATA/config.yaml"
fi
case "$1" in
  -*) set -- syncpeer "$@" ;;
  *) command -v "$1" >/dev/null 2>&1 || set -- syncpeer "$@" ;;
esac

if [ "$(id -u)" != 0 ]; then
  # Started with --user: nothing to prepare or drop; run as is.
  log "not root (uid $(id -u)): running '$*' without preparing $DATA"
  exec "$@"
fi

mkdir -p "$DATA/sync" "$DATA/state"
# The clock-skew file libfaketime reads (FAKETIME_TIMESTAMP_FILE). Missing or empty means no offset;
# write +0 so that the file exists and can be rewritten in place or replaced by rename.
if [ ! -s "$DATA/faketime" ]; then
  printf '+0\n' >"$DATA/faketime"
fi
# Everything under /data belongs to the daemon (uid 1000), the clock file too (world-readable, so a
# host-side orchestrator running as root or as uid 1000 can rewrite it in place or by rename). Only
# what is not owned yet is changed, so a restart with a large sync folder stays cheap.
# Mounts below /data (e.g. a size-limited sync folder for disk faults) are included; a read-only one
# only gets a warning.
find "$DATA" \( ! -user "$SYNCPEER_UID" -o ! -group "$SYNCPEER_GID" \) \
  -exec chown -h "$SYNCPEER_UID:$SYNCPEER_GID" {} + \
  || log "warning: could not hand everything under $DATA to uid $SYNCPEER_UID"
chmod a+r "$DATA/faketime"
if [ -f "$DATA/identity.key" ]; then
  chmod 0600 "$DATA/identity.key"
fi
if [ "$1" = syncpeer ] && [ "${2:-}" = run ] && [ ! -f "$DATA/config.yaml" ]; then
  log "warning: no $DATA/config.yaml (the orchestrator or compose/gen-config.sh writes it)"
fi

# Drop to syncpeer: real+effective uid/gid 1000, its groups, and when the container allows it
# (CAP_SETPCAP, in Docker's default set) an empty capability bounding set, so nothing the daemon runs
# can regain NET_ADMIN and undo its own faults. no_new_privs: no setuid/file-capability escalation.
bounding=
if setpriv --bounding-set=-all true 2>/dev/null; then
  bounding=--bounding-set=-all
fi
export HOME="$DATA" USER=syncpeer LOGNAME=syncpeer
log "$DATA ready (faketime '$(cat "$DATA/faketime")'); exec as syncpeer (uid $SYNCPEER_UID): $*"
# shellcheck disable=SC2086 # $bounding is one word or empty
exec setpriv --reuid="$SYNCPEER_UID" --regid="$SYNCPEER_GID" --init-groups --inh-caps=-all $bounding --no-new-privs -- "$@"
