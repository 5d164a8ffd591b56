#!/usr/bin/env bash
# Install the Debian packages the tests drive for real (coturn, PostgreSQL, espeak-ng + sox,
# which make the spoken answers of the voice tests, Chromium for the browser tests, strace for
# the image test, HAProxy for the tests of several instances), only when missing.
set -euo pipefail

missing=()
command -v turnserver >/dev/null 2>&1 && command -v turnutils_uclient >/dev/null 2>&1 \
  || missing+=(coturn)
compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null || missing+=(postgresql)
command -v curl >/dev/null 2>&1 || missing+=(curl)
command -v openssl >/dev/null 2>&1 || missing+=(openssl)
command -v espeak-ng >/dev/null 2>&1 || missing+=(espeak-ng)
command -v sox >/dev/null 2>&1 || missing+=(sox)
# The image test records the service's outbound connections with strace (none may leave loopback).
command -v strace >/dev/null 2>&1 || missing+=(strace)
# The browser tests drive Debian's Chromium through Playwright (no browser download).
[ -x /usr/bin/chromium ] || missing+=(chromium)
# The multi-instance tests and bench put a round-robin HAProxy in front of the servers.
command -v haproxy >/dev/null 2>&1 || missing+=(haproxy)
# The image tests (tests/e2e/test_image.py, tests/turn) build and run the Dockerfile and a coturn
# image: Debian's Docker engine, debootstrap for the stand-in base when Docker Hub is out of
# reach, a registry standing in for ECR, and htpasswd (bcrypt) for its login.
command -v dockerd >/dev/null 2>&1 || missing+=(docker.io)
command -v docker-registry >/dev/null 2>&1 || missing+=(docker-registry)
command -v debootstrap >/dev/null 2>&1 || missing+=(debootstrap)
command -v htpasswd >/dev/null 2>&1 || missing+=(apache2-utils)

if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
  echo "Missing Debian packages: ${missing[*]}. Install them with:" >&2
  echo "  sudo apt-get install -y ${missing[*]}" >&2
  exit 1
fi
echo ">> installing Debian packages: ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -q
apt-get install -y -q --no-install-recommends "${missing[@]}"
# The coturn, haproxy and docker-registry packages may start system-wide daemons; tests start
# their own on free ports (and dockerd when it is not running).
if command -v systemctl >/dev/null 2>&1; then
  systemctl disable --now coturn haproxy docker-registry >/dev/null 2>&1 || true
fi
