#!/usr/bin/env bash
# Make sure a Chromium is available for the browser tests (tests/browser).
# Uses $CHROMIUM or `chromium` on PATH; otherwise installs Debian's chromium package
# (as root, or through sudo when it needs no password). Playwright's own browser
# downloads are never used: they come from outside the package registries.
set -euo pipefail

if [ -n "${CHROMIUM:-}" ]; then
    [ -x "$CHROMIUM" ] || { echo "error: CHROMIUM=$CHROMIUM is not an executable" >&2; exit 1; }
    exit 0
fi
if command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1; then
    exit 0
fi

if ! command -v apt-get >/dev/null 2>&1; then
    echo "error: the browser tests need Chromium; install it (e.g. brew install --cask chromium)" \
         "and set CHROMIUM=/path/to/chromium" >&2
    exit 1
fi
if [ "$(id -u)" = 0 ]; then
    as_root=()
elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    as_root=(sudo -n)
else
    echo "error: the browser tests need Chromium: run 'sudo apt-get install -y chromium'" >&2
    exit 1
fi
echo "== installing Debian's chromium for the browser tests"
export DEBIAN_FRONTEND=noninteractive
"${as_root[@]}" apt-get update -qq
"${as_root[@]}" apt-get install -y -qq chromium >/dev/null
command -v chromium >/dev/null
