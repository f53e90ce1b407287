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

    def resolve(
        self, available: Iterable[date], what: str = "ingested KPIs", fix: str = ""
    ) -> list[date]:
        """The window's days that have data, or an error saying what the data covers (or,
        with no data at all, the `fix`: the command that makes some)."""
        have = sorted(available)
        if not have:
            raise NoDataError(f"no {what} yet" + (f"; {fix}" if fix else ""))
        days = self.within(have)
        if not days:
            # An open side reaches to the data, but never past the side that was given.
            lo = self.start or min(have[0], self.end or have[0])
            hi = self.end or max(have[-1], lo)
            raise NoDataError(
                f"no {what} between {lo} and {hi}; data covers {have[0]} to {have[-1]}"
            )
        return days

    def bounds(self) -> tuple[date, date]:
        """(first, last) day of a closed window."""
        if self.start is None or self.end is None:
            raise ValueError(f"window {self} is open; it needs both ends here")
        return self.start, self.end

    def every_day(self) -> list[date]:
        """Every calendar day of a closed window, data or not."""
        start, end = self.bounds()
        return [start + timedelta(days=i) for i in range((end - start).days + 1)]


def evaluation_window(
    scored: list[date],
    requested: DayWindow,
    trained_on: DayWindow | None,
    champion: str | None = None,
) -> tuple[DayWindow, str]:
    """The days an evaluation judges, and a note saying which they are. A requested window
    keeps the scored days inside it; with none requested, the days scored after the
    champion's training window (`trained_on`): the honest hold-out. Falls back to every
    scored day, saying so, when there are none.

    Args:
        scored: the days with published scores, oldest first (at least one).
        requested: the window the user asked for; `DayWindow()` asks for the default.
        trained_on: the training window of the champion named `champion` (a family), None
            while no family has a champion with that tag.
    """
    if requested != DayWindow():
        days = requested.resolve(scored, "scores")
        return DayWindow(days[0], days[-1]), "the requested days"
    if trained_on is not None and trained_on.end is not None:
        after = [d for d in scored if d > trained_on.end]
        if after:
            whose = f"the {champion} champion's" if champion else "the champion's"
            return DayWindow(after[0], after[-1]), (
                f"days after {whose} training window ({trained_on.end})"
            )
    note = "all scored days (some may be training days: optimistic)"
    return DayWindow(scored[0], scored[-1]), note + (
        "; no champion yet" if champion is None else ""
    )


def _as_day(value: date | datetime | None) -> date | None:
    return value.date() if isinstance(value, datetime) else value
