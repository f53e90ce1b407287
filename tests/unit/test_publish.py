from datetime import UTC, datetime, timedelta

import polars as pl

from cellpulse.opsstore import open_ops_store
from cellpulse.publish import (
    SCORE_COLUMNS,
    ModelRef,
    assemble_scores,
    derive_alerts,
    markdown_report,
    top_anomalous,
)
from tests.conftest import tiny_settings

T0 = datetime(2026, 1, 5, tzinfo=UTC)


def scores_for(flags: dict[str, str], start: datetime = T0) -> pl.DataFrame:
    """flags: cell -> pattern of '.' (normal) and 'A' (anomalous) ROPs."""
    rows = []
    for cell, pattern in flags.items():
        for i, ch in enumerate(pattern):
            rows.append(
                {
                    "cell_id": cell,
                    "ts": start + timedelta(minutes=15 * i),
                    "site_id": cell[:1],
                    "region": "north",
                    "rat": "NR",
                    "band": "n78",
                    "anomaly_score": 9.0 + i if ch == "A" else 1.0,
                    "is_anomaly": ch == "A",
                    "anomaly_kpis": ["availability_pct"] if ch == "A" else [],
                }
            )
    keys = pl.DataFrame(rows)
    ref = ModelRef("m", "1", "run")
    families = [
        keys.select("anomaly_score", "is_anomaly", "anomaly_kpis").with_columns(
            anomaly_model=pl.lit(ref.name),
            anomaly_model_version=pl.lit(ref.version),
            anomaly_run_id=pl.lit(ref.run_id),
        ),
        pl.DataFrame(
            {
                "congestion_prob": [0.1] * keys.height,
                "congestion_horizon": ["1h"] * keys.height,
                "congestion_model": [ref.name] * keys.height,
                "congestion_model_version": [ref.version] * keys.height,
                "congestion_run_id": [ref.run_id] * keys.height,
            }
        ),
    ]
    return assemble_scores(keys, families, T0)


def test_score_table_has_the_contract_columns():
    assert scores_for({"a": "..A"}).columns == list(SCORE_COLUMNS)


def test_alerts_group_runs_and_close_after_enough_normal_rops():
    scores = scores_for({"a": "AA..AA......AA", "b": "...AAA"})
    alerts = derive_alerts(scores, clear_after_rops=4, rop_minutes=15).sort("cell_id", "opened_at")
    assert alerts["cell_id"].to_list() == ["a", "a", "b"]
    first = alerts.row(0, named=True)
    assert first["opened_at"] == T0 and first["anomalous_rops"] == 4  # the 2-ROP gap is bridged
    assert first["status"] == "closed"
    assert first["closed_at"] == T0 + timedelta(minutes=15 * (5 + 4))
    assert alerts["status"].to_list()[1:] == ["open", "open"]
    assert first["alert_id"] == "a@2026-01-05T00:00Z"


def test_ops_store_replaces_a_period_and_keeps_acknowledgements(tmp_path):
    scores = scores_for({"a": "..AAA.", "b": "......"})
    alerts = derive_alerts(scores, 4, 15)
    end = T0 + timedelta(days=1)
    with open_ops_store(tiny_settings(tmp_path)) as store:
        store.replace_scores(scores, T0, end)
        store.upsert_alerts(alerts)
        store.execute("UPDATE alerts SET status = 'acknowledged', acknowledged_by = 'noc'")
        store.replace_scores(scores, T0, end)  # a re-run of the same period
        store.upsert_alerts(alerts)
        assert store.count("scores") == scores.height
        assert store.count("alerts") == 1
        row = store.query("SELECT status, acknowledged_by, kpis FROM alerts").row(0)
        assert row == ("acknowledged", "noc", ["availability_pct"])
        back = store.query("SELECT * FROM scores ORDER BY cell_id, ts")
        assert (
            back["anomaly_score"].to_list()
            == scores.sort("cell_id", "ts")["anomaly_score"].to_list()
        )


def test_ranked_lists_and_report_put_the_worst_cell_first():
    scores = scores_for({"a": "......", "b": "..AAAA", "c": "...A.."})
    assert top_anomalous(scores, 2)["cell_id"].to_list() == ["b", "c"]
    report = markdown_report(scores, derive_alerts(scores, 4, 15))
    assert report.index("| b |") < report.index("| c |")
    assert "3 cells, 18 ROPs scored" in report


def test_alerts_carry_a_likely_type_and_a_severity():
    from cellpulse.publish import alert_severity, alert_type

    cases = pl.DataFrame(
        {
            "kpis": [
                ["availability_pct", "dl_volume_mbit", "rrc_conn_mean"],
                ["dl_volume_mbit", "rrc_conn_mean"],
                ["ul_interference_dbm", "cqi_mean"],
                ["rrc_sr_pct"],
                ["drop_rate_pct"],
                ["ho_sr_pct"],
                ["dl_ue_thp_mbps"],
                [],
                ["no_traffic", "dl_volume_mbit", "prb_util_dl_pct"],
                ["congestion", "dl_volume_mbit"],
            ],
            "peak": [6.0, 25.0, 12.0, 6.0, 6.0, 6.0, 6.0, 6.0, 50.0, 6.0],
            "rops": [3, 3, 3, 9, 3, 3, 3, 3, 3, 3],
        },
        schema_overrides={"kpis": pl.List(pl.String)},
    )
    typed = cases.select(
        alert_type(pl.col("kpis")).alias("type"),
        alert_severity(pl.col("kpis"), pl.col("peak"), pl.col("rops")).alias("severity"),
    )
    assert typed.rows() == [
        ("outage", "critical"),  # any outage is critical
        ("sleeping_cell", "critical"),  # 25 spreads
        ("interference", "major"),  # 12 spreads
        ("accessibility", "major"),  # 9 anomalous ROPs
        ("retainability", "minor"),
        ("mobility", "minor"),
        ("degradation", "minor"),
        ("unclassified", "minor"),
        ("no_traffic", "critical"),  # down or asleep: nothing is carried
        ("congestion", "minor"),  # the load explains it: not sleeping, not a fault
    ]
    alerts = derive_alerts(scores_for({"a": "..AAA."}), 4, 15)
    assert alerts.select("alert_type", "severity").row(0) == ("outage", "critical")
