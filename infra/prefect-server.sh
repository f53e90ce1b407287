#!/bin/sh
# Start a Prefect server for cellpulse on this machine: loopback only, telemetry off.
# Its database is SQLite under $PREFECT_HOME unless PREFECT_API_DATABASE_CONNECTION_URL
# points at PostgreSQL, e.g.
#   PREFECT_API_DATABASE_CONNECTION_URL=postgresql+asyncpg://prefect:PASSWORD@127.0.0.1:5432/prefect
# Then, in the shell that runs cellpulse: export PREFECT_API_URL=http://127.0.0.1:4200/api
set -eu
export PREFECT_HOME="${PREFECT_HOME:-/var/lib/cellpulse/prefect}"
export PREFECT_SERVER_ANALYTICS_ENABLED=false
export DO_NOT_TRACK=true
exec prefect server start --host "${PREFECT_SERVER_HOST:-127.0.0.1}" --port "${PREFECT_SERVER_PORT:-4200}"
