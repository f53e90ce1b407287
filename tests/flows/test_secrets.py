"""Secrets of the settings never reach Prefect's database: a flow run's stored parameters
hold them masked, while the flow itself still gets the real values."""

from __future__ import annotations

import json

from prefect import flow
from prefect.client.orchestration import get_client

from cellpulse.flows.ingest import ingest_flow
from cellpulse.settings import Settings

SECRETS = {"hunter2", "t0k-123", "pw9"}


def _secret_settings(home) -> Settings:
    return Settings(
        home=home,
        ops_store_url="postgresql://ops:hunter2@127.0.0.1:9/ops",
        mlflow_tracking_uri="http://ml:pw9@127.0.0.1:9",
        alerts={"webhook_url": "http://127.0.0.1:9/hook?token=t0k-123"},
    )


@flow(name="sees-the-webhook")
def _sees_the_webhook(settings: Settings) -> str:
    assert settings.alerts.webhook_url is not None
    return settings.alerts.webhook_url.get_secret_value()


def _stored_parameters(state) -> str:
    with get_client(sync_client=True) as client:
        run = client.read_flow_run(state.state_details.flow_run_id)
    return json.dumps(run.parameters)


def test_flow_runs_store_no_secret_and_flows_still_get_the_real_ones(tmp_path):
    settings = _secret_settings(tmp_path / "home")
    settings.layout.landing.mkdir(parents=True)

    ingested = ingest_flow(settings, [settings.layout.landing], return_state=True)
    assert ingested.is_completed(), ingested.message
    stored = _stored_parameters(ingested)
    assert str(settings.home) in stored  # the parameters are there, only the secrets are not
    assert not {s for s in SECRETS if s in stored}, stored

    seen = _sees_the_webhook(settings, return_state=True)
    assert seen.result() == "http://127.0.0.1:9/hook?token=t0k-123"
    assert "t0k-123" not in _stored_parameters(seen)
