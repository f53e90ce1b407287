"""The cell KPI contract (see KPI_CONTRACT.md) as data: columns, units, rules, derived KPIs."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from typing import Literal

import polars as pl

KEYS = ("cell_id", "ts")
DIMENSIONS = ("site_id", "region", "rat", "band")

Kind = Literal["gauge", "counter"]

# What an identifier may be. One rule each, checked at ingest (rows breaking it are
# quarantined with the reason) and in the API (anything else is a 422), so every id the lake
# holds can be opened on the ops page.
# A cell id travels into URLs, alert ids and the page: words of letters, digits and a few
# separators, single spaces between them, no slash (a URL path separator), no control
# characters or markup.
CELL_ID_MAX_CHARS = 128
CELL_ID_PATTERN = r"^[A-Za-z0-9_.:@+#=()\-]+( [A-Za-z0-9_.:@+#=()\-]+)*$"
CELL_ID_RULE = (
    f"1-{CELL_ID_MAX_CHARS} characters: letters, digits, _ . : @ + # = ( ) - "
    "and single spaces between words"
)
# A partition value (region) becomes a folder name in the lake: a letter or digit first (so
# never "." or ".."), then letters, digits, "_", "." or "-"; at most 64 characters.
PARTITION_VALUE_MAX_CHARS = 64
PARTITION_VALUE_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}$"
PARTITION_VALUE_RULE = (
    f"1-{PARTITION_VALUE_MAX_CHARS} characters: a letter or digit, then letters, digits, _ . -"
)


@dataclass(frozen=True)
class Measurement:
    name: str
    unit: str
    kind: Kind
    low: float | None = None  # inclusive bounds; None = unbounded on that side
    high: float | None = None


MEASUREMENTS: tuple[Measurement, ...] = (
    Measurement("prb_util_dl_pct", "%", "gauge", 0, 100),
    Measurement("prb_util_ul_pct", "%", "gauge", 0, 100),
    Measurement("prb_avail_dl", "PRBs", "gauge", 0),
    Measurement("dl_volume_mbit", "Mbit", "counter", 0),
    Measurement("ul_volume_mbit", "Mbit", "counter", 0),
    Measurement("dl_ue_thp_mbps", "Mbit/s", "gauge", 0),
    Measurement("ul_ue_thp_mbps", "Mbit/s", "gauge", 0),
    Measurement("rrc_conn_mean", "users", "gauge", 0),
    Measurement("rrc_conn_max", "users", "gauge", 0),
    Measurement("active_ue_dl_mean", "users", "gauge", 0),
    Measurement("rrc_estab_att", "count", "counter", 0),
    Measurement("rrc_estab_succ", "count", "counter", 0),
    Measurement("drb_estab_att", "count", "counter", 0),
    Measurement("drb_estab_succ", "count", "counter", 0),
    Measurement("drb_rel_abnormal", "count", "counter", 0),
    Measurement("drb_rel_total", "count", "counter", 0),
    Measurement("ho_att", "count", "counter", 0),
    Measurement("ho_succ", "count", "counter", 0),
    Measurement("cqi_mean", "0-15", "gauge", 0, 15),
    Measurement("ul_interference_dbm", "dBm/PRB", "gauge", -150, 0),
    Measurement("dl_delay_ms", "ms", "gauge", 0),
    Measurement("unavail_s", "s", "counter", 0),  # upper bound is the ROP length, checked apart
)
MEASUREMENT_NAMES = tuple(m.name for m in MEASUREMENTS)

# (successes, attempts) pairs: successes may not exceed attempts.
SUCCESS_PAIRS = (
    ("rrc_estab_succ", "rrc_estab_att"),
    ("drb_estab_succ", "drb_estab_att"),
    ("ho_succ", "ho_att"),
    ("drb_rel_abnormal", "drb_rel_total"),
)


@dataclass(frozen=True)
class RatioKpi:
    """A derived KPI: 100 * numerator / denominator, from summed counters."""

    name: str
    numerator: str
    denominator: str


RATIO_KPIS = (
    RatioKpi("rrc_sr_pct", "rrc_estab_succ", "rrc_estab_att"),
    RatioKpi("drb_sr_pct", "drb_estab_succ", "drb_estab_att"),
    RatioKpi("ho_sr_pct", "ho_succ", "ho_att"),
    RatioKpi("drop_rate_pct", "drb_rel_abnormal", "drb_rel_total"),
)
DERIVED_KPIS = (*(r.name for r in RATIO_KPIS), "availability_pct")
# What each derived KPI is computed from.
DERIVED_FROM: dict[str, tuple[str, ...]] = {
    **{r.name: (r.numerator, r.denominator) for r in RATIO_KPIS},
    "availability_pct": ("unavail_s",),
}


def derivable(measurements: Collection[str]) -> tuple[str, ...]:
    """The derived KPIs whose counters are all among `measurements`: a ratio without its
    numerator or denominator does not exist (it is not a column of nulls)."""
    have = set(measurements)
    return tuple(k for k in DERIVED_KPIS if set(DERIVED_FROM[k]) <= have)


def available_kpis(measurements: Collection[str]) -> tuple[str, ...]:
    """Contract measurements among `measurements` plus the KPIs derived from them."""
    have = set(measurements)
    return (*(m for m in MEASUREMENT_NAMES if m in have), *derivable(have))


def kpi_coverage(kpis: pl.DataFrame | pl.LazyFrame) -> dict[str, float]:
    """Per contract measurement, the share of rows holding a value (0.0 where the column is
    absent or there are no rows): what a source delivers, and how completely."""
    names = [m for m in MEASUREMENT_NAMES if m in kpis.collect_schema().names()]
    shares = kpis.select(pl.col(m).is_not_null().mean() for m in names)
    row = (shares.collect() if isinstance(shares, pl.LazyFrame) else shares).row(0, named=True)
    return {m: float(row.get(m) or 0.0) for m in MEASUREMENT_NAMES}


def delivered(kpis: pl.DataFrame | pl.LazyFrame, min_share: float = 0.0) -> tuple[str, ...]:
    """The contract measurements `kpis` delivers: present, and holding a value in more than
    `min_share` of the rows (default: at least one value)."""
    return tuple(m for m, share in kpi_coverage(kpis).items() if share > min_share)


def schema() -> dict[str, pl.DataType]:
    """The contract's column types after ingest."""
    cols: dict[str, pl.DataType] = {
        "cell_id": pl.String(),
        "ts": pl.Datetime("us", "UTC"),
    }
    for dim in DIMENSIONS:
        cols[dim] = pl.String()
    for m in MEASUREMENTS:
        cols[m.name] = pl.Float64()
    return cols


def derived_kpis(
    min_denominator: int, rop_minutes: int, columns: Collection[str] | None = None
) -> list[pl.Expr]:
    """Expressions for the derived KPIs of one row (or of already-summed counters).

    Ratios are computed from counters, never by averaging ratios (that over-weights quiet
    cells), and are null where the denominator is too small to be more than noise.

    Args:
        columns: the columns the frame holds; only the derived KPIs whose counters are
            among them are made. Default: every derived KPI (a full contract frame).
    """
    wanted = set(DERIVED_KPIS if columns is None else derivable(columns))
    exprs = [
        pl.when(pl.col(r.denominator) >= min_denominator)
        .then(100.0 * pl.col(r.numerator) / pl.col(r.denominator))
        .otherwise(None)
        .alias(r.name)
        for r in RATIO_KPIS
        if r.name in wanted
    ]
    rop_s = rop_minutes * 60.0
    if "availability_pct" in wanted:
        exprs.append((100.0 * (1.0 - pl.col("unavail_s") / rop_s)).alias("availability_pct"))
    return exprs
