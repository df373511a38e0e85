#!/usr/bin/env bash
# Set up everything asrprune needs on Debian/Ubuntu with Python 3.11: the Debian packages
# of the embedded corpus (as root, or with sudo), and a virtual environment in .venv with
# the package and its Python dependencies. Safe to rerun: finished steps are skipped.
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES=(
  espeak-ng flite festival festvox-kallpc16k festvox-kdlpc16k festvox-us-slt-hts
  sox libsox-fmt-all sword-text-web diatheke bible-kjv libsndfile1
  # text domains beyond the Bibles (asrprune/data/domains.py)
  sword-comm-mhcc sword-comm-tdavid sword-comm-scofield dict-jargon dict-foldoc dict-devil
  dict-gcide
  # real speech clips of test-real (asrprune/data/real_speech.py)
  pocketsphinx-testdata alsa-utils
)
PYTHON=${PYTHON:-python3.11}

missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ! "$PYTHON" -c "import ensurepip, venv" 2>/dev/null; then
  missing+=(python3-venv "${PYTHON##*/}-venv")
fi
if [ ${#missing[@]} -gt 0 ]; then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  echo "setup: installing Debian packages: ${missing[*]}"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if ! command -v "$PYTHON" >/dev/null; then
  echo "setup: $PYTHON not found; asrprune needs Python 3.11 (set PYTHON=... to another 3.11)" >&2
  exit 1
fi
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv

# Reinstall only when the dependencies changed since the last successful install.
stamp=.venv/.asrprune-installed
want=$(sha256sum pyproject.toml | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "setup: installing Python packages into .venv (about 6 GB, torch is a CUDA build)"
  .venv/bin/python -m pip install -q --upgrade pip
  .venv/bin/python -m pip install -q -e ".[dev]"
  echo "$want" > "$stamp"
fi
echo "setup: ready ($(.venv/bin/python -c 'import torch, torchaudio; print("torch", torch.__version__, "torchaudio", torchaudio.__version__)'))"
