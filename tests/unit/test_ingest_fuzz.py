"""Fuzzing ingest with mutated real-shaped files: a simulator export, then hypothesis-chosen
damage (truncated or bit-flipped bytes, dropped, renamed, retyped or list-typed columns,
poisoned values, regions and cell ids that would be paths or markup, sub-microsecond
timestamps, shuffled and duplicated rows). Whatever arrives, ingest does not crash, every
rejection says why, every row it accepts is in the lake, and nothing is written outside it.
A corpus of known-malformed inputs (files, links, mapping expressions) is checked the same way."""

from __future__ import annotations

import re
import shutil
from datetime import UTC, datetime
from pathlib import Path

import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cellpulse import contract
from cellpulse.errors import MappingError
from cellpulse.ingest import ingest_files
from cellpulse.mapping import Mapping
from cellpulse.settings import IngestSettings
from cellpulse.simulator import SimulationConfig, iter_days, split_into_files
from tests.conftest import tiny_settings

NOW = datetime(2026, 2, 1, tzinfo=UTC)
CASES = 150
tried: list[str] = []
HOSTILE_REGIONS = ["../../../../x", "a/b", "r" * 300, "a\0b", "..", ".", "", None, "[/x]"]
HOSTILE_CELL_IDS = ["a<b", "a/b", "a\tb", "c" * 129, "x\nstatus: ok", "", None, "Cell 1"]


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
    st.tuples(st.just("list_column"), st.integers(0, 27)),
    st.tuples(st.just("hostile_region"), st.integers(0, 1000), st.sampled_from(HOSTILE_REGIONS)),
    st.tuples(st.just("hostile_cell_id"), st.integers(0, 1000), st.sampled_from(HOSTILE_CELL_IDS)),
    st.tuples(st.just("sub_microsecond_ts"), st.integers(0, 1000), st.integers(-999, 999)),
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
            "list_column",
        }
        else None
    )
    one_row = pl.int_range(pl.len()) == how[1] % max(df.height, 1)
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
    if kind == "list_column":
        return df.with_columns(pl.concat_list(name).alias(name))
    if kind in {"hostile_region", "hostile_cell_id"}:
        column = "region" if kind == "hostile_region" else "cell_id"
        value = pl.lit(how[2], pl.String)
        return df.with_columns(pl.when(one_row).then(value).otherwise(column).alias(column))
    if kind == "sub_microsecond_ts":
        ts = pl.col("ts").dt.cast_time_unit("ns")
        return df.with_columns(
            pl.when(one_row).then(ts + pl.duration(nanoseconds=how[2])).otherwise(ts).alias("ts")
        )
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
    s.layout.landing.mkdir(parents=True)
    target = s.layout.landing / "A20260105.0000+0000-0100+0000_oss.parquet"
    data = damage_bytes(_as_bytes(damage_table(real_file, table), tmp_path / "clean.parquet"), raw)
    target.write_bytes(data)
    tried.append(f"{table[0]}+{raw[0]}")

    summary = ingest_files([s.layout.landing], s, NOW)  # must not raise

    (result,) = summary.files
    assert target.read_bytes() == data  # the raw file is never modified
    assert_nothing_outside_the_lake(tmp_path, s)
    stored = s.layout.kpi.read()
    assert_identifiers_follow_the_contract(stored)
    if result.status == "rejected":
        assert result.reason and len(result.reason) > 10  # says why
        assert stored.height == 0
        report = s.layout.quarantine / f"{target.name}.report.txt"
        assert report.is_file() and result.reason.split(";")[0][:40] in report.read_text()
    else:
        assert result.status == "ingested"
        if stored.height:
            assert stored.height == len(stored.select("cell_id", "ts").unique())
        # rows superseded within the file count as accepted but are stored once
        assert stored.height <= result.rows_accepted
        assert result.rows_accepted + result.rows_quarantined == result.rows_in


def assert_nothing_outside_the_lake(root: Path, s) -> None:  # type: ignore[no-untyped-def]
    allowed = (s.layout.landing, s.layout.lake / "kpi", s.layout.quarantine, s.layout.archive)
    stray = [
        p
        for p in root.rglob("*")
        if p.is_file()
        and p.is_relative_to(s.home)
        and p != s.layout.ledger
        and not any(p.is_relative_to(folder) for folder in allowed)
    ]
    assert stray == []
    partitions = {
        p.relative_to(s.layout.lake / "kpi").parts[:2] for p in (s.layout.lake / "kpi").rglob("f-*")
    }
    for day, region in partitions:
        assert day.startswith("date=")
        assert re.fullmatch(contract.PARTITION_VALUE_PATTERN, region.removeprefix("region="))


def assert_identifiers_follow_the_contract(stored: pl.DataFrame) -> None:
    if stored.height:
        for column, pattern in (
            ("cell_id", contract.CELL_ID_PATTERN),
            ("region", contract.PARTITION_VALUE_PATTERN),
        ):
            values = stored[column].unique().to_list()
            assert all(re.fullmatch(pattern, v) for v in values), column


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
        "list_column",
        "hostile_region",
        "hostile_cell_id",
        "sub_microsecond_ts",
    }
    print(f"\ningest fuzz: {len(tried)} damaged files tried")


