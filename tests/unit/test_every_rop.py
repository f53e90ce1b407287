"""The every-ROP path: a day built, scored and alerted ROP by ROP (bounded lookback reads,
carried context and open alerts) publishes exactly what the daily batch does for it."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta

import polars as pl
import pytest

from cellpulse.features.builder import build_features, rops_needed
from cellpulse.features.spec import FeatureParams, default_spec
from cellpulse.features.store import build_day, build_rops, new_rops
from cellpulse.models.anomaly import EXPLAIN_SPAN
from cellpulse.models.families import anomaly as anomaly_family
from cellpulse.models.families import congestion as congestion_family
from cellpulse.models.family import family
from cellpulse.models.params import ModelParams
from cellpulse.models.scoring import champion_scorer, score_features, score_rops
from cellpulse.publish import ModelRef, advance_alerts, derive_alerts
from cellpulse.ropstate import RopState, context_rops, load_state, save_state
from cellpulse.simulator import SimulationConfig, build_topology, draw_events, iter_days, make_event
from cellpulse.simulator.events import EVENT_SCHEMA
from tests.conftest import START, tiny_settings

CFG = SimulationConfig(cells=40, days=10, start=START, seed=5, events_per_cell_day=0.06)
DAY = START + timedelta(days=CFG.days - 1)  # the day delivered ROP by ROP
SPEC = default_spec(15)
ROP = timedelta(minutes=15)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """Lake homes for the batch and the ROP path (the days before DAY in both), every
    KPI row, and both families trained (the anomaly model with its fault classifier) on
    the days before DAY."""
    topo = build_topology(CFG)
    outage = make_event(
        topo, 7, "outage", datetime.combine(DAY, datetime.min.time(), UTC) + timedelta(hours=9), 3
    )
    events = pl.concat([draw_events(topo, CFG), pl.DataFrame([outage], schema=EVENT_SCHEMA)])
    days = list(iter_days(CFG, topo, events))
    kpis = pl.concat([frame for _, frame in days])
    settings = tiny_settings(tmp_path_factory.mktemp("batch"))
    settings = settings.model_copy(
        update={"train": settings.train.model_copy(update={"supervised": "blend"})}
    )
    rops = tiny_settings(tmp_path_factory.mktemp("rops"))
    for day, frame in days[:-1]:
        settings.layout.kpi.replace_day(frame, day)
        rops.layout.kpi.replace_day(frame, day)
    history = build_features(
        kpis.filter(pl.col("ts").dt.date() < DAY), SPEC, rop_minutes=15, min_denominator=10
    )
    params = ModelParams.of(settings)
    anomaly = anomaly_family.train_anomaly(history, events, params, SPEC.hash()).model
    congestion = congestion_family.train_congestion(history, kpis, params, SPEC.hash()).model
    scorers = [
        champion_scorer(family("anomaly"), anomaly, ModelRef("anomaly", "1", "r1")),
        champion_scorer(family("congestion"), congestion, ModelRef("congestion", "1", "r2")),
    ]
    return settings, rops, days[-1][1], scorers


SCORED_AT = datetime(2026, 2, 1, tzinfo=UTC)


def test_a_day_rop_by_rop_equals_the_batch(world):
    settings, rops, last_day, scorers = world
    params = FeatureParams.of(settings)
    model_params = ModelParams.of(settings)
    assert scorers[0].model.classifier is not None  # its alerts are explained by it too

    # The batch: the whole day ingested, built, scored after the day before, alerts derived.
    settings.layout.kpi.append(last_day, DAY)
    for day in (DAY - timedelta(days=1), DAY):
        build_day(settings.layout, SPEC, day, params)
    both = settings.layout.features.read(DAY - timedelta(days=1), DAY)
    batch_features = both.filter(pl.col("ts").dt.date() == DAY)
    batch_scores = score_features(both, scorers, model_params, SCORED_AT, SPEC.hash()).filter(
        pl.col("ts").dt.date() == DAY
    )
    batch_alerts = derive_alerts(batch_scores, 4, 15)
    assert batch_alerts.height >= 1
    assert batch_scores["anomaly_kpis"].list.len().sum() > 0

    # The ROP path: deliveries of one ROP (and one of a whole hour), each built from a
    # bounded lookback in chunks of a few whole sites, scored after the carried context,
    # alerts carried over.
    in_chunks = dataclasses.replace(params, chunk_cells=7)
    keep = context_rops(model_params.alerts.consecutive_rops, EXPLAIN_SPAN, 15)
    start = datetime.combine(DAY, datetime.min.time(), UTC)
    state = RopState(
        start - ROP,
        SPEC.hash(),
        both.filter((pl.col("ts") < start) & (pl.col("ts") >= start - keep * ROP)),
        advance_alerts(None, batch_scores.clear(), 4, 15)[1],
    )
    features, scores, alerts = [], [], []
    t = start
    while t.date() == DAY:
        step = 4 * ROP if t.hour == 13 and t.minute == 0 else ROP  # an hourly file too
        rops.layout.kpi.append(last_day.filter(pl.col("ts").is_between(t, t + step - ROP)), DAY)
        save_state(rops.layout.rop_state, state)
        state = load_state(rops.layout.rop_state)  # carried through its files
        assert state is not None
        since = state.newest + ROP
        assert new_rops(rops.layout, since, 15).size == step // ROP
        built = build_rops(rops.layout, SPEC, since, in_chunks)
        scored = score_rops(state.context, built, scorers, model_params, SCORED_AT, SPEC.hash())
        touched, still_open = advance_alerts(state.open_alerts, scored, 4, 15)
        features.append(built)
        scores.append(scored)
        alerts.append(touched)
        newest = built["ts"].max()
        context = pl.concat([state.context, built], how="vertical_relaxed")
        state = RopState(
            newest, SPEC.hash(), context.filter(pl.col("ts") > newest - keep * ROP), still_open
        )
        t += step

    assert pl.concat(features).sort("cell_id", "ts").equals(batch_features.sort("cell_id", "ts"))
    assert pl.concat(scores).sort("cell_id", "ts").equals(batch_scores)
    # Each alert as last published (the ops store upserts by id) is the batch's alert.
    final = pl.concat(alerts).unique("alert_id", keep="last", maintain_order=True)
    assert final.sort("alert_id").equals(batch_alerts.sort("alert_id"))


def test_the_lookback_is_bounded_whatever_the_hour():
    """The ROPs a new ROP's features read: the same count at 00:15 and 23:45 (a day of
    trailing windows, the lags' ROPs and the level changes' day a week earlier), not the
    day so far."""
    first = int(datetime(2026, 1, 13, 0, 15, tzinfo=UTC).timestamp()) // 900
    last = int(datetime(2026, 1, 13, 23, 45, tzinfo=UTC).timestamp()) // 900
    early, late = (rops_needed(SPEC, pl.Series([r]).to_numpy(), 15) for r in (first, last))
    # The 24 h window and the ROP; the 24 h a week earlier (its last ROP is the 7-day lag's);
    # the 14- and 21-day lags.
    assert early.size == late.size == 96 + 1 + 96 + 2


def test_alerts_carried_rop_by_rop_equal_alerts_derived_at_once():
    """Runs that bridge gaps shorter than clear_after_rops, close, reopen, and peak twice
    at the same score: carried one ROP at a time, they become the alerts of the whole."""
    t0 = datetime(2026, 1, 5, tzinfo=UTC)
    flags = {"a": "..XXX..X....X", "b": "XX.....XXXXXX", "c": "............."}
    peak = {("a", 2): 9.0, ("a", 4): 9.0, ("b", 8): 7.0}
    rows = [
        {
            "cell_id": cell,
            "site_id": "s",
            "region": "r",
            "ts": t0 + i * ROP,
            "anomaly_score": peak.get((cell, i), 5.0 if f == "X" else 1.0),
            "is_anomaly": f == "X",
            "anomaly_kpis": [f"kpi_{i}"] if f == "X" else [],
            "anomaly_model_version": "1",
        }
        for cell, row in flags.items()
        for i, f in enumerate(row)
    ]
    scores = pl.DataFrame(rows).sort("cell_id", "ts")
    whole = derive_alerts(scores, 4, 15)
    carried, published = None, []
    for i in range(len(flags["a"])):
        touched, carried = advance_alerts(
            carried, scores.filter(pl.col("ts") == t0 + i * ROP), 4, 15
        )
        published.append(touched)
    final = pl.concat(published).unique("alert_id", keep="last", maintain_order=True)
    assert final.sort("alert_id").equals(whole.sort("alert_id"))
    assert whole.filter(pl.col("cell_id") == "a")["kpis"].to_list()[0] == ["kpi_2"]
    assert sorted(whole["status"].to_list()) == ["closed", "closed", "open", "open"]


def test_the_context_covers_the_explanation_span_and_the_alert_rule_s_run_before_it():
    """An alert's explanation reads the alerting rows of the hour before it (3 ROPs of
    15 minutes), and whether the oldest of them alerts depends on the 2 ROPs before it."""
    assert context_rops(3, timedelta(hours=1), 15) == 5
    assert context_rops(3, timedelta(hours=1), 60) == 2
    assert context_rops(1, timedelta(minutes=15), 15) == 0
