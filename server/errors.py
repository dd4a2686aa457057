"""Domain errors raised by services; `server.api` maps each to one HTTP status."""

from __future__ import annotations


class ServerError(Exception):
    """Base of the errors a client can cause."""


class EvidenceMismatch(ServerError):
    """The uploaded bytes do not hash to the sha256 they were sent under."""


class EvidenceNotFound(ServerError):
    """No evidence file with that sha256 is stored."""


class PayloadTooLarge(ServerError):
    """A body larger than the configured limit."""


class StorageFull(ServerError):
    """The media folder has no room for the file: the uploader keeps it and tries again."""


class StorageUnavailable(ServerError):
    """The object store did not take or give the file (down, refused, no such bucket)."""


class UnsupportedMedia(ServerError):
    """An upload that is not one of the file types the server keeps (JPEG, PNG, MP4)."""


class UnstorableInput(ServerError):
    """The database refused the values themselves (a NUL character in PostgreSQL text, a
    number out of range): the input's fault, not a store that is down."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class ForeignIds(ServerError):
    """Event messages whose `event_id` belongs to another site or camera: storing them would
    change that site's incident. `refused` maps each one's index in the batch to why."""

    def __init__(self, refused: dict[int, str]) -> None:
        super().__init__(f"{len(refused)} event_id(s) belong to another site or camera")
        self.refused = refused
