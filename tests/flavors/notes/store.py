"""Where notes live: one resource, opened and closed with the service."""

from __future__ import annotations

import itertools
from dataclasses import dataclass

from .settings import NotesSettings


@dataclass(frozen=True, slots=True)
class Note:
    id: int
    author: str
    text: str


class NoteBook:
    name = "notes"

    def __init__(self, settings: NotesSettings) -> None:
        self.max_length = settings.notes_max_length
        self._notes: dict[int, Note] | None = None
        self._ids = itertools.count(1)

    async def open(self) -> None:
        self._notes = {}

    async def close(self) -> None:
        self._notes = None

    async def check(self) -> None:
        if self._notes is None:
            raise RuntimeError("the notebook is closed")

    def add(self, author: str, text: str) -> Note:
        note = Note(next(self._ids), author, text)
        self._open()[note.id] = note
        return note

    def get(self, note_id: int) -> Note | None:
        return self._open().get(note_id)

    def _open(self) -> dict[int, Note]:
        if self._notes is None:
            raise RuntimeError("the notebook is not open")
        return self._notes
