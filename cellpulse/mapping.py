"""Source mappings: how a vendor's PM export becomes contract-shaped rows.

A mapping is a YAML file (one per source): file format and CSV dialect, how to read the
timestamp, which source column or expression feeds each contract column, unit scaling,
sentinel values that mean "not reported", and constants for missing dimensions. A mapping may
also take values from the file name, pivot a long export (one row per counter) to one row per
cell and ROP, and read 3GPP TS 32.435 XML measurement files. See docs/mappings.md for the
reference and examples.
"""

from __future__ import annotations

import ast
import codecs
import hashlib
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Literal, cast

import polars as pl
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from cellpulse import contract
from cellpulse.echo import name_list, shown
from cellpulse.errors import UNREADABLE, MappingError
from cellpulse.measxml import read_meas_xml

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


# ------------------------------------------------------------------- expressions

_BRACKETED = re.compile(r"\[([^\[\]]+)\]")
# first(a, b, …): the first of its arguments that is not null (a counter or its alternative).
_FUNCTIONS: dict[str, Callable[[list[pl.Expr]], pl.Expr]] = {
    "min": pl.min_horizontal,
    "max": pl.max_horizontal,
    "first": pl.coalesce,
}
# Bounds on an expression, so that parsing and compiling it can never exhaust the stack: a
# sum of a hundred counters nests a hundred deep, far more than an export needs.
MAX_EXPRESSION_CHARS = 4000
MAX_EXPRESSION_DEPTH = 100


def parse_expression(text: str, target: str = "?") -> tuple[ast.Expression, dict[str, str]]:
    """Parse `100 * [RRU.PrbUsedDl] / [RRU.PrbAvailDl]`: numbers, + - * /, parentheses,
    min(...), max(...), and source columns in [brackets] (or bare if they are identifiers).

    Returns the tree and every source column it reads, bare or bracketed (by the name the
    tree uses for it)."""
    names: dict[str, str] = {}

    def stash(m: re.Match[str]) -> str:
        key = f"__c{len(names)}"
        names[key] = m.group(1)
        return key

    where = f"expression for {target}"
    if len(text) > MAX_EXPRESSION_CHARS:
        raise MappingError(
            f"{where}: {len(text)} characters, more than {MAX_EXPRESSION_CHARS}; split the "
            "computation or simplify it"
        )
    try:
        tree = ast.parse(_BRACKETED.sub(stash, text), mode="eval")
    except SyntaxError as exc:
        raise MappingError(f"{where}: cannot parse {shown(text, 200)!r}") from exc
    except (RecursionError, MemoryError) as exc:
        raise MappingError(
            f"{where}: nested more than {MAX_EXPRESSION_DEPTH} deep; simplify it"
        ) from exc
    if _depth(tree) > MAX_EXPRESSION_DEPTH:
        raise MappingError(f"{where}: nested more than {MAX_EXPRESSION_DEPTH} deep; simplify it")
    allowed = (
        ast.Expression,
        ast.BinOp,
        ast.UnaryOp,
        ast.Constant,
        ast.Name,
        ast.Load,
        ast.Add,
        ast.Sub,
        ast.Mult,
        ast.Div,
        ast.USub,
        ast.UAdd,
        ast.Call,
    )
    for node in ast.walk(tree):
        if not isinstance(node, allowed):
            raise MappingError(
                f"expression for {target}: {type(node).__name__} is not allowed "
                "(use numbers, columns, + - * /, min, max, first)"
            )
        if isinstance(node, ast.Constant) and not isinstance(node.value, int | float):
            raise MappingError(f"expression for {target}: only numeric constants")
        if isinstance(node, ast.Call) and not (
            isinstance(node.func, ast.Name) and node.func.id in _FUNCTIONS
        ):
            raise MappingError(
                f"expression for {target}: only min(), max() and first() may be called"
            )
        if isinstance(node, ast.Call) and not node.args:
            assert isinstance(node.func, ast.Name)
            raise MappingError(
                f"expression for {target}: {node.func.id}() needs at least one argument"
            )
    called = {id(n.func) for n in ast.walk(tree) if isinstance(n, ast.Call)}
    for node in ast.walk(tree):
        if isinstance(node, ast.Name) and id(node) not in called and node.id not in names:
            names[node.id] = node.id  # a bare column name
    return tree, names


def _depth(tree: ast.AST) -> int:
    """How deep `tree` nests, found without recursion (a deep tree is what is checked)."""
    deepest, stack = 0, [(tree, 1)]
    while stack:
        node, depth = stack.pop()
        deepest = max(deepest, depth)
        stack.extend((child, depth + 1) for child in ast.iter_child_nodes(node))
    return deepest


