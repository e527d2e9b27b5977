"""The notes flavor as the core plugs it in."""

from __future__ import annotations

import argparse
import sys

from fastapi import APIRouter

from ..flavor import Flavor, Foundation
from ..resources import Resource
from ..settings import Settings
from .auth import caller_key, job_owner
from .jobs import WORD_COUNT_KIND
from .router import router
from .settings import NotesSettings
from .store import NoteBook


def notes_resources(foundation: Foundation) -> list[Resource]:
    return [NoteBook(NotesSettings())]


def notes_routers() -> list[APIRouter]:
    return [router]


def _limits(args: argparse.Namespace, settings: Settings) -> int:
    sys.stdout.write(f"notes: at most {NotesSettings().notes_max_length} characters\n")
    return 0


def add_notes_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    commands.add_parser("notes-limits", help="print the notes limits").set_defaults(handler=_limits)


FLAVOR = Flavor(
    name="notes",
    routers=notes_routers,
    job_owner=job_owner,
    caller_key=caller_key,
    resources=notes_resources,
    jobs=(WORD_COUNT_KIND,),
    add_commands=add_notes_commands,
)
