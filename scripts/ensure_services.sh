#!/usr/bin/env bash
# The services `make test` needs that no Python package provides: the PostgreSQL server binaries
# (initdb / pg_ctl, for the throwaway test cluster), redis-server (the Celery scale-out test) and
# Chromium (the browser tests). Each is found, or installed with apt-get when this user may (root, or
# password-less sudo); otherwise the script stops at once with the one command that installs them.
# Set ENSURE_SERVICES_INSTALL=no to only check (never install).
set -euo pipefail

PG_BIN_GLOB="${PG_BIN_GLOB:-/usr/lib/postgresql/*/bin}"

have_pg() {
  command -v initdb >/dev/null 2>&1 && command -v pg_ctl >/dev/null 2>&1 && return 0
  local dir
  for dir in $PG_BIN_GLOB; do
    [[ -x "$dir/initdb" && -x "$dir/pg_ctl" ]] && return 0
  done
  return 1
}
have_redis() { command -v redis-server >/dev/null 2>&1; }
have_chromium() { command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1; }

missing() {
  local packages=()
  have_pg || packages+=(postgresql)
  have_redis || packages+=(redis-server)
  have_chromium || packages+=(chromium)
  echo "${packages[@]:-}"
}

packages="$(missing)"
[[ -z "$packages" ]] && exit 0

if [[ "$(id -u)" == 0 ]]; then
  installer=(apt-get)
elif command -v sudo >/dev/null 2>&1 && sudo -n true >/dev/null 2>&1; then
  installer=(sudo -n apt-get)
else
  installer=()
fi

if [[ "${ENSURE_SERVICES_INSTALL:-yes}" != no && ${#installer[@]} -gt 0 ]] && command -v apt-get >/dev/null 2>&1; then
  echo "ensure_services: installing $packages with apt-get ..." >&2
  # shellcheck disable=SC2086  # one word per package
  "${installer[@]}" update -qq && DEBIAN_FRONTEND=noninteractive "${installer[@]}" install -y -qq $packages >/dev/null
  packages="$(missing)"
  [[ -z "$packages" ]] && exit 0
  echo "ensure_services: still missing after apt-get: $packages" >&2
fi

prefix=""
[[ "$(id -u)" == 0 ]] || prefix="sudo "
echo "ensure_services: the tests need $packages, which are not installed. Run:" >&2
echo "  ${prefix}apt-get install -y $packages" >&2
echo "(or the same packages from your system's package manager), then \`make test\` again." >&2
exit 1
