"""One test per mapping feature, and the shipped 3GPP mapping end to end."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import polars as pl
import pytest

from cellpulse.errors import MappingError
from cellpulse.ingest import RuleLimits, conform, ingest_files, read_mapped, validate_rows
from cellpulse.mapping import Mapping, load_mapping
from cellpulse.simulator import SimulationConfig, iter_days
from cellpulse.simulator.export import to_3gpp_raw, write_3gpp_csv

NOW = datetime(2026, 2, 1, tzinfo=UTC)


def mapping(**overrides: object) -> Mapping:
    """A small CSV mapping (time, cell, prb) with `overrides` on top."""
    base: dict[str, object] = {
        "name": "test",
        "format": "csv",
        "timestamp": {"column": "time", "format": "%Y-%m-%d %H:%M"},
        "cell_id": {"source": "cell"},
        "columns": {"prb_util_dl_pct": {"source": "prb"}},
    }
    base.update(overrides)
    return Mapping.model_validate(base)


def mapped(
    tmp_path: Path, settings, text: str, m: Mapping, encoding: str = "utf-8"
) -> pl.DataFrame:
    path = tmp_path / "export.csv"
    path.write_bytes(text.encode(encoding))
    conformed, _ = conform(read_mapped(path, m, settings.rop_minutes).rows, str(path))
    return conformed


def test_shipped_3gpp_export_ingests_to_the_truth(settings, tmp_path):
    cfg = SimulationConfig(cells=6, days=1, seed=5)
    _, day = next(iter_days(cfg))
    truth = day.filter(pl.col("region") == "north").sort("cell_id", "ts")
    write_3gpp_csv(to_3gpp_raw(truth, "Europe/Berlin", 15), tmp_path / "pm.csv")
    summary = ingest_files(
        [tmp_path / "pm.csv"], settings, NOW, mapping=load_mapping("3gpp-raw-counters")
    )
    assert summary.rows_quarantined == 0 and summary.rows_accepted == truth.height
    stored = settings.layout.kpi.read().sort("cell_id", "ts")
    assert stored["ts"].equals(truth["ts"])  # local period end -> UTC period start
    for column in (
        "prb_util_dl_pct",
        "dl_ue_thp_mbps",
        "dl_volume_mbit",
        "ho_att",
        "ho_succ",
        "rrc_estab_succ",
        "unavail_s",
        "cqi_mean",
    ):
        diff = (stored[column] - truth[column]).abs().max()
        assert diff is None or diff < 1e-4, column
    assert stored["dl_ue_thp_mbps"].null_count() == truth["dl_ue_thp_mbps"].null_count()


def test_rename_and_units_scale_to_the_contract(settings, tmp_path):
    m = mapping(
        columns={
            "prb_util_dl_pct": {"source": "prb", "unit": "fraction"},
            "dl_ue_thp_mbps": {"source": "thp", "unit": "kbit/s"},
            "dl_volume_mbit": {"source": "vol", "unit": "byte"},
            "dl_delay_ms": {"source": "delay", "scale": 2.0},
        }
    )
    df = mapped(
        tmp_path,
        settings,
        "time,cell,prb,thp,vol,delay\n2026-01-05 10:00,a,0.5,25000,1000000,3\n",
        m,
    )
    row = df.row(0, named=True)
    assert (row["prb_util_dl_pct"], row["dl_ue_thp_mbps"]) == (50.0, 25.0)
    assert row["dl_volume_mbit"] == pytest.approx(8.0)
    assert row["dl_delay_ms"] == 6.0


def test_timestamps_parse_with_format_zone_and_period_end(settings, tmp_path):
    m = mapping(
        timestamp={
            "column": "time",
            "format": "%d.%m.%Y %H:%M",
            "timezone": "Europe/Berlin",
            "marks": "end",
        }
    )
    df = mapped(tmp_path, settings, "time,cell,prb\n05.01.2026 11:15,a,1\n", m)
    assert df["ts"][0] == datetime(2026, 1, 5, 10, 0, tzinfo=UTC)  # CET = UTC+1, minus a ROP


def test_sentinels_become_null_without_a_problem(settings, tmp_path):
    m = mapping(
        null_values=["#VALUE!", -1],
        columns={"prb_util_dl_pct": {"source": "prb"}, "rrc_estab_att": {"source": "att"}},
    )
    df = mapped(
        tmp_path,
        settings,
        "time,cell,prb,att\n2026-01-05 10:00,a,#VALUE!,-1\n2026-01-05 10:00,b,12,40\n",
        m,
    )
    good, bad, _ = validate_rows(df, RuleLimits.of(settings), NOW)
    assert good.height == 2 and bad.height == 0
    assert good["prb_util_dl_pct"].to_list() == [None, 12.0]
    assert good["rrc_estab_att"].to_list() == [None, 40.0]


def test_constants_fill_missing_dimensions(settings, tmp_path):
    m = mapping(constants={"region": "east", "rat": "LTE"})
    df = mapped(tmp_path, settings, "time,cell,prb\n2026-01-05 10:00,a,1\n", m)
    assert (df["region"][0], df["rat"][0], df["band"][0]) == ("east", "LTE", None)


def test_expressions_over_source_columns(settings, tmp_path):
    m = mapping(
        columns={
            "prb_util_dl_pct": {"expr": "100 * [RRU.PrbUsedDl] / [RRU.PrbAvailDl]"},
            "ho_att": {"expr": "[a] + max([b], 2)"},
        }
    )
    df = mapped(
        tmp_path,
        settings,
        "time,cell,RRU.PrbUsedDl,RRU.PrbAvailDl,a,b\n"
        "2026-01-05 10:00,x,50,200,1,5\n2026-01-05 10:00,y,3,0,1,1\n",
        m,
    )
    assert df["prb_util_dl_pct"].to_list() == [25.0, None]  # 0 PRBs available: not reported
    assert df["ho_att"].to_list() == [6.0, 3.0]


@pytest.mark.parametrize(
    "expr", ["__import__('os').system('x')", "[a].real", "'text'", "[a] ** 2", "open([a])"]
)
def test_expressions_cannot_do_anything_but_arithmetic(expr):
    with pytest.raises(MappingError, match="expression for ho_att"):
        mapping(columns={"ho_att": {"expr": expr}})


def test_csv_dialect_separator_decimal_encoding_and_headerless(settings, tmp_path):
    m = mapping(
        csv={
            "separator": ";",
            "decimal": ",",
            "encoding": "latin-1",
            "header": False,
            "columns": ["time", "cell", "prb"],
        }
    )
    df = mapped(tmp_path, settings, "2026-01-05 10:00;Zürich-1;12,5\n", m, "latin-1")
    assert df.row(0, named=True)["cell_id"] == "Zürich-1"
    assert df["prb_util_dl_pct"][0] == 12.5


def test_decimal_commas_are_read_in_number_columns_only(settings, tmp_path):
    m = mapping(csv={"separator": ";", "decimal": ","})
    text = "time;cell;prb\n2026-01-05 10:00;12,5;1.234,5\n2026-01-05 10:15;1.2,5;1,5\n"
    df = mapped(tmp_path, settings, text, m)
    assert df["cell_id"].to_list() == ["12,5", "1.2,5"]  # an identifier keeps its text
    assert df["prb_util_dl_pct"].to_list() == [1234.5, 1.5]  # thousands dot dropped


def test_plain_ascii_exports_read_alike_in_every_ascii_compatible_encoding(settings, tmp_path):
    text = "time,cell,prb\n2026-01-05 10:00,A-1,12.5\n"
    frames = [
        mapped(tmp_path, settings, text, mapping(csv={"encoding": e}), e)
        for e in ("utf-8", "latin-1", "cp1252", "ascii")
    ]
    assert all(f.equals(frames[0]) for f in frames)
    utf16 = mapped(tmp_path, settings, text, mapping(csv={"encoding": "utf-16-le"}), "utf-16-le")
    assert utf16.equals(frames[0])  # all bytes ASCII, yet UTF-16 needs decoding


def test_wrong_encoding_is_a_clear_rejection(settings, tmp_path):
    path = tmp_path / "export.csv"
    path.write_bytes("time,cell,prb\n2026-01-05 10:00,Zürich,1\n".encode("latin-1"))
    summary = ingest_files([path], settings, NOW, mapping=mapping())
    reason = summary.files[0].reason or ""
    assert summary.files[0].status == "rejected"
    assert "not valid utf-8" in reason and "csv.encoding" in reason


def test_parquet_sources_with_naive_local_time(settings, tmp_path):
    path = tmp_path / "export.parquet"
    pl.DataFrame({"t": [datetime(2026, 7, 1, 12, 0)], "c": ["a"], "p": [0.3]}).write_parquet(path)
    m = mapping(
        format="parquet",
        timestamp={"column": "t", "timezone": "Europe/Berlin"},
        cell_id={"source": "c"},
        columns={"prb_util_dl_pct": {"source": "p", "unit": "fraction"}},
    )
    conformed, _ = conform(read_mapped(path, m, settings.rop_minutes).rows, str(path))
    assert conformed["ts"][0] == datetime(2026, 7, 1, 10, 0, tzinfo=UTC)  # CEST = UTC+2
    assert conformed["prb_util_dl_pct"][0] == pytest.approx(30.0)


def test_a_missing_source_column_rejects_the_file_naming_it(settings, tmp_path):
    path = tmp_path / "export.csv"
    path.write_text("time,cell\n2026-01-05 10:00,a\n")
    summary = ingest_files([path], settings, NOW, mapping=mapping())
    assert "source column(s) prb not in the file" in (summary.files[0].reason or "")


@pytest.mark.parametrize(
    "change,needle",
    [
        ({"columns": {"not_a_kpi": {"source": "x"}}}, "not contract columns"),
        ({"columns": {"prb_util_dl_pct": {"source": "x", "unit": "furlong"}}}, "unknown unit"),
        ({"columns": {"prb_util_dl_pct": {"source": "x", "expr": "1"}}}, "exactly one"),
        ({"constants": {"prb_util_dl_pct": "1"}}, "not dimensions"),
        ({"csv": {"header": False}}, "csv.columns is required"),
    ],
)
def test_invalid_mappings_say_what_and_where(tmp_path, change, needle):
    import yaml

    data = {
        "name": "bad",
        "format": "csv",
        "timestamp": {"column": "t"},
        "cell_id": {"source": "c"},
        **change,
    }
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(MappingError) as err:
        load_mapping(path)
    assert needle in str(err.value) and str(path) in str(err.value)


def test_unknown_shipped_mapping_lists_the_known_ones():
    with pytest.raises(MappingError, match="3gpp-raw-counters"):
        load_mapping("no-such-vendor")


def test_a_bare_column_missing_from_one_file_rejects_that_file_only(settings, tmp_path):
    m = mapping(columns={"prb_util_dl_pct": {"expr": "prb + extra"}})
    (tmp_path / "a.csv").write_text("time,cell,prb\n2026-01-05 10:00,a,1\n")
    (tmp_path / "b.csv").write_text("time,cell,prb,extra\n2026-01-05 10:00,b,1,2\n")
    summary = ingest_files([tmp_path / "a.csv", tmp_path / "b.csv"], settings, NOW, mapping=m)
    assert [f.status for f in summary.files] == ["rejected", "ingested"]
    assert "source column(s) extra not in the file" in (summary.files[0].reason or "")
    stored = settings.layout.kpi.read()
    assert stored["prb_util_dl_pct"].to_list() == [3.0]


@pytest.mark.parametrize(
    "expr,needle",
    [
        ("min()", "min() needs at least one argument"),
        ("max() + [a]", "max() needs at least one argument"),
        ("-" * 5000 + "[prb]", "5005 characters, more than 4000"),
        ("-" * 3000 + "[prb]", "nested more than 100 deep"),
        ("+".join(["[prb]"] * 500), "nested more than 100 deep"),
        ("(" * 300 + "1" + ")" * 300, "cannot parse"),
    ],
)
def test_a_mapping_expression_that_cannot_work_is_refused_when_the_mapping_loads(
    tmp_path, expr, needle
):
    import yaml

    data = {
        "name": "bad",
        "format": "csv",
        "timestamp": {"column": "t"},
        "cell_id": {"source": "c"},
        "columns": {"ho_att": {"expr": expr}},
    }
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(MappingError) as err:
        load_mapping(path)
    message = str(err.value)
    assert message.startswith(f"{path}: expression for ho_att: ") and needle in message
    assert len(message) < 400


def test_a_sum_of_many_counters_is_still_a_valid_expression(settings, tmp_path):
    names = [f"c{i}" for i in range(60)]
    m = mapping(columns={"ho_att": {"expr": " + ".join(f"[{n}]" for n in names)}})
    df = mapped(
        tmp_path,
        settings,
        f"time,cell,prb,{','.join(names)}\n2026-01-05 10:00,a,1,{','.join(['1'] * 60)}\n",
        m,
    )
    assert df["ho_att"].to_list() == [60.0]


def test_a_huge_csv_header_is_echoed_cut(settings, tmp_path):
    path = tmp_path / "export.csv"
    path.write_text("x" * 10_000_000 + ",time,cell\n1,2026-01-05 10:00,a\n")
    (result,) = ingest_files([path], settings, NOW, mapping=mapping()).files
    assert result.status == "rejected" and len(result.reason or "") < 400
    assert "it has xxx" in (result.reason or "") and "more chars), time, cell" in (
        result.reason or ""
    )
    report = (settings.layout.quarantine / "export.csv.report.txt").read_text()
    assert len(report) < 1000


def test_nanosecond_source_timestamps_off_the_rop_are_quarantined_not_cut(settings, tmp_path):
    path = tmp_path / "export.parquet"
    ts = pl.Series([datetime(2026, 1, 5, 10, 0)] * 2).dt.cast_time_unit("ns")
    ts = ts + pl.Series([0, 999], dtype=pl.Duration("ns"))
    pl.DataFrame({"t": ts, "c": ["a", "b"], "p": [1.0, 2.0]}).write_parquet(path)
    m = mapping(
        format="parquet",
        timestamp={"column": "t"},
        cell_id={"source": "c"},
        columns={"prb_util_dl_pct": {"source": "p"}},
    )
    summary = ingest_files([path], settings, NOW, mapping=m)
    assert (summary.rows_accepted, summary.rows_quarantined) == (1, 1)
    bad = pl.read_parquet(settings.layout.quarantine / "export.parquet.rows.parquet")
    assert bad["ts_raw"].to_list() == ["2026-01-05T10:00:00.000000999+00:00"]
