"""Untrusted text (file names, column names, cell ids) as it may appear in a one-line
message, a report or the ledger: control characters escaped, length bounded.

A landing file decides its own name, header and values; echoed verbatim, a newline in a name
forges a line of a report, and a 10 MB header is copied into every message that lists it.
"""

from __future__ import annotations

from collections.abc import Sequence

MAX_CHARS = 400  # what a message quotes of one untrusted text
MAX_NAME_CHARS = 60  # of one name in a list of names
MAX_NAMES = 12  # names listed before "… (k more)"


def shown(text: object, limit: int = MAX_CHARS) -> str:
    """`text` on one line: characters that do not print (newlines, tabs, NUL, bidi
    controls) escaped as `\\n`, `\\x00`, `\\u202e`; cut to `limit` characters with the count
    of what was left off. Applying it twice changes nothing."""
    raw = str(text)
    if raw.isprintable() and len(raw) <= limit:
        return raw
    escaped = "".join(c if c.isprintable() else _escape(c) for c in raw)
    if len(escaped) <= limit:
        return escaped
    # Room for the longest count it can be, so that the result is within `limit`.
    keep = max(limit - len("… ( more chars)") - len(str(len(escaped))), 0)
    return escaped[:keep] + f"… ({len(escaped) - keep} more chars)"


def _escape(c: str) -> str:
    return {"\n": "\\n", "\r": "\\r", "\t": "\\t"}.get(c) or c.encode("unicode_escape").decode()


def name_list(names: Sequence[str], limit: int = MAX_NAMES) -> str:
    """The first `limit` names, each one shown (and cut to MAX_NAME_CHARS), then how many
    more there are."""
    listed = ", ".join(shown(n, MAX_NAME_CHARS) for n in names[:limit])
    more = len(names) - limit
    return f"{listed} … ({more} more)" if more > 0 else listed
