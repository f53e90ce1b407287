"""End to end on one day of 100,000 cells, each timed phase in a fresh process (its peak
memory is its own, not the simulation's):

- every ROP: a 15-minute file lands and is ingested, the features of its ROP built from a
  bounded lookback, scored after the carried context, published (lake, ops store, alerts):
  at 00:15 and at 23:45, which must cost the same;
- the daily batch: the day's 24 hourly files ingested, its features built (`build_day`),
  read back and scored, as the score flow does.

Eight days of lookback go straight into the lake, so the runs at 00:15 and 23:45 read the
same: the level changes' window a week earlier reaches into the eighth day back at 00:15
(with seven, the early run read half the rows of the late one). Models are trained
beforehand on 8 days of 1,000 cells (default settings, with the simulator's labelled
faults, so the anomaly model includes the fault classifier), which is not part of the
timing; training speed has its own row. Scratch data lives under $CELLPULSE_BENCH_DIR
(default: the system's temp folder)."""

from __future__ import annotations

import json
import os
import pickle
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import polars as pl

from bench.common import Measurement, record
from bench.ingest import NOW
from bench.scoring import table
from cellpulse import lake
from cellpulse.features.builder import build_features
from cellpulse.features.spec import FeatureParams, spec_for
from cellpulse.settings import Settings

CELLS = int(os.environ.get("CELLPULSE_BENCH_CELLS", "100000"))  # fewer: a dry run
ROP = timedelta(minutes=15)


def timed(fn):  # type: ignore[no-untyped-def]
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0


def _models(work: Path) -> tuple[Any, Any]:
    with (work / "models.pkl").open("rb") as f:
        return pickle.load(f)  # type: ignore[no-any-return]


def rop_step(home: Path, work: Path, files: list[Path]) -> dict[str, float]:
    """What the every-ROP flow does for a delivery, phase by phase (seconds): ingest the
    files, build the new ROPs' features, score them after the carried context, publish
    scores, bands and alerts, carry the state on."""
    from cellpulse.features.store import build_rops
    from cellpulse.ingest import ingest_files
    from cellpulse.models.compiled import CompiledModels
    from cellpulse.models.params import ModelParams
    from cellpulse.models.scoring import champion_scorers, score_rops
    from cellpulse.opsstore import open_ops_store
    from cellpulse.publish import ModelRef, advance_alerts
    from cellpulse.ropstate import RopState, load_state, save_state

    settings = Settings(home=home)
    params = FeatureParams.of(settings)
    anomaly, congestion = _models(work)
    spec = spec_for(params)
    engine = CompiledModels(settings.layout.compiled, settings.train.n_jobs)
    scorers = champion_scorers(
        {
            "anomaly": (anomaly, ModelRef("anomaly", "1", "-")),
            "congestion": (congestion, ModelRef("congestion", "1", "-")),
        }
    )
    out: dict[str, float] = {}
    t0 = time.perf_counter()
    ingest_files(files, settings, NOW)
    out["ingest"] = time.perf_counter() - t0
    state = load_state(settings.layout.rop_state)
    assert state is not None
    t = time.perf_counter()
    features = build_rops(settings.layout, spec, state.newest + ROP, params)
    out["features"] = time.perf_counter() - t
    t = time.perf_counter()
    model_params = ModelParams.of(settings)
    scores = score_rops(
        state.context, features, scorers, model_params, NOW, spec.hash(), engine.predict
    )
    band = anomaly.band(features, predict=engine.predict)
    out["score"] = time.perf_counter() - t
    t = time.perf_counter()
    alerts, still_open = advance_alerts(state.open_alerts, scores, 4, settings.rop_minutes)
    day = features["ts"].min().date()  # type: ignore[union-attr]
    settings.layout.scores.append(scores, day)
    settings.layout.expected.append(band, day)
    newest = features["ts"].max()
    assert isinstance(newest, datetime)
    with open_ops_store(settings) as store:
        store.replace_scores(scores, newest, newest + ROP)
        store.upsert_alerts(alerts)
    context = pl.concat([state.context, features], how="vertical_relaxed")
    keep = context.filter(pl.col("ts") > newest - 3 * ROP)
    save_state(settings.layout.rop_state, RopState(newest, spec.hash(), keep, still_open))
    out["publish"] = time.perf_counter() - t
    out["total"] = time.perf_counter() - t0
    out["rows"] = float(scores.height)
    return out