def test_a_file_that_makes_the_parquet_reader_panic_is_rejected_not_fatal(
    tmp_path, real_file, monkeypatch
):
    """Some corrupt files make polars panic; its PanicException is not an Exception."""
    from polars.exceptions import PanicException

    import cellpulse.ingest.reading as ingest

    s = tiny_settings(tmp_path / "home")
    s.layout.landing.mkdir(parents=True)
    real_file.write_parquet(s.layout.landing / "bad.parquet")

    def panics(*args, **kwargs):
        raise PanicException("assertion failed: offset + length <= self.length")

    monkeypatch.setattr(ingest.pl, "read_parquet", panics)
    summary = ingest_files([s.layout.landing], s, NOW)
    (result,) = summary.files
    assert result.status == "rejected"
    assert "not a readable parquet file (assertion failed" in result.reason


# ------------------------------------------------------------------ known-malformed corpus

MALFORMED = {
    "list_measurement": lambda df: df.with_columns(pl.concat_list("prb_util_dl_pct")),
    "list_cell_id": lambda df: df.with_columns(pl.concat_list("cell_id")),
    "struct_region": lambda df: df.with_columns(pl.struct("region").alias("region")),
    "region_up_the_tree": lambda df: df.with_columns(pl.lit("../../../../x").alias("region")),
    "region_with_slash": lambda df: df.with_columns(pl.lit("a/b").alias("region")),
    "region_of_300_bytes": lambda df: df.with_columns(pl.lit("r" * 300).alias("region")),
    "region_with_nul": lambda df: df.with_columns(pl.lit("a\0b").alias("region")),
    "region_dot_dot": lambda df: df.with_columns(pl.lit("..").alias("region")),
    "cell_id_markup": lambda df: df.with_columns(pl.lit("<b>x</b>").alias("cell_id")),
    "sub_microsecond_ts": lambda df: df.with_columns(
        pl.col("ts").dt.cast_time_unit("ns") + pl.duration(nanoseconds=999)
    ),
}


@pytest.mark.parametrize("kind", sorted(MALFORMED))
def test_known_malformed_files_beside_good_ones_never_stop_ingest(tmp_path, real_file, kind):
    s = tiny_settings(tmp_path / "home")
    s.layout.landing.mkdir(parents=True)
    good = s.layout.landing / "A_good.parquet"
    real_file.write_parquet(good)
    bad = s.layout.landing / "B_bad.parquet"
    MALFORMED[kind](real_file.with_columns(pl.col("ts").dt.offset_by("1d"))).write_parquet(bad)

    first = {f.path.name: f for f in ingest_files([s.layout.landing], s, NOW).files}
    assert first["A_good.parquet"].status == "ingested"
    bad_result = first["B_bad.parquet"]
    if bad_result.status == "rejected":
        assert bad_result.reason and "\n" not in bad_result.reason
    else:
        assert bad_result.rows_quarantined == real_file.height  # every row kept apart, with why
    again = ingest_files([s.layout.landing], s, NOW)  # the next run (every ROP under serve) too
    assert {f.status for f in again.files} == {"skipped"}
    stored = s.layout.kpi.read()
    assert stored.height == real_file.height
    assert_nothing_outside_the_lake(tmp_path, s)
    assert_identifiers_follow_the_contract(stored)


def test_a_symlink_in_landing_is_refused_and_its_target_left_alone(tmp_path, real_file):
    s = tiny_settings(tmp_path / "home").model_copy(
        update={"ingest": IngestSettings(after="archive")}
    )
    s.layout.landing.mkdir(parents=True)
    outside = tmp_path / "outside.parquet"
    real_file.write_parquet(outside)
    data = outside.read_bytes()
    (s.layout.landing / "A_link.parquet").symlink_to(outside)
    (result,) = ingest_files([s.layout.landing], s, NOW).files
    assert result.status == "rejected" and "symbolic link" in (result.reason or "")
    assert outside.read_bytes() == data and not list(s.layout.archive.rglob("*.parquet"))
    assert s.layout.kpi.read().height == 0


BAD_EXPRESSIONS = [
    "min()",
    "max()",
    "-" * 5000 + "[prb]",
    "-" * 2000 + "[prb]",
    "+".join(["prb"] * 1500),
    "(" * 300 + "prb" + ")" * 300,
    "prb + extra",
    "__import__('os').system('true')",
    "[prb].real",
    "min(prb, key=prb)",
    "'text'",
    "prb ** 2",
    "[" + "x" * 10_000 + "]",
]


@pytest.mark.parametrize("expr", BAD_EXPRESSIONS, ids=lambda e: e[:24])
def test_bad_mapping_expressions_fail_cleanly(tmp_path, expr):
    """A mapping expression either fails to load with a MappingError, or the file it cannot
    apply to is rejected with a reason; never a traceback, never a stopped batch."""
    base = {
        "name": "fuzz",
        "format": "csv",
        "timestamp": {"column": "time", "format": "%Y-%m-%d %H:%M"},
        "cell_id": {"source": "cell"},
        "columns": {"prb_util_dl_pct": {"expr": expr}},
    }
    try:
        mapping = Mapping.model_validate(base)
    except MappingError as exc:
        assert "expression for prb_util_dl_pct" in str(exc) and len(str(exc)) < 400
        return
    s = tiny_settings(tmp_path / "home")
    s.layout.landing.mkdir(parents=True)
    (s.layout.landing / "a.csv").write_text("time,cell,prb\n2026-01-05 10:00,a,1\n")
    (s.layout.landing / "b.csv").write_text("time,cell,prb,extra\n2026-01-05 10:00,b,1,2\n")
    summary = ingest_files([s.layout.landing], s, NOW, mapping=mapping)
    for result in summary.files:
        assert result.status == "ingested" or (result.reason and len(result.reason) < 400)
    assert summary.count("ingested") >= 1
