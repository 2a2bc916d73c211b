#!/usr/bin/env bash
# Runs one of ora's timer jobs and reports it: on failure a one-line reason in the journal
# (and so in `systemctl status`), and when HEARTBEAT_URL is set a healthchecks.io-style ping:
# GET URL on success, POST URL/fail with the reason on failure.
# Installed as /usr/local/lib/ora/ora-job.  Usage: ora-job [--fail-only] NAME COMMAND [ARG...]
#   --fail-only  ping only on failure: for the first steps of a unit with several ExecStart
#                lines, so that a good run pings once (from its last step)
set -uo pipefail

ping_success=1
if [ "${1:-}" = "--fail-only" ]; then
  ping_success=0
  shift
fi
if [ $# -lt 2 ]; then
  echo "usage: ora-job [--fail-only] NAME COMMAND [ARG...]" >&2
  exit 2
fi
name=$1
shift

errfile=$(mktemp) || { echo "ora-job: cannot create a temporary file" >&2; exit 3; }
trap 'rm -f "$errfile"' EXIT

"$@" 2>"$errfile"
status=$?
cat "$errfile" >&2

reason=""
if [ "$status" -ne 0 ]; then
  reason=$(grep -v '^[[:space:]]*$' "$errfile" | tail -n 1)
  [ -n "$reason" ] || reason="exit status $status"
  echo "ora-job: $name failed (exit $status): $reason" >&2
fi

if [ -n "${HEARTBEAT_URL:-}" ]; then
  if ! command -v curl >/dev/null 2>&1; then
    echo "ora-job: HEARTBEAT_URL is set but curl is missing; install curl" >&2
  elif [ "$status" -eq 0 ]; then
    [ "$ping_success" = 1 ] || exit 0
    curl -fsS -m 10 --retry 3 -o /dev/null "$HEARTBEAT_URL" \
      || echo "ora-job: could not ping $HEARTBEAT_URL" >&2
  else
    curl -fsS -m 10 --retry 3 -o /dev/null --data-raw "$name: $reason" "${HEARTBEAT_URL%/}/fail" \
      || echo "ora-job: could not ping ${HEARTBEAT_URL%/}/fail" >&2
  fi
fi
exit "$status"
