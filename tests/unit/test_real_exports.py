"""Real operators' exports: 32.435 XML, long CSV, per-KPI files named by cell and KPI, values
from file names, history loads, KPI coverage, and the problems they bring."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

import polars as pl
import pytest

from cellpulse import contract, lake
from cellpulse.errors import MappingError
from cellpulse.ingest import check_sample, ingest_files
from cellpulse.ledger import Ledger
from cellpulse.mapping import Mapping, load_mapping
from cellpulse.settings import IngestSettings, Settings
from cellpulse.simulator import SimulationConfig, iter_days
from cellpulse.simulator.export import to_3gpp_raw, write_long_csv, write_meas_xml
from tests.unit.test_mapping import NOW, mapping

MEASURED = [m for m in contract.MEASUREMENT_NAMES]


def stored(settings) -> pl.DataFrame:
    return settings.layout.kpi.read().sort("cell_id", "ts")


def simulated_rops(rops: int = 4) -> pl.DataFrame:
    """Six cells x a few ROPs of one simulated day (fixed seed)."""
    _, day = next(iter_days(SimulationConfig(cells=6, days=1, seed=11)))
    first = day["ts"].min()
    rows = day.filter(pl.col("ts") < first + timedelta(minutes=15 * rops)).sort("cell_id", "ts")
    assert rows.height == 6 * rops
    return rows


def assert_same_measurements(got: pl.DataFrame, want: pl.DataFrame) -> None:
    assert got.select("cell_id", "ts").equals(want.select("cell_id", "ts"))
    for m in MEASURED:
        assert got[m].is_null().to_list() == want[m].is_null().to_list(), m
        diff = (got[m] - want[m]).abs().max()
        assert diff is None or diff < 1e-3, (m, diff)


# --------------------------------------------------------------- 32.435 XML and long CSV


@pytest.mark.parametrize("variant", ["measTypes", "measType"])
def test_xml_and_long_csv_ingest_to_the_same_rows_as_the_parquet_export(
    settings, tmp_path, variant
):
    truth = simulated_rops()
    lake.atomic_write_parquet(truth, tmp_path / "contract.parquet")
    write_meas_xml(truth, tmp_path / "A20260105.xml", 15, variant)
    write_long_csv(to_3gpp_raw(truth, "UTC", 15), tmp_path / "long.csv")
    spec = load_mapping("3gpp-raw-counters").model_dump()
    spec["csv"].update(separator=",", decimal=".", encoding="utf-8")
    spec["timestamp"]["timezone"] = "UTC"
    spec["long"] = {"counter": "COUNTER", "value": "VALUE"}
    long_mapping = Mapping.model_validate(spec)
    homes = {}
    for name, path, m in [
        ("parquet", tmp_path / "contract.parquet", None),
        ("xml", tmp_path / "A20260105.xml", load_mapping("3gpp-xml")),
        ("long", tmp_path / "long.csv", long_mapping),
    ]:
        home = Settings(home=tmp_path / name)
        summary = ingest_files([path], home, NOW, mapping=m)
        assert (summary.rows_accepted, summary.rows_quarantined) == (truth.height, 0), name
        homes[name] = stored(home)
    assert_same_measurements(homes["parquet"], truth)
    assert_same_measurements(homes["xml"], homes["parquet"])
    assert_same_measurements(homes["long"], homes["parquet"])
    assert homes["long"]["site_id"].equals(homes["parquet"]["site_id"])


def test_an_xml_file_declaring_an_entity_is_rejected_unexpanded(settings, tmp_path):
    path = tmp_path / "bomb.xml"
    path.write_text(
        '<?xml version="1.0"?>\n<!DOCTYPE m [<!ENTITY a "aaaaaaaaaa">'
        '<!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;">]>\n'
        '<measCollecFile xmlns="http://www.3gpp.org/ftp/specs/archive/32_series/32.435#measCollec">'
        "<measData><measInfo>&b;</measInfo></measData></measCollecFile>"
    )
    summary = ingest_files([path], settings, NOW, mapping=load_mapping("3gpp-xml"))
    assert summary.files[0].status == "rejected"
    assert "declares an XML entity" in (summary.files[0].reason or "")


def test_xml_cell_id_is_configurable_and_a_missing_counter_leaves_its_kpi_empty(settings, tmp_path):
    path = tmp_path / "lte.xml"
    path.write_text(
        '<measCollecFile xmlns="http://www.3gpp.org/ftp/specs/archive/32_series/32.435#measCollec">'
        "<measData><measInfo>"
        '<granPeriod duration="PT900S" endTime="2026-01-05T10:15:00+01:00"/>'
        '<measType p="1">RRU.PrbTotDl</measType><measType p="2">RRC.ConnMean</measType>'
        '<measValue measObjLdn="SubNetwork=1,MeContext=E1,EUtranCellFDD=26019001">'
        '<r p="1">42.5</r><r p="2">7</r></measValue>'
        "</measInfo></measData></measCollecFile>"
    )
    summary = ingest_files([path], settings, NOW, mapping=load_mapping("3gpp-xml"))
    assert summary.rows_accepted == 1
    row = stored(settings).row(0, named=True)
    assert row["cell_id"] == "26019001"
    assert row["ts"] == datetime(2026, 1, 5, 9, 0, tzinfo=UTC)  # end 10:15+01:00 - 15 min
    assert (row["prb_util_dl_pct"], row["rrc_conn_mean"], row["dl_volume_mbit"]) == (
        42.5,
        7.0,
        None,
    )


# --------------------------------------------------------------- a changed mapping


def test_a_changed_mapping_reads_the_same_file_again_and_the_same_mapping_does_not(
    settings, tmp_path
):
    path = tmp_path / "export.csv"
    path.write_text("time,cell,prb\n2026-01-05 10:00,c1,0.4\n2026-01-05 10:15,c1,0.5\n")
    wrong, fixed = (
        mapping(),
        mapping(columns={"prb_util_dl_pct": {"source": "prb", "unit": "fraction"}}),
    )
    assert ingest_files([path], settings, NOW, mapping=wrong).count("ingested") == 1
    assert ingest_files([path], settings, NOW, mapping=wrong).count("skipped") == 1
    again = ingest_files([path], settings, NOW, mapping=fixed)
    assert again.count("ingested") == 1 and again.rows_replaced == 2
    assert stored(settings)["prb_util_dl_pct"].to_list() == [40.0, 50.0]
    assert ingest_files([path], settings, NOW, mapping=fixed).count("skipped") == 1
    # A copy under another name read through the same mapping is still a duplicate.
    copy = tmp_path / "copy.csv"
    copy.write_bytes(path.read_bytes())
    assert ingest_files([copy], settings, NOW, mapping=fixed).count("duplicate") == 1


def test_a_ledger_written_before_mappings_were_fingerprinted_opens_and_still_knows_its_files(
    tmp_path,
):
    path = tmp_path / "ledger.sqlite"
    with sqlite3.connect(path) as db:
        db.execute(
            "CREATE TABLE files (sha256 TEXT NOT NULL, path TEXT NOT NULL, size_bytes INTEGER "
            "NOT NULL, status TEXT NOT NULL, rows_in INTEGER NOT NULL, rows_accepted INTEGER "
            "NOT NULL, rows_quarantined INTEGER NOT NULL, reason TEXT, recorded_at TEXT NOT "
            "NULL, PRIMARY KEY (sha256, path))"
        )
        db.execute(
            "INSERT INTO files VALUES ('abc', 'a.parquet', 1, 'ingested', 1, 1, 0, NULL, 'x')"
        )
    db.close()
    with Ledger(path) as ledger:
        assert ledger.seen("abc") == "ingested" and ledger.seen("abc", "m1") is None
        assert ledger.has("abc", "a.parquet")


# --------------------------------------------------------------- the file name


def test_the_file_name_gives_the_cell_id_the_time_and_a_dimension(settings, tmp_path):
    m = mapping(
        cell_id=None,
        timestamp={"format": "%Y%m%d%H%M"},
        from_file_name={"pattern": r"(?P<cell_id>\d+)_(?P<region>[a-z]+)_(?P<ts>\d{12})\.csv"},
        columns={"prb_util_dl_pct": {"source": "prb"}},
    )
    path = tmp_path / "26019001_east_202601051000.csv"
    path.write_text("prb\n42\n")
    assert ingest_files([path], settings, NOW, mapping=m).rows_accepted == 1
    row = stored(settings).row(0, named=True)
    assert (row["cell_id"], row["region"], row["ts"]) == (
        "26019001",
        "east",
        datetime(2026, 1, 5, 10, 0, tzinfo=UTC),
    )
    other = tmp_path / "summary.csv"
    other.write_text("prb\n1\n")
    rejected = ingest_files([other], settings, NOW, mapping=m)
    assert "does not match from_file_name.pattern" in (rejected.files[0].reason or "")


def test_a_constant_cell_id_keeps_its_text(settings, tmp_path):
    m = mapping(cell_id={"expr": "26019001"})
    path = tmp_path / "one.csv"
    path.write_text("time,cell,prb\n2026-01-05 10:00,x,1\n")
    ingest_files([path], settings, NOW, mapping=m)
    assert stored(settings)["cell_id"].to_list() == ["26019001"]


# --------------------------------------------------------------- long and per-KPI files


def test_a_long_export_is_pivoted_and_a_counter_given_twice_is_reported(settings, tmp_path):
    m = mapping(
        long={"counter": "counter", "value": "value"},
        columns={
            "prb_util_dl_pct": {"source": "prb"},
            "rrc_conn_mean": {"source": "users"},
            "dl_volume_mbit": {"source": "vol"},
        },
    )
    path = tmp_path / "long.csv"
    path.write_text(
        "time,cell,counter,value\n"
        "2026-01-05 10:00,c1,prb,40\n"
        "2026-01-05 10:00,c1,users,3\n"
        "2026-01-05 10:00,c2,prb,10\n"
        "2026-01-05 10:00,c1,prb,41\n"  # the same counter again: the later value is kept
    )
    summary = ingest_files([path], settings, NOW, mapping=m)
    rows = stored(settings)
    assert rows.select("cell_id", "prb_util_dl_pct", "rrc_conn_mean").rows() == [
        ("c1", 41.0, 3.0),
        ("c2", 10.0, None),
    ]
    problems = {p.rule: p for p in summary.files[0].problems}
    twice = problems["counter given twice for the same cell and time; last value kept"]
    assert twice.rows == 1 and "prb" in twice.example
    assert "counter not in the file; left empty" in problems  # vol: no row names it


PER_KPI = {
    "name": "per-kpi",
    "format": "csv",
    "timestamp": {"column": "time", "format": "%Y-%m-%d %H:%M"},
    "from_file_name": {"pattern": r"(?P<cell_id>\d+)_(?P<counter>[a-z]+)\.csv"},
    "long": {"value": "value"},
    "columns": {
        "dl_volume_mbit": {"source": "volume"},
        "rrc_conn_mean": {"source": "users"},
    },
}


def per_kpi_files(folder: Path) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    volume, users = folder / "26019001_volume.csv", folder / "26019001_users.csv"
    volume.write_text("time,value\n2026-01-05 10:00,100\n2026-01-05 10:15,200\n")
    users.write_text("time,value\n2026-01-05 10:00,5\n2026-01-05 10:15,6\n")
    return [volume, users]


def test_per_kpi_files_of_one_delivery_join_into_one_row_per_cell_and_rop(settings, tmp_path):
    files = per_kpi_files(tmp_path / "in")
    summary = ingest_files(files, settings, NOW, mapping=Mapping.model_validate(PER_KPI))
    assert summary.rows_accepted == 4 and summary.files[0].problems == []
    rows = stored(settings)
    assert rows.select("cell_id", "dl_volume_mbit", "rrc_conn_mean").rows() == [
        ("26019001", 100.0, 5.0),
        ("26019001", 200.0, 6.0),
    ]
    assert summary.coverage.present == ["dl_volume_mbit", "rrc_conn_mean"]


def test_a_per_kpi_file_delivered_in_a_later_run_keeps_the_kpis_already_stored(settings, tmp_path):
    volume, users = per_kpi_files(tmp_path / "in")
    m = Mapping.model_validate(PER_KPI)
    ingest_files([volume], settings, NOW, mapping=m)
    ingest_files([users], settings, NOW, mapping=m)
    rows = stored(settings)
    assert rows.select("dl_volume_mbit", "rrc_conn_mean").rows() == [(100.0, 5.0), (200.0, 6.0)]
    # A corrected volume file replaces the volumes and leaves the users alone.
    volume.write_text("time,value\n2026-01-05 10:00,111\n")
    ingest_files([volume], settings, NOW, mapping=m)
    rows = stored(settings)
    assert rows.select("dl_volume_mbit", "rrc_conn_mean").rows() == [(111.0, 5.0), (200.0, 6.0)]


# --------------------------------------------------------------- times, units, reports


def test_times_without_zero_padding_parse(settings, tmp_path):
    m = mapping(timestamp={"column": "time", "format": "%d/%m/%Y %H:%M"})
    path = tmp_path / "unpadded.csv"
    path.write_text("time,cell,prb\n5/1/2026 9:45,c1,1\n5/1/2026 10:00,c1,2\n")
    assert ingest_files([path], settings, NOW, mapping=m).rows_accepted == 2
    assert stored(settings)["ts"].dt.strftime("%H:%M").to_list() == ["09:45", "10:00"]


def test_a_date_and_a_time_column_are_read_together(settings, tmp_path):
    m = mapping(timestamp={"column": ["date", "time"], "format": "%Y-%m-%d %H:%M"})
    path = tmp_path / "split.csv"
    path.write_text("date,time,cell,prb\n2026-01-05,9:45,c1,1\n")
    assert ingest_files([path], settings, NOW, mapping=m).rows_accepted == 1
    assert stored(settings)["ts"].to_list() == [datetime(2026, 1, 5, 9, 45, tzinfo=UTC)]


def test_a_time_format_without_a_date_is_refused_when_the_mapping_loads():
    with pytest.raises(ValueError, match="has no date"):
        mapping(timestamp={"column": "time", "format": "%H:%M"})


def test_a_time_that_does_not_parse_is_reported_once_with_its_text_and_the_format(
    settings, tmp_path
):
    m = mapping(timestamp={"column": "time", "format": "%d/%m/%Y %H:%M"})
    path = tmp_path / "bad_time.csv"
    path.write_text("time,cell,prb\n5/1/2026 9:45,c1,1\n5/1/2026 9h45,c2,2\nyesterday,c3,3\n")
    summary = ingest_files([path], settings, NOW, mapping=m)
    assert (summary.rows_accepted, summary.rows_quarantined) == (1, 2)
    ts_problems = [p for p in summary.files[0].problems if p.column == "ts"]
    assert len(ts_problems) == 1  # not also "missing ts"
    (problem,) = ts_problems
    assert problem.rows == 2
    assert "format %d/%m/%Y %H:%M" in problem.rule
    assert "as delivered 5/1/2026 9h45" in problem.example
    bad = pl.read_parquet(settings.layout.quarantine / "bad_time.csv.rows.parquet")
    assert bad["ts_raw"].to_list() == ["5/1/2026 9h45", "yesterday"]
    assert all(r.count(";") == 0 for r in bad["reason"])  # one reason per row


def test_a_percent_column_holding_fractions_is_warned_about(settings, tmp_path):
    path = tmp_path / "fraction.csv"
    lines = [f"2026-01-05 {h:02d}:00,c1,0.{h + 10}" for h in range(24)]
    path.write_text("time,cell,prb\n" + "\n".join(lines) + "\n")
    summary = ingest_files([path], settings, NOW, mapping=mapping())
    (warning,) = [p for p in summary.files[0].problems if "fraction" in p.rule]
    assert warning.column == "prb_util_dl_pct" and warning.rows == 24
    fixed = mapping(columns={"prb_util_dl_pct": {"source": "prb", "unit": "fraction"}})
    summary = ingest_files([path], settings, NOW, mapping=fixed)
    assert not [p for p in summary.files[0].problems if "fraction" in p.rule]


# --------------------------------------------------------------- history and coverage


def history(months: int = 19) -> pl.DataFrame:
    """Two cells, one ROP every ten days over `months` months, ending a year before NOW."""
    _, day = next(iter_days(SimulationConfig(cells=2, days=1, seed=3)))
    rows = day.filter(pl.col("ts") == day["ts"].min())
    end = datetime(2025, 1, 5, tzinfo=UTC)
    steps = range(0, months * 30, 10)
    return pl.concat(
        rows.with_columns(pl.lit(end - timedelta(days=d)).dt.cast_time_unit("us").alias("ts"))
        for d in steps
    ).sort("cell_id", "ts")


def test_a_19_month_history_loads_whole(settings, tmp_path):
    rows = history()
    lake.atomic_write_parquet(rows, settings.layout.landing / "history.parquet")
    summary = ingest_files([settings.layout.landing], settings, NOW)
    assert (summary.rows_accepted, summary.rows_quarantined) == (rows.height, 0)
    assert not summary.all_refused


def test_retention_from_now_refuses_old_history_and_says_every_row_was_refused(settings):
    strict = settings.model_copy(
        update={"ingest": IngestSettings(retention_from="now", retention_days=300)}
    )
    lake.atomic_write_parquet(history(), strict.layout.landing / "history.parquet")
    summary = ingest_files([strict.layout.landing], strict, NOW)
    assert summary.rows_accepted == 0 and summary.all_refused
    line = summary.refused_line()
    assert line.startswith(f"every one of the {summary.rows_read:,} rows read was refused")
    assert "ts: older than the 300-day retention" in line


def test_the_ingest_command_fails_with_the_top_reasons_when_every_row_was_refused(settings, capsys):
    import typer

    from cellpulse.cli.data import fail_on_rejected
    from cellpulse.cli.edge import handles_errors

    strict = settings.model_copy(
        update={"ingest": IngestSettings(retention_from="now", retention_days=300)}
    )
    lake.atomic_write_parquet(history(), strict.layout.landing / "history.parquet")
    summary = ingest_files([strict.layout.landing], strict, NOW)
    assert not summary.rejected  # quarantined rows: the file itself was read
    with pytest.raises(typer.Exit) as exit_:
        handles_errors(fail_on_rejected)(summary)
    assert exit_.value.exit_code == 2
    err = capsys.readouterr().err
    assert "every one of the" in err and "older than the 300-day retention" in err


def test_retention_from_the_data_still_refuses_a_stale_file_after_newer_data(settings):
    settings = settings.model_copy(update={"ingest": IngestSettings(retention_days=400)})
    rows = history(months=2)
    newest = rows.filter(pl.col("ts") == rows["ts"].max())
    stale = newest.with_columns(pl.col("ts") - timedelta(days=401))
    lake.atomic_write_parquet(newest, settings.layout.landing / "a_new.parquet")
    ingest_files([settings.layout.landing / "a_new.parquet"], settings, NOW)
    lake.atomic_write_parquet(stale, settings.layout.landing / "b_stale.parquet")
    summary = ingest_files([settings.layout.landing / "b_stale.parquet"], settings, NOW)
    assert summary.all_refused
    assert "counted back from the newest data" in summary.refused_line()


def test_future_rows_are_judged_against_the_clock_whatever_the_retention(settings):
    rows = history(months=1).head(2)
    future = rows.with_columns(pl.lit(NOW + timedelta(days=3)).dt.cast_time_unit("us").alias("ts"))
    lake.atomic_write_parquet(pl.concat([rows, future]), settings.layout.landing / "f.parquet")
    summary = ingest_files([settings.layout.landing], settings, NOW)
    assert (summary.rows_accepted, summary.rows_quarantined) == (2, 2)


def test_ingest_and_mapping_check_report_kpi_coverage(settings, tmp_path):
    path = tmp_path / "subset.csv"
    lines = [
        f"2026-01-05 {h:02d}:00,c1,{40 + h},{'' if h % 4 else 7}" for h in range(24)
    ]  # users in 6 of 24 rows
    path.write_text("time,cell,prb,users\n" + "\n".join(lines) + "\n")
    m = mapping(
        columns={"prb_util_dl_pct": {"source": "prb"}, "rrc_conn_mean": {"source": "users"}}
    )
    check = check_sample(path, settings, m, NOW)
    assert check.coverage.present == ["prb_util_dl_pct"]
    assert check.coverage.mostly_null == ["rrc_conn_mean"]
    assert len(check.coverage.absent) == len(contract.MEASUREMENT_NAMES) - 2
    summary = ingest_files([path], settings, NOW, mapping=m)
    assert summary.coverage == check.coverage
    assert summary.coverage.line() == (
        "KPI coverage of 24 rows: 1 present (prb_util_dl_pct); 1 mostly null "
        f"(rrc_conn_mean 25%); {len(contract.MEASUREMENT_NAMES) - 2} absent"
    )


def test_mapping_check_reports_every_problem_once(settings, tmp_path):
    path = tmp_path / "sample.csv"
    path.write_text("time,cell,prb\n2026-01-05 10:00,c1,x\n2026-01-05 9h,c1,1\n")
    check = check_sample(path, settings, mapping(), NOW)
    assert sorted((p.column, p.rows) for p in check.problems) == [
        ("prb_util_dl_pct", 1),
        ("ts", 1),
    ]
    assert check.bad.height == 2 and check.good.height == 0


def test_an_unknown_file_name_group_is_refused():
    with pytest.raises(ValueError, match="group"):
        mapping(from_file_name={"pattern": r"(?P<kpi>\w+)\.csv"})
    with pytest.raises(MappingError):
        load_mapping("no-such-mapping")


def test_the_mapping_check_command_shows_rows_coverage_and_problems(tmp_path):
    from typer.testing import CliRunner

    from cellpulse.cli import app

    sample = tmp_path / "A20260105.xml"
    write_meas_xml(simulated_rops(), sample, 15, "measTypes")
    result = CliRunner().invoke(
        app, ["mapping", "check", "3gpp-xml", str(sample), "--home", str(tmp_path / "home")]
    )
    assert result.exit_code == 0, result.output
    assert f"mapping 3gpp-xml on {sample}" in result.output
    assert "KPI coverage of" in result.output and "present (" in result.output
