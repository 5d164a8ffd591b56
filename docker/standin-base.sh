#!/usr/bin/env bash
# Make sure the Dockerfile's base image is present locally, building a stand-in from Debian
# packages when the registry's cannot be pulled (an offline or mirrored network).
#
# The production base is python:3.11-slim-trixie (the Dockerfile's BASE_IMAGE). Where Docker Hub
# is out of reach, this builds a root file system with debootstrap from Debian's own archive:
# bookworm, whose python3.11 is the same minor version the venv is pinned for (trixie ships 3.13),
# laid out as the official image is where the build relies on it: python, python3 and pip... on
# PATH (/usr/local/bin), python3.11 -m venv working, apt-get usable, C.UTF-8. It is imported and
# tagged locally; the Dockerfile is the same in both cases, given --build-arg BASE_IMAGE=<tag>.
#
# Prints the image to build from on stdout (everything else goes to stderr).
set -euo pipefail

usage() {
  cat <<'USAGE'
Usage: docker/standin-base.sh [--official IMAGE] [--tag TAG] [--suite SUITE] [--mirror URL]
                              [--rebuild] [--no-pull]

Print the base image to build Spool Interview from: IMAGE when it is present or can be pulled,
otherwise a stand-in built from Debian packages and tagged TAG.

  --official IMAGE  the production base            (default: python:3.11-slim-trixie)
  --tag TAG         the stand-in's tag             (default: spool-interview/python-standin:3.11-<suite>)
  --suite SUITE     Debian release to bootstrap    (default: bookworm: its python3.11)
  --mirror URL      Debian archive                 (default: the first deb URI apt uses here,
                                                    else http://deb.debian.org/debian)
  --rebuild         build the stand-in again even if it is tagged
  --no-pull         do not try the registry: always use the stand-in
USAGE
}

die() {
  echo "standin-base: $*" >&2
  exit 1
}

official="python:3.11-slim-trixie"
suite="bookworm"
tag=""
mirror=""
rebuild=false
pull=true
while [ $# -gt 0 ]; do
  case "$1" in
    --official) [ $# -ge 2 ] || die "$1 needs a value"; official="$2"; shift 2 ;;
    --tag) [ $# -ge 2 ] || die "$1 needs a value"; tag="$2"; shift 2 ;;
    --suite) [ $# -ge 2 ] || die "$1 needs a value"; suite="$2"; shift 2 ;;
    --mirror) [ $# -ge 2 ] || die "$1 needs a value"; mirror="$2"; shift 2 ;;
    --rebuild) rebuild=true; shift ;;
    --no-pull) pull=false; shift ;;
    -h | --help) usage; exit 0 ;;
    *) usage >&2; die "unknown argument: $1" ;;
  esac
done
tag="${tag:-spool-interview/python-standin:3.11-${suite}}"
command -v docker >/dev/null 2>&1 || die "docker is required"

if [ "$pull" = true ]; then
  if docker image inspect "$official" >/dev/null 2>&1 || docker pull "$official" >&2; then
    echo "$official"
    exit 0
  fi
  echo ">> $official cannot be pulled: using a stand-in built from Debian packages" >&2
fi

# The stand-in is rebuilt when this script changes (its hash is a label of the image).
recipe="$(sha256sum "${BASH_SOURCE[0]}" | cut -c1-16)"
if [ "$rebuild" = false ] \
  && [ "$(docker image inspect -f '{{ index .Config.Labels "spool.standin.recipe" }}' "$tag" 2>/dev/null)" = "$recipe" ]; then
  echo ">> $tag is up to date" >&2
  echo "$tag"
  exit 0
fi

[ "$(id -u)" -eq 0 ] || die "building the stand-in needs root (debootstrap and chroot)"
command -v debootstrap >/dev/null 2>&1 || die "debootstrap is required (apt-get install debootstrap)"
if [ -z "$mirror" ]; then
  # The Debian archive apt uses here (a mirror or a proxy of it), not a third party's repository.
  # shellcheck disable=SC2016 # apt's own format string, not the shell's
  mirror="$(apt-get indextargets --format '$(REPO_URI)' 'Created-By: Packages' 2>/dev/null \
    | sed 's#/*$##' | grep -E '/debian$' | head -n1 || true)"
  mirror="${mirror:-http://deb.debian.org/debian}"
fi

work="$(mktemp -d)"
root="$work/root"
cleanup() {
  umount "$root/proc" 2>/dev/null || true
  rm -rf --one-file-system "$work"  # never into a /proc still mounted
}
trap cleanup EXIT

echo ">> debootstrap $suite from $mirror" >&2
debootstrap --variant=minbase "$suite" "$root" "$mirror" >&2
# Python from inside the chroot with apt: debootstrap's --include cannot resolve its dependencies.
mount -t proc proc "$root/proc"
# The release with its updates and security fixes, from the same archive's -security twin.
cat >"$root/etc/apt/sources.list" <<SOURCES
deb $mirror $suite main
deb $mirror $suite-updates main
deb $mirror-security $suite-security main
SOURCES
# A clean environment for the chroot, but for a proxy the host's apt may need.
chroot "$root" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin DEBIAN_FRONTEND=noninteractive \
  http_proxy="${http_proxy:-}" https_proxy="${https_proxy:-}" no_proxy="${no_proxy:-}" \
  sh -c 'apt-get update -q && apt-get upgrade -y -q \
    && apt-get install -y -q --no-install-recommends \
      python3.11 python3.11-venv python3-pip ca-certificates \
    && apt-get clean && rm -rf /var/lib/apt/lists/*' >&2
umount "$root/proc"
# The official image's layout: python, python3 and pip in /usr/local/bin, first on PATH.
ln -sf /usr/bin/python3.11 "$root/usr/local/bin/python3"
ln -sf python3 "$root/usr/local/bin/python"
ln -sf /usr/bin/pip3 "$root/usr/local/bin/pip3"
ln -sf pip3 "$root/usr/local/bin/pip"
rm -rf "$root"/var/cache/apt/*.bin "$root"/var/log/* "$root"/tmp/* "$root"/root/.cache
# Not this machine's: Docker writes a container's own at run time.
: >"$root/etc/resolv.conf"
echo localhost >"$root/etc/hostname"

version="$(chroot "$root" python --version 2>&1)"
echo ">> importing $tag ($version)" >&2
tar -C "$root" --numeric-owner -c . | docker import \
  --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
  --change 'ENV LANG=C.UTF-8' \
  --change "LABEL spool.standin.recipe=$recipe spool.standin.suite=$suite" \
  --change 'CMD ["python3"]' \
  - "$tag" >&2
echo "$tag"
