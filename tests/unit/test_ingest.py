import os
from datetime import UTC, datetime, time, timedelta
from pathlib import Path

import polars as pl
import pytest

from cellpulse import lake
from cellpulse.errors import ContractError
from cellpulse.ingest import (
    conform,
    file_sha256,
    ingest_files,
    last_per_key,
    read_landing_file,
    validate_rows,
)
from cellpulse.ingest.rules import RuleLimits
from cellpulse.ledger import Ledger
from cellpulse.settings import IngestSettings
from cellpulse.simulator import SimulationConfig, iter_days, split_into_files

NOW = datetime(2026, 2, 1, tzinfo=UTC)
CFG = SimulationConfig(cells=6, days=2, seed=5, events_per_cell_day=0.0)  # both regions


def write_landing(landing: Path, cfg: SimulationConfig = CFG) -> pl.DataFrame:
    frames = []
    for _, day in iter_days(cfg):
        for name, part in split_into_files(day, 60):
            lake.atomic_write_parquet(part, landing / name)
        frames.append(day)
    return pl.concat(frames)


def kpi_rows(settings) -> pl.DataFrame:
    rows = settings.layout.kpi.read()
    return rows.sort("cell_id", "ts") if rows.height else rows


def test_ingest_lands_every_row_partitioned_by_date_and_region(settings):
    truth = write_landing(settings.layout.landing)
    summary = ingest_files([settings.layout.landing], settings, NOW)
    assert summary.count("ingested") == 48
    assert summary.rows_accepted == truth.height
    stored = kpi_rows(settings)
    assert stored.height == truth.height
    assert stored.equals(truth.sort("cell_id", "ts").select(stored.columns))
    parts = sorted(
        {
            p.relative_to(settings.layout.lake / "kpi").parts[:2]
            for p in (settings.layout.lake / "kpi").rglob("*")
            if p.is_file()
        }
    )
    regions = sorted(truth["region"].unique())
    assert parts == sorted(
        (f"date={d}", f"region={r}") for d in ("2026-01-05", "2026-01-06") for r in regions
    )


def test_second_ingest_changes_nothing(settings):
    write_landing(settings.layout.landing)
    ingest_files([settings.layout.landing], settings, NOW)
    before = {p: p.read_bytes() for p in settings.layout.lake.rglob("*") if p.is_file()}
    again = ingest_files([settings.layout.landing], settings, NOW)
    assert again.count("skipped") == 48 and again.count("ingested") == 0
    assert again.partitions_written == 0
    assert {p: p.read_bytes() for p in settings.layout.lake.rglob("*") if p.is_file()} == before


def test_redelivered_rop_replaces_the_earlier_values_and_marks_days_stale(settings):
    truth = write_landing(settings.layout.landing)
    ingest_files([settings.layout.landing], settings, NOW)
    with Ledger(settings.layout.ledger) as ledger:
        for stage in ("features", "scores"):
            ledger.clear_stale(stage, ledger.stale(stage))
    first = truth.sort("cell_id", "ts").head(1)
    corrected = first.with_columns(pl.lit(42.0).alias("prb_util_dl_pct"))
    redelivery = settings.layout.landing / "late" / "A20260105.0000+0000-0100+0000_fix.parquet"
    lake.atomic_write_parquet(corrected, redelivery)
    summary = ingest_files([settings.layout.landing], settings, NOW)
    assert summary.count("ingested") == 1 and summary.rows_replaced == 1
    stored = kpi_rows(settings)
    assert stored.height == truth.height
    row = stored.filter(
        (pl.col("cell_id") == first["cell_id"][0]) & (pl.col("ts") == first["ts"][0])
    )
    assert row["prb_util_dl_pct"].to_list() == [42.0]
    with Ledger(settings.layout.ledger) as ledger:
        assert [str(d) for d in ledger.stale("features")] == ["2026-01-05"]
        assert [str(d) for d in ledger.stale("scores")] == ["2026-01-05"]


