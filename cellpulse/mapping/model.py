"""The mapping model: the YAML schema of a source mapping, its validation, and loading a
mapping from a file or by the name of one shipped with cellpulse."""

from __future__ import annotations

import hashlib
import json
import re
from importlib import resources
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from cellpulse import contract
from cellpulse.errors import MappingError
from cellpulse.mapping.expressions import parse_expression

# Multipliers from a source unit to the contract's unit of the same quantity.
UNITS: dict[str, float] = {
    "Mbit/s": 1.0,
    "kbit/s": 1e-3,
    "bit/s": 1e-6,
    "Gbit/s": 1e3,
    "Mbit": 1.0,
    "kbit": 1e-3,
    "bit": 1e-6,
    "Gbit": 1e3,
    "byte": 8e-6,
    "kbyte": 8e-3,
    "Mbyte": 8.0,
    "Gbyte": 8e3,
    "fraction": 100.0,
    "percent": 1.0,
    "permille": 0.1,
    "s": 1.0,
    "ms": 1e-3,
    "min": 60.0,
}
BUILTIN_DIR = "mappings"


class CsvDialect(BaseModel):
    """How a CSV export is written: separator, decimal mark, encoding, header, quoting."""

    model_config = ConfigDict(extra="forbid")
    separator: str = Field(",", min_length=1, max_length=1)
    decimal: Literal[".", ","] = "."
    encoding: str = "utf-8"
    header: bool = True
    columns: list[str] | None = Field(None, description="Column names when there is no header.")
    quote: str | None = '"'

    @model_validator(mode="after")
    def _names_without_header(self) -> CsvDialect:
        if not self.header and not self.columns:
            raise ValueError("csv.columns is required when csv.header is false")
        if self.separator == self.decimal:
            raise ValueError("csv.separator and csv.decimal must differ")
        return self


class TimestampSpec(BaseModel):
    """Where an export's time is, how it is written, in which zone, and whether it marks
    the start or the end of the period."""

    model_config = ConfigDict(extra="forbid")
    column: str | list[str] | None = Field(
        None,
        description="The time column, or several (a date and a time column) joined by a "
        "space; none: the `ts` group of `from_file_name`.",
    )
    format: str | None = Field(None, description="strptime format for text timestamps.")
    timezone: str = Field("UTC", description="Zone of timestamps that carry none.")
    marks: Literal["start", "end"] = Field("start", description="Period start or end.")

    @model_validator(mode="after")
    def _format_with_a_date(self) -> TimestampSpec:
        # A time of day alone ("9:45") would be read as a time on 1 January of year 1.
        if self.format is not None and not re.search(r"%[dejYyFDscGgxUWVb]", self.format):
            raise ValueError(
                f"timestamp.format {self.format!r} has no date; give the date column too "
                "(timestamp.column: [DATE, TIME] with a format for both, joined by a space), "
                "or take the date from the file name"
            )
        return self

    @property
    def columns(self) -> list[str]:
        """The source columns the time is read from (none: the file name)."""
        if self.column is None:
            return []
        return [self.column] if isinstance(self.column, str) else list(self.column)


class ColumnSpec(BaseModel):
    """One contract column: from a source column or an expression, optionally scaled."""

    model_config = ConfigDict(extra="forbid")
    source: str | None = None
    expr: str | None = None
    unit: str | None = None
    scale: float | None = None

    @model_validator(mode="after")
    def _one_origin(self) -> ColumnSpec:
        if (self.source is None) == (self.expr is None):
            raise ValueError("give exactly one of source or expr")
        if self.unit is not None and self.unit not in UNITS:
            raise ValueError(f"unknown unit {self.unit!r}; known: {', '.join(UNITS)}")
        if self.unit is not None and self.scale is not None:
            raise ValueError("give unit or scale, not both")
        return self

    @property
    def factor(self) -> float:
        """What a source value is multiplied by to be in the contract's unit."""
        return self.scale if self.scale is not None else UNITS.get(self.unit or "", 1.0)


# Groups a file-name pattern may name: the key, dimensions, and the counter of a per-KPI file.
FILE_NAME_GROUPS = ("cell_id", "ts", "counter", *contract.DIMENSIONS)


class FileNameSpec(BaseModel):
    """Values taken from the file name: a regular expression matched against the whole name,
    its named groups giving cell_id, ts (read with `timestamp.format`), dimensions, and the
    counter of a per-KPI file."""

    model_config = ConfigDict(extra="forbid")
    pattern: str

    @model_validator(mode="after")
    def _known_groups(self) -> FileNameSpec:
        try:
            compiled = re.compile(self.pattern)
        except re.error as exc:
            raise ValueError(f"from_file_name.pattern does not compile ({exc})") from exc
        unknown = sorted(set(compiled.groupindex) - set(FILE_NAME_GROUPS))
        if unknown:
            raise ValueError(
                f"from_file_name.pattern names group(s) {unknown}; known: "
                f"{', '.join(FILE_NAME_GROUPS)}"
            )
        if not compiled.groupindex:
            raise ValueError("from_file_name.pattern names no group, e.g. (?P<cell_id>\\d+)")
        return self

    @property
    def groups(self) -> set[str]:
        """The values the pattern gives."""
        return set(re.compile(self.pattern).groupindex)


