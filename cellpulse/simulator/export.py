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