def test_files_of_one_run_that_redeliver_keys_leave_the_later_row(settings):
    truth = write_landing(settings.layout.landing).sort("cell_id", "ts")
    # A correction of the first hour's last ROP, delivered in the same run: its period
    # starts exactly where the hourly file's ends, so the two share keys.
    first = truth.filter(pl.col("ts") == truth["ts"].min() + timedelta(minutes=45))
    corrected = first.with_columns(pl.lit(42.0).alias("prb_util_dl_pct"))
    lake.atomic_write_parquet(corrected, settings.layout.landing / "z-correction.parquet")
    summary = ingest_files([settings.layout.landing], settings, NOW)
    assert summary.rows_replaced == first.height == CFG.cells
    stored = kpi_rows(settings)
    assert stored.height == truth.height
    keys = first.select("cell_id", "ts")
    fixed = stored.join(keys, on=["cell_id", "ts"], how="semi")
    assert fixed["prb_util_dl_pct"].to_list() == [42.0] * CFG.cells
    untouched = stored.join(keys, on=["cell_id", "ts"], how="anti")
    assert untouched.equals(
        truth.join(keys, on=["cell_id", "ts"], how="anti").select(stored.columns)
    )


def test_same_content_under_another_name_is_a_recorded_duplicate(settings):
    write_landing(settings.layout.landing)
    ingest_files([settings.layout.landing], settings, NOW)
    src = sorted(settings.layout.landing.glob("*.parquet"))[0]
    copy = settings.layout.landing / "again" / src.name
    copy.parent.mkdir()
    copy.write_bytes(src.read_bytes())
    summary = ingest_files([copy], settings, NOW)
    assert [f.status for f in summary.files] == ["duplicate"]
    with Ledger(settings.layout.ledger) as ledger:
        assert any(r.status == "duplicate" and r.path == str(copy) for r in ledger.files())


def broken_file(landing: Path) -> tuple[Path, pl.DataFrame]:
    _, day = next(iter_days(CFG))
    rows = day.head(10).with_columns(pl.col("ts").dt.offset_by("1d"))  # fresh keys
    rows = rows.with_columns(
        pl.when(pl.int_range(pl.len()) == 0)
        .then(120.0)
        .otherwise(pl.col("prb_util_dl_pct"))
        .alias("prb_util_dl_pct"),
        pl.when(pl.int_range(pl.len()) == 1).then(-3.0).otherwise(pl.col("ho_att")).alias("ho_att"),
        pl.when(pl.int_range(pl.len()) == 2)
        .then(pl.col("rrc_estab_att") + 5)
        .otherwise(pl.col("rrc_estab_succ"))
        .alias("rrc_estab_succ"),
        pl.when(pl.int_range(pl.len()) == 3)
        .then(float("nan"))
        .otherwise(pl.col("cqi_mean"))
        .alias("cqi_mean"),
        pl.when(pl.int_range(pl.len()) == 4)
        .then(pl.col("ts") + timedelta(minutes=7))
        .when(pl.int_range(pl.len()) == 5)
        .then(pl.lit(NOW + timedelta(days=3)))
        .otherwise(pl.col("ts"))
        .alias("ts"),
    )
    path = landing / "A_broken.parquet"
    lake.atomic_write_parquet(rows, path)
    return path, rows


def test_bad_rows_are_quarantined_with_every_reason_and_the_rest_accepted(settings):
    path, _rows = broken_file(settings.layout.landing)
    raw_hash = file_sha256(path)
    summary = ingest_files([path], settings, NOW)
    result = summary.files[0]
    assert (result.rows_in, result.rows_accepted, result.rows_quarantined) == (10, 4, 6)
    quarantined = pl.read_parquet(settings.layout.quarantine / f"{path.name}.rows.parquet")
    reasons = " | ".join(quarantined["reason"].to_list())
    for expected in (
        "prb_util_dl_pct: above 100",
        "ho_att: below 0",
        "rrc_estab_succ: rrc_estab_succ > rrc_estab_att",
        "cqi_mean: NaN or infinite",
        "ts: not aligned to the 15-minute ROP",
        "ts: more than 60 min in the future",
    ):
        assert expected in reasons
    assert quarantined.filter(pl.col("_row") == 0)["prb_util_dl_pct"].item() == 120.0
    report = (settings.layout.quarantine / f"{path.name}.report.txt").read_text()
    assert "quarantined: 6" in report and "above 100" in report
    assert kpi_rows(settings).height == 4
    assert file_sha256(path) == raw_hash  # the raw file is never modified


