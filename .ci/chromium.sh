#!/usr/bin/env bash
# Install Debian's Chromium for the console's browser tests (Playwright drives it through
# executable_path; no browser is downloaded). Prints the path to export as CUMULO_TEST_CHROMIUM.
# Idempotent. Needs root on a Debian machine.
set -euo pipefail
if ! command -v chromium >/dev/null; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium fonts-liberation >/dev/null
fi
# Playwright for Python (the `console-test` extra, part of `test`) brings its own driver; check that
# it and the browser start, so a broken install fails here with its own message
chromium --headless --no-sandbox --disable-gpu --dump-dom about:blank >/dev/null 2>&1 \
  || { echo "chromium does not start headless" >&2; exit 1; }
echo "Chromium: $(chromium --version 2>/dev/null | head -n 1)" >&2
command -v chromium
