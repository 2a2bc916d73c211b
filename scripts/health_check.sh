#!/usr/bin/env bash
# The morning health check for cron users (with systemd, ora-health.timer does this at 08:00):
#   0 8 * * * /usr/local/lib/ora/health_check.sh
# Appends the report to ORA_HEALTH_LOG (default /var/log/ora-health.log, skipped if not
# writable) and exits like `ora health`: 0 healthy, 1 unhealthy, 2/3 could not check.
# Env: ORA_BIN (default /usr/local/bin/ora), ORA_CONFIG (default /etc/ora/ora.toml).
set -uo pipefail

ora=${ORA_BIN:-/usr/local/bin/ora}
config=${ORA_CONFIG:-/etc/ora/ora.toml}
log=${ORA_HEALTH_LOG:-/var/log/ora-health.log}

out=$("$ora" --config "$config" health "$@" 2>&1)
status=$?
printf '%s\n' "$out"
if { [ -e "$log" ] && [ -w "$log" ]; } || { [ ! -e "$log" ] && [ -w "$(dirname "$log")" ]; }; then
  {
    echo "=== ora health check: $(date -Is) (exit $status) ==="
    printf '%s\n' "$out"
  } >>"$log"
fi
exit "$status"