def test_rows_older_than_the_retention_empty_cell_ids_and_overlong_outages_are_quarantined(
    settings,
):
    _, day = next(iter_days(CFG))
    rows = day.head(4).with_columns(
        pl.when(pl.int_range(pl.len()) == 0)
        .then(pl.col("ts") - timedelta(days=settings.ingest.retention_days + 1))
        .otherwise(pl.col("ts"))
        .alias("ts"),
        pl.when(pl.int_range(pl.len()) == 1)
        .then(pl.lit(" "))
        .otherwise("cell_id")
        .alias("cell_id"),
        pl.when(pl.int_range(pl.len()) == 2)
        .then(settings.rop_minutes * 60 + 1.0)
        .otherwise("unavail_s")
        .alias("unavail_s"),
    )
    path = settings.layout.landing / "A_old.parquet"
    lake.atomic_write_parquet(rows, path)
    summary = ingest_files([path], settings, NOW)
    assert (summary.rows_accepted, summary.rows_quarantined) == (1, 3)
    bad = pl.read_parquet(settings.layout.quarantine / "A_old.parquet.rows.parquet").sort("_row")
    newest_day_end = datetime.combine(rows["ts"].max().date() + timedelta(days=1), time(), UTC)
    cutoff = newest_day_end - timedelta(days=settings.ingest.retention_days)
    assert bad["reason"].to_list() == [
        f"ts: older than the {settings.ingest.retention_days}-day retention counted back from "
        f"the newest data (before {cutoff:%Y-%m-%d %H:%M} UTC)",
        "cell_id: missing or empty cell_id",
        f"unavail_s: above the ROP length ({settings.rop_minutes * 60} s)",
    ]
    assert bad["cell_id"][1] == " "  # quarantined rows keep their original values


def test_timestamps_beyond_what_python_can_hold_are_quarantined_not_fatal(settings):
    # A damaged file can carry any 64-bit ts: here years -258 and 20000.
    _, day = next(iter_days(CFG))
    micros = pl.Series([-70_300_000_000_000_000, 568_971_820_800_000_000], dtype=pl.Int64)
    rows = day.head(3).with_columns(
        pl.concat([day["ts"].head(1).dt.epoch("us"), micros])
        .cast(pl.Datetime("us", "UTC"))
        .alias("ts")
    )
    path = settings.layout.landing / "A_damaged.parquet"
    lake.atomic_write_parquet(rows, path)
    summary = ingest_files([path], settings, NOW)
    assert (summary.rows_accepted, summary.rows_quarantined) == (1, 2)
    report = (settings.layout.quarantine / "A_damaged.parquet.report.txt").read_text()
    assert "ts -0258-04-13 14:13:20+00:00" in report and "ts +20000-01-01" in report


def test_reject_file_policy_keeps_the_whole_file_out(settings):
    strict = settings.model_copy(update={"ingest": IngestSettings(bad_rows="reject_file")})
    path, _ = broken_file(strict.layout.landing)
    summary = ingest_files([path], strict, NOW)
    assert summary.files[0].status == "rejected"
    assert "policy reject_file" in (summary.files[0].reason or "")
    assert kpi_rows(strict).is_empty()


def test_rows_of_foreign_regions_are_refused_when_residency_is_set(settings):
    truth = write_landing(settings.layout.landing)
    own = settings.model_copy(update={"regions": ["north"]})
    summary = ingest_files([settings.layout.landing], own, NOW)
    assert summary.rows_accepted == truth.filter(pl.col("region") == "north").height
    assert set(kpi_rows(own)["region"]) == {"north"}
    assert (
        "region not held by this installation"
        in next(own.layout.quarantine.glob("*.report.txt")).read_text()
    )


