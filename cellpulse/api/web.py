"""What anyone may open without a token: liveness, and the ops page with its assets."""

import logging
from importlib import resources
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException
from fastapi import Path as PathParam
from fastapi.responses import FileResponse

from cellpulse.api.schema import STORE_UNAVAILABLE, StoreExists, StoreOpener, errors
from cellpulse.errors import NoDataError
from cellpulse.opsstore import OpsStoreUnavailable

log = logging.getLogger("cellpulse.api")


def health_router(open_store: StoreOpener, store_exists: StoreExists) -> APIRouter:
    """`/health`.

    Args:
        open_store: opens the ops store to count the scores.
        store_exists: whether there is a store to open yet (a new home has none).
    """
    router = APIRouter()

    @router.get("/health", responses=errors(503))
    def health() -> dict[str, Any]:
        """Liveness, and whether there are scores to serve (no token needed)."""
        if not store_exists():
            return {"status": "ok", "scores": 0, "latest_ts": None}
        try:
            with open_store(read_only=True) as store:
                latest = store.query("SELECT count(*) AS n, max(ts) AS ts FROM scores").row(0)
        except (OpsStoreUnavailable, NoDataError) as exc:
            # Anyone may ask: the reason (the store's path or URL, the lock holder's program
            # and PID) goes to the log, not to the caller.
            log.warning("health: %s", exc)
            raise HTTPException(503, STORE_UNAVAILABLE, headers={"Retry-After": "5"}) from None
        return {"status": "ok", "scores": latest[0], "latest_ts": latest[1]}

    return router


def page_router() -> APIRouter:
    """`/` (the ops page) and `/static/{name}` (its script and style), kept out of the
    schema: they are for browsers, not API clients."""
    router = APIRouter()
    web = resources.files("cellpulse") / "web"

    @router.get("/", include_in_schema=False)
    def index() -> FileResponse:
        """The ops page."""
        return FileResponse(Path(str(web / "index.html")))

    @router.get("/static/{name}", include_in_schema=False)
    def static(name: Annotated[str, PathParam(pattern=r"^[a-z]+\.(js|css)$")]) -> FileResponse:
        """One of the page's assets (its script or style sheet)."""
        path = Path(str(web / name))
        if not path.is_file():
            raise HTTPException(404, f"no asset {name}")
        return FileResponse(path)

    return router
