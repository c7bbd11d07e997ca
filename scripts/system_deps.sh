#!/usr/bin/env bash
# Debian packages the project uses: espeak-ng (the generated keyword set), sox,
# sonic-pi-samples and alsa-utils (real background noise), chromium (browser tests),
# flite, fortunes and fortunes-min (the held-out negative corpus: a second voice engine and its text),
# festival with festvox-kallpc16k, festvox-kdlpc16k, festvox-us-slt-hts (more engines and voices for keywords).
set -euo pipefail
PKGS=(espeak-ng sox alsa-utils sonic-pi-samples chromium chromium-driver flite fortunes fortunes-min
      festival festvox-kallpc16k festvox-kdlpc16k festvox-us-slt-hts)
missing=()
for p in "${PKGS[@]}"; do
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
if ! command -v apt-get >/dev/null 2>&1; then
  echo "system-deps: apt-get not found; install these yourself: ${missing[*]}" >&2
  exit 0
fi
SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO="sudo"
echo "system-deps: installing ${missing[*]}"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
