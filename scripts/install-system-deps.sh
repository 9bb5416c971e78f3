#!/usr/bin/env bash
# System packages the tests need beyond Python: Debian's Chromium, driven by Playwright in the
# gallery test. Playwright's own browser download cannot work offline, so the test launches this
# executable instead. Idempotent; needs root (CI runs as root) or sudo.
set -euo pipefail
CHROMIUM=/usr/bin/chromium
if [ -x "$CHROMIUM" ]; then
    exit 0
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    SUDO="sudo"
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends chromium fonts-dejavu-core >/dev/null
"$CHROMIUM" --version 2>/dev/null || true