def _compile(node: ast.AST, names: dict[str, str]) -> pl.Expr:
    if isinstance(node, ast.Expression):
        return _compile(node.body, names)
    if isinstance(node, ast.Constant):
        assert isinstance(node.value, int | float)  # parse_expression allows nothing else
        return pl.lit(float(node.value))
    if isinstance(node, ast.Name):
        return _number(pl.col(names[node.id]))
    if isinstance(node, ast.UnaryOp):
        inner = _compile(node.operand, names)
        return -inner if isinstance(node.op, ast.USub) else inner
    if isinstance(node, ast.Call):
        assert isinstance(node.func, ast.Name)
        return _FUNCTIONS[node.func.id]([_compile(a, names) for a in node.args])
    assert isinstance(node, ast.BinOp)
    left, right = _compile(node.left, names), _compile(node.right, names)
    if isinstance(node.op, ast.Add):
        return left + right
    if isinstance(node.op, ast.Sub):
        return left - right
    if isinstance(node.op, ast.Mult):
        return left * right
    # A zero denominator gives null (not reported), never inf.
    return pl.when(right != 0).then(left / right).otherwise(None)


def _number(expr: pl.Expr) -> pl.Expr:
    return expr.cast(pl.Float64, strict=False)


# ------------------------------------------------------------------- reading and mapping


def read_source(path: Path, mapping: Mapping) -> pl.DataFrame:
    """The file as the source wrote it (all CSV fields as text; a 32.435 XML file as the long
    table of cellpulse.measxml), or MappingError."""
    if mapping.format == "xml":
        return read_meas_xml(path, mapping.xml.cell_pattern)
    if mapping.format == "parquet":
        try:
            return pl.read_parquet(path, glob=False)  # the name is a name, not a pattern
        except UNREADABLE as exc:
            raise MappingError(
                f"{path}: not a readable parquet file "
                f"({str(exc).splitlines()[0][:120]}); re-deliver it"
            ) from exc
    d = mapping.csv
    raw = path.read_bytes()
    try:
        # Text that is plain ASCII reads the same in the usual export encodings (Latin-1,
        # cp1252, UTF-8): only other bytes need decoding to UTF-8 for the CSV reader.
        if raw.isascii() and _ascii_compatible(d.encoding):
            utf8 = raw
        else:
            utf8 = raw.decode(d.encoding).encode()
    except LookupError as exc:
        raise MappingError(f"mapping {mapping.name}: unknown encoding {d.encoding!r}") from exc
    except UnicodeDecodeError as exc:
        raise MappingError(
            f"{path}: not valid {d.encoding} (byte 0x{raw[exc.start]:02x} at offset "
            f"{exc.start}); set csv.encoding in mapping {mapping.name} to the export's encoding"
        ) from exc
    try:
        return pl.read_csv(
            utf8,
            separator=d.separator,
            has_header=d.header,
            new_columns=d.columns,
            infer_schema=False,
            quote_char=d.quote,
        )
    except UNREADABLE as exc:
        raise MappingError(
            f"{path}: unreadable as CSV with separator {d.separator!r} "
            f"({str(exc).splitlines()[0][:120]})"
        ) from exc


def _ascii_compatible(encoding: str) -> bool:
    """Whether `encoding` decodes ASCII bytes to the same characters (so that ASCII data
    needs no transcoding); an unknown encoding raises LookupError, as decoding would."""
    return codecs.lookup(encoding).name in _ASCII_SUPERSETS


_ASCII_SUPERSETS = {"ascii", "utf-8", "latin-1", "iso8859-1", "iso8859-15", "cp1252"}


@dataclass(frozen=True)
class Note:
    """Something the mapping found in a file that the ingest report should name (the rows
    stay: the contract's rules judge them later)."""

    column: str
    rule: str
    rows: int
    example: str


# The mark beside rows whose time text did not parse: the text itself, under a name that
# ends with what was expected (validation reports both; see ingest.validation).
TS_UNREAD = "_ts_unread "
# Shares of a percent column's values: if at least this many rows are all at most 1.0, the
# column probably holds a 0-1 fraction (set `unit: fraction`).
FRACTION_MIN_ROWS = 20


@dataclass(frozen=True)
class Mapped:
    """A file mapped to contract-named columns: its rows, what the mapping noticed, and the
    contract measurements the file carried (a per-KPI or long file carries some only)."""

    rows: pl.DataFrame
    notes: list[Note]
    carried: tuple[str, ...]