def batch_step(home: Path, work: Path, landing: Path, day: str) -> dict[str, float]:
    """The daily batch, phase by phase (seconds): ingest the day's files, build its
    features, read them back in chunks of whole cells, score them and write their scores
    and expected bands to the lake."""
    from cellpulse.features.store import build_day, feature_chunks
    from cellpulse.ingest import ingest_files
    from cellpulse.models.compiled import CompiledModels
    from cellpulse.models.params import ModelParams
    from cellpulse.models.scoring import (
        SCORE_CHUNK_ROWS,
        champion_scorers,
        scored_chunks,
        write_scored,
    )
    from cellpulse.publish import ModelRef
    from cellpulse.window import DayWindow

    settings = Settings(home=home)
    params = FeatureParams.of(settings)
    anomaly, congestion = _models(work)
    spec = spec_for(params)
    engine = CompiledModels(settings.layout.compiled, settings.train.n_jobs)
    last = datetime.fromisoformat(day).date()
    summary, t_ingest = timed(lambda: ingest_files([landing], settings, NOW))
    built, t_features = timed(lambda: build_day(settings.layout, spec, last, params))
    scorers = champion_scorers(
        {
            "anomaly": (anomaly, ModelRef("anomaly", "1", "-")),
            "congestion": (congestion, ModelRef("congestion", "1", "-")),
        }
    )
    # As the score flow does: the day's features read and scored in chunks of whole cells,
    # with the expected band (no context: the day before holds no features here), each
    # chunk's scores and bands written to the lake as they come.
    layout = settings.layout
    scores, t_score = timed(
        lambda: write_scored(
            scored_chunks(
                feature_chunks(layout, DayWindow(last, last), spec, SCORE_CHUNK_ROWS),
                pl.DataFrame(),
                scorers,
                ModelParams.of(settings),
                NOW,
                spec.hash(),
                [last],
                engine.predict,
            ),
            layout.scores.days_writer([last]),
            layout.expected.days_writer([last]),
        )
    )
    return {
        "ingest": t_ingest,
        "features": t_features,
        "score": t_score,
        "rows": float(summary.rows_accepted),
        "built": float(built.rows),
        "scored": float(scores.height),
    }