@pytest.mark.parametrize(
    "make,needle",
    [
        (
            lambda p: pl.DataFrame({"cell": ["a"], "ts": [NOW]}).write_parquet(p),
            "missing key column(s) cell_id",
        ),
        (lambda p: p.write_bytes(b""), "the file is empty"),
        (lambda p: p.write_bytes(b"PAR1\x00\x01garbage"), "not a readable parquet file"),
        (
            lambda p: pl.DataFrame({"cell_id": ["a"], "ts": ["2026-01-05 00:00"]}).write_parquet(p),
            "expected a timestamp",
        ),
        (
            lambda p: pl.DataFrame({"cell_id": ["a"], "ts": [datetime(2026, 1, 5)]}).write_parquet(
                p
            ),
            "has no timezone",
        ),
    ],
)
def test_unusable_files_are_rejected_with_a_clear_reason(settings, make, needle):
    path = settings.layout.landing / "A_bad.parquet"
    path.parent.mkdir(parents=True)
    make(path)
    summary = ingest_files([path], settings, NOW)
    assert summary.files[0].status == "rejected"
    assert needle in summary.files[0].reason
    assert str(path) in summary.files[0].reason
    assert (settings.layout.quarantine / "A_bad.parquet.report.txt").exists()


def test_unsupported_file_type_is_rejected(settings, tmp_path):
    path = tmp_path / "export.csv"
    path.write_text("cell_id,ts\n")
    with pytest.raises(ContractError, match="unsupported file type"):
        read_landing_file(path)


def test_text_in_a_numeric_column_is_reported_not_lost(settings):
    raw = pl.DataFrame(
        {
            "cell_id": ["a", "b"],
            "ts": [NOW - timedelta(hours=1)] * 2,
            "prb_util_dl_pct": ["55.5", "#VALUE!"],
        }
    )
    conformed, _ = conform(raw, "x.parquet")
    good, bad, _problems = validate_rows(conformed, RuleLimits.of(settings), NOW)
    assert good["prb_util_dl_pct"].to_list() == [55.5]
    assert bad["reason"].to_list() == ["prb_util_dl_pct: not a number"]


def test_duplicate_keys_in_one_file_keep_the_last_row(settings):
    ts = NOW - timedelta(hours=1)
    raw = pl.DataFrame({"cell_id": ["a", "a"], "ts": [ts, ts], "prb_util_dl_pct": [10.0, 20.0]})
    conformed, _ = conform(raw, "x.parquet")
    good, _bad, problems = validate_rows(conformed, RuleLimits.of(settings), NOW)
    assert good["prb_util_dl_pct"].to_list() == [20.0]
    assert any("duplicate key" in p.rule for p in problems)


def test_latest_rows_last_delivery_wins_and_sorts():
    t0 = datetime(2026, 1, 5, tzinfo=UTC)
    old = pl.DataFrame({"cell_id": ["b", "a"], "ts": [t0, t0], "v": [1.0, 2.0]})
    new = pl.DataFrame({"cell_id": ["a", "c"], "ts": [t0, t0], "v": [9.0, 3.0]})
    merged = lake.latest_rows(pl.concat([old, new]))
    assert merged.rows() == [("a", t0, 9.0), ("b", t0, 1.0), ("c", t0, 3.0)]


def test_last_per_key_keeps_order_and_the_last_duplicate():
    t0 = datetime(2026, 1, 5, tzinfo=UTC)
    rows = pl.DataFrame({"cell_id": ["b", "a", "b", "c"], "ts": [t0] * 4, "v": [1.0, 2, 3, 4]})
    assert last_per_key(rows)["v"].to_list() == [2.0, 3.0, 4.0]
    assert last_per_key(rows[:2]).equals(rows[:2])


def test_archive_setting_moves_ingested_files_unchanged(settings):
    archiving = settings.model_copy(update={"ingest": IngestSettings(after="archive")})
    write_landing(archiving.layout.landing)
    names = sorted(p.name for p in archiving.layout.landing.glob("*.parquet"))
    hashes = {p.name: file_sha256(p) for p in archiving.layout.landing.glob("*.parquet")}
    bad, _ = broken_file(archiving.layout.landing / "sub")
    summary = ingest_files([archiving.layout.landing], archiving, NOW)
    assert summary.count("ingested") == 49
    archived = sorted(p.name for p in archiving.layout.archive.glob("*.parquet"))
    assert archived == names
    assert {p.name: file_sha256(p) for p in archiving.layout.archive.glob("*.parquet")} == hashes
    assert (archiving.layout.archive / "sub" / bad.name).exists()  # quarantined rows, rest in
    assert not list(archiving.layout.landing.rglob("*.parquet"))
    assert kpi_rows(archiving).height == 6 * 2 * 96  # the broken file re-delivers known keys


