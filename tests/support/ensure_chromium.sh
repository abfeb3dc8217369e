#!/usr/bin/env bash
# Make sure Debian's Chromium is at /usr/bin/chromium for the browser test
# (tests/e2e/test_browser.py). Playwright drives that browser by its path and
# never downloads one. Installs the `chromium` package with apt-get when it is
# missing (as root, or through passwordless sudo); fails with a message saying
# what to do otherwise, never silently.
set -euo pipefail

chromium=/usr/bin/chromium
if [ -x "$chromium" ]; then
  exit 0
fi

fail() {
  echo "ensure_chromium: $chromium is missing and $1." \
       "Install Debian's chromium package (apt-get install chromium), or another Chromium at $chromium." >&2
  exit 1
}

command -v apt-get >/dev/null || fail "apt-get is not available"
if [ "$(id -u)" -eq 0 ]; then
  as_root=()
elif command -v sudo >/dev/null && sudo -n true 2>/dev/null; then
  as_root=(sudo -n)
else
  fail "installing it needs root (or passwordless sudo)"
fi

echo "ensure_chromium: installing Debian's chromium (for the browser test)" >&2
export DEBIAN_FRONTEND=noninteractive
# Without recommends: headless Chromium needs none of the desktop services they pull in;
# fonts-liberation (one of them) is named so that pages render with metric-compatible fonts.
packages=(chromium fonts-liberation)
if ! "${as_root[@]}" apt-get install -y --no-install-recommends "${packages[@]}" >&2; then
  "${as_root[@]}" apt-get update >&2
  "${as_root[@]}" apt-get install -y --no-install-recommends "${packages[@]}" >&2 || fail "apt-get could not install it"
fi
[ -x "$chromium" ] || fail "the chromium package did not provide it"