def apply_mapping(
    source: pl.DataFrame, mapping: Mapping, rop_minutes: int, where: str
) -> pl.DataFrame:
    """Contract-named columns from a source table (`map_source` without its notes)."""
    return map_source(source, mapping, rop_minutes, where).rows


def map_source(source: pl.DataFrame, mapping: Mapping, rop_minutes: int, where: str) -> Mapped:
    """Contract-named columns from a source table read from the file `where`. Missing source
    columns are a MappingError naming them (in a long or XML export, a counter no row names
    is left empty and noted); values are left for `ingest.conform`/`validate` to judge row by
    row."""
    notes: list[Note] = []
    source = _with_file_name_values(source, mapping, Path(where).name)
    ts_columns = mapping.timestamp.columns or [_FROM_NAME + "ts"]
    key_specs = {"cell_id": _cell_spec(mapping), **_dimension_specs(mapping)}
    key_inputs = set(ts_columns)
    for spec in key_specs.values():
        key_inputs |= _inputs(spec)
    measurement_specs = {
        n: s for n, s in mapping.columns.items() if n in contract.MEASUREMENT_NAMES
    }
    if mapping.long is not None:
        source, long_notes = _pivot_long(source, mapping.long, sorted(key_inputs), where)
        notes += long_notes
    missing = sorted(key_inputs - set(source.columns))
    numeric: set[str] = set()  # source columns read as numbers
    for spec in measurement_specs.values():
        numeric |= _inputs(spec)
    numeric |= {i for s in key_specs.values() if s.expr is not None for i in _inputs(s)}
    absent = sorted(numeric - set(source.columns))
    if absent and mapping.long is None:
        missing = sorted({*missing, *absent})
    if missing:
        raise MappingError(
            f"{where}: source column(s) {name_list(missing)} not in the file "
            f"(mapping {mapping.name}); it has {name_list(source.columns)}"
        )
    if absent:  # a long export names the counters it has: the others are not reported
        if mapping.long is not None and mapping.long.counter is not None:
            # (a per-KPI file, its counter named by the file name, carries one by design)
            notes.append(Note(name_list(absent, 5), "counter not in the file; left empty", 0, ""))
        source = source.with_columns(pl.lit(None, pl.String).alias(c) for c in absent)
    df = _null_sentinels(source, mapping.null_values, mapping.csv.decimal, numeric)
    ts, unread = _timestamp(df, mapping, ts_columns, rop_minutes)
    exprs = [_value(key_specs["cell_id"], "cell_id", text=True), ts]
    for dim in contract.DIMENSIONS:
        if dim in key_specs:
            exprs.append(_value(key_specs[dim], dim, text=True))
        elif dim in mapping.constants:
            exprs.append(pl.lit(mapping.constants[dim]).alias(dim))
    carried = []
    for name, spec in measurement_specs.items():
        exprs.append(_value(spec, name, text=False))
        if _inputs(spec) - set(absent):
            carried.append(name)
    rows = df.select(exprs)
    if unread is not None:
        rows = rows.with_columns(unread)
    notes += _fraction_warnings(rows, mapping)
    order = [m for m in contract.MEASUREMENT_NAMES if m in carried]
    return Mapped(rows, notes, tuple(order))


_FROM_NAME = "<file name>."  # prefix of the source columns made from the file name's groups


def _with_file_name_values(source: pl.DataFrame, mapping: Mapping, name: str) -> pl.DataFrame:
    """The file name's named groups as constant source columns (`<file name>.cell_id`, …)."""
    spec = mapping.from_file_name
    if spec is None:
        return source
    m = re.fullmatch(spec.pattern, name)
    if m is None:
        raise MappingError(
            f"{shown(name, 120)}: the file name does not match from_file_name.pattern "
            f"{shown(spec.pattern, 120)!r} of mapping {mapping.name}; rename the file or fix the "
            "pattern"
        )
    return source.with_columns(
        pl.lit(value, pl.String).alias(_FROM_NAME + group)
        for group, value in m.groupdict().items()
        if value is not None
    )


def _cell_spec(mapping: Mapping) -> ColumnSpec:
    """Where cell_id comes from: the mapping's spec, else the file name."""
    return mapping.cell_id or ColumnSpec(source=_FROM_NAME + "cell_id")