def single_region_files(landing: Path) -> list[tuple[Path, pl.DataFrame]]:
    """The simulated day as one file per hour and region (as per-domain OSS exports come)."""
    day = next(iter(iter_days(CFG)))[1]
    out = []
    for name, part in split_into_files(day, 60):
        for (region,), rows in part.partition_by("region", as_dict=True).items():
            path = landing / f"{Path(name).stem}-{region}.parquet"
            lake.atomic_write_parquet(rows, path)
            out.append((path, rows))
    return out


def test_a_file_already_in_the_lakes_shape_is_copied_not_reencoded(settings):
    files = single_region_files(settings.layout.landing)
    before = {path: path.read_bytes() for path, _ in files}
    summary = ingest_files([settings.layout.landing], settings, NOW)
    assert summary.count("ingested") == len(files)
    fragments = {f.read_bytes() for f in (settings.layout.lake / "kpi").rglob("f-*")}
    assert fragments == set(before.values())  # every fragment is a landing file, verbatim
    assert all(path.read_bytes() == data for path, data in before.items())  # raw untouched
    truth = pl.concat([rows for _, rows in files])
    stored = kpi_rows(settings)
    assert stored.equals(truth.sort("cell_id", "ts").select(stored.columns))


def test_a_file_conforming_changes_is_reencoded(settings):
    (path, rows), *others = single_region_files(settings.layout.landing)
    for other, _ in others:
        other.unlink()
    # No region: conforming fills it in, so the file is not what the lake holds.
    lake.atomic_write_parquet(rows.with_columns(pl.lit(None, pl.String).alias("region")), path)
    ingest_files([settings.layout.landing], settings, NOW)
    (fragment,) = (settings.layout.lake / "kpi").rglob("f-*")
    assert fragment.suffix == lake.FRAGMENT_SUFFIX  # written, not copied
    assert lake.scan([fragment]).collect()["region"].unique().to_list() == ["unassigned"]


def test_an_adopted_file_that_changed_since_it_was_read_is_written_from_its_rows(tmp_path):
    path, rows = single_region_files(tmp_path / "landing")[0]
    dataset = lake.Dataset(tmp_path / "kpi")
    stream = lake.DeltaStream(dataset)
    day = rows["ts"].min().date()
    region = rows["region"][0]
    stream.adopt(day, region, path, "0" * 64, rows)  # not the hash of what is there now
    stream.commit()
    (fragment,) = (tmp_path / "kpi").rglob("f-*")
    assert fragment.read_bytes() != path.read_bytes()
    assert lake.scan([fragment]).collect().equals(rows)


# ----------------------------------------------------------------- hostile and malformed input


def one_day(rows: int = 4) -> pl.DataFrame:
    return next(iter_days(CFG))[1].filter(pl.col("region") == "north").head(rows)


def files_outside(home: Path, settings) -> list[Path]:
    """Files ingest wrote anywhere but where it may write."""
    allowed = (
        settings.layout.landing,
        settings.layout.lake / "kpi",
        settings.layout.quarantine,
        settings.layout.archive,
    )
    return [
        p
        for p in home.parent.rglob("*")
        if p.is_file()
        and p != settings.layout.ledger
        and not any(p.is_relative_to(folder) for folder in allowed)
    ]


