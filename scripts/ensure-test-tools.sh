#!/bin/sh
# Makes sure what the tests build or run besides cargo is installed (`make test` runs it):
#   chromium     the report rendering test (orchestrator/tests/it/report_render.rs);
#   musl-gcc     the static probe of the vDSO clock tests (orchestrator/tests/it/clock_vdso.rs);
#   go           the Go probe of the same tests.
# Installs the missing ones from Debian's packages (chromium, musl-tools, golang-go) with apt, from
# whatever mirror apt is configured with; does nothing when all are there. Needs root (or sudo).
set -eu

missing=""
have_chromium=""
if [ -n "${CHROMIUM:-}" ] && command -v "$CHROMIUM" >/dev/null 2>&1; then have_chromium=1; fi
for c in chromium chromium-browser; do
    if command -v "$c" >/dev/null 2>&1; then have_chromium=1; fi
done
[ -n "$have_chromium" ] || missing="$missing chromium"
command -v musl-gcc >/dev/null 2>&1 || missing="$missing musl-tools"
command -v go >/dev/null 2>&1 || missing="$missing golang-go"
[ -n "$missing" ] || exit 0

echo "ensure-test-tools: missing:$missing; installing Debian's packages" >&2
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1; then
        SUDO="sudo"
    else
        echo "ensure-test-tools: not root and no sudo: install them by hand (apt-get install$missing)" >&2
        exit 1
    fi
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get -o DPkg::Lock::Timeout=600 update -qq
# shellcheck disable=SC2086 # one word per package
$SUDO apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends $missing >/dev/null
command -v musl-gcc >/dev/null 2>&1 && command -v go >/dev/null 2>&1
echo "ensure-test-tools: installed$missing" >&2
