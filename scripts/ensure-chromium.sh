#!/bin/sh
# Makes sure a headless-capable Chromium is installed, for the report rendering test
# (orchestrator/tests/it/report_render.rs). Installs Debian's `chromium` package when it is missing;
# does nothing when `chromium` (or $CHROMIUM) already runs. Needs root (or sudo) to install.
set -eu

if [ -n "${CHROMIUM:-}" ] && command -v "$CHROMIUM" >/dev/null 2>&1; then
    exit 0
fi
for c in chromium chromium-browser; do
    if command -v "$c" >/dev/null 2>&1; then
        exit 0
    fi
done

echo "ensure-chromium: chromium is missing; installing Debian's chromium package" >&2
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1; then
        SUDO="sudo"
    else
        echo "ensure-chromium: not root and no sudo: install chromium by hand (apt-get install chromium)" >&2
        exit 1
    fi
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends chromium >/dev/null
command -v chromium >/dev/null 2>&1
echo "ensure-chromium: $(chromium --version 2>/dev/null || echo chromium installed)" >&2
