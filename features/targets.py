"""Targets: the congestion rule and the labels built from it and from known events.

Targets may look ahead in time (that is what a forecast target is); they are built apart
from the feature table and never enter it.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Literal

import polars as pl

from cellpulse.errors import NoDataError
from cellpulse.rops import rop_number, run_ids
from cellpulse.settings import CongestionRule

# The congestion rule's conditions: (setting, KPI, comparison). The first two say the cell
# is loaded; active users only qualify them, so one of those two must remain.
RULE_CONDITIONS: tuple[tuple[str, str, Literal[">=", "<"]], ...] = (
    ("prb_util_min_pct", "prb_util_dl_pct", ">="),
    ("thp_floor_mbps", "dl_ue_thp_mbps", "<"),
    ("min_active_ue", "active_ue_dl_mean", ">="),
)
LOAD_SETTINGS = ("prb_util_min_pct", "thp_floor_mbps")
# The KPIs congestion labels read: the rule's, and the volume that finds a day's busy hour.
LABEL_KPIS = (*(kpi for _, kpi, _ in RULE_CONDITIONS), "dl_volume_mbit")


@dataclass(frozen=True)
class Condition:
    """One condition of the congestion rule, e.g. prb_util_dl_pct >= 80."""

    setting: str
    kpi: str
    op: Literal[">=", "<"]
    threshold: float

    def expr(self) -> pl.Expr:
        col = pl.col(self.kpi)
        return col >= self.threshold if self.op == ">=" else col < self.threshold

    def __str__(self) -> str:
        return f"{self.kpi} {self.op} {self.threshold:g}"


@dataclass(frozen=True)
class AppliedRule:
    """The congestion rule as it applies to some data: the conditions kept, the ones left
    out because their KPI is absent (setting -> KPI), and the ones switched off (null)."""

    conditions: tuple[Condition, ...]
    min_consecutive_rops: int
    left_out: dict[str, str] = field(default_factory=dict)
    switched_off: tuple[str, ...] = ()
    horizon: str = "minutes"  # CongestionRule.horizon and horizon_minutes, carried along
    horizon_minutes: int = 60

    @property
    def kpis(self) -> list[str]:
        return [c.kpi for c in self.conditions]

    def expr(self) -> pl.Expr:
        """True where every kept condition holds this ROP (null KPIs: not congested)."""
        return pl.all_horizontal(c.expr() for c in self.conditions).fill_null(False)

    def describe(self) -> str:
        """The rule in one line, with what was left out and why."""
        text = (
            f"congested: {' and '.join(str(c) for c in self.conditions)} "
            f"for {self.min_consecutive_rops} ROPs in a row"
        )
        if self.left_out:
            text += "; left out for absent KPIs: " + ", ".join(
                f"{kpi} (congestion.{s})" for s, kpi in self.left_out.items()
            )
        if self.switched_off:
            text += "; switched off: " + ", ".join(f"congestion.{s}" for s in self.switched_off)
        return text


def kpis_with_values(kpis: pl.DataFrame) -> set[str]:
    """Columns of `kpis` holding at least one value: a column of nulls is a KPI the source
    does not deliver."""
    counts = kpis.null_count().row(0, named=True)
    return {c for c, nulls in counts.items() if nulls < kpis.height}


def apply_rule(rule: CongestionRule, available: Collection[str]) -> AppliedRule:
    """The conditions of `rule` that apply to data holding the KPIs `available`.

    A condition whose KPI is absent is left out (rule.absent_kpis "leave_out") or fails
    ("fail"). Raises NoDataError naming the missing KPIs and the settings to change when
    neither PRB utilisation nor user throughput is left to say the cell is loaded."""
    kept, left_out, off = [], {}, []
    for setting, kpi, op in RULE_CONDITIONS:
        threshold = getattr(rule, setting)
        if threshold is None:
            off.append(setting)
        elif kpi not in available:
            left_out[setting] = kpi
        else:
            kept.append(Condition(setting, kpi, op, float(threshold)))
    if left_out and rule.absent_kpis == "fail":
        raise NoDataError(
            "the congestion rule needs "
            + ", ".join(f"{kpi} (congestion.{s})" for s, kpi in left_out.items())
            + ", which the data does not hold; set those thresholds to null or "
            "congestion.absent_kpis to leave_out"
        )
    if not any(c.setting in LOAD_SETTINGS for c in kept):
        missing = [f"{kpi} (congestion.{s})" for s, kpi in left_out.items() if s in LOAD_SETTINGS]
        raise NoDataError(
            "no congestion condition is left: the data holds no "
            + (" or ".join(missing) or "KPI of the rule")
            + "; deliver PRB utilisation (prb_util_dl_pct) or user throughput "
            "(dl_ue_thp_mbps), or set congestion.prb_util_min_pct / "
            "congestion.thp_floor_mbps for a KPI the data holds"
        )
    return AppliedRule(
        tuple(kept),
        rule.min_consecutive_rops,
        left_out,
        tuple(off),
        rule.horizon,
        rule.horizon_minutes,
    )


def congestion_flags(
    kpis: pl.DataFrame, rule: CongestionRule | AppliedRule, rop_minutes: int
) -> pl.DataFrame:
    """Per (cell_id, ts): `congestion_raw` (the condition holds this ROP), `congested` (it is
    part of a run of at least `min_consecutive_rops`; looks ahead within the run) and
    `congested_now` (the run has lasted that long up to and including this ROP; causal).

    A missing ROP breaks a run: an unreported period is not evidence of congestion. A
    `CongestionRule` is applied to the KPIs `kpis` holds (`apply_rule`).
    """
    if isinstance(rule, CongestionRule):
        rule = apply_rule(rule, kpis_with_values(kpis))
    raw = rule.expr()
    df = (
        kpis.select("cell_id", "ts", *rule.kpis)
        .sort("cell_id", "ts")
        .with_columns(raw.alias("congestion_raw"))
        .with_columns(run_ids(rop_minutes, value="congestion_raw").alias("_run"))
    )
    df = df.with_columns(
        pl.len().over("_run").alias("_run_len"),
        (pl.int_range(pl.len()).over("_run") + 1).alias("_run_pos"),
    )
    k = rule.min_consecutive_rops
    return df.select(
        "cell_id",
        "ts",
        "congestion_raw",
        (pl.col("congestion_raw") & (pl.col("_run_len") >= k)).alias("congested"),
        (pl.col("congestion_raw") & (pl.col("_run_pos") >= k)).alias("congested_now"),
    )


def congestion_target(flags: pl.DataFrame, horizon_minutes: int, rop_minutes: int) -> pl.DataFrame:
    """`congested_within`: the cell is congested in at least one ROP of (ts, ts + horizon].

    Null where the data does not reach ts + horizon yet: such rows cannot be labelled.
    """
    horizon_rops = max(1, horizon_minutes // rop_minutes)
    last_ts = flags["ts"].max()
    df = flags.select("cell_id", "ts", "congested").with_columns(
        (-rop_number(rop_minutes)).alias("_neg_rop")
    )
    # Walking time backwards turns "the next h ROPs" into a trailing window that excludes now.
    df = df.sort("cell_id", "_neg_rop").with_columns(
        pl.col("congested")
        .cast(pl.Int8)
        .rolling_max_by("_neg_rop", window_size=f"{horizon_rops}i", closed="left")
        .over("cell_id")
        .fill_null(0)
        .cast(pl.Boolean)
        .alias("congested_within")
    )
    known = pl.col("ts") + pl.duration(minutes=horizon_minutes) <= last_ts
    return df.select(
        "cell_id", "ts", pl.when(known).then(pl.col("congested_within")).alias("congested_within")
    ).sort("cell_id", "ts")


# A period of one cell, [start, end): congestion periods, alerts, labelled events.
SPAN_SCHEMA: dict[str, pl.DataType] = {
    "cell_id": pl.String(),
    "start": pl.Datetime("us", "UTC"),
    "end": pl.Datetime("us", "UTC"),
}


def congestion_periods(flags: pl.DataFrame, rop_minutes: int) -> pl.DataFrame:
    """Runs of congested ROPs as (cell_id, start, end) with `end` exclusive."""
    rop = pl.duration(minutes=rop_minutes)
    df = flags.filter(pl.col("congested")).sort("cell_id", "ts")
    if df.is_empty():
        return pl.DataFrame(schema=SPAN_SCHEMA | {"rops": pl.UInt32()})
    return (
        df.with_columns(run_ids(rop_minutes).alias("_period"))
        .group_by("_period", maintain_order=True)
        .agg(
            pl.col("cell_id").first(),
            pl.col("ts").min().alias("start"),
            (pl.col("ts").max() + rop).alias("end"),
            pl.len().alias("rops"),
        )
        .drop("_period")
    )


def event_labels(keys: pl.DataFrame, events: pl.DataFrame) -> pl.Series:
    """True where (cell_id, ts) falls inside a labelled fault event [start, end)."""
    if events.is_empty():
        return pl.Series("in_event", [False] * keys.height)
    joined = (
        keys.select("cell_id", "ts")
        .with_row_index("_row")
        .join(events.select("cell_id", "start", "end"), on="cell_id", how="inner")
        .filter((pl.col("ts") >= pl.col("start")) & (pl.col("ts") < pl.col("end")))
        .select("_row")
        .unique()
    )
    flags = pl.Series("in_event", [False] * keys.height)
    flags[joined["_row"].to_numpy()] = True
    return flags


def busy_hour_target(
    flags: pl.DataFrame, kpis: pl.DataFrame, rop_minutes: int, timezone: str = "UTC"
) -> pl.DataFrame:
    """`congested_within`: the cell is congested (`flags["congested"]`) in at least one ROP of
    its busy hour of the next local day; `busy_hour_yesterday`: the same for the previous
    local day (the persistence guess, known at every ROP of today).

    A cell's busy hour of a day is its clock hour (in `timezone`) with the most DL traffic
    that day. Null where the day in question is not complete in the data."""
    local = pl.col("ts").dt.convert_time_zone(timezone)
    rows = (
        flags.select("cell_id", "ts", "congested")
        .join(kpis.select("cell_id", "ts", "dl_volume_mbit"), on=["cell_id", "ts"], how="left")
        .with_columns(local.dt.date().alias("_day"), local.dt.hour().alias("_hour"))
    )
    hourly = rows.group_by("cell_id", "_day", "_hour").agg(
        pl.col("dl_volume_mbit").sum().alias("_volume"), pl.col("congested").any().alias("_hot")
    )
    busy = (
        hourly.sort(["cell_id", "_day", "_volume", "_hour"], descending=[False, False, True, False])
        .group_by("cell_id", "_day", maintain_order=True)
        .first()
    )
    # A day is known once its last ROP is in the data.
    last = rows.select(pl.col("ts").max().dt.convert_time_zone(timezone)).item()
    rop = timedelta(minutes=rop_minutes)
    last_complete = last.date() if (last + rop).date() > last.date() else last.date() - timedelta(1)
    busy = busy.filter(pl.col("_day") <= last_complete).select(
        "cell_id", "_day", pl.col("_hot").alias("_busy_hot")
    )

    def day_after(days: int, name: str) -> pl.DataFrame:
        """The busy-hour flag of each day, keyed by the day `days` earlier."""
        return busy.select(
            "cell_id",
            (pl.col("_day") - pl.duration(days=days)).alias("_day"),
            pl.col("_busy_hot").alias(name),
        )

    return (
        rows.select("cell_id", "ts", "_day")
        .join(day_after(1, "congested_within"), on=["cell_id", "_day"], how="left")
        .join(day_after(-1, "busy_hour_yesterday"), on=["cell_id", "_day"], how="left")
        .drop("_day")
        .sort("cell_id", "ts")
    )


def congestion_labels(
    keys: pl.DataFrame,
    kpis: pl.DataFrame,
    rule: CongestionRule | AppliedRule,
    rop_minutes: int,
    timezone: str = "UTC",
) -> pl.DataFrame:
    """For each (cell_id, ts) of `keys`: `congested_within` (the forecast target of the
    rule's horizon, null where it is not in the data yet), `persistence` (the persistence
    guess: the rule holds now; for the next day's busy hour, it held in yesterday's) and
    `seasonal` (the seasonal-naive guess: the target at the same ROP a week earlier).
    `kpis` must reach a week before and a horizon after `keys` for every label to be known."""
    flags = congestion_flags(kpis, rule, rop_minutes)
    if rule.horizon == "next_day_busy_hour":
        target = busy_hour_target(flags, kpis, rop_minutes, timezone)
        persistence = target.select(
            "cell_id", "ts", pl.col("busy_hour_yesterday").alias("persistence")
        )
        target = target.drop("busy_hour_yesterday")
    else:
        target = congestion_target(flags, rule.horizon_minutes, rop_minutes)
        persistence = flags.select("cell_id", "ts", pl.col("congested_now").alias("persistence"))
    week_ago = target.select(
        "cell_id",
        (pl.col("ts") + pl.duration(days=7)).alias("ts"),
        pl.col("congested_within").alias("seasonal"),
    )
    return (
        keys.select("cell_id", "ts")
        .join(target, on=["cell_id", "ts"], how="left")
        .join(persistence, on=["cell_id", "ts"], how="left")
        .join(week_ago, on=["cell_id", "ts"], how="left")
    )
