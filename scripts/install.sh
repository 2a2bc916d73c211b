#!/usr/bin/env bash
# Installs ora on a Debian box: the binary, a system user `ora`, its directories, the
# configuration (never overwritten), the systemd service and timers, and the helper scripts.
# Idempotent: running it again upgrades the binary, units and scripts (restarting a running
# ora.service so that it runs the new binary) and changes nothing else.
#
# Usage: sudo scripts/install.sh [--binary PATH] [--prefix DIR] [--unit-dir DIR] [--no-start]
#   --binary PATH   install this ora binary instead of building one (cargo build --release)
#   --prefix DIR    where the binary, helpers, man pages and completions go (default /usr/local)
#   --unit-dir DIR  where the systemd units go (default /etc/systemd/system)
#   --no-start      install and enable nothing at boot; do not start anything
# Env: DESTDIR  stage the whole tree under this directory instead of / (for packaging and
#               tests): no user is created, no owner changed, systemctl is not called.
# This file is the one description of what goes where: scripts/build-deb.sh stages the
# Debian package with it (prefix /usr, units in /lib/systemd/system).
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
prefix=/usr/local
unit_dir=/etc/systemd/system
binary=""
start=1
while [ $# -gt 0 ]; do
  case $1 in
    --binary) binary=${2:?--binary needs a path}; shift 2 ;;
    --prefix) prefix=${2:?--prefix needs a directory}; shift 2 ;;
    --unit-dir) unit_dir=${2:?--unit-dir needs a directory}; shift 2 ;;
    --no-start) start=0; shift ;;
    -h|--help) awk 'NR > 1 && /^#/ { print; next } NR > 1 { exit }' "$0"; exit 0 ;;
    *) echo "install.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
done
root=${DESTDIR:-}
staged=0
[ -n "$root" ] && staged=1

if [ "$staged" = 0 ] && [ "$(id -u)" != 0 ]; then
  echo "install.sh: run as root (sudo), or set DESTDIR to stage the files somewhere else" >&2
  exit 2
fi
if [ -z "$binary" ]; then
  echo "install.sh: building ora (cargo build --release)"
  (cd "$here" && cargo build --release --locked)
  binary=$here/target/release/ora
fi
[ -x "$binary" ] || { echo "install.sh: $binary is not an executable" >&2; exit 2; }

if [ "$staged" = 0 ] && ! getent passwd ora >/dev/null; then
  echo "install.sh: creating the system user ora"
  useradd --system --user-group --home-dir /var/lib/ora --no-create-home --shell /usr/sbin/nologin ora
fi

was_running=0
if [ "$staged" = 0 ] && systemctl is-active --quiet ora.service 2>/dev/null; then
  was_running=1
fi

echo "install.sh: installing into ${root:-/} (prefix $prefix)"
install -D -m 0755 "$binary" "$root$prefix/bin/ora"
# The helpers and units name their paths under /usr/local; they are rewritten for $prefix.
install -d -m 0755 "$root$prefix/lib/ora"
for helper in ora-job.sh:ora-job health_check.sh:health_check.sh restore.sh:restore.sh; do
  sed "s|/usr/local/|$prefix/|g" "$here/scripts/${helper%%:*}" >"$root$prefix/lib/ora/${helper#*:}"
  chmod 0755 "$root$prefix/lib/ora/${helper#*:}"
done
install -D -m 0644 "$here/README.md" "$root$prefix/share/doc/ora/README.md"
for doc in "$here"/docs/*.md; do
  [ -e "$doc" ] || continue
  install -D -m 0644 "$doc" "$root$prefix/share/doc/ora/docs/$(basename "$doc")"
done

# Man pages (one per command) and completions, made by the binary from its own definition.
man=$root$prefix/share/man/man1
install -d -m 0755 "$man"
"$binary" manpages "$man" >/dev/null
gzip -9nf "$man"/ora*.1
chmod 0644 "$man"/ora*.1.gz
install -d -m 0755 "$root$prefix/share/bash-completion/completions" \
  "$root$prefix/share/zsh/vendor-completions" "$root$prefix/share/fish/vendor_completions.d"
"$binary" completions bash >"$root$prefix/share/bash-completion/completions/ora"
"$binary" completions zsh >"$root$prefix/share/zsh/vendor-completions/_ora"
"$binary" completions fish >"$root$prefix/share/fish/vendor_completions.d/ora.fish"
chmod 0644 "$root$prefix/share/bash-completion/completions/ora" \
  "$root$prefix/share/zsh/vendor-completions/_ora" "$root$prefix/share/fish/vendor_completions.d/ora.fish"
# Monitoring that drops in: Prometheus rules, what each metric means, a Grafana dashboard.
for f in prometheus/ora-alerts.yml prometheus/ora-alerts.test.yml prometheus/METRICS.md grafana/ora-dashboard.json; do
  install -D -m 0644 "$here/contrib/$f" "$root$prefix/share/ora/$f"
done

install -d -m 0755 "$root$unit_dir"
for unit in "$here"/systemd/*.service "$here"/systemd/*.timer; do
  name=$(basename "$unit")
  sed "s|/usr/local/|$prefix/|g" "$unit" >"$root$unit_dir/$name.tmp"
  chmod 0644 "$root$unit_dir/$name.tmp"
  mv "$root$unit_dir/$name.tmp" "$root$unit_dir/$name"
done

install -d -m 0755 "$root/etc/ora"
for conf in ora.toml ora.env; do
  if [ -e "$root/etc/ora/$conf" ]; then
    echo "install.sh: keeping the existing /etc/ora/$conf"
  else
    install -m 0640 "$here/systemd/$conf" "$root/etc/ora/$conf"
  fi
done
install -d -m 0750 "$root/var/lib/ora" "$root/var/backups/ora"

if [ "$staged" = 1 ]; then
  echo "install.sh: staged in $root (no user, owners or systemctl)"
  exit 0
fi

chown ora:ora /var/lib/ora /var/backups/ora
chgrp ora /etc/ora/ora.toml /etc/ora/ora.env
command -v curl >/dev/null 2>&1 || echo "install.sh: note: install curl for heartbeats and scripts/restore.sh"

timers="ora-backup.timer ora-weekly.timer ora-health.timer ora-archive.timer ora-replica-verify.timer"
systemctl daemon-reload
if [ "$start" = 1 ]; then
  if [ "$was_running" = 1 ]; then
    # An upgrade: `enable --now` does nothing to a running unit, which would go on running the
    # old (now deleted) binary.
    systemctl try-restart ora.service
    echo "install.sh: restarted ora.service so that it runs the new binary"
  fi
  # shellcheck disable=SC2086 # the timer list is meant to split
  systemctl enable --now ora.service $timers
  echo "install.sh: ora is running: http://127.0.0.1:8080/ (systemctl status ora)"
else
  [ "$was_running" = 0 ] || echo "install.sh: ora.service still runs the old binary; restart it: systemctl restart ora"
  echo "install.sh: installed; start with: systemctl enable --now ora.service $timers"
fi
