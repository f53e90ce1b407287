#!/bin/sh
# Start an MLflow tracking server for cellpulse: loopback only, telemetry off, artifacts
# served by the tracking server from a local folder. The backend store is SQLite unless
# MLFLOW_BACKEND_STORE_URI points at PostgreSQL, e.g.
#   MLFLOW_BACKEND_STORE_URI=postgresql://mlflow:PASSWORD@127.0.0.1:5432/mlflow
# Then point cellpulse at it: CELLPULSE_MLFLOW_TRACKING_URI=http://127.0.0.1:5000
set -eu
DATA="${CELLPULSE_MLFLOW_DATA:-/var/lib/cellpulse/mlflow}"
mkdir -p "$DATA/artifacts"
export MLFLOW_DISABLE_TELEMETRY=true
export DO_NOT_TRACK=true
export MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false
exec mlflow server \
  --host "${MLFLOW_HOST:-127.0.0.1}" --port "${MLFLOW_PORT:-5000}" \
  --backend-store-uri "${MLFLOW_BACKEND_STORE_URI:-sqlite:///$DATA/mlflow.db}" \
  --artifacts-destination "$DATA/artifacts"
