"""A straightforward pandas implementation of the feature spec: groupby-rolling, merges for
lags. It is the reference the polars builder is checked against (tests/unit/
test_feature_parity.py) and measured against (bench/features.py). Clarity over speed."""

from __future__ import annotations

import numpy as np
import pandas as pd
import polars as pl

from cellpulse import contract
from cellpulse.features.builder import KEY_COLUMNS
from cellpulse.features.spec import FeatureSpec, parse_duration


def build_features_pandas(
    kpis: pl.DataFrame,
    spec: FeatureSpec,
    *,
    rop_minutes: int,
    min_denominator: int,
    timezone: str = "UTC",
) -> pl.DataFrame:
    df = kpis.to_pandas().sort_values(["cell_id", "ts"], kind="stable").reset_index(drop=True)
    for r in contract.RATIO_KPIS:
        ok = df[r.denominator] >= min_denominator
        df[r.name] = np.where(ok, 100.0 * df[r.numerator] / df[r.denominator], np.nan)
    df["availability_pct"] = 100.0 * (1.0 - df["unavail_s"] / (rop_minutes * 60.0))
    out = df[[*KEY_COLUMNS, *spec.kpis]].copy()
    cols: dict[str, object] = {}  # new columns, added in one go (pandas warns otherwise)
    if spec.calendar:
        local = out["ts"].dt.tz_convert(timezone)
        cols["hour"] = local.dt.hour
        cols["day_of_week"] = local.dt.dayofweek
        cols["hour_of_week"] = local.dt.dayofweek * 24 + local.dt.hour
        cols["is_weekend"] = local.dt.dayofweek >= 5
        holidays = {pd.Timestamp(d).date() for d in spec.holidays}
        cols["is_holiday"] = local.dt.date.isin(holidays)
    grouped = df.set_index("ts").groupby("cell_id", sort=True)
    for window in spec.missing_windows:
        expected = int(parse_duration(window).total_seconds() // (rop_minutes * 60))
        present = grouped["cell_id"].rolling(window).count().to_numpy()
        cols[f"rops_missing_{window}"] = np.clip(expected - present, 0, None)
    for r in spec.rolling:
        rolling = grouped[r.kpi].rolling(r.window)
        for stat, name in zip(r.stats, r.columns(), strict=True):
            cols[name] = getattr(rolling, stat)().to_numpy()
    out = pd.concat([out, pd.DataFrame(cols, index=out.index)], axis=1)
    for kpi, lag in spec.all_lags():
        past = df[["cell_id", "ts", kpi]].copy()
        past["ts"] = past["ts"] + parse_duration(lag)
        past = past.rename(columns={kpi: f"{kpi}_lag_{lag}"})
        out = out.merge(past, on=["cell_id", "ts"], how="left")
    cols = {d.column(): out[d.kpi] - out[f"{d.kpi}_lag_{d.vs}"] for d in spec.deltas}
    for b in spec.baselines:
        past = out[[f"{b.kpi}_lag_{lag}" for lag in b.lags()]].to_numpy(dtype=float)
        with np.errstate(all="ignore"):
            median = _nanmedian_rows(past)
            mad = _nanmedian_rows(np.abs(past - median[:, None]))
            spread = np.fmax(1.4826 * mad, 0.05 * np.abs(median))
            z = np.where(spread > 0, (out[b.kpi].to_numpy(dtype=float) - median) / spread, np.nan)
        cols[f"{b.kpi}_how_median"] = median
        cols[f"{b.kpi}_how_z"] = z
    for s in spec.stuck:
        cols[s.column()] = _stuck_run(out, s.kpi, rop_minutes, s.max_window)
    for c in spec.cosite:
        by_site = out.groupby(["site_id", "ts"])[c.kpi]
        total, count = by_site.transform("sum"), by_site.transform("count")
        x = out[c.kpi]
        others = count - x.notna()
        siblings = ((total - x.fillna(0.0)) / others).where(others > 0)
        stats = {
            "share": (x / total).where(total > 0),
            "site_mean": (total / count).where(count > 0),
            "siblings_mean": siblings,
            "sibling_dev": x - siblings,
        }
        for stat, name in zip(c.stats, c.columns(), strict=True):
            cols[name] = stats[stat].to_numpy(dtype=float)
    for change in spec.changes:
        cols[change.column()] = _level_change(df, out, change.kpi, change.window, change.vs)
    out = pd.concat([out, pd.DataFrame(cols, index=out.index)], axis=1)
    result = pl.from_pandas(out[[*KEY_COLUMNS, *spec.columns()]])
    return result.sort("cell_id", "ts")


def _level_change(
    df: pd.DataFrame, out: pd.DataFrame, kpi: str, window: str, vs: str
) -> np.ndarray:
    """Trailing sums of the KPI now and `vs` earlier over the ROPs reported both times."""
    both = df[["cell_id", "ts", kpi]].copy()
    past = both.assign(ts=both["ts"] + parse_duration(vs)).rename(columns={kpi: "_past"})
    both = both.merge(past, on=["cell_id", "ts"], how="left")
    ok = both[kpi].notna() & both["_past"].notna()
    both["_now"] = both[kpi].where(ok)
    both["_past"] = both["_past"].where(ok)
    grouped = both.set_index("ts").groupby("cell_id", sort=True)
    now = grouped["_now"].rolling(window).sum().reset_index()
    then = grouped["_past"].rolling(window).sum().reset_index()
    counts = grouped["_now"].rolling(window).count().reset_index()
    now["_then"], now["_n"] = then["_past"], counts["_now"]
    with np.errstate(all="ignore"):
        now["_change"] = np.where(
            (now["_n"] > 0) & (now["_then"] > 0), now["_now"] / now["_then"] - 1.0, np.nan
        )
    keyed = out[["cell_id", "ts"]].merge(
        now[["cell_id", "ts", "_change"]], on=["cell_id", "ts"], how="left"
    )
    return keyed["_change"].to_numpy(dtype=float)


def _stuck_run(out: pd.DataFrame, kpi: str, rop_minutes: int, max_window: str) -> np.ndarray:
    """Consecutive earlier ROPs with exactly the current value, capped by the window."""
    prev = out[["cell_id", "ts", kpi]].copy()
    prev["ts"] = prev["ts"] + pd.Timedelta(minutes=rop_minutes)
    merged = out[["cell_id", "ts", kpi]].merge(
        prev, on=["cell_id", "ts"], how="left", suffixes=("", "_prev")
    )
    same = (merged[kpi] == merged[f"{kpi}_prev"]).to_numpy()
    run_id = pd.Series(~same).groupby(out["cell_id"].to_numpy()).cumsum()
    run = (
        pd.Series(0, index=out.index)
        .groupby([out["cell_id"].to_numpy(), run_id.to_numpy()])
        .cumcount()
    )
    cap = parse_duration(max_window) // pd.Timedelta(minutes=rop_minutes) - 1
    return np.minimum(run.to_numpy(), cap).astype(float)


def _nanmedian_rows(values: np.ndarray) -> np.ndarray:
    """Row medians ignoring NaN; NaN for rows with no value (without numpy's warning)."""
    out = np.full(values.shape[0], np.nan)
    has = ~np.isnan(values).all(axis=1)
    out[has] = np.nanmedian(values[has], axis=1)
    return out
