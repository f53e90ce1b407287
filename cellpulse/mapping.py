"""Source mappings: how a vendor's PM export becomes contract-shaped rows.

A mapping is a YAML file (one per source): file format and CSV dialect, how to read the
timestamp, which source column or expression feeds each contract column, unit scaling,
sentinel values that mean "not reported", and constants for missing dimensions. See
docs/mappings.md for the reference and examples.
"""

from __future__ import annotations

import ast
import codecs
import re
from importlib import resources
from pathlib import Path
from typing import Literal

import polars as pl
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from cellpulse import contract
from cellpulse.echo import name_list, shown
from cellpulse.errors import UNREADABLE, MappingError

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
    column: str
    format: str | None = Field(None, description="strptime format for text timestamps.")
    timezone: str = Field("UTC", description="Zone of timestamps that carry none.")
    marks: Literal["start", "end"] = Field("start", description="Period start or end.")


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


class Mapping(BaseModel):
    """How one foreign export becomes contract-shaped rows (see docs/mappings.md)."""

    model_config = ConfigDict(extra="forbid")
    name: str
    description: str = ""
    format: Literal["csv", "parquet"]
    csv: CsvDialect = CsvDialect()
    timestamp: TimestampSpec
    cell_id: ColumnSpec
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
        return self


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
_FUNCTIONS = {"min": pl.min_horizontal, "max": pl.max_horizontal}
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
                "(use numbers, columns, + - * /, min, max)"
            )
        if isinstance(node, ast.Constant) and not isinstance(node.value, int | float):
            raise MappingError(f"expression for {target}: only numeric constants")
        if isinstance(node, ast.Call) and not (
            isinstance(node.func, ast.Name) and node.func.id in _FUNCTIONS
        ):
            raise MappingError(f"expression for {target}: only min() and max() may be called")
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
    """The file as the source wrote it (all CSV fields as text), or MappingError."""
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


def apply_mapping(
    source: pl.DataFrame, mapping: Mapping, rop_minutes: int, where: str
) -> pl.DataFrame:
    """Contract-named columns from a source table. Missing source columns are a MappingError
    naming them; values are left for `ingest.conform`/`validate` to judge row by row."""
    needed = {mapping.timestamp.column}
    numeric: set[str] = set()  # source columns read as numbers
    for target, spec in [("cell_id", mapping.cell_id), *mapping.columns.items()]:
        inputs = (
            {spec.source}
            if spec.source is not None
            else set(parse_expression(spec.expr or "", "?")[1].values())
        )
        needed |= inputs
        if target in contract.MEASUREMENT_NAMES or spec.expr is not None:
            numeric |= inputs
    missing = sorted(needed - set(source.columns))
    if missing:
        raise MappingError(
            f"{where}: source column(s) {name_list(missing)} not in the file "
            f"(mapping {mapping.name}); it has {name_list(source.columns)}"
        )
    df = _null_sentinels(source, mapping.null_values, mapping.csv.decimal, numeric)
    exprs = [_value(mapping.cell_id, "cell_id", text=True), _timestamp(df, mapping, rop_minutes)]
    for dim in contract.DIMENSIONS:
        if dim in mapping.columns:
            exprs.append(_value(mapping.columns[dim], dim, text=True))
        elif dim in mapping.constants:
            exprs.append(pl.lit(mapping.constants[dim]).alias(dim))
    for name in contract.MEASUREMENT_NAMES:
        if name in mapping.columns:
            exprs.append(_value(mapping.columns[name], name, text=False))
    return df.select(exprs)


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
        expr = _compile(tree, names)
    else:
        expr = pl.col(spec.source or "")
        if text:
            return expr.cast(pl.String).alias(target)
    if spec.factor != 1.0:
        expr = _number(expr) * spec.factor
    return expr.alias(target)


def _timestamp(df: pl.DataFrame, mapping: Mapping, rop_minutes: int) -> pl.Expr:
    spec = mapping.timestamp
    col = pl.col(spec.column)
    dtype = df.schema[spec.column]
    if dtype == pl.String:
        ts = col.str.to_datetime(spec.format, strict=False, time_unit="us")
        ts = ts.dt.replace_time_zone(spec.timezone, ambiguous="earliest", non_existent="null")
    elif isinstance(dtype, pl.Datetime):
        ts = col  # in its own unit: conform judges a sub-microsecond part
        if dtype.time_zone is None:
            ts = ts.dt.replace_time_zone(spec.timezone, ambiguous="earliest", non_existent="null")
    else:
        raise MappingError(
            f"timestamp column {spec.column} has type {dtype}; expected text or a timestamp"
        )
    ts = ts.dt.convert_time_zone("UTC")
    if spec.marks == "end":  # contract rows are keyed by the period's start
        ts = ts - pl.duration(minutes=rop_minutes)
    return ts.alias("ts")
