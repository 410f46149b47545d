#!/usr/bin/env bash
# Builds the local base image `moss/python-base:latest` that Python agents start FROM, the way moss/node-base is built
# for Node agents: no registry is reachable, so it is a `docker import` of a rootfs taken from this host:
#   /usr/bin/python3 (the distribution's, not a pyenv or venv one), its standard library (tests, IDLE, tkinter and
#   ensurepip left out) with the extension modules of lib-dynload, every shared library they need (`ldd`), the CA
#   bundle; /tmp (1777), /data, /etc/passwd and /etc/group (root, nobody). No shell: Dockerfiles use exec-form RUN/CMD.
#
# Idempotent: tagged moss/python-base:<python version>; when that tag exists nothing is rebuilt.
set -euo pipefail

IMAGE_REPO="moss/python-base"
PYTHON=/usr/bin/python3

say() { echo "[build-python-base-image] $*"; }
die() {
  echo "[build-python-base-image] ERROR: $1" >&2
  [ $# -gt 1 ] && echo "[build-python-base-image]   what to do: $2" >&2
  exit 1
}

[ -x "$PYTHON" ] || die "$PYTHON is not installed." "apt-get install python3 (the distribution's, 3.9 or newer), then re-run."
docker version >/dev/null 2>&1 || die "cannot reach the Docker engine." "start dockerd (npm run setup does), then re-run."
REAL="$(readlink -f "$PYTHON")"
VERSION="$("$REAL" -c 'import sys; print("%d.%d.%d" % sys.version_info[:3])')"
STDLIB="$("$REAL" -c 'import sysconfig; print(sysconfig.get_paths()["stdlib"])')"
DYNLOAD="$("$REAL" -c 'import sysconfig; print(sysconfig.get_config_var("DESTSHARED") or "")')"
CONTENT_TAG="$IMAGE_REPO:$VERSION"
# shellcheck source=deploy/rootfs.sh
. "$(dirname "${BASH_SOURCE[0]}")/rootfs.sh"
already_built "$CONTENT_TAG" "$IMAGE_REPO:latest" && exit 0

say "building $CONTENT_TAG (python $VERSION from $REAL, standard library $STDLIB)"
rootfs_init
{
  echo "$REAL"
  find "$STDLIB" \( -name test -o -name tests -o -name idlelib -o -name tkinter -o -name turtledemo -o -name ensurepip -o -name __pycache__ -o -name 'site-packages' -o -name 'dist-packages' \) -prune -o \( -type f -o -type l \) -print
  if [ -n "$DYNLOAD" ] && [ -d "$DYNLOAD" ]; then find "$DYNLOAD" \( -type f -o -type l \) -name '*.so'; fi
} | rootfs_add
ln -sf "$(basename "$REAL")" "$ROOTFS/usr/bin/python3"
rm -f "$ROOTFS$STDLIB/EXTERNALLY-MANAGED"
rootfs_import "$CONTENT_TAG" /usr/sbin/nologin "moss python base: python $VERSION" \
  'ENV PATH=/usr/bin PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1' "LABEL moss.base.python=$VERSION"
docker tag "$CONTENT_TAG" "$IMAGE_REPO:latest"

if ! out="$(docker run --rm --network none --user 65534:65534 "$CONTENT_TAG" /usr/bin/python3 -c 'import json, ssl, sqlite3, http.server, urllib.request, tarfile, zlib, hashlib, uuid, threading; print(__import__("sys").version.split()[0])' 2>&1)"; then
  docker rmi "$CONTENT_TAG" "$IMAGE_REPO:latest" >/dev/null 2>&1 || true
  die "the new image cannot run python with its standard library: $out" "check that every library ldd lists was copied."
fi
say "built $CONTENT_TAG and tagged $IMAGE_REPO:latest ($(du -h "$WORK/rootfs.tar" | cut -f1) rootfs, python $out)"
