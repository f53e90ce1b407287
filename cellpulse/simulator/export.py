"""Contract rows written back out as a raw 3GPP counter export, the way an OSS platform
delivers them (for testing mappings end to end against known truth)."""

from __future__ import annotations

from pathlib import Path

import polars as pl

from cellpulse import lake


def to_3gpp_raw(kpis: pl.DataFrame, timezone: str, rop_minutes: int) -> pl.DataFrame:
    """The counters a node reports for these rows: PRBs used/available instead of %,
    kbit/s and kbit instead of Mbit, handovers split inter/intra, local period-end time.
    A counter whose contract measurements are not in `kpis` (a KPI subset) is left out."""
    prb_avail_ul = pl.col("prb_avail_dl")
    end = (pl.col("ts") + pl.duration(minutes=rop_minutes)).dt.convert_time_zone(timezone)
    inter = (pl.col("ho_att") * 0.3).round()
    inter_succ = pl.min_horizontal(inter, (pl.col("ho_succ") * 0.3).round())
    columns = [
        end.dt.strftime("%d.%m.%Y %H:%M").alias("PERIOD_END_TIME"),
        pl.col("cell_id").alias("NCGI"),
        pl.col("site_id").alias("GNB_ID"),
        pl.col("rat").alias("RAT"),
        pl.col("band").alias("BAND"),
        (pl.col("prb_util_dl_pct") / 100 * pl.col("prb_avail_dl")).alias("RRU.PrbUsedDl"),
        pl.col("prb_avail_dl").alias("RRU.PrbAvailDl"),
        (pl.col("prb_util_ul_pct") / 100 * prb_avail_ul).alias("RRU.PrbUsedUl"),
        prb_avail_ul.alias("RRU.PrbAvailUl"),
        (pl.col("dl_volume_mbit") * 1000).alias("DRB.PdcpSduVolumeDL"),
        (pl.col("ul_volume_mbit") * 1000).alias("DRB.PdcpSduVolumeUL"),
        (pl.col("dl_ue_thp_mbps") * 1000).alias("DRB.UEThpDl"),
        (pl.col("ul_ue_thp_mbps") * 1000).alias("DRB.UEThpUl"),
        pl.col("rrc_conn_mean").alias("RRC.ConnMean"),
        pl.col("rrc_conn_max").alias("RRC.ConnMax"),
        pl.col("active_ue_dl_mean").alias("DRB.MeanActiveUeDl"),
        pl.col("rrc_estab_att").alias("RRC.ConnEstabAtt.sum"),
        pl.col("rrc_estab_succ").alias("RRC.ConnEstabSucc.sum"),
        pl.col("drb_estab_att").alias("DRB.EstabAtt.sum"),
        pl.col("drb_estab_succ").alias("DRB.EstabSucc.sum"),
        pl.col("drb_rel_abnormal").alias("DRB.RelActNbr.sum"),
        pl.col("drb_rel_total").alias("VS.DRB.Rel.sum"),
        inter.alias("MM.HoExeInterReq"),
        (pl.col("ho_att") - inter).alias("MM.HoExeIntraReq"),
        inter_succ.alias("MM.HoExeInterSucc"),
        (pl.col("ho_succ") - inter_succ).alias("MM.HoExeIntraSucc"),
        pl.col("cqi_mean").alias("CARR.WBCQIDist.mean"),
        pl.col("ul_interference_dbm").alias("VS.UL.Interference"),
        pl.col("dl_delay_ms").alias("DRB.RlcSduDelayDl"),
        pl.col("unavail_s").alias("VS.Cell.UnavailableTime"),
    ]
    have = set(kpis.columns)
    return kpis.select(c for c in columns if set(c.meta.root_names()) <= have)


def write_3gpp_csv(raw: pl.DataFrame, path: Path) -> None:
    """Semicolon-separated, decimal comma, Latin-1, '-' for not reported."""
    text = raw.write_csv(separator=";", decimal_comma=True, null_value="-", float_precision=6)
    lake.atomic_write_bytes(path, text.encode("latin-1"))


