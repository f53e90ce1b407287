"""Errors a user can act on. Each message says what was wrong, where, and how to fix it."""

from polars.exceptions import PanicException


class CellpulseError(Exception):
    """Base of every error that the CLI turns into one clear line and a non-zero exit."""


class ContractError(CellpulseError):
    """Input does not follow the KPI contract (missing key columns, wrong types, ...)."""


class MappingError(CellpulseError):
    """A source mapping is invalid or does not fit the file it is applied to."""


class NoDataError(CellpulseError):
    """A stage was asked for a period, or a folder, that holds no data."""


class NoChampionError(CellpulseError):
    """Scoring needs a model aliased `champion` and the registry has none."""


class SpecMismatchError(CellpulseError):
    """A model would score features built by a different feature spec."""


# What reading an untrusted file may raise. A corrupt parquet file can make polars panic, and
# its PanicException is a BaseException, not an Exception: without it here, one bad file
# would stop an ingest run instead of being rejected with a reason.
UNREADABLE: tuple[type[BaseException], ...] = (Exception, PanicException)
