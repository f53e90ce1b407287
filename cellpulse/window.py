"""Which days a command covers: one type, parsed and checked once at the edge."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime, timedelta

from cellpulse.errors import NoDataError


@dataclass(frozen=True)
class DayWindow:
    """An inclusive range of UTC days; an open side (None) reaches to the first or the
    newest day there is data for."""

    start: date | None = None
    end: date | None = None

    def __post_init__(self) -> None:
        if self.start is not None and self.end is not None and self.start > self.end:
            raise NoDataError(f"--from {self.start} is after --to {self.end}; swap them")

    @classmethod
    def of(cls, start: date | datetime | None, end: date | datetime | None) -> DayWindow:
        """From command-line values (a datetime counts as its day)."""
        return cls(_as_day(start), _as_day(end))

    @classmethod
    def parse(cls, text: str) -> DayWindow:
        """From its text form, `YYYY-MM-DD..YYYY-MM-DD` (either side may be empty)."""
        lo, sep, hi = text.partition("..")
        if not sep:
            raise ValueError(f"a day window is written FROM..TO, not {text!r}")
        return cls(date.fromisoformat(lo) if lo else None, date.fromisoformat(hi) if hi else None)

    def __str__(self) -> str:
        return f"{self.start or ''}..{self.end or ''}"

    def contains(self, day: date) -> bool:
        return (self.start is None or self.start <= day) and (self.end is None or day <= self.end)

    def within(self, available: Iterable[date]) -> list[date]:
        """The days of `available` inside the window, in order."""
        return sorted(d for d in available if self.contains(d))

    def resolve(self, available: Iterable[date], what: str = "ingested KPIs") -> list[date]:
        """The window's days that have data, or an error saying what the data covers."""
        have = sorted(available)
        if not have:
            raise NoDataError(f"no {what} yet")
        days = self.within(have)
        if not days:
            lo, hi = self.start or have[0], self.end or have[-1]
            raise NoDataError(
                f"no {what} between {lo} and {hi}; data covers {have[0]} to {have[-1]}"
            )
        return days

    def every_day(self) -> list[date]:
        """Every calendar day of a closed window, data or not."""
        if self.start is None or self.end is None:
            raise ValueError(f"window {self} is open; every_day needs both ends")
        return [self.start + timedelta(days=i) for i in range((self.end - self.start).days + 1)]


def _as_day(value: date | datetime | None) -> date | None:
    return value.date() if isinstance(value, datetime) else value
