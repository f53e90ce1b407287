"""Who may ask: the API's bearer token (configured, or the installation's own), and the
gate that checks it and bounds a request's body before FastAPI reads anything."""

import os
import re
import secrets
from pathlib import Path
from typing import Annotated, Any

from fastapi import Depends, HTTPException
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from cellpulse.errors import CellpulseError
from cellpulse.settings import Settings

TOKEN_MIN_CHARS = 32
# One word of visible ASCII: what an Authorization header can carry after "Bearer ".
_TOKEN_CHARS = re.compile(r"[\x21-\x7e]+")
MAX_BODY_BYTES = 64 * 1024  # the largest body a route takes (an alert action) is ~2 KB
# What a browser opens without a token: the page and its assets, liveness, the schema.
PUBLIC_PATHS = frozenset({"/", "/health", "/openapi.json"})
PUBLIC_PREFIXES = ("/static/",)
UNAUTHORISED = (
    "missing or wrong bearer token; send 'Authorization: Bearer <token>' "
    "(see `cellpulse api --help` for where the token is)"
)


class ApiTokenError(CellpulseError):
    """The API's bearer token is empty, too short, or kept in a file others can read."""


def api_token(settings: Settings) -> str:
    """The configured token, or the installation's own random one (created on first use,
    readable by its owner only). A token anyone could guess is refused: an empty one would
    let a request without Authorization through."""
    api, layout = settings.api, settings.layout
    if api.token is not None:
        return _checked_token(
            api.token.get_secret_value(),
            "api.token (CELLPULSE_API__TOKEN)",
            'set it to a longer one, e.g. the output of `python -c "import secrets; '
            'print(secrets.token_urlsafe(32))"`, or unset it to use the token cellpulse keeps '
            f"in {layout.api_token}",
        )
    path = layout.api_token
    if not path.exists():
        _create_token_file(path)
    if not path.is_file():  # a directory, or a link to nothing, in the token's place
        raise ApiTokenError(f"{path} is not a file; delete it to have a new token made")
    mode = path.stat().st_mode & 0o777
    if os.name == "posix" and mode & 0o077:
        raise ApiTokenError(
            f"{path} can be read by other users (mode {mode:o}); run `chmod 600 {path}`"
        )
    return _checked_token(
        path.read_text(errors="replace"),
        str(path),
        f"delete {path} to have a new one made, or write a token of at least "
        f"{TOKEN_MIN_CHARS} characters into it",
    )


def _create_token_file(path: Path) -> None:
    """A new random token in a file that is owner-only from its first byte: created with
    mode 0600 and O_EXCL (never written wider and narrowed afterwards, never through a link
    planted there), whatever the umask."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
    except FileExistsError:
        return  # another process starting at the same moment made it: theirs is the token
    with os.fdopen(fd, "wb") as fh:
        fh.write(secrets.token_urlsafe(32).encode())
        fh.flush()
        os.fsync(fh.fileno())


def _checked_token(token: str, source: str, fix: str) -> str:
    token = token.strip()
    if len(token) < TOKEN_MIN_CHARS or not _TOKEN_CHARS.fullmatch(token):
        what = "empty" if not token else f"{len(token)} characters"
        if token and not _TOKEN_CHARS.fullmatch(token):
            what += " with spaces or characters a header cannot carry"
        raise ApiTokenError(
            f"{source}: the API token is {what}; it must be at least {TOKEN_MIN_CHARS} "
            f"visible ASCII characters without spaces; {fix}"
        )
    return token


def _token_matches(given: str, token: str) -> bool:
    return secrets.compare_digest(given.encode(), token.encode())


def bearer_guard(token: str) -> list[Any]:
    """The dependency every /api/ route declares: it puts the bearer scheme in the OpenAPI
    schema and checks the token again (the gate has checked it already)."""
    bearer = HTTPBearer(auto_error=False)

    def authorised(
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
    ) -> None:
        given = credentials.credentials if credentials else ""
        if not _token_matches(given, token):
            raise HTTPException(401, UNAUTHORISED, headers={"WWW-Authenticate": "Bearer"})

    return [Depends(authorised)]


class Gate:
    """What can be decided before a request's body is read: the bearer token of every
    non-public route, and the body's size (declared or streamed). FastAPI reads and parses a
    body before it runs a route's dependencies, so without this gate a client with no token
    could make the API hold any amount of memory."""

    def __init__(self, app: ASGIApp, token: str, max_body: int) -> None:
        self.app, self.token, self.max_body = app, token, max_body

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        path = scope["path"]
        if path not in PUBLIC_PATHS and not path.startswith(PUBLIC_PREFIXES):
            scheme, _, given = headers.get("authorization", "").partition(" ")
            if scheme.lower() != "bearer" or not _token_matches(given.strip(), self.token):
                answer = JSONResponse(
                    {"detail": UNAUTHORISED}, 401, headers={"WWW-Authenticate": "Bearer"}
                )
                await answer(scope, receive, send)
                return
        declared = headers.get("content-length", "0")
        if not declared.isdigit() or int(declared) > self.max_body:
            await self._too_large(scope, receive, send)
            return
        # Read the (small) body here, counting, so a chunked body without Content-Length
        # is bounded too; the app then reads it from memory.
        body = bytearray()
        more = True
        while more:
            message = await receive()
            if message["type"] != "http.request":
                return  # the client went away
            body += message.get("body", b"")
            if len(body) > self.max_body:
                await self._too_large(scope, receive, send)
                return
            more = message.get("more_body", False)
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if replayed:
                return await receive()
            replayed = True
            return {"type": "http.request", "body": bytes(body), "more_body": False}

        await self.app(scope, replay, send)

    async def _too_large(self, scope: Scope, receive: Receive, send: Send) -> None:
        detail = f"request body larger than {self.max_body // 1024} KiB; send less"
        await JSONResponse({"detail": detail}, 413, headers={"Connection": "close"})(
            scope, receive, send
        )
