"""URLs fit to print: the one place that decides what of a URL may reach a log, a terminal,
an error message or Prefect's database.

Hidden: the password of the userinfo (all of it when there is no `user:` part, as in
`https://TOKEN@host`), the values of query and fragment parameters whose name says they
are a credential (`password`, `token`, `key`, `secret`, `sig`, `auth`, …; also in a libpq
`host=… password=…` string), and long opaque
path segments (webhook services put their secret in the path:
`/services/T0/B0/XXXXXXXXXXXXXXXXXXXXXXXX`). When a URL is ambiguous (an `@` after a
`:` port, a `/` or `?` inside a password), more is hidden rather than less.
"""

from __future__ import annotations

import re

MASK = "***"
# Parameter names that hold a credential, matched as a part of the name, any case
# (`sslpassword`, `X-Amz-Signature`, `api_key`, `access_token`, `client_secret`).
_SECRET_NAMES = re.compile(r"pass|pwd|token|key|secret|sig|auth|cred|session|jwt", re.I)
# A path segment long enough, and mixing letters and digits, to be a key rather than a name.
_OPAQUE = re.compile(r"(?=[^/]*[A-Za-z])(?=[^/]*\d)[A-Za-z0-9_\-.~=+%]{20,}")
_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.\-]*://")


def redact_url(url: str) -> str:
    """`url` with its credentials replaced by `***`; the scheme, user, host, port and the
    names of the parameters stay, so the reader still knows which server is meant."""
    scheme = _SCHEME.match(url)
    if not scheme and "=" in url and " " in url.strip():  # a libpq `key=value …` string
        return " ".join(_redact_params(word) for word in url.split(" "))
    head, rest = (url[: scheme.end()], url[scheme.end() :]) if scheme else ("", url)
    rest = _redact_userinfo(rest) if scheme else rest
    rest, hash_sign, fragment = rest.partition("#")
    path, question, query = rest.partition("?")
    path = "/".join(_OPAQUE.sub(MASK, part) if part else part for part in path.split("/"))
    return head + path + question + _redact_params(query) + hash_sign + _redact_params(fragment)


def _redact_userinfo(rest: str) -> str:
    """Everything up to the last `@` is the userinfo, unless a `/` or `?` comes before any
    `:` in it (then the `@` belongs to the path or the query: `host/users/@me`)."""
    if "@" not in rest:
        return rest
    userinfo, _, after = rest.rpartition("@")
    first_colon = userinfo.find(":")
    first_sep = min((i for i in (userinfo.find("/"), userinfo.find("?")) if i >= 0), default=-1)
    if first_sep >= 0 and (first_colon < 0 or first_sep < first_colon):
        return rest
    if first_colon < 0:
        return f"{MASK}@{after}"
    return f"{userinfo[:first_colon]}:{MASK}@{after}"


def _redact_params(params: str) -> str:
    parts = []
    for part in params.split("&"):
        name, equals, value = part.partition("=")
        hidden = equals and value and _SECRET_NAMES.search(name)
        parts.append(f"{name}={MASK}" if hidden else part)
    return "&".join(parts)
