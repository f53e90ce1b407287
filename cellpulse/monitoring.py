"""Monitoring checks: has the network, or the models' view of it, changed enough since the
champion was trained that its scores should no longer be trusted as they are?

Which days are compared (`monitor_days`), a bounded sample of them (`read_samples`), then
pure functions over tables: each check gives one `Check`, a value, the threshold from
settings, and whether it was crossed (`run_checks`). The monitoring flow logs them (Prefect
artifact, MLflow runs) and retrains when a drift check is crossed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import date, timedelta

import numpy as np
import polars as pl

from cellpulse import contract
from cellpulse.errors import NoDataError
from cellpulse.lake import Dataset
from cellpulse.layout import Layout
from cellpulse.models.scoring import BASELINE_VERSION
from cellpulse.settings import MonitorSettings
from cellpulse.window import DayWindow

PSI_BINS = 10
PSI_FLOOR = 1e-4  # an empty bin counts as this share, so PSI stays finite


@dataclass(frozen=True)
class Check:
    """One monitoring check's outcome: its value against its threshold, a line for people
    and the detail behind it."""

    name: str  # psi | counter_availability | topology | score_shift | performance
    value: float
    threshold: float
    breached: bool
    summary: str
    detail: pl.DataFrame = field(default_factory=pl.DataFrame, compare=False)
    drift: bool = True  # a crossed drift check asks for retraining


@dataclass(frozen=True)
class MonitorReport:
    """Every check of a monitoring run, recent days against the champion's training window."""

    reference: tuple[str, str]  # the champion's training window
    recent: tuple[str, str]
    checks: list[Check]
    note: str = ""  # why some or all checks did not run (no champion yet)

    @property
    def breached(self) -> list[Check]:
        return [c for c in self.checks if c.breached]

    @property
    def needs_retraining(self) -> bool:
        return any(c.breached and c.drift for c in self.checks)

    def markdown(self) -> str:
        """The report as a Markdown table, for the Prefect artifact."""
        if not self.checks:
            return f"# cellpulse monitoring: {self.recent[0]}..{self.recent[1]}\n\n{self.note}\n"
        lines = [
            f"# cellpulse monitoring: {self.recent[0]}..{self.recent[1]} vs the champion's "
            f"training window {self.reference[0]}..{self.reference[1]}",
            "",
            "| check | value | threshold | crossed | summary |",
            "|---|---:|---:|---|---|",
        ]
        for c in self.checks:
            value = "n/a" if math.isnan(c.value) else f"{c.value:.3f}"
            crossed = "**yes**" if c.breached else "no"
            lines.append(f"| {c.name} | {value} | {c.threshold:g} | {crossed} | {c.summary} |")
        lines += ["", "Retraining: " + ("**triggered**" if self.needs_retraining else "not needed")]
        return "\n".join(lines) + "\n"


@dataclass(frozen=True)
class MonitorDays:
    """The days a monitoring run compares."""

    reference: list[date]  # the champion's training days that have features
    recent: list[date]  # the newest `recent_days` days with features
    score_reference: list[date]  # scored days to compare recent scores with


def monitor_days(
    featured: list[date], scored: list[date], trained_on: DayWindow | None, recent_days: int
) -> MonitorDays:
    """The recent days against the champion's training window.

    Args:
        featured: the days with features, oldest first.
        scored: the days with published scores, oldest first.
        trained_on: the champion's training window (None: its run did not record one).
        recent_days: how many of the newest days count as recent.
    """
    if not featured:
        raise NoDataError("no features to monitor; run `cellpulse features` first")
    if trained_on is None:
        raise NoDataError(
            "the champion's run records no training window (tag data.train_window); retrain"
        )
    recent = [d for d in featured if d > featured[-1] - timedelta(days=recent_days)]
    # The lake's first day has no history behind its windows (every ROP before it "missing"):
    # it describes the start of the data, not the network. A champion trained up to today
    # has the recent days in its window too: they are compared, never part of the
    # reference, or drift would be measured partly against itself.
    reference = [d for d in trained_on.within(featured) if featured[0] < d < recent[0]]
    if not reference:
        raise NoDataError(
            f"the champion's training window {trained_on} has no features left before the "
            f"recent days ({recent[0]}..{recent[-1]}); lower monitor.recent_days, or rebuild the "
            "training window's features"
        )
    # Scores of the training window if they exist, else the earliest scored week; never
    # the recent days themselves.
    earlier = [d for d in scored if d < recent[0]]
    score_reference = trained_on.within(earlier) or earlier[:recent_days]
    return MonitorDays(reference, recent, score_reference)


def unchecked(featured: list[date], recent_days: int, why: str) -> MonitorReport:
    """The report of a run that could check nothing (e.g. no family has a champion, so
    there is no training window to compare with): the recent days and why."""
    if not featured:
        raise NoDataError("no features to monitor; run `cellpulse features` first")
    recent = [d for d in featured if d > featured[-1] - timedelta(days=recent_days)]
    return MonitorReport(("", ""), (str(recent[0]), str(recent[-1])), [], why)


