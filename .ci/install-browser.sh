#!/usr/bin/env bash
# What the JupyterLab browser test (tests/test_jupyterlab.py) needs beyond the Python packages of the `dev` extra
# (Playwright among them): Debian's Chromium, which Playwright drives (its own browser download needs the internet).
set -euo pipefail
if command -v chromium >/dev/null || command -v chromium-browser >/dev/null; then exit 0; fi
SUDO=$([ "$(id -u)" = 0 ] && echo "" || echo sudo)
$SUDO apt-get update -q
$SUDO apt-get install -y -q chromium
