"""The ops store behaves the same on DuckDB and on a real PostgreSQL server (started by the
test session itself): idempotent re-publishing, ranking, filters, paging, the alert
lifecycle, and people's verdicts as labels."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import polars as pl
import pytest

from cellpulse.opsstore import TransitionRefused, open_ops_store
from cellpulse.publish import derive_alerts
from cellpulse.settings import SecretUrl, Settings
from tests.conftest import tiny_settings
from tests.unit.test_publish import T0, scores_for

END = T0 + timedelta(days=1)
ROP = timedelta(minutes=15)
NEWEST = T0 + 5 * ROP  # the six ROPs of network() start at T0
NOW = datetime(2026, 1, 6, tzinfo=UTC)


@pytest.fixture(params=["duckdb", "postgres"])
def settings(request, tmp_path) -> Settings:
    base = tiny_settings(tmp_path / "home")
    if request.param == "duckdb":
        return base
    url = request.getfixturevalue("postgres_url")
    return base.model_copy(update={"ops_store_url": SecretUrl(url)})


def network() -> pl.DataFrame:
    scores = scores_for({"a": "..AAAA", "b": "......", "c": "...AAA", "d": "..A..."})
    return scores.with_columns(
        pl.when(pl.col("cell_id") == "d").then(pl.lit("south")).otherwise("region").alias("region"),
        (pl.col("cell_id").rank("dense").cast(pl.Float64) / 10).alias("congestion_prob"),
    )


def publish(settings: Settings) -> None:
    scores = network()
    with open_ops_store(settings) as store:
        new = []
        for _ in range(2):  # a re-run of the same period replaces, never duplicates
            store.replace_scores(scores, T0, END)
            new.append(store.upsert_alerts(derive_alerts(scores, 4, 15)))
    assert len(new[0]) == 3 and new[1] == []  # only the first run's alerts are new


def summary(settings: Settings) -> dict[str, object]:
    """Everything a reader sees, in plain Python values, for comparing backends."""
    with open_ops_store(settings, read_only=True) as store:
        # A window of one ROP ranks by that ROP's scores alone.
        newest = (NEWEST, NEWEST + ROP)
        top, total = store.rank_cells("anomaly", *newest, limit=10)
        congested, _ = store.rank_cells("congestion", *newest, limit=2, offset=1)
        south, south_total = store.rank_cells("anomaly", *newest, limit=10, region="south")
        at = T0 + timedelta(minutes=30)
        earlier, _ = store.rank_cells("anomaly", at, at + ROP, limit=10)
        alerts, alert_total = store.alerts(limit=10)
        open_alerts, _ = store.alerts(limit=10, status="open")
        window, window_total = store.rank_cells("anomaly", T0, END, limit=10)
        peaks, _ = store.rank_cells("congestion", T0, END, limit=2)
        morning, _ = store.rank_cells("anomaly", T0, T0 + timedelta(minutes=45), limit=2)
        return {
            "counts": (store.count("scores"), store.count("alerts")),
            "top": top.select("cell_id", "anomaly_score", "alert_status").rows(),
            "total": total,
            "congested": congested["cell_id"].to_list(),
            "south": (south["cell_id"].to_list(), south_total),
            "earlier": earlier.select("cell_id", "ts").rows(),
            "alerts": alerts.select("alert_id", "status", "kpis", "anomalous_rops").rows(),
            "alert_total": alert_total,
            "open": open_alerts["alert_id"].to_list(),
            "models": store.models_in_use().select("kind", "version", "rows").rows(),
            "cell": store.cell_scores("a", T0, END)["anomaly_score"].to_list(),
            "window": window.select(
                "cell_id", "anomaly_score", "worst_at", "anomalous_rops", "alert_status"
            ).rows(),
            "window_total": window_total,
            "peaks": peaks.select("cell_id", "congestion_prob").rows(),
            "morning": morning["cell_id"].to_list(),
            "queue": store.queue_alerts(["open", "acknowledged"], 10)["alert_id"].to_list(),
            "queue_south": store.queue_alerts(["open"], 10, region="south")["cell_id"].to_list(),
            "cell_alerts": [
                store.cell_alerts("a", T0, END)["alert_id"].to_list(),
                store.cell_alerts("a", T0, T0 + timedelta(minutes=30))["alert_id"].to_list(),
            ],
        }


def test_reads_agree_with_what_was_published(settings):
    publish(settings)
    seen = summary(settings)
    assert seen["counts"] == (24, 3)
    assert [row[0] for row in seen["top"]] == ["a", "c", "b", "d"]
    assert seen["top"][0][2] == "open"
    assert seen["total"] == 4
    assert seen["congested"] == ["c", "b"]
    assert seen["south"] == (["d"], 1)
    assert [row[0] for row in seen["earlier"]] == ["a", "d", "b", "c"]  # d was anomalous then
    assert {row[1] for row in seen["earlier"]} == {T0 + timedelta(minutes=30)}
    assert seen["alert_total"] == 3 and seen["open"] == [
        "a@2026-01-05T00:30Z",
        "c@2026-01-05T00:45Z",
        "d@2026-01-05T00:30Z",  # too few normal ROPs since then to close it
    ]
    assert seen["models"] == [("anomaly", "1", 24), ("congestion", "1", 24)]
    assert len(seen["cell"]) == 6
    # Over the whole day, d's one anomalous ROP (its worst, at 00:30) ranks it above b,
    # although at the newest ROP both are normal.
    assert seen["window"] == [
        ("a", 14.0, T0 + timedelta(minutes=75), 4, "open"),
        ("c", 14.0, T0 + timedelta(minutes=75), 3, "open"),
        ("d", 11.0, T0 + timedelta(minutes=30), 1, "open"),
        ("b", 1.0, T0 + timedelta(minutes=75), 0, None),
    ]
    assert seen["window_total"] == 4
    assert seen["peaks"] == [("d", pytest.approx(0.4)), ("c", pytest.approx(0.3))]
    assert seen["morning"] == ["a", "d"]  # the window ends before c's alert
    assert seen["queue"] == ["a@2026-01-05T00:30Z", "d@2026-01-05T00:30Z", "c@2026-01-05T00:45Z"]
    assert seen["queue_south"] == ["d"]
    assert seen["cell_alerts"] == [["a@2026-01-05T00:30Z"], []]


def test_duckdb_and_postgres_give_the_same_answers(tmp_path, postgres_url):
    duck = tiny_settings(tmp_path / "duck")
    pg = tiny_settings(tmp_path / "pg").model_copy(
        update={"ops_store_url": SecretUrl(postgres_url)}
    )
    for s in (duck, pg):
        publish(s)
    assert summary(duck) == summary(pg)


def test_alert_lifecycle_and_labels(settings):
    publish(settings)
    alert_id = "a@2026-01-05T00:30Z"
    with open_ops_store(settings) as store:
        acked = store.act_on_alert(alert_id, "acknowledge", "ana", "looking", NOW)
        assert (acked["status"], acked["acknowledged_by"], acked["comment"]) == (
            "acknowledged",
            "ana",
            "looking",
        )
        with pytest.raises(TransitionRefused, match="is acknowledged"):
            store.act_on_alert(alert_id, "acknowledge", "bo", None, NOW)
        store.act_on_alert("c@2026-01-05T00:45Z", "false_alarm", "bo", "test traffic", NOW)
        store.upsert_alerts(derive_alerts(network(), 4, 15))  # re-scoring keeps decisions
        assert store.alert(alert_id)["status"] == "acknowledged"
        assert store.alert("c@2026-01-05T00:45Z")["status"] == "false_alarm"
        history = store.alert_history(alert_id)
        assert history.select("action", "status_before", "status_after", "actor").rows() == [
            ("acknowledge", "open", "acknowledged", "ana")
        ]
        labels = store.feedback_labels()
    assert labels.select("cell_id", "label", "decided_by").rows() == [
        ("a", "confirmed", "ana"),
        ("c", "false_alarm", "bo"),
    ]
    assert set(labels.columns) >= {"cell_id", "start", "end", "label"}


def test_one_action_on_several_alerts_reports_each(settings):
    publish(settings)
    with open_ops_store(settings) as store:
        store.act_on_alert("c@2026-01-05T00:45Z", "false_alarm", "bo", None, NOW)
        results = store.act_on_alerts(
            ["a@2026-01-05T00:30Z", "c@2026-01-05T00:45Z", "zz@2026-01-05T00:30Z"],
            "acknowledge",
            "ana",
            "site visit",
            NOW,
        )
        assert [(r["alert_id"], r["ok"], r["status"]) for r in results] == [
            ("a@2026-01-05T00:30Z", True, "acknowledged"),
            ("c@2026-01-05T00:45Z", False, "false_alarm"),
            ("zz@2026-01-05T00:30Z", False, None),
        ]
        assert "is false_alarm" in str(results[1]["detail"])
        assert results[2]["detail"] == "no such alert"
        # The refused ones changed nothing; the done one is recorded like a single action.
        assert store.alert("a@2026-01-05T00:30Z")["acknowledged_by"] == "ana"
        assert store.alert_history("c@2026-01-05T00:45Z")["action"].to_list() == ["false_alarm"]


def test_an_unreachable_postgres_is_a_clear_error(tmp_path):
    from cellpulse.opsstore import OpsStoreUnavailable

    dead = tiny_settings(tmp_path).model_copy(
        update={"ops_store_url": SecretUrl("postgresql://u:secret@127.0.0.1:9/db")}
    )
    with pytest.raises(OpsStoreUnavailable, match="unreachable") as err:
        open_ops_store(dead)
    assert "secret" not in str(err.value)