def _dimension_specs(mapping: Mapping) -> dict[str, ColumnSpec]:
    """Where each dimension comes from: a mapped column, else the file name (constants are
    literal values, applied apart)."""
    from_name = mapping.from_file_name.groups if mapping.from_file_name else set()
    specs = {d: mapping.columns[d] for d in contract.DIMENSIONS if d in mapping.columns}
    for dim in contract.DIMENSIONS:
        if dim not in specs and dim not in mapping.constants and dim in from_name:
            specs[dim] = ColumnSpec(source=_FROM_NAME + dim)
    return specs


def _inputs(spec: ColumnSpec) -> set[str]:
    if spec.source is not None:
        return {spec.source}
    return set(parse_expression(spec.expr or "", "?")[1].values())


def _pivot_long(
    source: pl.DataFrame, spec: LongSpec, keys: list[str], where: str
) -> tuple[pl.DataFrame, list[Note]]:
    """One row per distinct `keys` (cell, time, dimensions), one column per counter; a
    counter given twice for the same keys keeps its last value and is noted."""
    counter = spec.counter or _FROM_NAME + "counter"
    needed = [*keys, counter, spec.value]
    missing = [c for c in needed if c not in source.columns]
    if missing:
        raise MappingError(
            f"{where}: long-format column(s) {name_list(missing)} not in the file; it has "
            f"{name_list(source.columns)}"
        )
    notes: list[Note] = []
    long = source.select(needed).with_columns(pl.col(counter).cast(pl.String).str.strip_chars())
    key = pl.struct(*keys, counter)
    repeated = long.select(key.is_duplicated()).to_series()
    if repeated.any():
        twice = long.filter(repeated)
        first = twice.row(0, named=True)
        notes.append(
            Note(
                "counter",
                "counter given twice for the same cell and time; last value kept",
                int(repeated.sum())
                - long.filter(repeated).select(pl.struct(*keys, counter).n_unique()).item(),
                shown(f"counter {first[counter]} of {', '.join(str(first[k]) for k in keys)}", 200),
            )
        )
    if long.is_empty():
        return long.select(keys), notes
    wide = long.pivot(on=counter, index=keys, values=spec.value, aggregate_function="last")
    return wide, notes


def _fraction_warnings(rows: pl.DataFrame, mapping: Mapping) -> list[Note]:
    """Percent columns whose values all lie within 0-1 over many rows: probably a fraction
    mapped without `unit: fraction` (the contract's % would read 0.4 as 0.4 %)."""
    notes = []
    for m in contract.MEASUREMENTS:
        if (
            m.unit != "%"
            or m.name not in rows.columns
            or mapping.columns[m.name].unit == "fraction"
        ):
            continue
        values = rows[m.name].cast(pl.Float64, strict=False).drop_nulls()
        top = float(cast(float, values.max())) if values.len() else 0.0
        if values.len() >= FRACTION_MIN_ROWS and top <= 1.0:
            notes.append(
                Note(
                    m.name,
                    "every value is at most 1.0: probably a 0-1 fraction; if so, map it with "
                    "unit: fraction",
                    values.len(),
                    f"max {top:g}",
                )
            )
    return notes


def _null_sentinels(
    df: pl.DataFrame, sentinels: list[str | float], decimal: str, numeric: set[str]
) -> pl.DataFrame:
    """Text trimmed, decimal commas of the `numeric` columns made points, sentinels null.

    Done in steps, each materialised: one nested expression per column repeated the trim
    and the decimal rewrite in every branch that used them (several times the work)."""
    text = [str(s) for s in sentinels]
    nums = [float(s) for s in sentinels if _is_number(s)]
    strings = [name for name, dtype in df.schema.items() if dtype == pl.String]
    df = df.with_columns(pl.col(strings).str.strip_chars())
    if decimal == ",":
        # 1.234,5 -> 1234.5 so that numbers parse; only in columns read as numbers, and only
        # values that look like a number, so text keeps its dots and commas.
        df = df.with_columns(
            pl.when(pl.col(name).str.contains(r"^-?[0-9.]*,[0-9]+$"))
            .then(
                pl.col(name)
                .str.replace_all(".", "", literal=True)
                .str.replace(",", ".", literal=True)
            )
            .otherwise(pl.col(name))
            .alias(name)
            for name in strings
            if name in numeric
        )
    exprs = []
    for name, dtype in df.schema.items():
        col = pl.col(name)
        if dtype == pl.String:
            # "-1" and "-1.0" are the same sentinel: compare numbers as numbers.
            sentinel = col.is_in(text) | (col == "")
            if nums:
                sentinel = sentinel | col.cast(pl.Float64, strict=False).is_in(nums)
            exprs.append(pl.when(sentinel).then(None).otherwise(col).alias(name))
        elif dtype.is_numeric() and nums:
            exprs.append(pl.when(col.is_in(nums)).then(None).otherwise(col).alias(name))
    return df.with_columns(exprs) if exprs else df