def model_scored(scores: pl.DataFrame) -> pl.DataFrame:
    """The rows a trained anomaly model scored: a baseline's rows (before there was a
    champion) say nothing about the champion's scores."""
    if "anomaly_model_version" not in scores.columns:
        return scores
    return scores.filter(
        pl.col("anomaly_model_version").is_not_null()
        & (pl.col("anomaly_model_version") != BASELINE_VERSION)
    )


@dataclass(frozen=True)
class Samples:
    """Rows of the reference and the recent days that the checks compare."""

    days: MonitorDays
    features: tuple[pl.DataFrame, pl.DataFrame]  # (reference, recent)
    kpis: tuple[pl.DataFrame, pl.DataFrame]
    scores: tuple[pl.DataFrame, pl.DataFrame]


def sample_days(ds: Dataset, days: list[date], per_day: int, seed: int = 0) -> pl.DataFrame:
    """Up to `per_day` rows of each day, read one day at a time (bounded memory at any
    network size); a fixed seed keeps repeated checks comparable."""
    frames = []
    for day in days:
        rows = ds.read(day, day)
        if rows.height:
            frames.append(rows.sample(min(per_day, rows.height), seed=seed))
    return pl.concat(frames, how="diagonal_relaxed") if frames else pl.DataFrame()


def read_samples(layout: Layout, days: MonitorDays, per_day: int) -> Samples:
    """A sample of each day's features and KPIs (four times as many KPI rows: the
    availability and topology checks count cells), and every recent score."""
    recent = days.recent
    return Samples(
        days,
        (
            sample_days(layout.features, days.reference, per_day),
            sample_days(layout.features, recent, per_day),
        ),
        (
            sample_days(layout.kpi, days.reference, per_day * 4),
            sample_days(layout.kpi, recent, per_day * 4),
        ),
        (
            sample_days(layout.scores, days.score_reference, per_day),
            layout.scores.read(recent[0], recent[-1]),
        ),
    )


def run_checks(
    samples: Samples, columns: list[str], events: pl.DataFrame | None, cfg: MonitorSettings
) -> MonitorReport:
    """Every check on the samples: drift of the feature `columns` (network features only:
    calendar features differ between any two windows by construction), counter
    availability, topology, score shift when both windows have scores, and the champion's
    recall on labelled `events` when any falls in the recent window."""
    (feats_ref, feats_now), (kpis_ref, kpis_now) = samples.features, samples.kpis
    scores_ref, scores_now = (model_scored(s) for s in samples.scores)
    checks = [
        feature_psi(
            feats_ref,
            feats_now,
            [c for c in columns if c in feats_ref.columns],
            cfg.psi_threshold,
            cfg.retrain_drift_share,
        ),
        counter_availability(kpis_ref, kpis_now, cfg.availability_drop),
        topology_change(kpis_ref, kpis_now, cfg.topology_change_share),
    ]
    if scores_ref.height and scores_now.height:
        checks.append(score_shift(scores_ref, scores_now, cfg.score_psi_threshold))
    performance = champion_performance(scores_now, events, cfg.min_event_recall)
    if performance is not None:
        checks.append(performance)
    reference, recent = samples.days.reference, samples.days.recent
    return MonitorReport(
        (str(reference[0]), str(reference[-1])), (str(recent[0]), str(recent[-1])), checks
    )


def psi(reference: np.ndarray, current: np.ndarray, bins: int = PSI_BINS) -> float:
    """Population stability index of `current` against `reference`, over the reference's
    quantile bins: sum((cur - ref) * ln(cur / ref)). Below 0.1 is stable, above 0.25 a shift
    worth acting on (the usual reading)."""
    ref = reference[np.isfinite(reference)]
    cur = current[np.isfinite(current)]
    if ref.size == 0 or cur.size == 0:
        return float("nan")
    edges = np.unique(np.quantile(ref, np.linspace(0, 1, bins + 1)[1:-1]))
    ref_share = np.bincount(np.searchsorted(edges, ref, side="right"), minlength=edges.size + 1)
    cur_share = np.bincount(np.searchsorted(edges, cur, side="right"), minlength=edges.size + 1)
    p = np.maximum(ref_share / ref.size, PSI_FLOOR)
    q = np.maximum(cur_share / cur.size, PSI_FLOOR)
    return float(np.sum((q - p) * np.log(q / p)))


def feature_psi(
    reference: pl.DataFrame,
    recent: pl.DataFrame,
    columns: list[str],
    threshold: float,
    share: float,
) -> Check:
    """PSI of every numeric feature; the check is the share of features whose PSI is above
    `threshold`, crossed at `share` (its detail: every feature's PSI, the worst first)."""
    rows = []
    for name in columns:
        if name not in reference.columns or name not in recent.columns:
            continue
        value = psi(
            reference[name].cast(pl.Float64).to_numpy(), recent[name].cast(pl.Float64).to_numpy()
        )
        if np.isfinite(value):
            rows.append((name, value))
    detail = pl.DataFrame(rows, schema=["feature", "psi"], orient="row").sort(
        "psi", descending=True
    )
    worst = detail.row(0) if detail.height else ("none", 0.0)
    shifted = int((detail["psi"] > threshold).sum()) if detail.height else 0
    shifted_share = shifted / detail.height if detail.height else 0.0
    return Check(
        "psi",
        shifted_share,
        share,
        shifted_share >= share,
        f"{shifted} of {detail.height} features shifted (PSI > {threshold:g}), "
        f"{shifted_share:.0%} where {share:.0%} counts as drift; "
        f"worst {worst[0]} at {worst[1]:.3f}",
        detail,
    )


