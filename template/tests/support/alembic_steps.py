"""Run several alembic commands in one fresh process, as a user would run them one by one.

    python tests/support/alembic_steps.py ALEMBIC_INI STEPS_JSON

STEPS_JSON is a list of steps: ["upgrade", target], ["downgrade", target],
["revision", message] (with --autogenerate), ["heads"], ["write", path, text] (a file a user
adds between two commands), ["tables"] (the database's tables) and ["schema"] (what
readiness says of the database: current or not, and why). The last line of output is a JSON
list with one value per step.

One process instead of one per command: importing SQLAlchemy, Alembic and the package costs
more than the commands. `migrations/env.py` loads the models on every command, so a model
module written by a "write" step counts from the next command on.
"""

from __future__ import annotations

import asyncio
import importlib
import json
import sys
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy import inspect, text
from sqlalchemy.ext.asyncio import create_async_engine


def run(config: Config, step: list[str]) -> Any:
    kind, *args = step
    if kind in {"tables", "schema"}:
        return asyncio.run(inspect_database(config, kind))
    if kind == "upgrade":
        command.upgrade(config, args[0])
    elif kind == "downgrade":
        command.downgrade(config, args[0])
    elif kind == "revision":
        written = command.revision(config, message=args[0], autogenerate=True)
        if written is None or isinstance(written, list):
            raise SystemExit("alembic revision wrote no single file")
        path = Path(written.path)
        return {"path": str(path), "text": path.read_text()}
    elif kind == "heads":
        scripts = ScriptDirectory.from_config(config)
        return [
            f"{head.revision} ({', '.join(sorted(head.branch_labels))})"
            for head in scripts.get_revisions(scripts.get_heads())
            if head is not None
        ]
    elif kind == "write":
        path = Path(args[0])
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(args[1])
        importlib.invalidate_caches()  # a new process would see the new module at once
    else:
        raise SystemExit(f"unknown step {kind!r}")
    return None


async def inspect_database(config: Config, kind: str) -> Any:
    # The package whose migrations these are, as env.py imports it.
    package = Path(config.get_main_option("script_location") or "").parent.name
    db = importlib.import_module(f"{package}.db")
    settings = importlib.import_module(f"{package}.settings")
    engine = create_async_engine(settings.Settings().database)
    try:
        async with engine.connect() as connection:
            if kind == "tables":
                return sorted(await connection.run_sync(lambda c: inspect(c).get_table_names()))
            rows = await connection.execute(text("SELECT version_num FROM alembic_version"))
            applied = frozenset(row[0] for row in rows)
    finally:
        await engine.dispose()
    state = db.SchemaState(applied, db.code_revisions(db.MIGRATIONS_DIR))
    return {"current": state.current, "describe": state.describe()}


def main() -> None:
    config = Config(sys.argv[1])
    steps: list[list[str]] = json.loads(sys.argv[2])
    print(json.dumps([run(config, step) for step in steps]))  # noqa: T201


if __name__ == "__main__":
    main()
