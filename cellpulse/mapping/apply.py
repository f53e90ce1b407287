"""Applying a mapping to a source table: values from the file name, a long export pivoted
to one row per cell and ROP, sentinels made null, each contract column computed from its
source column or expression, and notes on what the ingest report should name."""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from pathlib import Path
from typing import cast

import polars as pl

from cellpulse import contract
from cellpulse.echo import name_list, shown
from cellpulse.errors import MappingError
from cellpulse.mapping.expressions import as_number, compile_expression, parse_expression
from cellpulse.mapping.model import ColumnSpec, LongSpec, Mapping
from cellpulse.mapping.timestamps import period_start


@dataclass(frozen=True)
class Note:
    """Something the mapping found in a file that the ingest report should name (the rows
    stay: the contract's rules judge them later)."""

    column: str
    rule: str
    rows: int
    example: str


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
    is left empty and noted); values are left for `ingest.conform`/`validate_rows` to judge row by
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
    ts, unread = period_start(df, mapping.timestamp, ts_columns, rop_minutes)
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
    nums = [float(s) for s in sentinels if _isas_number(s)]
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


def _isas_number(value: str | float) -> bool:
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
        expr = compile_expression(tree, names)
    else:
        expr = pl.col(spec.source or "")
        if text:
            return expr.cast(pl.String).alias(target)
    if spec.factor != 1.0:
        expr = as_number(expr) * spec.factor
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
    number = compile_expression(tree, names)
    whole = number.round(0) == number
    return (
        pl.when(whole)
        .then(number.cast(pl.Int64, strict=False).cast(pl.String))
        .otherwise(number.cast(pl.String))
    )