@pytest.mark.parametrize("region", ["../../../../x", "a/b", "r" * 300, "a\0b", "..", "."])
def test_a_region_that_is_not_a_plain_folder_name_is_quarantined_never_a_path(settings, region):
    rows = one_day().with_columns(
        pl.when(pl.int_range(pl.len()) == 0)
        .then(pl.lit(region))
        .otherwise("region")
        .alias("region")
    )
    path = settings.layout.landing / "A_region.parquet"
    lake.atomic_write_parquet(rows, path)
    summary = ingest_files([path], settings, NOW)
    (result,) = summary.files
    assert (result.status, result.rows_accepted, result.rows_quarantined) == ("ingested", 3, 1)
    bad = pl.read_parquet(settings.layout.quarantine / "A_region.parquet.rows.parquet")
    assert bad["region"].to_list() == [region]  # kept as the file had it
    assert bad["reason"][0].startswith("region: not a valid region (1-64 characters")
    assert "fix the region in the export" in bad["reason"][0]
    assert files_outside(settings.home, settings) == []
    kpi = settings.layout.lake / "kpi"
    assert sorted(p.name for p in kpi.glob("date=*/*")) == ["region=north"]
    assert kpi_rows(settings).height == 3


@pytest.mark.parametrize("cell_id", ["a<b", "a/b", "a\tb", "c" * 129, "a  b", " a", "Zürich"])
def test_a_cell_id_breaking_the_rule_is_quarantined_with_the_rule(settings, cell_id):
    rows = one_day().with_columns(
        pl.when(pl.int_range(pl.len()) == 0)
        .then(pl.lit(cell_id))
        .otherwise("cell_id")
        .alias("cell_id")
    )
    conformed, _ = conform(rows, "x.parquet")
    good, bad, problems = validate_rows(conformed, RuleLimits.of(settings), NOW)
    assert good.height == 3
    assert bad["cell_id"].to_list() == [cell_id]
    assert bad["reason"][0].startswith("cell_id: not a valid cell id (1-128 characters")
    assert "\t" not in problems[0].example  # the report shows the id escaped


@pytest.mark.parametrize("cell_id", ["Cell 1", "262-01-0000123-1", "c" * 128, "S1-2-n78"])
def test_cell_ids_within_the_rule_are_accepted(settings, cell_id):
    rows = one_day(1).with_columns(pl.lit(cell_id).alias("cell_id"))
    good, bad, _ = validate_rows(conform(rows, "x.parquet")[0], RuleLimits.of(settings), NOW)
    assert (good.height, bad.height) == (1, 0)


def test_empty_cell_ids_keep_their_own_reason(settings):
    rows = one_day(2).with_columns(pl.Series("cell_id", ["", None]))
    _, bad, _ = validate_rows(conform(rows, "x.parquet")[0], RuleLimits.of(settings), NOW)
    assert bad["reason"].to_list() == ["cell_id: missing or empty cell_id"] * 2


def test_every_simulated_cell_id_and_region_follows_the_contract():
    import re

    from cellpulse import contract

    day = next(iter_days(SimulationConfig(cells=400, days=1, seed=3)))[1]
    for column, pattern in (
        ("cell_id", contract.CELL_ID_PATTERN),
        ("region", contract.PARTITION_VALUE_PATTERN),
    ):
        values = day[column].unique().to_list()
        assert all(re.fullmatch(pattern, v) for v in values), column


def malformed(kind: str) -> pl.DataFrame:
    rows = one_day().with_columns(pl.col("ts").dt.offset_by("1d"))  # keys of their own
    if kind == "list_measurement":
        return rows.with_columns(pl.concat_list("prb_util_dl_pct").alias("prb_util_dl_pct"))
    if kind == "list_cell_id":
        return rows.with_columns(pl.concat_list("cell_id").alias("cell_id"))
    assert kind == "struct_region"
    return rows.with_columns(pl.struct("region").alias("region"))


@pytest.mark.parametrize("kind", ["list_measurement", "list_cell_id", "struct_region"])
def test_a_malformed_file_is_rejected_and_the_files_beside_it_are_ingested(settings, kind):
    truth = write_landing(settings.layout.landing)
    bad = settings.layout.landing / "A_malformed.parquet"
    lake.atomic_write_parquet(malformed(kind), bad)
    summary = ingest_files([settings.layout.landing], settings, NOW)
    assert summary.count("ingested") == 48 and kpi_rows(settings).height == truth.height
    (rejected,) = summary.rejected
    assert rejected.path == bad
    assert "hold lists, records, objects or raw bytes, not single values" in (rejected.reason or "")
    report = (settings.layout.quarantine / "A_malformed.parquet.report.txt").read_text()
    assert "hold lists, records" in report
    with Ledger(settings.layout.ledger) as ledger:
        assert [r.status for r in ledger.files() if r.path == str(bad)] == ["rejected"]
    again = ingest_files([settings.layout.landing], settings, NOW)  # a later run: no crash
    assert again.count("skipped") == 49


