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
# tar without its notes on stripping a leading "/" (the names are meant relative to the rootfs).
tar_quiet() { tar "$@" 2>&1 >&3 3>&- | grep -v "Removing leading" >&2 || true; } 3>&1
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
if docker image inspect "$CONTENT_TAG" >/dev/null 2>&1; then
  docker tag "$CONTENT_TAG" "$IMAGE_REPO:latest"
  say "$CONTENT_TAG already exists; $IMAGE_REPO:latest points at it. Nothing to do."
  exit 0
fi

say "building $CONTENT_TAG"
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
ROOTFS="$WORK/rootfs"
mkdir -p "$ROOTFS/usr/bin" "$ROOTFS/usr/lib" "$ROOTFS/usr/lib64" "$ROOTFS/usr/sbin" "$ROOTFS/etc" "$ROOTFS/tmp" "$ROOTFS/home"
chmod 1777 "$ROOTFS/tmp"
# Merged /usr, as on the host: /bin/sh and /usr/bin/sh are one file.
for d in bin lib lib64 sbin; do ln -s "usr/$d" "$ROOTFS/$d"; done

# Every file of the packages (not directories, not documentation), by its path with the directories resolved, so
# /bin/bash and /usr/bin/bash are the same entry.
{
  dpkg-query -L "${PACKAGES[@]}" | grep -Ev '^/usr/share/(doc|man|info|locale|lintian|bash-completion)/' | while read -r f; do
    [ -f "$f" ] || [ -L "$f" ] || continue
    printf '%s/%s\n' "$(readlink -f "$(dirname "$f")")" "$(basename "$f")"
  done
  echo "$NODE_BIN"
} | sort -u >"$WORK/files"
# Copied as they are (a symlink stays a link), parents created as they come.
sed 's|^/||' "$WORK/files" | tar_quiet -C / --no-recursion -cf - -T - | tar -C "$ROOTFS" -xf -
# The certificate bundle is generated, not shipped by the package.
[ -f /etc/ssl/certs/ca-certificates.crt ] && tar -C / -chf - etc/ssl/certs/ca-certificates.crt | tar -C "$ROOTFS" -xf -

# The shared libraries of every ELF program and library copied, by their real paths.
while read -r f; do
  [ -f "$f" ] && [ ! -L "$f" ] || continue
  head -c 4 "$f" 2>/dev/null | grep -q $'\x7fELF' || continue
  ldd "$f" 2>/dev/null | awk '$2 == "=>" && $3 ~ /^\// { print $3; next } $1 ~ /^\// { print $1 }'
done <"$WORK/files" | sort -u | while read -r lib; do
  real="$(readlink -f "$(dirname "$lib")")/$(basename "$lib")"
  [ -e "$ROOTFS$real" ] || printf '%s\n' "${real#/}"
done | tar_quiet -C / -chf - -T - | tar -C "$ROOTFS" -xf -

cat >"$ROOTFS/etc/passwd" <<'EOF'
root:x:0:0:root:/root:/usr/bin/bash
nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin
EOF
cat >"$ROOTFS/etc/group" <<'EOF'
root:x:0:
nobody:x:65534:
EOF

tar --sort=name --numeric-owner --owner=0 --group=0 --mtime='2020-01-01 00:00:00Z' -C "$ROOTFS" -cf "$WORK/rootfs.tar" .
docker import \
  -c 'ENV PATH=/usr/local/bin:/usr/bin:/bin' \
  -c "LABEL moss.coding-agent.versions=\"$VERSIONS\"" \
  -m "moss coding-agent base: node, git, bash, coreutils" \
  "$WORK/rootfs.tar" "$CONTENT_TAG" >/dev/null \
  || die "docker import of the rootfs failed (see the message above)." "fix the engine problem and re-run."
docker tag "$CONTENT_TAG" "$IMAGE_REPO:latest"

if ! out="$(docker run --rm --network none --user 65534:65534 "$CONTENT_TAG" sh -c 'git --version && node -e "process.stdout.write(process.version)" && ls / >/dev/null' 2>&1)"; then
  docker rmi "$CONTENT_TAG" "$IMAGE_REPO:latest" >/dev/null 2>&1 || true
  die "the new image cannot run its tools: $out" "check that every library ldd lists was copied."
fi
say "built $CONTENT_TAG and tagged $IMAGE_REPO:latest ($(du -h "$WORK/rootfs.tar" | cut -f1) rootfs; $(echo "$out" | tr '\n' ' '))"
