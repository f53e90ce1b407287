"""Progress for long loops, shown by the CLI and silent everywhere else.

Core code wraps its long loops in `track`; the CLI installs a reporter that draws progress
bars. Tests and flows run with the silent default.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Protocol, TypeVar

T = TypeVar("T")


class Reporter(Protocol):
    def track(self, items: Iterable[T], description: str, total: int | None) -> Iterator[T]: ...


class _Silent:
    def track(self, items: Iterable[T], description: str, total: int | None) -> Iterator[T]:
        yield from items


_reporter: Reporter = _Silent()


def set_reporter(reporter: Reporter | None) -> None:
    global _reporter
    _reporter = reporter or _Silent()


def track(items: Iterable[T], description: str, total: int | None = None) -> Iterator[T]:
    return _reporter.track(items, description, total)
