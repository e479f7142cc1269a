#!/usr/bin/env bash
# Install what the project needs, doing only what is missing:
#   1. system packages (postgresql, redis-server, docker.io, debootstrap, tinyproxy, socat,
#      git, chromium, prometheus, nodejs, npm) with
#      apt when run as root on Debian/Ubuntu; otherwise say what to install;
#   2. .venv with the service and its dev extra;
#   3. .venv-aider with aider-chat alone (it pins ~100 exact versions; the service must not
#      inherit them), found by the service through DEVTEAM_AIDER_BIN;
#   4. the TypeScript client's npm packages (clients/typescript, `npm ci` from its lock file).
set -euo pipefail
cd "$(dirname "$0")/.."

AIDER_VERSION="0.86.2"
say() { printf '\033[1msetup:\033[0m %s\n' "$*"; }

# ---- 1. system packages --------------------------------------------------------------
missing=()
have_pg() { compgen -G "/usr/lib/postgresql/*/bin/postgres" >/dev/null || command -v postgres >/dev/null; }
have_pg || missing+=(postgresql)
command -v redis-server >/dev/null || missing+=(redis-server)
if ! command -v dockerd >/dev/null; then
  # A reachable engine (system, rootless or remote) is as good as our own dockerd.
  (command -v docker >/dev/null && docker info >/dev/null 2>&1) || missing+=(docker.io)
fi
command -v debootstrap >/dev/null || missing+=(debootstrap)
# The egress proxy of setup containers and its unix-socket bridge.
command -v tinyproxy >/dev/null || missing+=(tinyproxy-bin)
command -v socat >/dev/null || missing+=(socat)
command -v git >/dev/null || missing+=(git)
command -v chromium >/dev/null || missing+=(chromium)
command -v runuser >/dev/null || missing+=(util-linux)
# The metrics integration test starts its own Prometheus on loopback (never a service).
command -v prometheus >/dev/null || missing+=(prometheus)
# The TypeScript client (clients/typescript) is built and tested with Node and npm.
command -v node >/dev/null || missing+=(nodejs)
command -v npm >/dev/null || missing+=(npm)

if ((${#missing[@]})); then
  if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null; then
    say "installing system packages: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q
    # No package may start a system service (postgresql, redis, prometheus on :9090…): the
    # project starts its own servers. policy-rc.d 101 = "action forbidden" to invoke-rc.d
    # and deb-systemd-invoke; a policy already in place (containers) is left as it is.
    policy=""
    if [[ ! -e /usr/sbin/policy-rc.d ]]; then
      policy=/usr/sbin/policy-rc.d
      printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod 755 "$policy"
      trap 'rm -f "$policy"' EXIT
    fi
    apt-get install -y -q --no-install-recommends "${missing[@]}"
    if [[ -n $policy ]]; then rm -f "$policy"; trap - EXIT; fi
  else
    say "missing system packages: ${missing[*]}"
    say "install them (e.g. 'sudo apt-get install ${missing[*]}') and run 'make setup' again"
    exit 1
  fi
else
  say "system packages present"
fi

# ---- 2. Python -----------------------------------------------------------------------
pick_python() {
  for c in python3.13 python3.12 python3.11 python3; do
    if command -v "$c" >/dev/null && "$c" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
      echo "$c"; return 0
    fi
  done
  return 1
}
PY=$(pick_python) || { say "Python 3.11 or newer is required"; exit 1; }

stamp_of() { cat pyproject.toml | sha256sum | cut -c1-16; }
if [[ ! -x .venv/bin/python ]]; then
  say "creating .venv with $($PY --version)"
  "$PY" -m venv .venv
fi
if [[ ! -f .venv/.stamp-$(stamp_of) ]]; then
  say "installing the project and its dev extra into .venv"
  .venv/bin/python -m pip install -q --upgrade pip
  .venv/bin/python -m pip install -q -e '.[dev]'
  rm -f .venv/.stamp-*
  touch ".venv/.stamp-$(stamp_of)"
else
  say ".venv up to date"
fi

# ---- 3. Aider in its own environment -----------------------------------------------------
if [[ ! -x .venv-aider/bin/aider ]] || ! .venv-aider/bin/aider --version 2>/dev/null | grep -q "$AIDER_VERSION"; then
  say "installing aider-chat $AIDER_VERSION into .venv-aider"
  [[ -x .venv-aider/bin/python ]] || "$PY" -m venv .venv-aider
  .venv-aider/bin/python -m pip install -q --upgrade pip
  .venv-aider/bin/python -m pip install -q "aider-chat==$AIDER_VERSION"
else
  say ".venv-aider has aider $AIDER_VERSION"
fi
# ---- 4. the TypeScript client ---------------------------------------------------------------
client=clients/typescript
client_stamp() { sha256sum "$client/package-lock.json" | cut -c1-16; }
if [[ ! -f $client/node_modules/.stamp-$(client_stamp) ]]; then
  say "installing the TypeScript client's packages (npm ci)"
  (cd "$client" && npm ci --no-audit --no-fund --loglevel=error)
  touch "$client/node_modules/.stamp-$(client_stamp)"
else
  say "$client/node_modules up to date"
fi
say "done"
