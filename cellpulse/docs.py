"""Reference docs generated from the code, so they cannot drift from it."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pydantic import BaseModel

from cellpulse.settings import Settings

if TYPE_CHECKING:
    from cellpulse.features.spec import FeatureSpec


def _rows(model: type[BaseModel], prefix: str, env: str) -> list[tuple[str, str, str, str]]:
    rows = []
    for name, field in model.model_fields.items():
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            rows += _rows(annotation, f"{prefix}{name}.", f"{env}{name.upper()}__")
            continue
        default: Any = field.get_default(call_default_factory=True)
        rows.append(
            (f"{prefix}{name}", f"`{env}{name.upper()}`", f"`{default}`", field.description or "")
        )
    return rows


def settings_markdown() -> str:
    lines = [
        "# Settings",
        "",
        "Highest priority first: command-line flags, `CELLPULSE_*` environment variables "
        "(nested with `__`), the YAML file given by `--config` or `CELLPULSE_CONFIG` (keys "
        "as in the first column, nested as YAML mappings).",
        "",
        "| setting | environment variable | default | meaning |",
        "|---|---|---|---|",
    ]
    lines += [f"| `{a}` | {b} | {c} | {d} |" for a, b, c, d in _rows(Settings, "", "CELLPULSE_")]
    return "\n".join(lines) + "\n"


def features_markdown(rop_minutes: int = 15) -> str:
    """The feature reference (docs/features.md): every column of the default spec with its
    meaning, and how the features are built.

    Args:
        rop_minutes: The ROP length the default spec is made for.
    """
    from cellpulse.features.spec import default_spec

    spec = default_spec(rop_minutes)
    rows = [
        *_current_rows(spec),
        *_window_rows(spec),
        *_history_rows(spec),
        *_stuck_rows(spec),
        *_cosite_rows(spec),
        *_change_rows(spec),
    ]
    lines = [
        "# Features",
        "",
        f"Generated from the default feature spec for {rop_minutes}-minute ROPs "
        f"(`python -m cellpulse.docs features > docs/features.md`): {len(rows)} features, "
        f"spec hash `{spec.hash()}`, lookback {spec.lookback().days} days. Every feature at "
        "`ts` uses only rows with timestamps at or before `ts`.",
        "",
        *_HOW_FEATURES_ARE_BUILT,
        "",
        "## Columns",
        "",
        "| feature | meaning |",
        "|---|---|",
        *[f"| `{name}` | {meaning} |" for name, meaning in rows],
    ]
    return "\n".join(lines) + "\n"


_HOW_FEATURES_ARE_BUILT = [
    "## How they are built",
    "",
    "- **Declared as data**: `features/spec.py` (`FeatureSpec`: KPIs, rolling "
    "windows, lags, deltas, hour-of-week baselines, stuck runs, co-site context, missing "
    "windows, calendar, holidays). Each transform names its output columns; the spec's "
    "hash is written into every feature partition and logged with every model, and a "
    "model refuses features of another spec.",
    "- **For the KPIs that exist**: a source may deliver any subset of the contract's "
    "measurements. Features are made only from the KPIs the data holds (derived KPIs "
    "only from present counters; `FeatureSpec.restricted_to`), and "
    "`feature_coverage` names the KPIs left out and every column without a value. "
    "Which KPIs exist is one answer for the whole lake (`features.store.lake_kpis`: "
    "the measurements holding a value anywhere in lake/kpi, read from parquet "
    "statistics, and what derives from them), so `features`, `train`, `score`, "
    "`backtest` and `evaluate` build and expect the same spec (`lake_spec`) and hash; "
    "`cellpulse features` prints the coverage line. A KPI that starts arriving later "
    "changes the spec: rebuild the features and retrain.",
    "- **Grid kernels**: a day's KPI rows are scattered into a cells × ROP-slots grid and "
    "every transform is a vectorised kernel over it (`features/kernels.py`, "
    "NumPy and Numba): rolling statistics by van Herk/Gil-Werman blocks aligned to "
    "absolute time (linear in the data whatever the window, and bit-for-bit the same "
    "whether a day is built alone or inside a range), lags as column shifts, medians of "
    "up to four past weeks in closed form, site sums as a sparse product.",
    "- **Incremental**: day D reads only the days its features reach "
    "(`days_needed`: D, the day before for 24 h windows, and D-7/D-14/D-21 for weekly "
    "lags and baselines — 5 days, not 22) and equals a full recompute bit for bit "
    "(`tests/unit/test_features.py`). Days marked stale by ingest are rebuilt by the next "
    "run.",
    "- **Bounded memory**: a day is built region by region and, within a region, in chunks "
    "of whole sites (`feature_chunk_cells`, default 10,000 cells), streamed into one "
    "parquet file per region. Values are computed in float64 and stored as float32.",
    "- **Checked**: every feature equals a plain pandas groupby-rolling implementation of "
    "the same spec (`bench/pandas_reference.py`, `tests/unit/test_feature_parity.py`); "
    "perturbing every row after a cut-off leaves every feature up to it unchanged.",
    "- **Speed**: `python -m bench.run features` (results in `bench/RESULTS.md`).",
]

# (feature, meaning) rows of the reference, one function per kind of transform.
_Rows = list[tuple[str, str]]


def _current_rows(spec: FeatureSpec) -> _Rows:
    """The KPIs themselves at this ROP, and the calendar."""
    rows: _Rows = [
        (k, "the KPI at this ROP (derived KPIs from this ROP's counters)") for k in spec.kpis
    ]
    if spec.calendar:
        rows += [
            ("hour", "hour of day in the network's time zone"),
            ("day_of_week", "0 = Monday … 6 = Sunday"),
            ("hour_of_week", "day_of_week * 24 + hour"),
            ("is_weekend", "Saturday or Sunday"),
            ("is_holiday", "a local date listed in the `holidays` setting"),
        ]
    return rows


def _window_rows(spec: FeatureSpec) -> _Rows:
    """Counts of missing ROPs and rolling statistics over trailing windows."""
    rows: _Rows = [
        (f"rops_missing_{w}", f"ROPs not reported in the last {w} (this one included)")
        for w in spec.missing_windows
    ]
    for r in spec.rolling:
        rows += [
            (
                name,
                f"{stat} of {r.kpi} over the trailing {r.window} (time-based, this ROP included)",
            )
            for stat, name in zip(r.stats, r.columns(), strict=True)
        ]
    return rows


def _history_rows(spec: FeatureSpec) -> _Rows:
    """Lags, deltas and hour-of-week baselines: the KPI against its own past."""
    rows: _Rows = [
        (lag.column(), f"{lag.kpi} exactly {lag.lag} earlier (null if not reported)")
        for lag in spec.lags
    ]
    rows += [(d.column(), f"{d.kpi} minus its value {d.vs} earlier") for d in spec.deltas]
    for b in spec.baselines:
        median, z = b.columns()
        rows += [
            (median, f"median of {b.kpi} at the same ROP in the past {b.weeks} weeks"),
            (
                z,
                f"robust z-score of {b.kpi} against that median (spread: 1.4826 × MAD, "
                "at least 5 % of the median)",
            ),
        ]
    return rows


def _stuck_rows(spec: FeatureSpec) -> _Rows:
    """Runs of an unchanged value: frozen counters."""
    return [
        (
            s.column(),
            f"how many ROPs in a row before this one {s.kpi} held exactly this value "
            f"(0 = it changed; at most the ROPs of {s.max_window} minus one) — frozen counters",
        )
        for s in spec.stuck
    ]


def _change_rows(spec: FeatureSpec) -> _Rows:
    """Levels against last week's: level shifts and slow degradations."""
    return [
        (
            c.column(),
            f"{c.kpi} summed over the last {c.window} against the same {c.window} {c.vs} "
            "earlier, as a relative change (over the ROPs reported both times) — level "
            "shifts and slow degradations",
        )
        for c in spec.changes
    ]


_COSITE_MEANINGS = {
    "share": "this cell's share of its site's total {kpi}",
    "site_mean": "mean {kpi} over the site's cells at this ROP",
    "siblings_mean": "mean {kpi} over the site's other cells at this ROP",
    "sibling_dev": "{kpi} minus the mean of the site's other cells",
}


def _cosite_rows(spec: FeatureSpec) -> _Rows:
    """The cell against the other cells of its site at the same ROP."""
    rows: _Rows = []
    for c in spec.cosite:
        rows += [
            (name, _COSITE_MEANINGS[stat].format(kpi=c.kpi))
            for stat, name in zip(c.stats, c.columns(), strict=True)
        ]
    return rows


if __name__ == "__main__":
    import sys

    which = sys.argv[1] if len(sys.argv) > 1 else "settings"
    print(features_markdown() if which == "features" else settings_markdown(), end="")
