#!/usr/bin/env bash
# Make what the compose cluster needs in compose/data/<peer>/: an ed25519 identity key (only when
# missing: a peer keeps its identity across runs) and config.yaml (rewritten every time, full mesh).
#
#   compose/gen-config.sh            # keys when missing, configs always
#   compose/gen-config.sh --reset    # also wipe every peer's sync and state folders and keys
#
# Keys are never committed (compose/data/ is gitignored). Format (docs/PEER-CONTRACT.md): the 32-byte
# secret seed as 64 lowercase hex characters and a newline; the public key is derived from it with
# openssl (the seed wrapped in an ed25519 PKCS#8 header), so no container must run first.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
data="$here/data"
# name and address, matching docker-compose.yml
peers=(p1:172.30.0.11 p2:172.30.0.12 p3:172.30.0.13)

die() { printf 'gen-config: ERROR: %s\n' "$*" >&2; exit 1; }
command -v openssl >/dev/null || die "openssl is needed to derive public keys (apt-get install openssl)"
command -v xxd >/dev/null || die "xxd is needed (apt-get install xxd)"

reset=0
case "${1:-}" in
  --reset) reset=1 ;;
  "") ;;
  *) die "unknown argument '$1' (usage: $0 [--reset])" ;;
esac

if [[ $reset -eq 1 && -d "$data" ]]; then
  echo "gen-config: removing $data"
  # The peers chown their folders to uid 1000; as a non-root docker user, remove through a container.
  rm -rf "$data" 2>/dev/null || docker run --rm --network none --entrypoint rm -v "$here:/c" syftchaos/peer:latest -rf /c/data
fi

# 64 hex chars of seed -> 64 hex chars of ed25519 public key.
pubkey() {
  { printf '302e020100300506032b657004220420'; tr -d '\n' <"$1"; } | xxd -r -p \
    | openssl pkey -inform DER -pubout -outform DER | tail -c 32 | xxd -p -c 64
}

declare -A pub
for entry in "${peers[@]}"; do
  name="${entry%%:*}"
  dir="$data/$name"
  mkdir -p "$dir"
  key="$dir/identity.key"
  if [[ ! -s "$key" ]]; then
    (umask 077; openssl rand -hex 32 >"$key")
    echo "gen-config: new key $key"
  fi
  grep -qxE '[0-9a-f]{64}' "$key" || die "$key is not 64 lowercase hex characters"
  pub[$name]="$(pubkey "$key")"
  [[ ${#pub[$name]} -eq 64 ]] || die "could not derive the public key of $key"
done

for entry in "${peers[@]}"; do
  name="${entry%%:*}"
  cfg="$data/$name/config.yaml"
  {
    printf '# Written by compose/gen-config.sh; rerun it rather than editing.\n'
    printf 'name: %s\nlisten: 0.0.0.0:7000\nhttp: 0.0.0.0:9100\n' "$name"
    printf 'sync_dir: /data/sync\nstate_dir: /data/state\nkey_file: /data/identity.key\n'
    printf 'anti_entropy_interval_ms: 1000\nflavor: default\npeers:\n'
    for other in "${peers[@]}"; do
      oname="${other%%:*}"
      [[ "$oname" == "$name" ]] && continue
      printf '  - name: %s\n    addr: %s:7000\n    public_key: %s\n' "$oname" "${other#*:}" "${pub[$oname]}"
    done
    printf 'trusted:\n'
    for other in "${peers[@]}"; do
      oname="${other%%:*}"
      printf '  - name: %s\n    public_key: %s\n' "$oname" "${pub[$oname]}"
    done
  } >"$cfg.tmp"
  mv "$cfg.tmp" "$cfg"
  echo "gen-config: $cfg ($name ${pub[$name]:0:16}...)"
done
