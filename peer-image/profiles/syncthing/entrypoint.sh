#!/bin/sh
# Entrypoint of the Syncthing peer image (peer-image/profiles/syncthing/).
#
# Runs as root under tini. Prepares /data (the peer's bind-mounted folder): /data/sync (the synced
# folder) and /data/config (syncthing's home: cert.pem, key.pem, config.xml, index-*.db) owned by uid
# 1000; generates the device certificate when /data/config/cert.pem is missing, so that the device ID
# exists before `serve`; then drops to the user syncthing (uid 1000) and exec's the command, so that
# syncthing is tini's direct child and receives SIGTERM itself.
#
#   (no arguments)                 the image's CMD (syncthing serve ... --home=/data/config)
#   serve ... / --version / -...   arguments for syncthing (the first is not a program in PATH)
#   any program in PATH            that program, also as uid 1000 (debug as root: `docker exec -u root`)
set -eu

DATA=/data
HOME_DIR="$DATA/config"
ST_UID=1000
ST_GID=1000

log() { printf 'entrypoint: %s\n' "$*" >&2; }

if [ $# -eq 0 ]; then
  set -- syncthing serve --no-browser --no-restart --no-upgrade "--home=$HOME_DIR" --gui-address=http://0.0.0.0:8384
fi
case "$1" in
  -*) set -- syncthing "$@" ;;
  *) command -v "$1" >/dev/null 2>&1 || set -- syncthing "$@" ;;
esac

if [ "$(id -u)" != 0 ]; then
  log "not root (uid $(id -u)): running '$*' without preparing $DATA"
  exec "$@"
fi

mkdir -p "$DATA/sync" "$HOME_DIR"
# Only what is not owned yet is changed, so a restart with a large sync folder stays cheap.
find "$DATA" \( ! -user "$ST_UID" -o ! -group "$ST_GID" \) \
  -exec chown -h "$ST_UID:$ST_GID" {} + \
  || log "warning: could not hand everything under $DATA to uid $ST_UID"

bounding=
if setpriv --bounding-set=-all true 2>/dev/null; then
  bounding=--bounding-set=-all
fi
export HOME="$DATA" USER=syncthing LOGNAME=syncthing
drop() {
  # shellcheck disable=SC2086 # $bounding is one word or empty
  setpriv --reuid="$ST_UID" --regid="$ST_GID" --init-groups --inh-caps=-all $bounding --no-new-privs -- "$@"
}

if [ "$1" = syncthing ] && [ "${2:-}" = serve ] && [ ! -f "$HOME_DIR/cert.pem" ]; then
  log "no $HOME_DIR/cert.pem: syncthing generate --home=$HOME_DIR --skip-port-probing"
  drop syncthing generate "--home=$HOME_DIR" --skip-port-probing >&2 || { log "syncthing generate failed"; exit 1; }
fi
if [ "$1" = syncthing ] && [ "${2:-}" = serve ] && [ -z "${STGUIAPIKEY:-}" ]; then
  log "warning: STGUIAPIKEY is empty: the REST API key is the random one in $HOME_DIR/config.xml"
fi

log "$DATA ready; exec as syncthing (uid $ST_UID): $*"
# shellcheck disable=SC2086
exec setpriv --reuid="$ST_UID" --regid="$ST_GID" --init-groups --inh-caps=-all $bounding --no-new-privs -- "$@"
