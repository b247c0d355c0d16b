"""A build's output, stored as ordered chunks addressed by byte offset."""

from __future__ import annotations

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from kiln.models import LogChunk


def log_size(session: Session, build_id: int) -> int:
    query = select(func.coalesce(func.sum(func.length(LogChunk.data)), 0)).where(
        LogChunk.build_id == build_id
    )
    return int(session.scalar(query) or 0)


def append_log(session: Session, build_id: int, data: bytes, offset: int | None = None) -> int:
    """Append `data` at the end of the build's log (at `offset`, when the caller knows the
    size already); returns the new size."""
    if offset is None:
        offset = log_size(session, build_id)
    if data:
        session.add(LogChunk(build_id=build_id, offset=offset, data=data))
    return offset + len(data)


def reset_log(session: Session, build_id: int) -> None:
    """Forget the output of an earlier attempt: a retried run streams the container from start."""
    session.execute(delete(LogChunk).where(LogChunk.build_id == build_id))


def read_log(session: Session, build_id: int, offset: int = 0) -> tuple[bytes, int]:
    """The log from byte `offset` on, and the offset to ask for next time."""
    query = (
        select(LogChunk.offset, LogChunk.data)
        .where(LogChunk.build_id == build_id, LogChunk.offset + func.length(LogChunk.data) > offset)
        .order_by(LogChunk.offset)
    )
    parts = []
    end = offset
    for start, data in session.execute(query):
        parts.append(data[max(offset - start, 0) :])
        end = start + len(data)
    return b"".join(parts), max(end, offset)
