"""The contract's rules are data: how a rule is pre-screened comes from its `screen`
property, never from the words of its reason, so rewording a reason cannot change what is
validated."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import polars as pl
import pytest

from cellpulse import contract
from cellpulse.ingest import Rule, RuleBook, RuleLimits, Screen, conform, rule_book, validate_rows
from cellpulse.ingest import validation as validation_module
from cellpulse.ingest.rules import screens_of

NOW = datetime(2026, 2, 1, tzinfo=UTC)
LIMITS = RuleLimits(
    rop_minutes=15,
    future_tolerance_minutes=60,
    retention_days=400,
    succ_tolerance=0.0,
    regions=("north", "south"),
)
TS = datetime(2026, 1, 31, 10, tzinfo=UTC)
SOUND = {"cell_id": "c1", "ts": TS, "region": "north"}
# Reasons worded like other rules' reasons and unlike the rule each lands on: the worst a
# rewording can do.
MISLEADING = ("NaN or infinite", "below 0", "above 100", "above 900 s")


def breaking_rows() -> pl.DataFrame:
    """Conformed rows, each breaking one rule or two, and one sound row."""
    rows: list[dict[str, object]] = [
        {**SOUND, "unavail_s": 10.0},
        {**SOUND, "cell_id": None},
        {**SOUND, "cell_id": "x" * 200},
        {**SOUND, "region": "a/b"},
        {**SOUND, "region": "east"},
        {**SOUND, "ts": None},
        {**SOUND, "ts": TS + timedelta(minutes=3)},
        {**SOUND, "ts": NOW + timedelta(hours=2)},
        {**SOUND, "ts": NOW - timedelta(days=500)},
        {**SOUND, "unavail_s": 901.0},  # above the ROP, below no other bound
    ]
    for m in contract.MEASUREMENTS:
        rows.append({**SOUND, m.name: float("nan")})
        if m.low is not None:
            rows.append({**SOUND, m.name: m.low - 1})
        if m.high is not None:
            rows.append({**SOUND, m.name: m.high + 1})
    for succ, att in contract.SUCCESS_PAIRS:
        rows.append({**SOUND, succ: 10.0, att: 5.0})
    schema = {
        "cell_id": pl.String,
        "ts": pl.Datetime("us", "UTC"),
        "region": pl.String,
        **{name: pl.Float64 for name in contract.MEASUREMENT_NAMES},
    }
    frame = pl.DataFrame(rows, schema=schema)
    return conform(frame, "rules")[0]


def reworded(rules: tuple[Rule, ...]) -> tuple[Rule, ...]:
    return tuple(
        replace(rule, reason=MISLEADING[i % len(MISLEADING)]) for i, rule in enumerate(rules)
    )


def flagged(rows: pl.DataFrame, screens: tuple[pl.Expr, ...]) -> list[bool]:
    return rows.select(screens).select(pl.any_horizontal(pl.all())).to_series().to_list()


def test_every_rule_is_broken_by_some_row_and_screened_whatever_its_reason_says():
    rows = breaking_rows()
    book = rule_book(LIMITS, NOW)
    screened = flagged(rows, screens_of(reworded(book.rules)))
    for rule in book.rules:
        broken = rows.select(rule.broken.fill_null(False)).to_series().to_list()
        assert any(broken), f"no row breaks {rule.label}"
        missed = [i for i, (b, s) in enumerate(zip(broken, screened, strict=True)) if b and not s]
        assert not missed, f"{rule.label}: rows {missed} not screened once reworded"
    assert screened == flagged(rows, book.screens)
    assert screened[0] is False  # the sound row


def test_validation_quarantines_the_same_rows_when_every_reason_is_reworded(monkeypatch):
    rows = breaking_rows()
    _, bad, problems = validate_rows(rows, LIMITS, NOW)
    book = rule_book(LIMITS, NOW)
    words = reworded(book.rules)
    monkeypatch.setattr(
        validation_module, "rule_book", lambda limits, now: RuleBook(words, screens_of(words))
    )
    _, bad_reworded, problems_reworded = validate_rows(rows, LIMITS, NOW)
    assert bad_reworded["_row"].to_list() == bad["_row"].to_list() == list(range(1, rows.height))
    assert [(p.column, p.rows) for p in problems_reworded] == [(p.column, p.rows) for p in problems]
    assert {p.rule for p in problems_reworded} <= set(MISLEADING)


def test_how_a_rule_is_screened_is_its_own_property():
    book = rule_book(LIMITS, NOW)
    by_screen = {
        screen: {(r.column, r.reason) for r in book.rules if r.screen is screen}
        for screen in Screen
    }
    assert by_screen[Screen.FINITE] == {(n, "NaN or infinite") for n in contract.MEASUREMENT_NAMES}
    assert ("unavail_s", "above the ROP length (900 s)") in by_screen[Screen.OWN]
    assert all(r.low is not None for r in book.rules if r.screen is Screen.LOW)
    with pytest.raises(ValueError, match="bound"):
        Rule("x", "below 0", pl.col("x") < 0, Screen.LOW)
