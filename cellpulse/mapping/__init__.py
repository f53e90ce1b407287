"""Source mappings: how a vendor's PM export becomes contract-shaped rows.

A mapping is a YAML file (one per source): file format and CSV dialect, how to read the
timestamp, which source column or expression feeds each contract column, unit scaling,
sentinel values that mean "not reported", and constants for missing dimensions. A mapping may
also take values from the file name, pivot a long export (one row per counter) to one row per
cell and ROP, and read 3GPP TS 32.435 XML measurement files. See docs/mappings.md for the
reference and examples.

The modules, one job each:

- `model`: the YAML schema, its validation, and loading a file or a shipped mapping;
- `expressions`: the expression language of a column (parsed, checked, compiled);
- `sources`: reading a file as its source wrote it (CSV dialects, parquet, XML);
- `measxml`: the 3GPP TS 32.435 XML reader;
- `timestamps`: the period start of each row, in UTC;
- `apply`: a source table mapped to contract-named columns, with notes.
"""

from cellpulse.mapping.apply import FRACTION_MIN_ROWS, Mapped, Note, apply_mapping, map_source
from cellpulse.mapping.expressions import (
    MAX_EXPRESSION_CHARS,
    MAX_EXPRESSION_DEPTH,
    parse_expression,
)
from cellpulse.mapping.measxml import XML_COLUMNS, read_meas_xml
from cellpulse.mapping.model import (
    BUILTIN_DIR,
    FILE_NAME_GROUPS,
    UNITS,
    ColumnSpec,
    CsvDialect,
    FileNameSpec,
    LongSpec,
    Mapping,
    TimestampSpec,
    XmlSpec,
    load_mapping,
    shipped_mappings,
)
from cellpulse.mapping.sources import read_source
from cellpulse.mapping.timestamps import TS_UNREAD

__all__ = [
    "BUILTIN_DIR",
    "FILE_NAME_GROUPS",
    "FRACTION_MIN_ROWS",
    "MAX_EXPRESSION_CHARS",
    "MAX_EXPRESSION_DEPTH",
    "TS_UNREAD",
    "UNITS",
    "XML_COLUMNS",
    "ColumnSpec",
    "CsvDialect",
    "FileNameSpec",
    "LongSpec",
    "Mapped",
    "Mapping",
    "Note",
    "TimestampSpec",
    "XmlSpec",
    "apply_mapping",
    "load_mapping",
    "map_source",
    "parse_expression",
    "read_meas_xml",
    "read_source",
    "shipped_mappings",
]
