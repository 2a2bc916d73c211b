#!/usr/bin/env bash
# Sets up everything the tests need on a fresh Debian machine, checks the formatting and
# clippy, then runs the tests.
# Usage: scripts/test.sh [extra cargo test args]
set -euo pipefail
cd "$(dirname "$0")/.."

# command -> Debian package providing it
declare -A needs=(
  [sqlite3]=sqlite3
  [runuser]=util-linux
  [mount]=mount
  [chromium]=chromium
  [tar]=tar
  [gzip]=gzip
  [curl]=curl
  [shellcheck]=shellcheck
  [systemd-analyze]=systemd
  [openssl]=openssl
  [mkfs.ext4]=e2fsprogs
  [losetup]=util-linux
  [psql]=postgresql-client
  [man]=man-db
  [zsh]=zsh
  [fish]=fish
  [promtool]=prometheus
  [lintian]=lintian
  [dpkg-deb]=dpkg
  [script]=bsdutils
)
missing=()
for cmd in "${!needs[@]}"; do
  command -v "$cmd" >/dev/null 2>&1 || missing+=("${needs[$cmd]}")
done
# The PostgreSQL server itself (initdb, pg_ctl), not only the client: the mirror tests run a
# throwaway cluster.
[ -x "${PG_BIN:-/usr/lib/postgresql/15/bin}/initdb" ] || missing+=(postgresql)
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "test.sh: installing ${missing[*]}"
    apt-get update -qq >/dev/null 2>&1 || true
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  else
    echo "test.sh: missing ${missing[*]}; the tests that need them print SKIP" >&2
  fi
fi

# Under ORA_TEST_STRICT=1 a test that would print SKIP (a missing tool, no root, no tmpfs)
# fails instead: what CI reports as passed has really run. CI runs as root, where every
# prerequisite can be met (and is installed above). As another user the tests that need root
# (runuser, tmpfs and loop mounts, systemd in namespaces) cannot run: they print SKIP.
if [ "$(id -u)" = 0 ]; then
  export ORA_TEST_STRICT=1
else
  unset ORA_TEST_STRICT
  echo "test.sh: not root; the tests that need root print SKIP (CI runs them all as root)" >&2
fi
# The code's shape is part of the test: formatting and every clippy warning fail it.
cargo fmt --check
cargo clippy --locked --all-targets -- -D warnings
exec cargo test --locked "$@"