def test_any_failure_reading_one_file_rejects_that_file_only(settings, monkeypatch):
    """A failure no rule foresaw (here polars refusing a computation) still rejects just the
    file, with the error's first line as the reason."""
    import cellpulse.ingest.pipeline as ingest

    write_landing(settings.layout.landing)
    victim = sorted(settings.layout.landing.glob("*.parquet"))[3]
    real_validate = ingest.validate_rows

    def fails_on_victim(df, s, now):
        if df.height and df["ts"].min() == pl.read_parquet(victim)["ts"].min():
            raise pl.exceptions.ComputeError("cannot compare list with float\n  at col(x)")
        return real_validate(df, s, now)

    monkeypatch.setattr(ingest, "validate_rows", fails_on_victim)
    summary = ingest_files([settings.layout.landing], settings, NOW)
    (rejected,) = summary.rejected
    assert rejected.path == victim
    assert rejected.reason == (
        f"{victim}: cannot be read as KPI rows (ComputeError: cannot compare list with float); "
        "fix the export or move the file out of the landing folder"
    )
    assert summary.count("ingested") == 47


def test_the_ingest_command_fails_with_one_line_when_files_were_rejected(settings, capsys):
    import typer

    from cellpulse.cli.data import fail_on_rejected
    from cellpulse.cli.edge import handles_errors

    write_landing(settings.layout.landing)
    lake.atomic_write_parquet(malformed("list_cell_id"), settings.layout.landing / "x[/x].parquet")
    summary = ingest_files([settings.layout.landing], settings, NOW)
    with pytest.raises(typer.Exit) as exit_:
        handles_errors(fail_on_rejected)(summary)
    assert exit_.value.exit_code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "x[/x].parquet: column(s) cell_id hold lists" in err


def test_a_symlink_in_landing_is_refused_and_its_target_never_moved(settings, tmp_path):
    archiving = settings.model_copy(update={"ingest": IngestSettings(after="archive")})
    good = archiving.layout.landing / "A_good.parquet"
    lake.atomic_write_parquet(one_day(), good)
    outside = tmp_path / "elsewhere" / "secret.parquet"
    lake.atomic_write_parquet(one_day().with_columns(pl.lit("z").alias("cell_id")), outside)
    data = outside.read_bytes()
    link = archiving.layout.landing / "A_link.parquet"
    link.symlink_to(outside)
    (archiving.layout.landing / "sub").mkdir()
    (archiving.layout.landing / "sub" / "folder").symlink_to(outside.parent)
    (archiving.layout.landing / "dangling.parquet").symlink_to(tmp_path / "nothing")

    summary = ingest_files([archiving.layout.landing], archiving, NOW)
    statuses = {f.path.name: f.status for f in summary.files}
    assert statuses == {
        "A_good.parquet": "ingested",
        "A_link.parquet": "rejected",
        "folder": "rejected",
        "dangling.parquet": "rejected",
    }
    assert all("a symbolic link" in (f.reason or "") for f in summary.rejected)
    assert outside.read_bytes() == data  # the target stays where it was, untouched
    assert link.is_symlink() and link.resolve() == outside
    assert sorted(p.name for p in archiving.layout.archive.rglob("*")) == ["A_good.parquet"]
    assert "z" not in kpi_rows(archiving)["cell_id"].to_list()
    report = (archiving.layout.quarantine / "A_link.parquet.report.txt").read_text()
    assert "a symbolic link; landing takes regular files only" in report
    again = ingest_files([archiving.layout.landing], archiving, NOW)
    assert {f.status for f in again.files} == {"skipped"} and outside.read_bytes() == data


