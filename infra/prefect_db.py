"""Start new Prefect servers from a migrated database instead of an empty one.

A Prefect server on a new SQLite file first runs every Alembic migration of its version: on
2 cores that is most of its start (a temporary API answered after 15.1 s from an empty file and
5.6 s from a migrated copy; ``docs/operations.md``). Every ``--no-server`` command
starts such a server, and so do a new local server home and ``vecpress serve`` in a new folder.

So the first server of a Prefect version that comes up on an empty file leaves a copy of its
database, taken once it answers (migrated, block types registered, no runs yet), under
``server.database_templates``; later servers start from a copy of it. The copy is SQLite's own
online backup (a consistent snapshot of a live database), written under another name and then
renamed, so a reader never sees half a template; a version's template is never rewritten.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import tempfile
from pathlib import Path

DB_NAME = "prefect.db"  # what Prefect names its SQLite file under PREFECT_HOME


def template_of(templates: Path) -> Path:
    """This Prefect version's template (migrations ship with the version)."""
    import prefect

    return templates / f"prefect-{prefect.__version__}.db"


def seed(db: Path, templates: Path | None) -> bool:
    """Put a copy of the template at ``db`` when there is no database there yet.

    Returns whether the server will start on an empty file (no database yet, no template to copy):
    then ``keep_as_template`` once it answers. An existing database is never touched.
    """
    if templates is None or db.exists():
        return False
    template = template_of(templates)
    if not template.is_file():
        return True
    db.parent.mkdir(parents=True, exist_ok=True)
    partial = db.with_name(db.name + ".seeding")
    try:
        shutil.copyfile(template, partial)
        os.replace(partial, db)
    except OSError:  # the template went, or no room: the server migrates an empty file
        partial.unlink(missing_ok=True)
        return not db.exists()
    return False


def keep_as_template(db: Path, templates: Path | None) -> None:
    """Keep a snapshot of the live database ``db`` as the template, when there is none yet.

    Called right after a server that started on an empty file answered. A failure only means the
    next server migrates again, so it is ignored.
    """
    if templates is None or not db.is_file():
        return
    template = template_of(templates)
    if template.exists():
        return
    try:
        templates.mkdir(parents=True, exist_ok=True)
        handle, partial = tempfile.mkstemp(dir=templates, prefix=".template-", suffix=".db")
        os.close(handle)
        try:
            with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as source, \
                    sqlite3.connect(partial) as copy:
                source.backup(copy)
                # One self-contained file (the live database may be in WAL mode, whose pages a
                # plain file copy would miss): ``seed`` copies just this file.
                copy.execute("pragma journal_mode=delete")
            source.close()
            copy.close()
            os.replace(partial, template)
        finally:
            Path(partial).unlink(missing_ok=True)
    except (OSError, sqlite3.Error):
        return
