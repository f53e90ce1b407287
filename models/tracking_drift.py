"""The MLflow edge for the drift picture (imports mlflow, like every `tracking*` module):
the monitoring run of a pass gets the picture its drift check was drawn from."""

from __future__ import annotations

import tempfile
from pathlib import Path

import mlflow

DRIFT_PICTURE = "feature_drift.png"


def log_drift_picture(run_id: str, picture: bytes) -> str:
    """Attach the drift picture (PNG bytes) to the monitoring run `run_id`; returns the
    artifact's URI, for links from elsewhere (the Prefect artifact)."""
    client = mlflow.MlflowClient()
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / DRIFT_PICTURE
        path.write_bytes(picture)
        client.log_artifact(run_id, str(path))
    return f"{client.get_run(run_id).info.artifact_uri}/{DRIFT_PICTURE}"
