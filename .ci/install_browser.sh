#!/usr/bin/env bash
# Chromium from the distribution's packages, for the HTML report's browser test
# (tests/browser/). playwright drives this binary; it never downloads a browser.
set -euo pipefail
CHROMIUM=${SHARESCAN_CHROMIUM:-/usr/bin/chromium}
if [ -x "$CHROMIUM" ]; then
  exit 0
fi
if [ "$(id -u)" = 0 ]; then
  SUDO=
elif command -v sudo >/dev/null; then
  SUDO=sudo
else
  echo "install_browser: $CHROMIUM is missing and this user cannot run apt-get; install the chromium package" >&2
  exit 1
fi
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium
[ -x "$CHROMIUM" ] || { echo "install_browser: chromium installed but $CHROMIUM is not there; set SHARESCAN_CHROMIUM" >&2; exit 1; }
