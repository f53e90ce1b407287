"""Reading a delivered file as its source wrote it: CSV in the mapping's dialect, parquet,
or a 32.435 XML file as a long table."""

from __future__ import annotations

import codecs
from pathlib import Path

import polars as pl

from cellpulse.errors import UNREADABLE, MappingError
from cellpulse.mapping.measxml import read_meas_xml
from cellpulse.mapping.model import Mapping


def read_source(path: Path, mapping: Mapping) -> pl.DataFrame:
    """The file as the source wrote it (all CSV fields as text; a 32.435 XML file as the long
    table of cellpulse.mapping.measxml), or MappingError."""
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
