#!/bin/sh
# deploy/images.sh [TARGET ...]: builds the Dockerfile's targets (default: all six) as
# sluice/<target>:$IMAGE_TAG, with docker where a Docker engine answers, else with podman, which
# it installs (Debian, as root) and configures (deploy/containers.conf) when missing.
#
# Environment (all optional):
#   CONTAINER_ENGINE  docker or podman; default: docker if `docker info` works, else podman.
#   IMAGE_TAG         tag of the built images (default: dev).
#   PYTHON_IMAGE      base image with python3 and python3-venv. Default with docker: the Dockerfile's
#                     (python:3.11-slim-bookworm); with podman: localhost/sluice-python:bookworm,
#                     made here from a debootstrap of Debian bookworm when absent (no registry).
#   TORCH_SOURCE      where torch comes from: a folder of wheels (mounted read-only into the
#                     build) or a package index URL. Default with podman: the find-links folder
#                     of the host's pip configuration if it holds a torch wheel; else the
#                     Dockerfile's default, the PyTorch CPU index.
#   CA_BUNDLE         the host's CA bundle, mounted read-only at the same path for pip (podman);
#                     default /etc/ssl/certs/ca-certificates.crt when it exists.
# Prints each target's build time and size, e.g. for README's table.
set -eu

cd "$(dirname "$0")/.."
TAG=${IMAGE_TAG:-dev}
TARGETS=${*:-router cache compressor batcher dispatcher simulator}
DEBIAN_IMAGE=localhost/debian:bookworm
BASE_IMAGE=localhost/sluice-python:bookworm

log() { printf '%s\n' "images: $*" >&2; }

pick_engine() {
  if [ -n "${CONTAINER_ENGINE:-}" ]; then
    echo "$CONTAINER_ENGINE"
  elif command -v docker >/dev/null 2>&1 && docker info >/dev/null 2>&1; then
    echo docker
  else
    echo podman
  fi
}

ensure_podman() {
  if ! command -v podman >/dev/null 2>&1 || ! command -v runc >/dev/null 2>&1 \
    || ! command -v debootstrap >/dev/null 2>&1; then
    [ "$(id -u)" = 0 ] || { log "podman, runc and debootstrap are missing; install them as root"; exit 1; }
    log "installing podman, runc and debootstrap"
    apt-get update -q
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q podman runc debootstrap
  fi
  # crun fails on hybrid cgroup hosts, and podman's default ulimits exceed such a machine's.
  CONTAINERS_CONF=${CONTAINERS_CONF:-$PWD/deploy/containers.conf}
  export CONTAINERS_CONF
}

# The Debian mirror apt already uses (one-line or deb822 sources), so no other host is reached.
debian_mirror() {
  cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources \
    2>/dev/null | awk '
      /^deb / { for (i = 2; i <= NF; i++) if ($i ~ /^https?:.*\/debian\/?$/) { print $i; exit } }
      /^URIs:/ && $2 ~ /\/debian\/?$/ { print $2; exit }' | head -n 1
}

# localhost/sluice-python:bookworm: debootstrap (minbase) -> podman import -> + python3-venv.
ensure_base() {
  if podman image exists "$BASE_IMAGE"; then
    return
  fi
  base_start=$(date +%s)
  if ! podman image exists "$DEBIAN_IMAGE"; then
    mirror=$(debian_mirror)
    mirror=${mirror:-http://deb.debian.org/debian}
    root=$(mktemp -d /var/tmp/sluice-debian.XXXXXX)
    log "debootstrap bookworm from $mirror into $root"
    debootstrap --variant=minbase bookworm "$root" "$mirror" >/dev/null
    # What an image never needs: the downloaded packages, the package lists, manuals, locales.
    rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/* \
      "$root"/usr/share/man/* "$root"/usr/share/info/* "$root"/usr/share/locale/*
    tar -C "$root" -c . | podman import - "$DEBIAN_IMAGE"
    rm -rf "$root"
  fi
  podman build --build-arg DEBIAN_IMAGE="$DEBIAN_IMAGE" -t "$BASE_IMAGE" \
    -f deploy/python-base.Containerfile deploy
  log "made $BASE_IMAGE in $(($(date +%s) - base_start))s"
}

# The folder of wheels the host's pip configuration names, when it has a torch wheel.
default_torch_source() {
  links=$(pip config get global.find-links 2>/dev/null || true)
  links=${links:-${PIP_FIND_LINKS:-}}
  for dir in $links; do
    if ls "$dir"/torch-*.whl >/dev/null 2>&1; then
      echo "$dir"
      return
    fi
  done
}

ENGINE=$(pick_engine)
set --
if [ "$ENGINE" = podman ]; then
  ensure_podman
  if [ -z "${PYTHON_IMAGE:-}" ]; then
    ensure_base
    PYTHON_IMAGE=$BASE_IMAGE
  fi
  TORCH_SOURCE=${TORCH_SOURCE:-$(default_torch_source)}
  CA_BUNDLE=${CA_BUNDLE:-/etc/ssl/certs/ca-certificates.crt}
  if [ -f "$CA_BUNDLE" ]; then
    set -- "$@" -v "$CA_BUNDLE:$CA_BUNDLE:ro" --build-arg "PIP_CERT=$CA_BUNDLE"
  fi
  if [ -n "$TORCH_SOURCE" ] && [ -d "$TORCH_SOURCE" ]; then
    set -- "$@" -v "$TORCH_SOURCE:$TORCH_SOURCE:ro"
  fi
fi
[ -n "${PYTHON_IMAGE:-}" ] && set -- "$@" --build-arg "PYTHON_IMAGE=$PYTHON_IMAGE"
[ -n "${TORCH_SOURCE:-}" ] && set -- "$@" --build-arg "TORCH_SOURCE=$TORCH_SOURCE"

for target in $TARGETS; do
  start=$(date +%s)
  log "$ENGINE build --target $target -t sluice/$target:$TAG"
  "$ENGINE" build "$@" --target "$target" -t "sluice/$target:$TAG" .
  seconds=$(($(date +%s) - start))
  size=$("$ENGINE" image inspect --format '{{.Size}}' "sluice/$target:$TAG")
  log "built sluice/$target:$TAG in ${seconds}s, $((size / 1000000)) MB"
done
