"""The held-out queries of ``--eval-queries``: read once, up front, with the documented fields.

A run measures recall@10 against exact FP32 search with them after loading. They were read
there, with the sources' field names, so the README's own example (a dump read with
``--id-field key --text-field body``, queries as ``{"id", "text"}``) loaded everything and then
failed (exit 2), telling the user to set ``--text-field``. Read here before any ingest work, a bad
or missing file fails the run at once.
"""

from __future__ import annotations

from contextlib import closing
from dataclasses import replace

from vecpress.infra.settings import InputSettings
from vecpress.tasks.inputs.records import InputError
from vecpress.tasks.inputs.sources import discover, read_records

EVAL_FORMAT = ('an --eval-queries file holds {"id": ..., "text": ...} records, one per line '
               "(or Parquet id and text columns); --id-field and --text-field name the fields "
               "of the sources only")


def read_eval_queries(url: str, inputs: InputSettings) -> list[str]:
    """The held-out queries of ``url``, read before any ingest work so that a bad or missing
    file fails the run at once (it used to fail only after everything was loaded).

    The file always has the documented fields ``id`` and ``text`` (README), whatever fields the
    sources are read with (``inputs``: they may be a dump with other names; the queries are a
    file of the user's own). Any input error is fatal here (a ``ValueError`` naming the file and
    line: exit 2), as is a file with no query text or more than ``inputs.max_eval_queries``
    queries (reading stops there: the exact truth scores each query against every passage).
    """
    settings = inputs.model_copy(update={"id_field": "id", "text_field": "text",
                                         "metadata_fields": []})
    files, errors = discover([url], settings)
    if errors:
        raise _eval_error(errors[0])
    texts: list[str] = []
    for src in files:
        with closing(read_records(src, settings)) as reader:
            for item in reader:
                if isinstance(item, InputError):
                    raise _eval_error(item)
                texts.append(item.text)
                if len(texts) > inputs.max_eval_queries:
                    raise ValueError(f"evaluation queries: {url} holds more than "
                                     f"{inputs.max_eval_queries:,} queries "
                                     "(inputs.max_eval_queries); give a random sample of them, "
                                     "which measures recall as well, or raise the setting")
    if not texts:
        raise ValueError(f"evaluation queries: {url} holds no query text ({EVAL_FORMAT})")
    return texts


def _eval_error(error: InputError) -> ValueError:
    """The first error of an eval-queries file; a hint to set --text-field (or --id-field) would
    mislead, since those flags name the sources' fields, so the file's format is said instead."""
    hint = EVAL_FORMAT if "-field" in error.hint else error.hint
    return ValueError(f"evaluation queries: {replace(error, hint=hint)}")
