#!/usr/bin/env bash
# Builds the local image `moss/coding-agent:latest`, the default container the rewriter runs a coding agent in
# (rewriter.sandbox.kind "container"): what a coding CLI expects of a workstation, nothing of Moss.
#
# No registry is reachable, so like moss/node-base it is a `docker import` of a rootfs taken from this host:
#   node (the host's), and the files of the Debian packages bash, dash, coreutils, git, grep, sed, findutils,
#   diffutils, patch, gzip, tar, less, procps and ca-certificates (documentation left out), with every shared
#   library their programs need (`ldd`); /tmp (1777), /etc/passwd and /etc/group (root, nobody).
# The coding tool itself (claude, codex, opencode, aider, or your command) is not in it: build your own image FROM
# it with the tool installed and name it in rewriter.sandbox.image, or mount the tool's installation read-only with
# rewriter.sandbox.mounts.
#
# Idempotent: tagged moss/coding-agent:<hash of node's and the packages' versions>; when that tag exists nothing is
# rebuilt. Run from anywhere (needs dpkg; on other systems build an image with those tools yourself).
set -euo pipefail

IMAGE_REPO="moss/coding-agent"
PACKAGES=(bash dash coreutils git grep sed findutils diffutils patch gzip tar less procps ca-certificates)

say() { echo "[build-coding-agent-image] $*"; }
die() {
  echo "[build-coding-agent-image] ERROR: $1" >&2
  [ $# -gt 1 ] && echo "[build-coding-agent-image]   what to do: $2" >&2
  exit 1
}

command -v dpkg-query >/dev/null 2>&1 \
  || die "dpkg is not available: this script takes the tools from this host's Debian packages." \
         "build an image with node, git, bash and coreutils yourself and set rewriter.sandbox.image to it."
docker version >/dev/null 2>&1 || die "cannot reach the Docker engine." "start dockerd (npm run setup does), then re-run."
NODE_BIN="$(readlink -f "$(command -v node)")"
missing=()
for p in "${PACKAGES[@]}"; do dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p"); done
[ "${#missing[@]}" -eq 0 ] || die "these packages are not installed: ${missing[*]}" "apt-get install ${missing[*]}, then re-run."

VERSIONS="$("$NODE_BIN" -p process.version) $(dpkg-query -W -f='${Package}=${Version} ' "${PACKAGES[@]}")"
CONTENT_TAG="$IMAGE_REPO:$(printf '%s' "$VERSIONS" | sha256sum | cut -c1-12)"
# shellcheck source=deploy/rootfs.sh
. "$(dirname "${BASH_SOURCE[0]}")/rootfs.sh"
already_built "$CONTENT_TAG" "$IMAGE_REPO:latest" && exit 0

say "building $CONTENT_TAG"
rootfs_init
# Every file of the packages (not documentation), and node.
{
  dpkg-query -L "${PACKAGES[@]}" | grep -Ev '^/usr/share/(doc|man|info|locale|lintian|bash-completion)/'
  echo "$NODE_BIN"
} | rootfs_add
rootfs_import "$CONTENT_TAG" /usr/bin/bash "moss coding-agent base: node, git, bash, coreutils" \
  'ENV PATH=/usr/local/bin:/usr/bin:/bin' "LABEL moss.coding-agent.versions=\"$VERSIONS\""
docker tag "$CONTENT_TAG" "$IMAGE_REPO:latest"

if ! out="$(docker run --rm --network none --user 65534:65534 "$CONTENT_TAG" sh -c 'git --version && node -e "process.stdout.write(process.version)" && ls / >/dev/null' 2>&1)"; then
  docker rmi "$CONTENT_TAG" "$IMAGE_REPO:latest" >/dev/null 2>&1 || true
  die "the new image cannot run its tools: $out" "check that every library ldd lists was copied."
fi
say "built $CONTENT_TAG and tagged $IMAGE_REPO:latest ($(du -h "$WORK/rootfs.tar" | cut -f1) rootfs; $(echo "$out" | tr '\n' ' '))"
