"""Dependencies of the media routes: the library runtime and scoped asset loading."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from audio_library.models import MediaAsset
from audio_library.service import AssetNotFound, MediaLibrary, get_asset
from kernel.dependencies import CurrentPrincipal, IdPath, SessionDep


def library_of(request: Request) -> MediaLibrary:
    library: MediaLibrary = request.app.state.media_library
    return library


async def get_library(request: Request) -> MediaLibrary:
    """On the event loop: it only reads the app's state (no hop to the thread pool)."""
    return library_of(request)


LibraryDep = Annotated[MediaLibrary, Depends(get_library)]


def asset_in_scope(
    asset_id: IdPath,
    session: SessionDep,
    principal: CurrentPrincipal,
) -> MediaAsset:
    """The asset, if the caller may see it (city-wide or owned in their areas); else 404."""
    asset = get_asset(session, asset_id)
    if asset.owner_area_id is not None and not principal.reaches(asset.owner_area_id):
        raise AssetNotFound(asset_id)
    return asset


AssetDep = Annotated[MediaAsset, Depends(asset_in_scope)]
