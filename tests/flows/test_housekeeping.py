"""The housekeeping flow: what the daily deployment runs compacts idle KPI days and removes
days past retention."""

from __future__ import annotations

from datetime import date

from cellpulse.flows.housekeeping import housekeeping_flow
from cellpulse.settings import HousekeepingSettings, RetentionDays, Settings
from tests.unit.test_housekeeping import a_lake

DAYS = [date(2026, 1, d) for d in (5, 6, 7)]


def test_the_flow_compacts_idle_days_and_removes_days_past_retention(tmp_path):
    settings = Settings(
        home=tmp_path / "home",
        housekeeping=HousekeepingSettings(retention_days=RetentionDays(features=2, expected=2)),
    )
    layout = a_lake(settings.home, DAYS)
    kpis = layout.kpi.read()
    outcome = housekeeping_flow(settings)
    assert outcome.compacted["kpi"] == DAYS
    assert outcome.removed == {"kpi": [], "features": DAYS[:1], "scores": [], "expected": DAYS[:1]}
    assert layout.features.dates() == DAYS[1:]
    assert all(layout.kpi.deltas(d) == [] for d in DAYS)
    assert layout.kpi.read().equals(kpis)
    assert sum(outcome.after.values()) < sum(outcome.before.values())
