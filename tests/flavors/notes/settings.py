"""The notes flavor's own settings, read from the same environment as the service's."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class NotesSettings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", extra="ignore")

    # The longest note, in characters.
    notes_max_length: int = Field(default=1000, ge=1)