def _is_number(value: str | float) -> bool:
    try:
        float(value)
    except ValueError:
        return False
    return True


def _value(spec: ColumnSpec, target: str, text: bool) -> pl.Expr:
    if spec.expr is not None:
        tree, names = parse_expression(spec.expr, target)
        if text:
            return _text_expr(tree, names, spec.expr).alias(target)
        expr = _compile(tree, names)
    else:
        expr = pl.col(spec.source or "")
        if text:
            return expr.cast(pl.String).alias(target)
    if spec.factor != 1.0:
        expr = _number(expr) * spec.factor
    return expr.alias(target)


def _text_expr(tree: ast.Expression, names: dict[str, str], written: str) -> pl.Expr:
    """An identifier (cell id, dimension) from an expression: a constant keeps the text it
    is written as (`"26019001"`, never `26019001.0`), a bare column its text, and a computed
    number loses its `.0` when it is whole."""
    body = tree.body
    if isinstance(body, ast.Constant):
        return pl.lit(written.strip(), pl.String)
    if isinstance(body, ast.Name):
        return pl.col(names[body.id]).cast(pl.String)
    number = _compile(tree, names)
    whole = number.round(0) == number
    return (
        pl.when(whole)
        .then(number.cast(pl.Int64, strict=False).cast(pl.String))
        .otherwise(number.cast(pl.String))
    )


def _timestamp(
    df: pl.DataFrame, mapping: Mapping, columns: list[str], rop_minutes: int
) -> tuple[pl.Expr, pl.Series | None]:
    """The period start in UTC, and for text that did not parse a mark.

    Rows whose time text does not parse get a null ts and keep the text in a mark column
    (named `TS_UNREAD` + what was expected), so that validation reports each such row once,
    with the text as delivered and the format expected."""
    spec = mapping.timestamp
    dtypes = {df.schema[c] for c in columns}
    if len(columns) > 1 and dtypes != {pl.String()}:
        raise MappingError(
            f"timestamp columns {', '.join(columns)} must all be text to be joined; they are "
            f"{', '.join(str(t) for t in dtypes)}"
        )
    dtype = df.schema[columns[0]]
    if isinstance(dtype, pl.Datetime):
        ts = pl.col(columns[0])  # in its own unit: conform judges a sub-microsecond part
        if dtype.time_zone is None:
            ts = ts.dt.replace_time_zone(spec.timezone, ambiguous="earliest", non_existent="null")
        return _to_start(ts, spec.marks, rop_minutes), None
    if dtype != pl.String:
        raise MappingError(
            f"timestamp column {columns[0]} has type {dtype}; expected text or a timestamp"
        )
    text = df.select(
        pl.concat_str([pl.col(c) for c in columns], separator=" ").alias("t")
    ).to_series()
    parsed = _parse_times(text, spec.format)
    unread = text.is_not_null() & parsed.is_null()
    if isinstance(parsed.dtype, pl.Datetime) and parsed.dtype.time_zone is None:
        # A local time skipped by a daylight-saving change parses but does not exist: it
        # becomes a missing ts, not a text in the wrong format.
        parsed = parsed.dt.replace_time_zone(
            spec.timezone, ambiguous="earliest", non_existent="null"
        )
    ts = _to_start(pl.lit(parsed), spec.marks, rop_minutes)
    if not unread.any():
        return ts, None
    expected = f"format {spec.format}" if spec.format else "format inferred from the first value"
    mark = pl.select(pl.when(unread).then(text)).to_series().alias(TS_UNREAD + expected)
    return ts, mark


def _parse_times(text: pl.Series, fmt: str | None) -> pl.Series:
    try:
        return text.str.strip_chars().str.to_datetime(fmt, strict=False, time_unit="us")
    except UNREADABLE as exc:  # no format given, and none could be inferred
        first = text.drop_nulls().head(1).to_list()
        raise MappingError(
            f"no time format could be inferred from {shown(first[0] if first else '', 60)!r}; "
            "set timestamp.format in the mapping (e.g. '%d/%m/%Y %H:%M')"
        ) from exc


def _to_start(ts: pl.Expr, marks: str, rop_minutes: int) -> pl.Expr:
    ts = ts.dt.convert_time_zone("UTC")
    if marks == "end":  # contract rows are keyed by the period's start
        ts = ts - pl.duration(minutes=rop_minutes)
    return ts.alias("ts")
