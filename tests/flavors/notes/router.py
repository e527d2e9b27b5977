"""POST /api/notes, GET /api/notes/{id}: an author's own notes."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Request
from pydantic import BaseModel

from ..errors import AppError, NotFoundError
from ..ratelimit import rate_limit
from ..resources import registry
from ..schemas import RequestModel
from .auth import Author, caller_key
from .store import Note, NoteBook

router = APIRouter(prefix="/api/notes", tags=["notes"])


async def get_notebook(request: Request) -> NoteBook:
    return registry(request).get(NoteBook)


NoteBookDep = Annotated[NoteBook, Depends(get_notebook)]


class NoteTooLongError(AppError):
    status_code = 422
    code = "note_too_long"


class NoteIn(RequestModel):
    text: str


class NoteView(BaseModel):
    id: int
    author: str
    text: str

    @classmethod
    def of(cls, note: Note) -> NoteView:
        return cls(id=note.id, author=note.author, text=note.text)


@router.post("", status_code=201, dependencies=[rate_limit("notes", per=caller_key)])
async def add_note(body: NoteIn, author: Author, notebook: NoteBookDep) -> NoteView:
    if len(body.text) > notebook.max_length:
        detail = f"a note is at most {notebook.max_length} characters"
        raise NoteTooLongError(
            detail,
            extra={"errors": [{"field": "body.text", "message": detail, "type": "too_long"}]},
        )
    return NoteView.of(notebook.add(author, body.text))


@router.get("/{note_id}")
async def get_note(
    note_id: Annotated[int, Path(ge=1)], author: Author, notebook: NoteBookDep
) -> NoteView:
    note = notebook.get(note_id)
    if note is None or note.author != author:
        raise NotFoundError(f"none of your notes has the id {note_id}")
    return NoteView.of(note)
