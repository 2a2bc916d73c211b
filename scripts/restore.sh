#!/usr/bin/env bash
# Restores a backup into a running installation: drill the backup first, stop the service,
# `ora restore`, start it, wait for /health and print the verdict. On any failure the
# service is left running on the old database, and the script says so.
# Usage: scripts/restore.sh BACKUP_FILE
# Env: ORA_BIN (/usr/local/bin/ora), ORA_CONFIG (/etc/ora/ora.toml), ORA_SERVICE (ora.service),
#      ORA_HEALTH_URL (http://127.0.0.1:8080/health), ORA_WAIT_SECONDS (60).
set -uo pipefail

backup=${1:-}
ora=${ORA_BIN:-/usr/local/bin/ora}
config=${ORA_CONFIG:-/etc/ora/ora.toml}
service=${ORA_SERVICE:-ora.service}
url=${ORA_HEALTH_URL:-http://127.0.0.1:8080/health}
wait_seconds=${ORA_WAIT_SECONDS:-60}

say() { echo "restore.sh: $*"; }
die() { echo "restore.sh: $1" >&2; exit "${2:-1}"; }

[ -n "$backup" ] || die "usage: restore.sh BACKUP_FILE (see \`ora backups list\`)" 2
[ -f "$backup" ] || die "$backup is not a file; pick one from \`ora backups list\`" 2
command -v curl >/dev/null 2>&1 || die "curl is needed to check the service after the restore" 3

# Waits for /health to answer; prints its verdict; true when healthy (HTTP 200).
wait_healthy() {
  local deadline=$((SECONDS + wait_seconds)) body code
  while [ "$SECONDS" -lt "$deadline" ]; do
    body=$(curl -s -m 5 -w '\n%{http_code}' "$url" 2>/dev/null) || body=""
    code=${body##*$'\n'}
    if [ "$code" = 200 ] || [ "$code" = 503 ]; then
      say "health: $(printf '%s' "${body%$'\n'*}" | grep -o '"status":"[a-z]*"' | head -n 1)"
      [ "$code" = 200 ]
      return
    fi
    sleep 1
  done
  say "no answer from $url within ${wait_seconds}s"
  return 1
}

say "checking $backup before stopping anything (restore drill)"
if ! "$ora" --config "$config" backups verify "$backup"; then
  die "the backup failed its drill; nothing was changed and $service keeps running"
fi

say "stopping $service"
systemctl stop "$service" || die "could not stop $service; nothing was changed" 3

if ! result=$("$ora" --config "$config" --json restore "$backup" --yes); then
  say "the restore failed; starting $service again on the old database" >&2
  systemctl start "$service" || die "could not start $service again: start it by hand (\`systemctl start $service\`)" 3
  wait_healthy || true
  die "nothing was restored: $service runs on the old database"
fi
kept=$(printf '%s' "$result" | grep -o '"kept_previous":"[^"]*"' | sed 's/^"kept_previous":"//; s/"$//')

say "starting $service on the restored database"
if systemctl start "$service" && wait_healthy; then
  say "done: $service runs on the restored database${kept:+ (the previous one is kept as $kept)}"
  exit 0
fi

# The restored database does not come up healthy: put the previous one back.
say "the service is not healthy on the restored database; putting the previous one back" >&2
systemctl stop "$service" || true
if [ -n "$kept" ] && "$ora" --config "$config" restore "$kept" --yes >/dev/null; then
  systemctl start "$service" || true
  wait_healthy || true
  die "the restore was rolled back: $service runs on the old database again"
fi
systemctl start "$service" || true
die "could not roll back; the previous database is kept as ${kept:-?}: restore it with \`ora restore FILE --yes\`" 3