class LongSpec(BaseModel):
    """A long export: one row per (cell, time, counter) with the counter's name and value in
    two columns, pivoted to one row per cell and time whose columns are the counters."""

    model_config = ConfigDict(extra="forbid")
    counter: str | None = Field(
        None, description="Column naming the counter; none: the file name's `counter` group."
    )
    value: str = Field(description="Column holding the counter's value.")


class XmlSpec(BaseModel):
    """How a 3GPP TS 32.435 file names the cell: a regular expression on measObjLdn whose
    first matching group is the cell id (no match: the whole measObjLdn)."""

    model_config = ConfigDict(extra="forbid")
    cell_pattern: str = r"(?:NRCellDU|NRCellCU|EUtranCellFDD|EUtranCellTDD)=([^,]+)"

    @model_validator(mode="after")
    def _compiles(self) -> XmlSpec:
        try:
            groups = re.compile(self.cell_pattern).groups
        except re.error as exc:
            raise ValueError(f"xml.cell_pattern does not compile ({exc})") from exc
        if groups < 1:
            raise ValueError("xml.cell_pattern needs a group for the cell id, e.g. NRCellDU=(.+)")
        return self


class Mapping(BaseModel):
    """How one foreign export becomes contract-shaped rows (see docs/mappings.md)."""

    model_config = ConfigDict(extra="forbid")
    name: str
    description: str = ""
    format: Literal["csv", "parquet", "xml"]
    csv: CsvDialect = CsvDialect()
    xml: XmlSpec = XmlSpec()
    timestamp: TimestampSpec = TimestampSpec()
    cell_id: ColumnSpec | None = None
    from_file_name: FileNameSpec | None = None
    long: LongSpec | None = None
    columns: dict[str, ColumnSpec] = Field(default_factory=dict)
    constants: dict[str, str] = Field(
        default_factory=dict, description="Values for dimensions the source lacks."
    )
    null_values: list[str | float] = Field(
        default_factory=list, description="Sentinels that mean not reported."
    )

    @model_validator(mode="after")
    def _known_targets(self) -> Mapping:
        known = set(contract.schema()) - {"ts"}
        unknown = sorted(set(self.columns) - known)
        if unknown:
            raise ValueError(f"columns {unknown} are not contract columns")
        bad_const = sorted(set(self.constants) - set(contract.DIMENSIONS))
        if bad_const:
            raise ValueError(
                f"constants {bad_const} are not dimensions ({', '.join(contract.DIMENSIONS)})"
            )
        for target, spec in self.columns.items():
            if spec.expr is not None:
                parse_expression(spec.expr, target)
        from_name = self.from_file_name.groups if self.from_file_name else set()
        if self.cell_id is None and "cell_id" not in from_name:
            raise ValueError("cell_id: give a source or expr, or a cell_id group in from_file_name")
        if not self.timestamp.columns and "ts" not in from_name:
            raise ValueError(
                "timestamp.column: give the time column, or a ts group in from_file_name"
            )
        if self.long is not None and self.long.counter is None and "counter" not in from_name:
            raise ValueError(
                "long.counter: give the counter column, or a counter group in from_file_name "
                "(one file per counter)"
            )
        return self

    @property
    def fingerprint(self) -> str:
        """A hash of what the mapping does (not of how its YAML is laid out): the ledger
        keys a delivery by its content and this, so a changed mapping reads a file again."""
        canonical = json.dumps(self.model_dump(mode="json"), sort_keys=True)
        return hashlib.sha256(canonical.encode()).hexdigest()


def load_mapping(ref: str | Path) -> Mapping:
    """A mapping from a YAML file, or a shipped one by name (e.g. `3gpp-raw-counters`)."""
    path = Path(ref)
    if path.is_file():
        text, where = path.read_text(), str(path)
    else:
        shipped = resources.files("cellpulse").joinpath(BUILTIN_DIR, f"{ref}.yaml")
        if not shipped.is_file():
            raise MappingError(
                f"mapping {ref}: no such file, and no shipped mapping of that "
                f"name (shipped: {', '.join(shipped_mappings())})"
            )
        text, where = shipped.read_text(), f"shipped mapping {ref}"
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise MappingError(f"{where}: not valid YAML ({str(exc).splitlines()[0]})") from exc
    try:
        return Mapping.model_validate(data)
    except MappingError as exc:  # an expression that does not parse
        raise MappingError(f"{where}: {exc}") from exc
    except ValidationError as exc:
        first = exc.errors()[0]
        loc = ".".join(str(p) for p in first["loc"])
        raise MappingError(
            f"{where}: {loc}: {first['msg']} ({exc.error_count()} problem(s))"
        ) from exc


def shipped_mappings() -> list[str]:
    """The names of the mappings shipped with cellpulse, for `load_mapping`."""
    folder = resources.files("cellpulse").joinpath(BUILTIN_DIR)
    return sorted(
        p.name.removesuffix(".yaml") for p in folder.iterdir() if p.name.endswith(".yaml")
    )
