#!/usr/bin/env bash
# Makes this machine ready for Moss: nats-server >= 2.10, a running Docker engine, the local base image.
# On Debian/Ubuntu as root it installs what is missing; elsewhere it says exactly what to install.
# Idempotent and quiet when everything is already there. Run from anywhere: `npm run setup`.
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf 'setup: %s\n' "$*" >&2; }
die() { printf 'setup: ERROR: %s\n' "$*" >&2; exit 1; }
is_root() { [ "$(id -u)" = 0 ]; }
has_apt() { command -v apt-get >/dev/null 2>&1; }
apt_updated=""
apt_update() { [ -n "$apt_updated" ] || { say "apt-get update"; apt-get update -qq >/dev/null; apt_updated=1; }; }

version_ge() { [ "$(printf '%s\n%s\n' "$2" "$1" | sort -V | head -n1)" = "$2" ]; }

# --- nats-server >= 2.10 -------------------------------------------------------------------------
nats_ok() {
  command -v nats-server >/dev/null 2>&1 || return 1
  local v; v=$(nats-server --version 2>/dev/null | sed -E 's/.*v([0-9.]+).*/\1/')
  version_ge "$v" "2.10.0"
}
if ! nats_ok; then
  if is_root && has_apt; then
    apt_update
    candidate=$(apt-cache policy nats-server 2>/dev/null | awk '/Candidate:/ {print $2}')
    if [ -n "$candidate" ] && [ "$candidate" != "(none)" ] && version_ge "${candidate%%-*}" "2.10.0"; then
      say "installing nats-server $candidate"
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nats-server >/dev/null
    else
      # This distribution's nats-server is too old (bookworm has 2.9): take the package from Debian trixie,
      # which depends only on libc6 >= 2.34. Its sources stay in a temp dir; the system's apt lists are untouched.
      say "installing nats-server from Debian trixie (this distribution's ${candidate:-none} is older than 2.10)"
      tmp=$(mktemp -d); chmod 755 "$tmp"
      mkdir -p "$tmp/lists/partial"
      echo "deb http://deb.debian.org/debian trixie main" > "$tmp/sources.list"
      aptx=(-o Dir::Etc::sourcelist="$tmp/sources.list" -o Dir::Etc::sourceparts=- -o Dir::State::Lists="$tmp/lists" -o APT::Sandbox::User=root)
      apt-get "${aptx[@]}" update -qq >/dev/null
      (cd "$tmp" && apt-get "${aptx[@]}" download -qq nats-server >/dev/null)
      DEBIAN_FRONTEND=noninteractive dpkg -i "$tmp"/nats-server_*.deb >/dev/null
      rm -rf "$tmp"
    fi
    nats_ok || die "nats-server >= 2.10 could not be installed"
  else
    die "nats-server >= 2.10 is required (found: $(nats-server --version 2>/dev/null || echo none)). Install it from https://github.com/nats-io/nats-server/releases or your package manager (Debian trixie / Ubuntu 25.04+: apt install nats-server), then re-run."
  fi
fi

# --- Docker engine ---------------------------------------------------------------------------------
if ! command -v dockerd >/dev/null 2>&1 && ! docker info >/dev/null 2>&1; then
  if is_root && has_apt; then
    apt_update
    say "installing docker.io"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker.io >/dev/null
  else
    die "a Docker engine is required. Install Docker (https://docs.docker.com/engine/install/) and start it, then re-run."
  fi
fi
if ! docker info >/dev/null 2>&1; then
  is_root || die "the Docker engine is not running and this user cannot start it: start dockerd (or Docker Desktop), then re-run."
  say "starting dockerd in the background (log: /var/log/moss-dockerd.log)"
  # A dockerd/containerd killed without a clean stop leaves pid files behind that make the next start wait
  # for a containerd that is not there: clear those whose process is gone.
  for pidfile in /var/run/docker.pid /var/run/docker/containerd/containerd.pid; do
    if [ -f "$pidfile" ] && ! kill -0 "$(cat "$pidfile" 2>/dev/null)" 2>/dev/null; then rm -f "$pidfile"; fi
  done
  nohup dockerd >/var/log/moss-dockerd.log 2>&1 &
  for _ in $(seq 1 60); do docker info >/dev/null 2>&1 && break; sleep 0.5; done
  docker info >/dev/null 2>&1 || die "dockerd did not come up; see /var/log/moss-dockerd.log"
fi

# --- git (Moss passes its own identity) and ssh-keygen (SSH-signed commits) -------------------------
command -v git >/dev/null 2>&1 || { if is_root && has_apt; then apt_update; apt-get install -y -qq git >/dev/null; else die "git is required"; fi; }
command -v ssh-keygen >/dev/null 2>&1 || { if is_root && has_apt; then apt_update; apt-get install -y -qq openssh-client >/dev/null; else die "ssh-keygen (OpenSSH client) is required to sign Moss commits"; fi; }

# --- node_modules must exist (npm ci) --------------------------------------------------------------
[ -d node_modules/@esbuild ] || die "dependencies are missing: run \`npm ci\` first"

# --- the local base image every agent image starts FROM --------------------------------------------
bash deploy/build-base-image.sh
# --- the base image Python agents start FROM ------------------------------------------------------
bash deploy/build-python-base-image.sh
# --- the image a coding agent runs in (rewriter.sandbox.kind "container", the default) -------------
bash deploy/build-coding-agent-image.sh
