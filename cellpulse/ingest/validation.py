"""Validation of conformed rows against the contract's rules: which rows are good, which are
quarantined and why, and every problem of a file at once. Pure: tables in, tables out."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, cast

import numpy as np
import polars as pl

from cellpulse import echo, lake
from cellpulse.ingest.results import Problem
from cellpulse.ingest.rules import Rule, RuleLimits, rule_book, screens_of
from cellpulse.mapping import TS_UNREAD

if TYPE_CHECKING:
    pass

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
UNPARSABLE = "_unparsable_"  # prefix of conform's marks for values that were not numbers
UNALIGNED_TS = "_unaligned_ts"  # conform's mark: a ts with a sub-microsecond part, as given
RAW_TS = "ts_raw"  # that ts, beside the quarantined row


def validate_rows(
    df: pl.DataFrame, limits: RuleLimits, now: datetime
) -> tuple[pl.DataFrame, pl.DataFrame, list[Problem]]:
    """Split conformed rows into (good, bad) and list every problem of the file at once.

    `bad` keeps the row number in the source file and a `reason` naming every rule it broke.
    Every rule is first evaluated as a cheap boolean over all rows; reasons are spelled out
    only for the (usually few) rows that broke one. Of a key given twice, `good` keeps the
    later row.

    Args:
        df: Rows as `conform` leaves them, with its marks of unparsable values.
        limits: The settings the rules read.
        now: The run's clock, against which future and too old timestamps are judged.
    """
    book = rule_book(anchored(limits, df, now), now)
    marks = [c for c in df.columns if c.startswith(UNPARSABLE)]
    unread = [c for c in df.columns if c.startswith(TS_UNREAD)]
    own = _file_rules(df, marks, limits.rop_minutes)
    book_rules = list(book.rules)
    if unread:
        # A time that did not parse is null: it is reported once, as the text that did not
        # parse, not also as a missing (or any other) ts.
        parsed = pl.col(unread[0]).is_null()
        book_rules = [
            replace(r, broken=r.broken & parsed) if r.column == "ts" else r for r in book_rules
        ]
        expected = unread[0].removeprefix(TS_UNREAD)
        own.append(Rule("ts", f"not a time in the {expected} (the text is in {RAW_TS})", ~parsed))
        marks.append(unread[0])
    rules = [*book_rules, *own]
    bad_mask, bad_flags = _broken(df, [*book.screens, *screens_of(own, "_f")], rules)
    clean = df.drop([m for m in marks if m not in unread])
    raw_ts = [c for c in (UNALIGNED_TS, *unread) if c in clean.columns]
    if bad_mask.any():
        good = clean.filter(~bad_mask).drop(raw_ts)
        bad = clean.filter(bad_mask)
        if raw_ts:
            bad = bad.rename({raw_ts[0]: RAW_TS})
        bad = bad.with_columns(_reasons(bad_flags, rules))
        problems = _problems(bad, bad_flags, rules)
    else:
        good = clean.drop(raw_ts)
        bad = good.clear().with_columns(pl.lit(None, pl.String).alias("reason"))
        problems = []
    # A key delivered twice in one file: the later row is the correction and wins.
    deduped = last_per_key(good)
    if deduped.height < good.height:
        first = _first_row(good.filter(pl.struct(*lake.KEYS).is_duplicated()))
        problems.append(
            Problem(
                "cell_id, ts",
                "duplicate key in file; last row kept",
                good.height - deduped.height,
                f"cell {first['cell_id']} at {first['ts']}",
            )
        )
    return deduped, bad, problems


def anchored(limits: RuleLimits, df: pl.DataFrame, now: datetime) -> RuleLimits:
    """`limits` with retention counted back from the newest data (`retention_from: data`):
    the end of the day of the newest ts of the file or the lake that is not in the future,
    never later than `now`. A year of history then loads whole, while a stale file
    delivered after newer data is still refused. The anchor is a day's end so that the
    files of one day share their rules."""
    if limits.retention_from != "data" or "ts" not in df.columns:
        return limits
    ahead = now + timedelta(minutes=limits.future_tolerance_minutes)
    # Only times a datetime can hold and that are not ahead of the clock: one damaged row
    # in year 20000 must not make the whole history "old".
    sane = pl.col("ts").is_between(pl.lit(EPOCH), pl.lit(ahead))
    newest = df.select(pl.col("ts").filter(sane).max()).item()
    candidates = [t for t in (newest, limits.newest_stored) if t is not None]
    if not candidates:
        return limits
    latest = cast(datetime, max(candidates))
    day_end = latest.replace(hour=0, minute=0, second=0, microsecond=0) + timedelta(days=1)
    return replace(limits, retention_anchor=min(day_end, now))


def _file_rules(df: pl.DataFrame, marks: list[str], rop_minutes: int) -> list[Rule]:
    """Rules of what conform marked in this file: values that were not numbers, and
    timestamps with a sub-microsecond part."""
    rules = [Rule(c.removeprefix(UNPARSABLE), "not a number", pl.col(c)) for c in marks]
    if UNALIGNED_TS in df.columns:
        rules.append(
            Rule(
                "ts",
                f"not aligned to the {rop_minutes}-minute ROP: a sub-microsecond part "
                f"(the ts as delivered is in {RAW_TS})",
                pl.col(UNALIGNED_TS).is_not_null(),
            )
        )
    return rules


def _broken(
    df: pl.DataFrame, screens: list[pl.Expr], rules: list[Rule]
) -> tuple[pl.Series, pl.DataFrame]:
    """Which rows broke a rule (a mask over `df`), and for those rows which rules they broke
    (a boolean column `_r<i>` per rule)."""
    # First pass, over every row: the screens (a superset of the broken rows). Materialising
    # one boolean column per screen and then reducing them is much faster than one wide
    # any_horizontal expression.
    suspect = df.select(screens).select(pl.any_horizontal(pl.all())).to_series()
    if not suspect.any():
        return suspect, pl.DataFrame()
    # Second pass, on the suspects only: which rules each row broke.
    flags = df.filter(suspect).select(
        rule.broken.fill_null(False).alias(f"_r{i}") for i, rule in enumerate(rules)
    )
    broke_one = flags.select(pl.any_horizontal(pl.all())).to_series()
    mask = pl.Series(np.zeros(df.height, dtype=bool)).scatter(
        suspect.arg_true().filter(broke_one), True
    )
    return mask, flags.filter(broke_one)


def _reasons(flags: pl.DataFrame, rules: list[Rule]) -> pl.Series:
    """Each bad row's reason: the labels of the rules it broke, joined."""
    reasons = (
        pl.concat_list(
            pl.when(pl.col(f"_r{i}")).then(pl.lit(rule.label)) for i, rule in enumerate(rules)
        )
        .list.drop_nulls()
        .list.join("; ")
    )
    return flags.select(reasons.alias("reason")).to_series()


