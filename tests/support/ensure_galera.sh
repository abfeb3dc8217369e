#!/usr/bin/env bash
# Make sure this machine can run the private 3-node MariaDB Galera cluster of
# the cluster tests (tests/support/galera.py): the Galera provider, the rsync
# state transfer and what it calls (rsync, and ss or lsof to watch its port),
# and the MariaDB server binaries. Installs Debian's packages with apt-get when
# something is missing (as root, or through passwordless sudo); fails with one
# line saying what to install otherwise, never silently.
set -euo pipefail

provider=/usr/lib/galera/libgalera_smm.so

missing() {
  [ -e "$provider" ] || echo galera-4
  command -v rsync >/dev/null || echo rsync
  # wsrep_sst_rsync watches the port of its rsync daemon with ss (or lsof); without either it
  # stops with "Neither lsof, nor sockstat, nor ss tool were found in the path".
  command -v ss >/dev/null || command -v lsof >/dev/null || echo iproute2
  { command -v wsrep_sst_rsync && command -v mariadb-install-db &&
    { command -v mariadbd || [ -x /usr/sbin/mariadbd ]; }; } >/dev/null || echo mariadb-server
}

mapfile -t packages < <(missing)
if [ ${#packages[@]} -eq 0 ]; then
  exit 0
fi

fail() {
  echo "ensure_galera: the Galera cluster tests need ${packages[*]} ($1):" \
       "install with apt-get install -y ${packages[*]}" >&2
  exit 1
}

command -v apt-get >/dev/null || fail "not installed, and apt-get is not available"
if [ "$(id -u)" -eq 0 ]; then
  as_root=()
elif command -v sudo >/dev/null && sudo -n true 2>/dev/null; then
  as_root=(sudo -n)
else
  fail "not installed; installing needs root or passwordless sudo"
fi

echo "ensure_galera: installing ${packages[*]} (for the Galera cluster tests)" >&2
export DEBIAN_FRONTEND=noninteractive
if ! "${as_root[@]}" apt-get install -y "${packages[@]}" >&2; then
  "${as_root[@]}" apt-get update >&2
  "${as_root[@]}" apt-get install -y "${packages[@]}" >&2 || fail "apt-get could not install them"
fi
mapfile -t packages < <(missing)
[ ${#packages[@]} -eq 0 ] || fail "still missing after apt-get"
