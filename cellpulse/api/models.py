"""Routes on what the scores came from and what people made of them: the model versions in
use, and their verdicts as labels."""

from typing import Any

from fastapi import APIRouter

from cellpulse.api.schema import StoreOpener, errors, records


def models_router(open_store: StoreOpener, guard: list[Any]) -> APIRouter:
    """`/api/models` and `/api/feedback/labels`, read from the ops store.

    Args:
        open_store: opens the ops store per request.
        guard: the dependencies that check the bearer token.
    """
    router = APIRouter(dependencies=guard)

    @router.get("/api/models", responses=errors(401, 503))
    def models() -> dict[str, Any]:
        """Model versions behind the stored scores, and the period each scored."""
        with open_store(read_only=True) as store:
            return {"items": records(store.models_in_use())}

    @router.get("/api/feedback/labels", responses=errors(401, 503))
    def labels() -> dict[str, Any]:
        """People's verdicts on alerts as labels (cell_id, start, end, label): confirmed
        events and false alarms, for the supervised model and the scoreboard."""
        with open_store(read_only=True) as store:
            return {"items": records(store.feedback_labels())}

    return router
