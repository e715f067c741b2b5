# shellcheck shell=bash
# Common helpers for the ShoutFlow scripts. Source it; do not execute it.
#   source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
# Callers are expected to run with `set -euo pipefail`.

unset CDPATH

# Absolute (physical) path of the project root = parent of this scripts/ dir.
SF_ROOT="$(cd -P -- "$(dirname -- "${BASH_SOURCE[0]}")/.." && pwd -P)"
SF_SCRIPTS="$SF_ROOT/scripts"
SF_BUILD_DIR="$SF_ROOT/build"

SF_PACKAGES=(
  build-essential cmake pkg-config
  libcaf-dev
  libgrpc++-dev protobuf-compiler-grpc libprotobuf-dev protobuf-compiler
  libpqxx-dev postgresql-15 postgresql-contrib
  prometheus-cpp-dev
  libgtest-dev libgmock-dev libbenchmark-dev
  libsodium-dev libgoogle-perftools-dev
  prometheus gnuplot-nox jq
)

sf_log() { printf 'shoutflow: %s\n' "$*" >&2; }
sf_die() { printf 'shoutflow: error: %s\n' "$*" >&2; exit 1; }

sf_is_root() { [[ "$(id -u)" -eq 0 ]]; }

# Run a command as root: directly when root, through sudo otherwise.
sf_as_root() {
  if sf_is_root; then
    "$@"
  elif command -v sudo >/dev/null 2>&1; then
    sudo "$@"
  else
    sf_die "need root privileges to run '$*' but not root and sudo is not installed"
  fi
}

# True when the Debian package is fully installed.
sf_pkg_installed() {
  [[ "$(dpkg-query -W -f='${db:Status-Status}' "$1" 2>/dev/null || true)" == installed ]]
}

# Install whichever of SF_PACKAGES are missing (no-op when all are installed).
sf_install_packages() { sf_apt_install_missing "${SF_PACKAGES[@]}"; }

# Install whichever of the given Debian packages are missing.
sf_apt_install_missing() {
  local pkgs=("$@") missing=() p
  command -v dpkg-query >/dev/null 2>&1 || sf_die "dpkg-query not found: this script supports Debian 12 (bookworm) only"
  for p in "${pkgs[@]}"; do
    sf_pkg_installed "$p" || missing+=("$p")
  done
  [[ ${#missing[@]} -eq 0 ]] && return 0

  sf_log "installing packages: ${missing[*]}"
  if ! sf_is_root && ! command -v sudo >/dev/null 2>&1; then
    sf_die "missing packages (${missing[*]}); run as root or install sudo"
  fi
  local apt=(env DEBIAN_FRONTEND=noninteractive apt-get -q -y --no-install-recommends
             -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold)
  if ! compgen -G '/var/lib/apt/lists/*_Packages*' >/dev/null; then
    sf_as_root env DEBIAN_FRONTEND=noninteractive apt-get -q update >&2 \
      || sf_die "apt-get update failed"
  fi
  if ! sf_as_root "${apt[@]}" install "${missing[@]}" >&2; then
    sf_log "install failed; running apt-get update and retrying"
    sf_as_root env DEBIAN_FRONTEND=noninteractive apt-get -q update >&2 \
      || sf_die "apt-get update failed"
    sf_as_root "${apt[@]}" install "${missing[@]}" >&2 \
      || sf_die "apt-get install failed for: ${missing[*]}"
  fi
}

# Tools of the deployment tests (ctest deploy.*, tests/deploy/): Node.js and
# npm from Debian when npm is missing; Debian's kubectl (kubernetes-client)
# only when there is no kubectl, since that package conflicts with an
# installed one; then the tests' npm packages (npm ci, again only when
# tests/deploy/package-lock.json changed).
sf_install_deploy_test_tools() {
  command -v npm >/dev/null 2>&1 || sf_apt_install_missing nodejs npm
  command -v kubectl >/dev/null 2>&1 || sf_apt_install_missing kubernetes-client
  local dir="$SF_ROOT/tests/deploy" want stamp
  stamp="$dir/node_modules/.sf-package-lock.sha256"
  want="$(sha256sum "$dir/package-lock.json" | cut -d' ' -f1)"
  [[ -f "$stamp" && "$(cat "$stamp")" == "$want" ]] && return 0
  sf_log "installing the deployment tests' npm packages (npm ci in tests/deploy)"
  (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error >&2) \
    || sf_die "npm ci in tests/deploy failed"
  printf '%s\n' "$want" >"$stamp"
}

# Configure and build into $SF_BUILD_DIR.
sf_build() {
  [[ -f "$SF_ROOT/CMakeLists.txt" ]] || sf_die "no CMakeLists.txt in $SF_ROOT"
  sf_log "building (${SHOUTFLOW_BUILD_TYPE:-RelWithDebInfo}) in $SF_BUILD_DIR"
  cmake -S "$SF_ROOT" -B "$SF_BUILD_DIR" \
    -DCMAKE_BUILD_TYPE="${SHOUTFLOW_BUILD_TYPE:-RelWithDebInfo}" \
    -DSHOUTFLOW_SANITIZE="${SHOUTFLOW_SANITIZE:-}" \
    || sf_die "cmake configure failed"
  cmake --build "$SF_BUILD_DIR" -j"$(nproc)" || sf_die "build failed"
}

# Make SHOUTFLOW_DB_URL point at a usable database: keep the caller's value,
# or start the private PostgreSQL instance and use it.
sf_ensure_db() {
  if [[ -n "${SHOUTFLOW_DB_URL:-}" ]]; then
    sf_log "using external database from SHOUTFLOW_DB_URL (private PostgreSQL not started)"
  else
    "$SF_SCRIPTS/pg" start || sf_die "could not start the private PostgreSQL (see messages above)"
    SHOUTFLOW_DB_URL="$("$SF_SCRIPTS/pg" url)"
  fi
  export SHOUTFLOW_DB_URL
}