def test_sub_microsecond_timestamps_are_quarantined_with_the_value_as_delivered(settings):
    rows = one_day().with_columns(pl.col("ts").dt.cast_time_unit("ns"))
    rows = rows.with_columns(
        pl.when(pl.int_range(pl.len()) == 1)
        .then(pl.col("ts") + pl.duration(nanoseconds=999))  # cut to us, it would be aligned
        .when(pl.int_range(pl.len()) == 2)
        .then(pl.col("ts") - pl.duration(nanoseconds=1))
        .otherwise("ts")
        .alias("ts")
    )
    path = settings.layout.landing / "A_ns.parquet"
    lake.atomic_write_parquet(rows, path)
    summary = ingest_files([path], settings, NOW)
    assert (summary.rows_accepted, summary.rows_quarantined) == (2, 2)
    bad = pl.read_parquet(settings.layout.quarantine / "A_ns.parquet.rows.parquet").sort("_row")
    assert bad["_row"].to_list() == [1, 2]
    delivered = rows["ts"].dt.to_string("%Y-%m-%dT%H:%M:%S%.9f+00:00")
    assert bad["ts_raw"].to_list() == delivered[[1, 2]].to_list()
    assert bad["ts_raw"][0].endswith(":00.000000999+00:00")
    assert bad["ts_raw"][1].endswith(":59.999999999+00:00")
    assert all(
        "not aligned to the 15-minute ROP: a sub-microsecond part" in r for r in bad["reason"]
    )
    report = (settings.layout.quarantine / "A_ns.parquet.report.txt").read_text()
    assert f"(as delivered {delivered[1]})" in report
    stored = kpi_rows(settings)
    assert stored["ts"].to_list() == rows["ts"].dt.cast_time_unit("us")[[0, 3]].sort().to_list()
    assert "ts_raw" not in stored.columns


def test_a_file_name_with_a_newline_cannot_forge_report_lines(settings):
    path = settings.layout.landing / "A\nstatus: ingested\u202e.parquet"
    path.parent.mkdir(parents=True)
    path.write_bytes(b"")
    (result,) = ingest_files([path], settings, NOW).files
    assert result.status == "rejected"
    assert result.reason == (
        f"{settings.layout.landing}/A\\nstatus: ingested\\u202e.parquet: the file is empty; "
        "ask the OSS export to re-deliver it"
    )
    report = next(settings.layout.quarantine.glob("*.report.txt")).read_text()
    lines = report.splitlines()
    assert len(lines) == 4 and [line for line in lines if line.startswith("status:")] == [
        "status: rejected"
    ]
    with Ledger(settings.layout.ledger) as ledger:
        assert ledger.files()[0].path == str(path)  # the ledger keeps the true name


def test_huge_names_and_values_are_echoed_cut(settings):
    rows = one_day(2).with_columns(
        pl.lit("h" * 1_000_000).alias("x" * 5_000_000), pl.lit("<" * 1_000_000).alias("cell_id")
    )
    path = settings.layout.landing / "A_huge.parquet"
    lake.atomic_write_parquet(rows, path)
    (result,) = ingest_files([path], settings, NOW).files
    assert (result.rows_accepted, result.rows_quarantined) == (0, 2)  # ids of 1 M characters
    report = (settings.layout.quarantine / "A_huge.parquet.report.txt").read_text()
    assert len(report) < 2000
    assert "more chars)" in report and "unknown column, ignored" in report


def test_a_landing_file_with_a_long_name_gets_a_report_and_stops_nothing(settings):
    long_name = settings.layout.landing / ("é" * 120 + ".parquet")  # 248 bytes: legal
    long_name.parent.mkdir(parents=True)
    long_name.write_bytes(b"")
    good = settings.layout.landing / "A_good.parquet"
    lake.atomic_write_parquet(one_day(), good)
    summary = ingest_files([settings.layout.landing], settings, NOW)
    assert sorted(f.status for f in summary.files) == ["ingested", "rejected"]
    (report,) = settings.layout.quarantine.glob("*.report.txt")
    assert len(os.fsencode(report.name)) <= 255 and "the file is empty" in report.read_text()