def _problems(bad: pl.DataFrame, flags: pl.DataFrame, rules: list[Rule]) -> list[Problem]:
    """One problem per rule broken in the file: how many rows broke it, and the first."""
    problems = []
    counts = flags.sum().row(0)
    for i, rule in enumerate(rules):
        if counts[i]:
            first = _first_row(bad.filter(flags[f"_r{i}"]))
            example = f"row {first['_row']}, cell {first['cell_id']}, ts {first['ts']}"
            if first.get(RAW_TS) is not None:
                example += f" (as delivered {first[RAW_TS]})"
            problems.append(Problem(rule.column, rule.reason, int(counts[i]), example))
    return problems


def _first_row(rows: pl.DataFrame) -> dict[str, object]:
    """The first of `rows`, its ts as text: a damaged file's ts may lie outside the years a
    Python datetime can hold, and the report must still name it."""
    first = (
        rows.head(1)
        .with_columns(pl.col("ts").dt.to_string("%Y-%m-%d %H:%M:%S%:z"))
        .row(0, named=True)
    )
    first["cell_id"] = echo.shown(first["cell_id"], echo.MAX_NAME_CHARS)  # as the file has it
    return first


def last_per_key(rows: pl.DataFrame) -> pl.DataFrame:
    """The last row of each (cell_id, ts), in the original order."""
    # Distinct 64-bit key hashes prove there are no duplicates (a collision could only make
    # the count smaller), which spares the exact check in the usual case.
    key_hash = pl.struct(*lake.KEYS).hash()
    if rows.select(key_hash.n_unique()).item() == rows.height:
        return rows
    return rows.filter(pl.struct(*lake.KEYS).is_last_distinct())
