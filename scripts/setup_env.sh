#!/usr/bin/env bash
# Create or update the project's virtual environment (.venv) for the pip path.
# Idempotent and fast when nothing changed: a stamp holds the hash of the requirement files.
set -euo pipefail
cd "$(dirname "$0")/.."

VENV="${VENV:-.venv}"
PYTHON="${PYTHON:-python3}"

log() { printf '[setup] %s\n' "$*" >&2; }

# Open3D's CPU wheel links against Debian's libusb-1.0-0.
if ! ldconfig -p 2>/dev/null | grep -q 'libusb-1.0.so.0'; then
  if [ "$(id -u)" = 0 ]; then
    log "installing Debian package libusb-1.0-0 (needed by open3d)"
    apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libusb-1.0-0 >/dev/null
  elif command -v sudo >/dev/null 2>&1; then
    log "installing Debian package libusb-1.0-0 with sudo (needed by open3d)"
    sudo apt-get update -qq >/dev/null && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libusb-1.0-0 >/dev/null
  else
    log "WARNING: libusb-1.0-0 is missing and cannot be installed without root; open3d features will fail"
  fi
fi

if [ ! -x "$VENV/bin/python" ]; then
  log "creating virtual environment in $VENV"
  "$PYTHON" -m venv "$VENV"
fi

want=$(cat requirements.txt requirements-test.txt setup.py setup.cfg package.xml | sha256sum | cut -c1-16)
stamp="$VENV/.stamp-$want"
if [ ! -f "$stamp" ]; then
  log "installing requirements into $VENV (first run takes a minute or two)"
  "$VENV/bin/python" -m pip install -q --upgrade pip
  "$VENV/bin/python" -m pip install -q -r requirements-test.txt
  "$VENV/bin/python" -m pip install -q --no-deps --no-build-isolation -e .
  rm -f "$VENV"/.stamp-*
  touch "$stamp"
else
  log "environment $VENV is up to date"
fi
