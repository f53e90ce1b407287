"""The deployments as code, infra/prefect.yaml and the documentation agree."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import yaml

from cellpulse.flows.deployments import FLOWS, schedules
from cellpulse.settings import ScheduleSettings, Settings

ROOT = Path(__file__).resolve().parents[2]


def as_dict(schedule) -> dict[str, object]:
    if getattr(schedule, "cron", None):
        return {"cron": schedule.cron, "timezone": schedule.timezone}
    return {
        "interval": schedule.interval.total_seconds(),
        "anchor_date": schedule.anchor_date.isoformat(),
        "timezone": schedule.timezone,
    }


def test_prefect_yaml_registers_what_serve_registers(tmp_path):
    in_code = {name: as_dict(s) for name, s in schedules(Settings(home=tmp_path)).items()}
    spec = yaml.safe_load((ROOT / "infra" / "prefect.yaml").read_text())
    in_yaml = {}
    for d in spec["deployments"]:
        (schedule,) = d["schedules"]
        if "anchor_date" in schedule:
            schedule["anchor_date"] = datetime.fromisoformat(schedule["anchor_date"]).isoformat()
        in_yaml[d["name"]] = schedule
        module, _, function = d["entrypoint"].partition(":")
        assert (ROOT / module).is_file()
        assert FLOWS[d["name"]].fn.__name__ == function
        assert d["concurrency_limit"] == {"limit": 1, "collision_strategy": "CANCEL_NEW"}
    assert in_yaml == in_code
    assert in_code["every-rop"] == {
        "interval": 900.0,
        "anchor_date": "2026-01-01T00:05:00+00:00",
        "timezone": "UTC",
    }


def test_schedules_follow_settings(tmp_path):
    hourly = Settings(
        home=tmp_path,
        rop_minutes=60,
        schedules=ScheduleSettings(
            every_rop=False, train_cron="0 4 * * 6", timezone="Europe/Paris"
        ),
    )
    found = schedules(hourly)
    assert found["every-rop"] is None
    assert as_dict(found["train-weekly"]) == {"cron": "0 4 * * 6", "timezone": "Europe/Paris"}
