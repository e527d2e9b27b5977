"""Run several alembic commands in one fresh process, as a user would run them one by one.

    python tests/support/alembic_steps.py ALEMBIC_INI STEPS_JSON

STEPS_JSON is a list of steps: ["upgrade", target], ["downgrade", target],
["revision", message] (with --autogenerate), ["heads"], ["write", path, text] (a file a user
adds between two commands). The last line of output is a JSON list with one value per step:
a revision's path and text, the heads as `alembic heads` lists them, or null.

One process instead of one per command: importing SQLAlchemy, Alembic and the package costs
more than the commands. `migrations/env.py` loads the models on every command, so a model
module written by a "write" step counts from the next command on.
"""

from __future__ import annotations

import importlib
import json
import sys
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory


def run(config: Config, step: list[str]) -> Any:
    kind, *args = step
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


def main() -> None:
    config = Config(sys.argv[1])
    steps: list[list[str]] = json.loads(sys.argv[2])
    print(json.dumps([run(config, step) for step in steps]))  # noqa: T201


if __name__ == "__main__":
    main()
