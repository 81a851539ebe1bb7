"""Live paging (``/truc-tiep``): speak from the browser's microphone, or relay a live
stream, to chosen hamlets.  The page talks to the live API itself (`static/live.js`:
the microphone WebSocket ``/api/v1/live/audio``, ``POST /api/v1/live/relays``, and the
broadcasts' stop); per-station progress is the broadcast's own page."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from fastapi.responses import HTMLResponse

from broadcaster.live import service as live_service
from broadcaster.web.pages.broadcasts import broadcast_refused
from broadcaster.web.pages.shared import SignedIn, render
from kernel.dependencies import SessionDep
from kernel.security import Permission

router = APIRouter(include_in_schema=False)


@router.get("/truc-tiep", response_class=HTMLResponse)
def live_page(request: Request, session: SessionDep, account: SignedIn) -> Response:
    principal = account.principal
    if (refused := broadcast_refused(request, account)) is not None:
        return refused
    settings = request.app.state.settings
    return render(
        request,
        "live.html",
        {
            "account": account,
            "active": "live",
            "units": live_service.hamlet_choices(session, principal),
            "can_emergency": principal.has(Permission.BROADCAST_EMERGENCY),
            "enabled": settings.live_icecast_url is not None,
            "max_s": settings.live_max_s,
        },
    )
