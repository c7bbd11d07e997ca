#!/usr/bin/env bash
# Debian packages the project uses: espeak-ng (the generated keyword set), sox,
# sonic-pi-samples and alsa-utils (real background noise), chromium (browser tests),
# flite, fortunes and fortunes-min (the held-out negative corpus: a second voice engine and its text),
# festival with festvox-kallpc16k, festvox-kdlpc16k, festvox-us-slt-hts (more engines and voices for keywords),
# fortunes-de, -es, -it, -ru, -cs, -bg, -eo, -ga, -br (foreign sentences for training: data/foreign_speech.py),
# xmoto-data and frozen-bubble-data (recorded music for training: data/training_speech.py's TRAINING_MUSIC),
# tuxpaint-stamps-default (recorded speech for training, the default recipe's: data/recorded_speech.py; 161 MB).
# Exits non-zero when they are not all there afterwards: `make test` and `make train` depend on this target,
# and the tests fail (never skip) without these tools, so a machine that cannot install them stops here, saying why.
set -euo pipefail
PKGS=(espeak-ng sox alsa-utils sonic-pi-samples chromium chromium-driver flite fortunes fortunes-min
      festival festvox-kallpc16k festvox-kdlpc16k festvox-us-slt-hts
      fortunes-de fortunes-es fortunes-it fortunes-ru fortunes-cs fortunes-bg fortunes-eo fortunes-ga fortunes-br
      xmoto-data frozen-bubble-data tuxpaint-stamps-default)
TOOLS=(espeak-ng sox flite festival chromium)  # the programs the project runs

check_tools() {
  local absent=()
  for t in "${TOOLS[@]}"; do
    command -v "$t" >/dev/null 2>&1 || absent+=("$t")
  done
  if [ ${#absent[@]} -gt 0 ]; then
    echo "system-deps: not on PATH: ${absent[*]}" >&2
    return 1
  fi
}

if ! command -v dpkg >/dev/null 2>&1 || ! command -v apt-get >/dev/null 2>&1; then
  # not Debian: the programs may come from another package manager; their data packages cannot be checked
  check_tools && exit 0
  echo "system-deps: apt-get not found; install these yourself: ${PKGS[*]}" >&2
  exit 1
fi
missing=()
for p in "${PKGS[@]}"; do
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  SUDO=""
  if [ "$(id -u)" -ne 0 ]; then
    if ! command -v sudo >/dev/null 2>&1; then
      echo "system-deps: not root and no sudo; as root run: apt-get install ${missing[*]}" >&2
      exit 1
    fi
    SUDO="sudo"
  fi
  echo "system-deps: installing ${missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
check_tools