def counter_availability(reference: pl.DataFrame, recent: pl.DataFrame, max_drop: float) -> Check:
    """Share of cells reporting each KPI (any non-null value in the window), before and now;
    the check is the largest drop, e.g. a counter an OSS upgrade stopped exporting."""
    names = [m for m in contract.MEASUREMENT_NAMES if m in reference.columns]

    def shares(kpis: pl.DataFrame) -> pl.DataFrame:
        per_cell = kpis.group_by("cell_id").agg(pl.col(n).is_not_null().any() for n in names)
        return per_cell.select(pl.col(n).mean() for n in names)

    before, now = shares(reference), shares(recent)
    detail = pl.DataFrame(
        {
            "kpi": names,
            "share_reference": [before[n][0] for n in names],
            "share_recent": [now[n][0] if n in now.columns else 0.0 for n in names],
        }
    ).with_columns((pl.col("share_reference") - pl.col("share_recent")).alias("drop"))
    detail = detail.sort("drop", descending=True)
    worst_kpi, worst = detail.row(0)[0], float(detail["drop"][0])
    return Check(
        "counter_availability",
        worst,
        max_drop,
        worst > max_drop,
        f"largest drop in cells reporting a KPI: {worst_kpi} by {worst:.0%}",
        detail,
    )


def topology_change(reference: pl.DataFrame, recent: pl.DataFrame, max_share: float) -> Check:
    """Cells that appeared or disappeared, and sites whose band mix changed, as a share of
    the reference cells."""
    before = set(reference["cell_id"].unique().to_list())
    now = set(recent["cell_id"].unique().to_list())
    appeared, gone = sorted(now - before), sorted(before - now)

    def band_mix(kpis: pl.DataFrame) -> dict[str, tuple[str, ...]]:
        mix = kpis.group_by("site_id").agg(pl.col("band").unique().sort())
        return {str(site): tuple(bands) for site, bands in mix.iter_rows()}

    mix_before, mix_now = band_mix(reference), band_mix(recent)
    rebanded = sorted(s for s in mix_now if s in mix_before and mix_now[s] != mix_before[s])
    changed = len(appeared) + len(gone)
    share = changed / max(len(before), 1)
    detail = pl.DataFrame(
        {
            "change": ["appeared"] * len(appeared)
            + ["disappeared"] * len(gone)
            + ["band mix"] * len(rebanded),
            "id": appeared + gone + rebanded,
        },
        schema={"change": pl.String, "id": pl.String},
    )
    return Check(
        "topology",
        share,
        max_share,
        share > max_share or bool(rebanded),
        f"{len(appeared)} cells appeared, {len(gone)} disappeared, "
        f"{len(rebanded)} sites changed band mix",
        detail,
    )


def score_shift(reference: pl.DataFrame, recent: pl.DataFrame, threshold: float) -> Check:
    """PSI of the anomaly score and the congestion probability, earliest scores vs recent."""
    rows = [
        (name, psi(reference[name].to_numpy(), recent[name].to_numpy()))
        for name in ("anomaly_score", "congestion_prob")
        if name in reference.columns and name in recent.columns
    ]
    detail = pl.DataFrame(rows, schema=["score", "psi"], orient="row")
    worst = float(np.nanmax(detail["psi"].to_numpy())) if detail.height else 0.0
    return Check(
        "score_shift",
        worst,
        threshold,
        worst > threshold,
        "PSI of " + ", ".join(f"{n} {v:.3f}" for n, v in rows),
        detail,
    )


def champion_performance(
    scores: pl.DataFrame, events: pl.DataFrame | None, min_recall: float
) -> Check | None:
    """Share of labelled fault events in the recent window that the champion flagged (any
    anomalous ROP of the cell during the event). None when no event falls in the window."""
    if events is None or events.is_empty() or scores.is_empty():
        return None
    lo, hi = scores["ts"].min(), scores["ts"].max()
    faults = events.filter(
        (pl.col("kind") == "fault") if "kind" in events.columns else pl.lit(True)
    ).filter((pl.col("start") <= hi) & (pl.col("end") >= lo))
    if faults.is_empty():
        return None
    flagged = scores.filter(pl.col("is_anomaly")).select("cell_id", "ts")
    hits = (
        faults.with_row_index("_event")
        .join(flagged, on="cell_id", how="inner")
        .filter(pl.col("ts").is_between(pl.col("start"), pl.col("end")))
        .select(pl.col("_event").n_unique())
        .item()
    )
    recall = hits / faults.height
    return Check(
        "performance",
        recall,
        min_recall,
        recall < min_recall,
        f"champion flagged {hits} of {faults.height} labelled faults in the recent window",
        drift=True,
    )
