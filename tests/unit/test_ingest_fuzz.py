"""Fuzzing ingest with mutated real-shaped files: a simulator export, then hypothesis-chosen
damage (truncated or bit-flipped bytes, dropped, renamed or retyped columns, poisoned values,
shuffled and duplicated rows). Whatever arrives, ingest does not crash, every rejection says
why, and every row it accepts is in the lake."""

from __future__ import annotations

import shutil
from datetime import UTC, datetime

import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cellpulse import lake
from cellpulse.ingest import ingest_files
from cellpulse.simulator import SimulationConfig, iter_days, split_into_files
from tests.conftest import tiny_settings

NOW = datetime(2026, 2, 1, tzinfo=UTC)
CASES = 150
tried: list[str] = []


@pytest.fixture(scope="module")
def real_file() -> pl.DataFrame:
    """One hourly file of a 12-cell simulated network, as the OSS would deliver it."""
    _, day = next(iter_days(SimulationConfig(cells=12, days=1, seed=5)))
    return next(part for _, part in split_into_files(day, 60))


def _as_bytes(df: pl.DataFrame, path) -> bytes:  # type: ignore[no-untyped-def]
    df.write_parquet(path)
    return path.read_bytes()


table_damage = st.one_of(
    st.tuples(st.just("drop_column"), st.integers(0, 27)),
    st.tuples(st.just("rename_column"), st.integers(0, 27)),
    st.tuples(st.just("column_as_text"), st.integers(0, 27)),
    st.tuples(
        st.just("poison"),
        st.integers(0, 27),
        st.sampled_from([float("nan"), float("inf"), -1.0, 1e12, 101.0, None]),
    ),
    st.tuples(st.just("shuffle_rows"), st.integers(0, 1000)),
    st.tuples(st.just("duplicate_rows"), st.integers(1, 20)),
    st.tuples(st.just("shift_ts_minutes"), st.integers(-90, 90)),
    st.tuples(st.just("empty"), st.just(0)),
)
byte_damage = st.one_of(
    st.tuples(st.just("truncate"), st.floats(0.0, 0.999)),
    st.tuples(st.just("flip_bytes"), st.lists(st.integers(0, 10**9), min_size=1, max_size=8)),
    st.tuples(st.just("none"), st.just(0)),
)


def damage_table(df: pl.DataFrame, how: tuple) -> pl.DataFrame:  # type: ignore[type-arg]
    kind = how[0]
    name = (
        df.columns[how[1] % df.width]
        if kind
        in {
            "drop_column",
            "rename_column",
            "column_as_text",
            "poison",
        }
        else None
    )
    if kind == "drop_column":
        return df.drop(name)
    if kind == "rename_column":
        return df.rename({name: f"{name}_x"})
    if kind == "column_as_text":
        return df.with_columns(pl.col(name).cast(pl.String))
    if kind == "poison":
        value = how[2]
        row = how[1] % df.height
        return (
            df.with_columns(
                pl.when(pl.int_range(pl.len()) == row)
                .then(pl.lit(value, allow_object=True) if value is not None else None)
                .otherwise(pl.col(name))
                .alias(name)
            )
            if df.schema[name].is_float()
            else df
        )
    if kind == "shuffle_rows":
        return df.sample(fraction=1.0, shuffle=True, seed=how[1])
    if kind == "duplicate_rows":
        return pl.concat([df, df.head(how[1])])
    if kind == "shift_ts_minutes":
        return df.with_columns(pl.col("ts") + pl.duration(minutes=how[1]))
    return df.head(0)


def damage_bytes(data: bytes, how: tuple) -> bytes:  # type: ignore[type-arg]
    if how[0] == "truncate":
        return data[: int(len(data) * how[1])]
    if how[0] == "flip_bytes":
        out = bytearray(data)
        for position in how[1]:
            out[position % len(out)] ^= 0xFF
        return bytes(out)
    return data


@settings(
    max_examples=CASES,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    database=None,
)
@given(table=table_damage, raw=byte_damage)
def test_damaged_real_files_are_ingested_or_rejected_with_a_reason(tmp_path, real_file, table, raw):
    home = tmp_path / "home"
    shutil.rmtree(home, ignore_errors=True)
    s = tiny_settings(home)
    s.landing_dir.mkdir(parents=True)
    target = s.landing_dir / "A20260105.0000+0000-0100+0000_oss.parquet"
    data = damage_bytes(_as_bytes(damage_table(real_file, table), tmp_path / "clean.parquet"), raw)
    target.write_bytes(data)
    tried.append(f"{table[0]}+{raw[0]}")

    summary = ingest_files([s.landing_dir], s, NOW)  # must not raise

    (result,) = summary.files
    assert target.read_bytes() == data  # the raw file is never modified
    stored = lake.Dataset(s.lake_dir / "kpi").read()
    if result.status == "rejected":
        assert result.reason and len(result.reason) > 10  # says why
        assert stored.height == 0
        report = s.quarantine_dir / f"{target.name}.report.txt"
        assert report.is_file() and result.reason.split(";")[0][:40] in report.read_text()
    else:
        assert result.status == "ingested"
        if stored.height:
            assert stored.height == len(stored.select("cell_id", "ts").unique())
        # rows superseded within the file count as accepted but are stored once
        assert stored.height <= result.rows_accepted
        assert result.rows_accepted + result.rows_quarantined == result.rows_in


def test_the_fuzz_corpus_covered_every_kind_of_damage():
    """Runs after the fuzz test (same module, file order): how many cases were tried and
    that each kind of damage was among them."""
    if not tried:
        pytest.skip("run together with the fuzz test")
    kinds = {t.split("+")[0] for t in tried} | {t.split("+")[1] for t in tried}
    assert len(tried) >= CASES * 0.9
    assert kinds >= {
        "drop_column",
        "rename_column",
        "column_as_text",
        "poison",
        "truncate",
        "flip_bytes",
    }
    print(f"\ningest fuzz: {len(tried)} damaged files tried")


def test_a_file_that_makes_the_parquet_reader_panic_is_rejected_not_fatal(
    tmp_path, real_file, monkeypatch
):
    """Some corrupt files make polars panic; its PanicException is not an Exception."""
    from polars.exceptions import PanicException

    import cellpulse.ingest as ingest

    s = tiny_settings(tmp_path / "home")
    s.landing_dir.mkdir(parents=True)
    real_file.write_parquet(s.landing_dir / "bad.parquet")

    def panics(*args, **kwargs):
        raise PanicException("assertion failed: offset + length <= self.length")

    monkeypatch.setattr(ingest.pl, "read_parquet", panics)
    summary = ingest_files([s.landing_dir], s, NOW)
    (result,) = summary.files
    assert result.status == "rejected"
    assert "not a readable parquet file (assertion failed" in result.reason
