#!/usr/bin/env bash
# Builds the local base image `moss/node-base:latest` that every agent image starts FROM.
#
# No registry is reachable, so the image is a `docker import` of a tiny rootfs:
#   /usr/bin/node        the host's node binary (`command -v node`)
#   <its shared libs>    everything `ldd` lists, dynamic loader included (copied with --parents -L)
#   /usr/bin/esbuild     the static esbuild binary from node_modules (agent Dockerfiles bundle
#                        TypeScript with it in an exec-form RUN: the image has no shell)
#   /tmp (1777), /data, /etc/passwd + /etc/group (root and nobody)
# and `ENV PATH=/usr/bin`.
#
# Idempotent: the image is also tagged moss/node-base:<node-version>-<esbuild-version>; when that
# tag already exists nothing is rebuilt (only :latest is re-pointed at it).
#
# Run from anywhere after `npm ci` (the script finds the repo root itself).
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
IMAGE_REPO="moss/node-base"

say() { echo "[build-base-image] $*"; }
die() {
  echo "[build-base-image] ERROR: $1" >&2
  [ $# -gt 1 ] && echo "[build-base-image]   what to do: $2" >&2
  exit 1
}

command -v docker >/dev/null 2>&1 \
  || die "the docker CLI is not installed (not on PATH)." \
         "install Docker (e.g. 'apt-get install docker.io') and start dockerd, then re-run."
if ! docker_err="$(docker version --format '{{.Server.Version}}' 2>&1 >/dev/null)"; then
  die "cannot reach the Docker engine: ${docker_err}" \
      "start it (e.g. 'dockerd >/var/log/dockerd.log 2>&1 &' or 'systemctl start docker'), check DOCKER_HOST / permissions on /var/run/docker.sock, then re-run."
fi

NODE_BIN="$(command -v node 2>/dev/null || true)"
[ -n "$NODE_BIN" ] || die "node is not on PATH." "install Node 20 and re-run."
NODE_BIN="$(readlink -f "$NODE_BIN")"
ESBUILD_BIN="$REPO_ROOT/node_modules/@esbuild/linux-x64/bin/esbuild"
[ -x "$ESBUILD_BIN" ] \
  || die "esbuild binary not found at $ESBUILD_BIN." "run 'npm ci' at the repo root first."

NODE_VERSION="$("$NODE_BIN" -p 'process.versions.node')"
ESBUILD_VERSION="$("$ESBUILD_BIN" --version)"
CONTENT_TAG="$IMAGE_REPO:${NODE_VERSION}-${ESBUILD_VERSION}"

if docker image inspect "$CONTENT_TAG" >/dev/null 2>&1; then
  docker tag "$CONTENT_TAG" "$IMAGE_REPO:latest"
  say "$CONTENT_TAG already exists; $IMAGE_REPO:latest points at it. Nothing to do."
  exit 0
fi

say "building $CONTENT_TAG (node $NODE_VERSION from $NODE_BIN, esbuild $ESBUILD_VERSION)"
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
ROOTFS="$WORK/rootfs"
mkdir -p "$ROOTFS/usr/bin" "$ROOTFS/etc" "$ROOTFS/data" "$ROOTFS/tmp"
chmod 1777 "$ROOTFS/tmp"
chmod 0755 "$ROOTFS/data"

cp -L "$NODE_BIN" "$ROOTFS/usr/bin/node"
cp -L "$ESBUILD_BIN" "$ROOTFS/usr/bin/esbuild"
chmod 0755 "$ROOTFS/usr/bin/node" "$ROOTFS/usr/bin/esbuild"

# `ldd` prints "libx.so => /path (0x..)" for libraries and "/path (0x..)" for the loader;
# linux-vdso has no file.
mapfile -t LIBS < <(ldd "$NODE_BIN" | awk '$2 == "=>" && $3 ~ /^\// { print $3; next } $1 ~ /^\// { print $1 }')
[ "${#LIBS[@]}" -gt 0 ] || die "ldd listed no libraries for $NODE_BIN (is it a static binary? unexpected)." \
  "check 'ldd $NODE_BIN' by hand."
for lib in "${LIBS[@]}"; do
  cp --parents -L "$lib" "$ROOTFS"
done
say "copied node, esbuild and ${#LIBS[@]} shared libraries"

cat >"$ROOTFS/etc/passwd" <<'EOF'
root:x:0:0:root:/root:/usr/bin/nologin
nobody:x:65534:65534:nobody:/nonexistent:/usr/bin/nologin
EOF
cat >"$ROOTFS/etc/group" <<'EOF'
root:x:0:
nobody:x:65534:
EOF

# Deterministic archive: fixed owner and mtime, sorted names.
tar --sort=name --numeric-owner --owner=0 --group=0 --mtime='2020-01-01 00:00:00Z' \
  -C "$ROOTFS" -cf "$WORK/rootfs.tar" .

docker import \
  -c 'ENV PATH=/usr/bin' \
  -c "LABEL moss.base.node=$NODE_VERSION moss.base.esbuild=$ESBUILD_VERSION" \
  -m "moss node base: node $NODE_VERSION, esbuild $ESBUILD_VERSION" \
  "$WORK/rootfs.tar" "$CONTENT_TAG" >/dev/null \
  || die "docker import of the rootfs failed (see the message above)." "fix the engine problem and re-run."
docker tag "$CONTENT_TAG" "$IMAGE_REPO:latest"

# Smoke test: the image must run node and esbuild.
if ! out="$(docker run --rm --network none "$CONTENT_TAG" /usr/bin/node -e 'process.stdout.write(process.version)' 2>&1)"; then
  docker rmi "$CONTENT_TAG" "$IMAGE_REPO:latest" >/dev/null 2>&1 || true
  die "the new image cannot run node: $out" "check that every library ldd lists was copied."
fi
say "built $CONTENT_TAG and tagged $IMAGE_REPO:latest ($(du -h "$WORK/rootfs.tar" | cut -f1) rootfs, node $out)"