def peak_of_this_process_mb() -> float:
    """This process's peak RSS since it started its program (VmHWM: ru_maxrss would count
    the parent's memory at the fork too)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _child(*args: str) -> tuple[dict[str, float], float]:
    """Run one phase in a fresh process: its figures, and its peak RSS in MB."""
    done = subprocess.run(
        [sys.executable, "-m", "bench.e2e", *args],
        capture_output=True,
        text=True,
        check=False,
        cwd=Path(__file__).parent.parent,
    )
    if done.returncode:
        raise RuntimeError(done.stderr[-4000:])
    got = json.loads(done.stdout.strip().splitlines()[-1])
    return got, got.pop("peak_rss_mb")


def main(runs: int = 1) -> None:
    del runs  # one pass: each phase of a national day is long enough to time once
    from cellpulse.features.store import build_rops
    from cellpulse.ingest import ingest_files
    from cellpulse.models.compiled import CompiledModels
    from cellpulse.models.families import anomaly as anomaly_family
    from cellpulse.models.families import congestion as congestion_family
    from cellpulse.models.params import ModelParams
    from cellpulse.models.profile import HourProfile, hour_sums
    from cellpulse.ropstate import RopState, save_state
    from cellpulse.simulator import (
        SimulationConfig,
        build_topology,
        draw_events,
        iter_days,
        split_into_files,
    )

    scratch = os.environ.get("CELLPULSE_BENCH_DIR")
    with tempfile.TemporaryDirectory(prefix="cellpulse-bench-", dir=scratch) as tmp:
        work = Path(tmp)
        rops_home, batch_home = work / "rops", work / "batch"
        settings = Settings(home=rops_home)
        params = FeatureParams.of(settings)
        spec = spec_for(params)
        small_cfg = SimulationConfig(cells=1_000, days=8, seed=2)
        topology = build_topology(small_cfg)
        events = draw_events(topology, small_cfg)
        small_kpis = pl.concat([d for _, d in iter_days(small_cfg, topology, events)])
        small = build_features(small_kpis, spec, rop_minutes=15, min_denominator=10)
        model_params = ModelParams.of(settings)
        anomaly, t_anomaly = timed(
            lambda: anomaly_family.train_anomaly(small, events, model_params, spec.hash()).model
        )
        congestion, t_congestion = timed(
            lambda: (
                congestion_family.train_congestion(
                    small, small_kpis, model_params, spec.hash()
                ).model
            )
        )
        engine = CompiledModels(settings.layout.compiled, settings.train.n_jobs)
        table(small.head(100), anomaly, congestion, settings, engine.predict)  # compile, untimed
        train_rows = small.height

        quarters, hours = work / "landing-15m", work / "landing-60m"
        config = SimulationConfig(cells=CELLS, days=9, seed=1)
        # As `cellpulse train` does, the model carries every cell's hour profile (here of the
        # lookback days' KPIs), so scoring joins the national network's profiles.
        watched = [t.name for t in anomaly.targets]
        sums = []
        for index, (day, frame) in enumerate(iter_days(config)):
            if index < config.days - 1:  # the lookback goes straight into the lake
                settings.layout.kpi.replace_day(frame, day)
                sums.append(hour_sums(frame, watched))
                continue
            for name, part in split_into_files(frame, 15):
                lake.atomic_write_parquet(part, quarters / name)
            for name, part in split_into_files(frame, 60):  # the batch's day arrives hourly
                lake.atomic_write_parquet(part, hours / name)
            last, rows = day, frame.height
        del frame
        anomaly.profile = HourProfile.from_sums(sums).resolve()
        del sums
        with (work / "models.pkl").open("wb") as f:
            pickle.dump((anomaly, congestion), f)
        profile_cells = anomaly.profile.cells
        profile_mb = anomaly.profile.table.estimated_size() / 1e6
        shutil.copytree(settings.layout.lake, batch_home / "lake", copy_function=os.link)
        shutil.copytree(settings.layout.compiled, batch_home / "compiled")
        files = sorted(quarters.iterdir())
        start = datetime.combine(last, datetime.min.time(), UTC)

        def carry(since: datetime, newest: datetime) -> None:
            """A state as the runs before `newest` would leave it (no alert open)."""
            context = build_rops(settings.layout, spec, since, params)
            save_state(
                settings.layout.rop_state,
                RopState(newest, spec.hash(), context, pl.DataFrame()),
            )

        # 00:00 arrives on its own, then 00:15 is timed.
        ingest_files(files[:1], settings, NOW)
        carry(start, start)
        early, early_mb = _child("rop", str(rops_home), str(work), str(files[1]))
        # 00:30 to 23:30 arrive, then 23:45 is timed.
        ingest_files(files[2:-1], settings, NOW)
        carry(start + timedelta(hours=22, minutes=45), start + timedelta(hours=23, minutes=30))
        late, late_mb = _child("rop", str(rops_home), str(work), str(files[-1]))
        batch, batch_mb = _child("batch", str(batch_home), str(work), str(hours), str(last))

        def rop_row(at: str, got: dict[str, float], mb: float) -> Measurement:
            return Measurement(
                f"every ROP, {at}: file landed → alerts published (ingest "
                f"{got['ingest']:.1f} s, features {got['features']:.1f} s, score "
                f"{got['score']:.1f} s, publish {got['publish']:.1f} s)",
                int(got["rows"]),
                [got["total"]],
                mb,
                "goal: under 30 s, the same at 00:15 and 23:45",
            )

        total = batch["ingest"] + batch["features"] + batch["score"]
        results = [
            Measurement(
                "train anomaly (10 regressors + fault classifier), 1,000 cells × 8 days",
                train_rows,
                [t_anomaly],
                0,
            ),
            Measurement("train congestion, 1,000 cells × 8 days", train_rows, [t_congestion], 0),
            rop_row("00:15", early, early_mb),
            rop_row("23:45", late, late_mb),
            Measurement(
                "ingest, 100,000 cells × 1 day (24 files)",
                int(batch["rows"]),
                [batch["ingest"]],
                0,
            ),
            Measurement("features (build_day)", int(batch["built"]), [batch["features"]], 0),
            Measurement(
                "score (features read in chunks of cells, compiled models, bands; written)",
                int(batch["scored"]),
                [batch["score"]],
                0,
            ),
            Measurement(
                "daily batch: ingest → features → score",
                rows,
                [total],
                batch_mb,
                "goal: under 60 s, under 8 GB",
            ),
        ]
    record(
        "End to end",
        "python -m bench.run e2e",
        results,
        "One pass (a national day is long enough to time once). Each every-ROP row and the "
        "daily batch run in a fresh process: its peak RSS is that process's (the simulation "
        "and training are not in it); the times exclude starting Python and importing. "
        "An every-ROP row is one 15-minute file of 100,000 cells: ingested, its ROP's features "
        "built from the lookback the spec needs (24 h of windows, the ROPs the lags land on, "
        "each level change's 24 h a week earlier), "
        "scored after the ROPs of carried context (the explanation's hour and the alert "
        "rule's run before it), then scores, expected bands and alerts published (lake "
        "deltas, ops store) and the state carried on. The anomaly model carries every "
        f"cell's hour profile ({profile_cells:,} cells, {profile_mb:,.0f} MB in memory), as "
        "`cellpulse train` gives it.",
    )


if __name__ == "__main__":
    from cellpulse.runtime import DEFAULTS, keep_freed_memory

    for key, value in DEFAULTS.items():
        os.environ.setdefault(key, value)
    keep_freed_memory()
    if sys.argv[1] == "rop":
        got = rop_step(Path(sys.argv[2]), Path(sys.argv[3]), [Path(p) for p in sys.argv[4:]])
    else:
        got = batch_step(Path(sys.argv[2]), Path(sys.argv[3]), Path(sys.argv[4]), sys.argv[5])
    got["peak_rss_mb"] = peak_of_this_process_mb()
    print(json.dumps(got))
