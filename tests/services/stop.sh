#!/usr/bin/env bash
# Stops what tests/services/start.sh started.
state="${SERVICES_DIR:-/tmp/clientele-services}"
pg_bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
if [ -d "$state/pg" ] && [ -n "$pg_bin" ]; then
  if [ "$(id -u)" = 0 ]; then su postgres -s /bin/bash -c "'$pg_bin/pg_ctl' -D '$state/pg' -m fast stop" >/dev/null 2>&1
  else "$pg_bin/pg_ctl" -D "$state/pg" -m fast stop >/dev/null 2>&1; fi
fi
[ -f "$state/s3s-fs.pid" ] && kill "$(cat "$state/s3s-fs.pid")" 2>/dev/null
exit 0
