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
from collections.abc import Callable
from contextlib import closing
from pathlib import Path

DB_NAME = "prefect.db"  # what Prefect names its SQLite file under PREFECT_HOME


def template_of(templates: Path) -> Path:
    """This Prefect version's template (migrations ship with the version)."""
    import prefect

    return templates / f"prefect-{prefect.__version__}.db"


def seed(db: Path, templates: Path | None) -> Callable[[], None]:
    """Put a copy of the template at ``db`` when there is no database there yet; return what to
    call once the server answers: it keeps the server's database as the template when the server
    started on an empty file (no database yet, no template to copy), and does nothing otherwise.
    An existing database is never touched.
    """
    if templates is None or db.exists():
        return _nothing
    template = template_of(templates)
    if template.is_file():
        db.parent.mkdir(parents=True, exist_ok=True)
        partial = db.with_name(db.name + ".seeding")
        try:
            shutil.copyfile(template, partial)
            os.replace(partial, db)
            return _nothing
        except OSError:  # the template went, or no room: the server migrates an empty file
            partial.unlink(missing_ok=True)
            if db.exists():
                return _nothing
    return lambda: _keep_as_template(db, template)


def _nothing() -> None:
    pass


def _keep_as_template(db: Path, template: Path) -> None:
    """Keep a snapshot of the live database ``db`` as ``template``, when there is none yet.

    A failure only means the next server migrates again, so it is ignored.
    """
    if template.exists() or not db.is_file():
        return
    try:
        template.parent.mkdir(parents=True, exist_ok=True)
        handle, partial = tempfile.mkstemp(dir=template.parent, prefix=".template-", suffix=".db")
        os.close(handle)
        try:
            with closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as source, \
                    closing(sqlite3.connect(partial)) as copy:
                source.backup(copy)
                # One self-contained file (the live database may be in WAL mode, whose pages a
                # plain file copy would miss): ``seed`` copies just this file.
                copy.execute("pragma journal_mode=delete")
            os.replace(partial, template)
        finally:
            Path(partial).unlink(missing_ok=True)
    except (OSError, sqlite3.Error):
        return
