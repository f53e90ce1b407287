"""3GPP TS 32.435 XML measurement files (`measCollecFile`), the format OSS systems write, read
as a long table: one row per (measured object, period, counter) with the counter's value.

Both ways of naming counters are read: a `measTypes` list whose values come as a
`measResults` list or as `r p="i"` (i-th in the list), and `measType p="i"` elements whose
values come as `r p="i"`. The period is the `granPeriod` of each `measInfo`: its `endTime`
minus its `duration` is the period start, written as UTC text.

The file is parsed with the standard library's expat parser (defusedxml is not a runtime
dependency), refusing any entity declaration: nothing a file declares is expanded and nothing
outside it is read.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from xml.parsers import expat

import polars as pl

from cellpulse.echo import shown
from cellpulse.errors import MappingError

# Columns of the long table; a mapping names them (see cellpulse/mappings/3gpp-xml.yaml).
XML_COLUMNS = (
    "measObjLdn",
    "cell",
    "period_start_utc",
    "duration_s",
    "measInfoId",
    "counter",
    "value",
)
_DURATION = re.compile(r"^P(?:T(?:(\d+)H)?(?:(\d+)M)?(?:(\d+)S)?)$")


class _EntityRefused(ValueError):
    pass


def _refuse(*_: Any) -> Any:
    raise _EntityRefused("the file declares an XML entity")


def _parse(path: Path) -> ET.Element:
    """The file's element tree, built from expat's events (namespaces as `{uri}name`)."""
    builder = ET.TreeBuilder()
    parser = expat.ParserCreate(namespace_separator="}")
    # An entity could expand a few bytes into gigabytes, or read a file of this machine:
    # a measurement file never needs one.
    parser.EntityDeclHandler = _refuse
    parser.UnparsedEntityDeclHandler = _refuse
    parser.ExternalEntityRefHandler = _refuse
    parser.buffer_text = True
    parser.StartElementHandler = builder.start
    parser.EndElementHandler = builder.end
    parser.CharacterDataHandler = builder.data
    with path.open("rb") as fh:
        parser.ParseFile(fh)
    return builder.close()


def _local(tag: str) -> str:
    """A tag without its namespace (`{http://…32.435#measCollec}measInfo` -> `measInfo`)."""
    return tag.rsplit("}", 1)[-1]


def _children(element: ET.Element, name: str) -> list[ET.Element]:
    return [c for c in element if _local(c.tag) == name]


def _seconds(duration: str, where: str) -> int:
    """`PT900S`, `PT15M` or `PT1H` in seconds."""
    m = _DURATION.match(duration.strip())
    if not m or not any(m.groups()):
        raise MappingError(
            f"{where}: granPeriod duration {shown(duration, 40)!r} is not PTnH/PTnM/PTnS"
        )
    h, mi, s = (int(g) if g else 0 for g in m.groups())
    return h * 3600 + mi * 60 + s


def _start(end_time: str, seconds: int, where: str) -> str:
    """The period start as UTC text, from the period end as the file writes it."""
    try:
        end = datetime.fromisoformat(end_time.strip().replace("Z", "+00:00"))
    except ValueError as exc:
        raise MappingError(
            f"{where}: granPeriod endTime {shown(end_time, 40)!r} is not ISO 8601"
        ) from exc
    if end.tzinfo is None:
        raise MappingError(
            f"{where}: granPeriod endTime {shown(end_time, 40)!r} has no UTC offset; "
            "32.435 times carry one"
        )
    return (end - timedelta(seconds=seconds)).astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")


def read_meas_xml(path: Path, cell_pattern: str) -> pl.DataFrame:
    """The counters of a 32.435 file as a long table (all values as text).

    Args:
        path: The file.
        cell_pattern: A regular expression on measObjLdn whose first group is the cell id
            (no match: the whole measObjLdn is the cell id).
    """
    where = str(path)
    try:
        root = _parse(path)
    except _EntityRefused as exc:
        raise MappingError(
            f"{where}: {exc}; a 32.435 file declares none, so it is refused"
        ) from exc
    except expat.ExpatError as exc:
        raise MappingError(f"{where}: not well-formed XML ({exc}); re-deliver it") from exc
    if _local(root.tag) != "measCollecFile":
        raise MappingError(
            f"{where}: the root element is {shown(_local(root.tag), 60)!r}, not measCollecFile "
            "(3GPP TS 32.435); use a mapping of the file's own format"
        )
    cell_of = re.compile(cell_pattern)
    rows: dict[str, list[Any]] = {c: [] for c in XML_COLUMNS}
    for data in _children(root, "measData"):
        for info in _children(data, "measInfo"):
            _read_info(info, cell_of, rows, where)
    return pl.DataFrame(
        rows, schema={c: pl.Int64 if c == "duration_s" else pl.String for c in XML_COLUMNS}
    )


def _read_info(
    info: ET.Element, cell_of: re.Pattern[str], rows: dict[str, list[Any]], where: str
) -> None:
    """The rows of one measInfo: its period, counter names and every object's values."""
    period = _children(info, "granPeriod")
    if not period:
        raise MappingError(f"{where}: a measInfo without granPeriod; the period is unknown")
    seconds = _seconds(period[0].get("duration", ""), where)
    start = _start(period[0].get("endTime", ""), seconds, where)
    info_id = info.get("measInfoId", "")
    names: dict[str, str] = {}  # position ("1", "2", …) -> counter name
    for types in _children(info, "measTypes"):
        names.update({str(i): n for i, n in enumerate((types.text or "").split(), start=1)})
    for t in _children(info, "measType"):
        names[t.get("p", str(len(names) + 1))] = (t.text or "").strip()
    for value in _children(info, "measValue"):
        ldn = value.get("measObjLdn", "")
        m = cell_of.search(ldn)
        cell = (m.group(1) if m else ldn).strip()
        results: list[tuple[str, str | None]] = []
        for listed in _children(value, "measResults"):
            results += [(str(i), v) for i, v in enumerate((listed.text or "").split(), start=1)]
        results += [(r.get("p", ""), r.text) for r in _children(value, "r")]
        for p, v in results:
            if p not in names:
                raise MappingError(
                    f"{where}: measValue {shown(ldn, 80)!r} has a result at position "
                    f"{shown(p, 10)!r} that no measType names"
                )
            rows["measObjLdn"].append(ldn)
            rows["cell"].append(cell)
            rows["period_start_utc"].append(start)
            rows["duration_s"].append(seconds)
            rows["measInfoId"].append(info_id)
            rows["counter"].append(names[p])
            rows["value"].append(None if v is None else v.strip())
