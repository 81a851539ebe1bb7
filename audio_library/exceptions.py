"""Errors raised by the audio library.

Every class subclasses a `kernel.errors` class so the web layer's single table maps it
to an HTTP status without knowing this package::

    DomainError
    ├── InvalidInput (ValueError)                      -> 422
    │   ├── NotAudio            empty file, not a media file, no audio stream
    │   │   └── CorruptAudio    recognised as audio but cannot be decoded
    │   │       ├── TruncatedAudio   the container promises more than can be decoded
    │   │       └── UnderstatedLength  it holds far more than its header declares
    │   ├── AudioTooLong        longer than `max_duration_s`
    │   ├── SilentAudio         nothing above the BS.1770 absolute gate (-70 LUFS)
    │   ├── InvalidMediaKey     malformed SHA-256 or extension (never reaches the disk)
    │   ├── InvalidComposition  no parts, negative gap, gap and crossfade together...
    │   └── InvalidTTSRequest   empty text, text over the limit, unknown voice/engine/rate
    ├── PayloadTooLarge                                 -> 413
    │   └── UploadTooLarge
    ├── NotFoundError (LookupError)                     -> 404
    │   └── MediaNotFound
    ├── PermissionDeniedError                           -> 403
    │   └── MediaLinkRejected
    │       ├── MediaSignatureInvalid   path, expiry or signature tampered with
    │       └── MediaLinkExpired        genuine link, but too late
    ├── ServiceUnavailable                              -> 503 (Retry-After)
    │   └── StorageFull     no room for the upload or its processing; nothing kept
    └── AudioToolError      ffmpeg/ffprobe/espeak-ng missing, timed out or failed on
        │                   input they had already accepted: a server fault (500/503)
        ├── TTSEngineError
        └── NoScratchSpace  the processing's scratch space would not fit on the disk

All constructors keep the `(message, *, keyword...)` shape of `kernel.errors`, so the
exceptions pickle (a `ProcessPoolExecutor` sends them back to the parent) with their
`message_vi` and `loc` intact.
"""

from __future__ import annotations

from kernel.errors import (
    DomainError,
    InvalidInput,
    NotFoundError,
    PayloadTooLarge,
    PermissionDeniedError,
    ServiceUnavailable,
)

__all__ = [
    "AudioTooLong",
    "AudioToolError",
    "CorruptAudio",
    "InvalidComposition",
    "InvalidMediaKey",
    "InvalidTTSRequest",
    "MediaLinkExpired",
    "MediaLinkRejected",
    "MediaNotFound",
    "MediaSignatureInvalid",
    "NoScratchSpace",
    "NotAudio",
    "SilentAudio",
    "StorageFull",
    "TTSEngineError",
    "TruncatedAudio",
    "UnderstatedLength",
    "UploadTooLarge",
]


class NotAudio(InvalidInput):
    """The upload is empty, is not a media file, or carries no audio stream."""


class CorruptAudio(NotAudio):
    """The content is recognised as audio but ffmpeg cannot decode (all of) it."""


class TruncatedAudio(CorruptAudio):
    """The container declares a duration far longer than what can be decoded."""


class UnderstatedLength(CorruptAudio):
    """The stream decodes to far more audio than its header declares (a crafted or
    damaged file: decoding it whole would fill the scratch disk)."""


class StorageFull(ServiceUnavailable):
    """No room on the server's disk for an upload or its processing (nothing is kept;
    try again once space is freed)."""

    def __init__(self, message: str, *, message_vi: str | None = None) -> None:
        super().__init__(
            message,
            retry_after_s=300,
            message_vi=message_vi or "Máy chủ hết dung lượng lưu trữ; hãy thử lại sau",
        )


class AudioTooLong(InvalidInput):
    """Longer than the configured maximum duration."""


class SilentAudio(InvalidInput):
    """Silence only: integrated loudness is -inf (every block under -70 LUFS)."""


class InvalidMediaKey(InvalidInput):
    """A SHA-256 or extension that is not of the expected form."""


class InvalidComposition(InvalidInput):
    """A join request that cannot be carried out as given."""


class InvalidTTSRequest(InvalidInput):
    """Text-to-speech input the engine must not be asked to read."""


class UploadTooLarge(PayloadTooLarge):
    """An upload over `max_upload_bytes`; nothing of it is kept."""


class MediaNotFound(NotFoundError):
    """No stored object with that hash."""


class MediaLinkRejected(PermissionDeniedError):
    """A signed media URL that must not be served."""


class MediaSignatureInvalid(MediaLinkRejected):
    """The signature does not match the path and expiry (or is malformed)."""


class MediaLinkExpired(MediaLinkRejected):
    """The signature is genuine but its expiry has passed."""


class AudioToolError(DomainError):
    """An external tool is missing, timed out, or failed on input it had accepted."""


class TTSEngineError(AudioToolError):
    """The speech engine failed."""


class NoScratchSpace(AudioToolError):
    """Not enough free disk for the processing's scratch files (raised in the worker
    process before decoding; the service turns it into `StorageFull`)."""
