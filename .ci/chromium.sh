#!/usr/bin/env bash
# Make sure /usr/bin/chromium exists: the back-office browser tests drive it headless through
# Playwright (whose wheel ships its driver; no browser is downloaded). Installs Debian's
# `chromium` package when it is missing; exits non-zero if that cannot be done.
set -uo pipefail

CHROMIUM=/usr/bin/chromium
[ -x "$CHROMIUM" ] && { echo "chromium: $("$CHROMIUM" --version 2>/dev/null | head -n 1)"; exit 0; }

if ! command -v apt-get >/dev/null; then
  echo "chromium: $CHROMIUM is missing and apt-get is not available" >&2
  exit 1
fi
if [ "$(id -u)" = "0" ]; then
  run=()
elif command -v sudo >/dev/null; then
  run=(sudo -n)
else
  echo "chromium: $CHROMIUM is missing; installing it needs root (apt-get install chromium)" >&2
  exit 1
fi
echo "chromium: installing Debian's chromium"
"${run[@]}" apt-get update -qq >/dev/null &&
  "${run[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
if [ ! -x "$CHROMIUM" ]; then
  echo "chromium: could not install $CHROMIUM" >&2
  exit 1
fi
echo "chromium: $("$CHROMIUM" --version 2>/dev/null | head -n 1)"
