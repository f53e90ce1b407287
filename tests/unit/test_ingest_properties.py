"""Property-based: whatever a file holds, ingest never crashes, explains every rejected row,
and never loses (or duplicates) an accepted one."""

from __future__ import annotations

import math
import shutil
from datetime import UTC, datetime, timedelta

import polars as pl
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cellpulse import contract, lake
from cellpulse.ingest import RuleLimits, conform, ingest_files, rule_book, validate_rows
from tests.conftest import tiny_settings

NOW = datetime(2026, 2, 1, tzinfo=UTC)
T0 = datetime(2026, 1, 20, tzinfo=UTC)
COLUMNS = ("prb_util_dl_pct", "rrc_estab_att", "rrc_estab_succ", "unavail_s", "cqi_mean")

values = st.one_of(
    st.none(),
    st.floats(allow_nan=True, allow_infinity=True, width=64),
    st.floats(min_value=0, max_value=100),
    st.integers(min_value=-5, max_value=10_000).map(float),
)
timestamps = st.one_of(
    st.integers(min_value=0, max_value=200).map(lambda i: T0 + timedelta(minutes=15 * i)),
    st.integers(min_value=0, max_value=20_000).map(lambda m: T0 + timedelta(minutes=m)),
    st.just(NOW + timedelta(days=30)),
)
rows = st.lists(
    st.fixed_dictionaries(
        {
            "cell_id": st.sampled_from(["a", "b", "c", "", "Ω-1"]),
            "ts": timestamps,
            "region": st.sampled_from(["north", "south", None]),
            **{c: values for c in COLUMNS},
        }
    ),
    min_size=1,
    max_size=40,
)


@settings(
    max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(batch=st.lists(rows, min_size=1, max_size=3))
def test_random_files_never_crash_and_never_lose_an_accepted_row(tmp_path, batch):
    home = tmp_path / "home"
    shutil.rmtree(home, ignore_errors=True)
    s = tiny_settings(home)
    frames = []
    for i, file_rows in enumerate(batch):
        df = pl.DataFrame(
            file_rows,
            schema={
                "cell_id": pl.String,
                "ts": pl.Datetime("us", "UTC"),
                "region": pl.String,
                **{c: pl.Float64 for c in COLUMNS},
            },
        )
        lake.atomic_write_parquet(df, s.layout.landing / f"f{i}.parquet")
        frames.append(df)
    summary = ingest_files([s.layout.landing], s, NOW)

    results = {f.path.name: f for f in summary.files}
    accepted_keys = set()
    for i, df in enumerate(frames):
        r = results[f"f{i}.parquet"]
        if r.status == "duplicate":
            continue
        assert r.status == "ingested", r.reason
        assert r.rows_accepted + r.rows_quarantined == df.height
        if r.rows_quarantined:
            bad = pl.read_parquet(s.layout.quarantine / f"f{i}.parquet.rows.parquet")
            assert bad.height == r.rows_quarantined
            assert bad["reason"].str.len_chars().min() > 0  # every rejection says why
    stored = s.layout.kpi.read()
    if stored.height:
        assert stored.select("cell_id", "ts").is_duplicated().sum() == 0
        accepted_keys = set(stored.select("cell_id", "ts").iter_rows())
        for m in contract.MEASUREMENTS:  # nothing that breaks the contract got in
            col = stored[m.name].drop_nulls()
            assert col.is_finite().all()
            if m.low is not None:
                assert (col >= m.low).all()
    # Every accepted key of every file is in the lake with its last delivered values.
    expected = {}
    for i, df in enumerate(frames):
        if results[f"f{i}.parquet"].status != "ingested":
            continue
        for row in _valid_rows(df, s).iter_rows(named=True):  # in delivery order: last wins
            expected[(row["cell_id"], row["ts"])] = row
    assert set(expected) == accepted_keys
    for key, row in expected.items():
        got = stored.filter((pl.col("cell_id") == key[0]) & (pl.col("ts") == key[1])).row(
            0, named=True
        )
        for c in COLUMNS:
            assert got[c] == row[c] or (got[c] is None and row[c] is None)


def _valid_rows(df: pl.DataFrame, s) -> pl.DataFrame:

    conformed, _ = conform(df, "x")
    good, _, _ = validate_rows(conformed, RuleLimits.of(s), NOW)
    return good


SOUND = {m.name: m.low if m.low is not None else 0.0 for m in contract.MEASUREMENTS}
EDGES = st.sampled_from(
    [math.nan, math.inf, -math.inf, -1e-9, -1.0, 1e308, 15.5, 100.5, 901.0, -151.0, 1.0]
)


@st.composite
def nearly_sound_rows(draw: st.DrawFn) -> dict[str, object]:
    """A row that keeps every rule, then up to two values replaced by anything at all, so a
    single broken rule is not hidden behind others."""
    row: dict[str, object] = {
        "cell_id": draw(st.sampled_from(["a", "b"])),
        "ts": T0 + timedelta(minutes=15 * draw(st.integers(0, 200))),
        **SOUND,
    }
    for column in draw(st.lists(st.sampled_from(sorted(row)), max_size=2)):
        if column == "cell_id":
            row[column] = draw(st.sampled_from(["", " ", None, "c"]))
        elif column == "ts":
            row[column] = draw(timestamps)
        else:
            row[column] = draw(st.one_of(EDGES, values))
    return row


@settings(max_examples=300, deadline=None)
@given(table=st.lists(nearly_sound_rows(), min_size=1, max_size=30))
def test_validation_flags_exactly_the_rows_that_break_a_rule(table):
    """The fast screens never let a broken row through, and never reject a sound one: the
    split equals evaluating every rule on every row."""
    s = tiny_settings("/nonexistent")
    frame = pl.DataFrame(table, schema_overrides={"ts": pl.Datetime("us", "UTC")})
    conformed, _ = conform(frame, "t")
    _good, bad, _ = validate_rows(conformed, RuleLimits.of(s), NOW)
    every_rule = conformed.select(
        pl.any_horizontal(
            r.broken.fill_null(False) for r in rule_book(RuleLimits.of(s), NOW).rules
        ).alias("broken")
    )["broken"]
    assert sorted(bad["_row"].to_list()) == conformed.filter(every_rule)["_row"].to_list()
