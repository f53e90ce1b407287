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
HOST="${PREFECT_SERVER_HOST:-127.0.0.1}"
PORT="${PREFECT_SERVER_PORT:-4200}"
# The UI asks the server where its API is; unset, Prefect answers port 4200 whatever --port
# says, and a UI on any other port cannot connect.
export PREFECT_UI_API_URL="${PREFECT_UI_API_URL:-http://$HOST:$PORT/api}"
exec prefect server start --host "$HOST" --port "$PORT"