# Columns of to_3gpp_raw that identify a row; every other column is a counter.
_RAW_IDS = ("PERIOD_END_TIME", "NCGI", "GNB_ID", "RAT", "BAND")
MEAS_COLLEC_NS = "http://www.3gpp.org/ftp/specs/archive/32_series/32.435#measCollec"


def to_long(raw: pl.DataFrame) -> pl.DataFrame:
    """A raw counter export (`to_3gpp_raw`) in long format: one row per cell, period and
    counter, with the counter's name and value; unreported counters are left out."""
    counters = [c for c in raw.columns if c not in _RAW_IDS]
    ids = [c for c in _RAW_IDS if c in raw.columns]
    return (
        raw.unpivot(on=counters, index=ids, variable_name="COUNTER", value_name="VALUE")
        .drop_nulls("VALUE")
        .sort("PERIOD_END_TIME", "NCGI", "COUNTER")
    )


def write_long_csv(raw: pl.DataFrame, path: Path) -> None:
    """`to_long(raw)` as a comma-separated CSV."""
    lake.atomic_write_bytes(path, to_long(raw).write_csv(float_precision=6).encode())


def write_meas_xml(
    kpis: pl.DataFrame, path: Path, rop_minutes: int, variant: str = "measTypes"
) -> None:
    """Contract rows as a 3GPP TS 32.435 measurement file: one measInfo per ROP, the
    counters of `to_3gpp_raw`, one measValue per cell (measObjLdn
    `ManagedElement=<site>,GNBDUFunction=1,NRCellDU=<cell>`), times with a +01:00 offset.

    Args:
        variant: "measTypes" (a name list and a measResults list per cell) or "measType"
            (`measType p="i"` names and `r p="i"` values).
    """
    import xml.etree.ElementTree as ET
    from datetime import timedelta, timezone

    raw = to_3gpp_raw(kpis, "UTC", rop_minutes)
    ends = kpis.select((pl.col("ts") + pl.duration(minutes=rop_minutes)).alias("end"))["end"]
    raw = raw.with_columns(ends)
    counters = [c for c in raw.columns if c not in (*_RAW_IDS, "end")]
    offset = timezone(timedelta(hours=1))
    root = ET.Element("measCollecFile", xmlns=MEAS_COLLEC_NS)
    header = ET.SubElement(root, "fileHeader", fileFormatVersion="32.435 V10.0", vendorName="sim")
    ET.SubElement(header, "fileSender", elementType="gNB")
    data = ET.SubElement(root, "measData")
    ET.SubElement(data, "managedElement", localDn="sim")
    for (end,), rop in raw.sort("end", "NCGI").group_by("end", maintain_order=True):
        info = ET.SubElement(data, "measInfo", measInfoId=f"cellpulse-{len(data)}")
        ET.SubElement(info, "job", jobId="1")
        end_text = end.astimezone(offset).isoformat()
        ET.SubElement(info, "granPeriod", duration=f"PT{rop_minutes * 60}S", endTime=end_text)
        if variant == "measTypes":
            ET.SubElement(info, "measTypes").text = " ".join(counters)
        else:
            for p, name in enumerate(counters, start=1):
                ET.SubElement(info, "measType", p=str(p)).text = name
        for row in rop.iter_rows(named=True):
            ldn = f"ManagedElement={row['GNB_ID']},GNBDUFunction=1,NRCellDU={row['NCGI']}"
            value = ET.SubElement(info, "measValue", measObjLdn=ldn)
            texts = ["NIL" if row[c] is None else f"{row[c]:.6f}" for c in counters]
            if variant == "measTypes":
                ET.SubElement(value, "measResults").text = " ".join(texts)
            else:
                for p, text in enumerate(texts, start=1):
                    ET.SubElement(value, "r", p=str(p)).text = text
            ET.SubElement(value, "suspect").text = "false"
    body = ET.tostring(root, encoding="unicode")
    lake.atomic_write_bytes(path, ('<?xml version="1.0" encoding="UTF-8"?>\n' + body).encode())
