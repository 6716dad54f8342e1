"""Why a filter matched no passage, when the reason is a likely slip rather than the data.

A filter that keeps nothing is valid, so Milvus says nothing; two slips read the same way and
are cheap to recognise on a sample of the collection's metadata (``MilvusReads.metadata_sample``):

- a metadata key named like a passage field (``source``, ``doc_id``...): the bare name is the
  passage's own field, and the record's value of that name is ``metadata["source"]``;
- a value of the other kind: ``year >= "2020"`` where the records hold numbers (a string never
  compares equal to, or in order with, a number), or ``code == 7`` where they hold text.

Asked only after a search found nothing (it reads ~1,000 rows' metadata).
"""

from __future__ import annotations

import re

from vecpress.infra.milvus_reads import MilvusReads
from vecpress.tasks.search.filters import FIELDS, METADATA, Filter, bare_names

# A passage field's meaning, for the hint that a metadata key of that name is shadowed.
FIELD_MEANING = {"doc_id": "the record's id", "chunk": "the passage's number in its record",
                 "text": "the passage's text", "source": "the file it came from",
                 "codec_id": "the codec that compressed it", "pk": "its primary key"}
# ``key op value`` or ``value op key``, the key bare or as metadata["key"]; the value's first
# character says its kind (a quote: text; a digit or minus sign: a number).
_KEY = r"(?:\b{key}\b|\bmetadata\[\s*[\"']{key}[\"']\s*\])"
_OP = r"\s*(?:==|!=|<=|>=|<|>)\s*"
_COMPARED = (_KEY + _OP + r"(?P<value>[\"']|-?\d)",
             r"(?:^|[\s(])(?P<value>[\"']|-?\d)(?:[^\"'\s=!<>]*|[^\"']*[\"'])" + _OP + _KEY)


def why_nothing_matched(store: MilvusReads, collection: str, wanted: Filter) -> str | None:
    """A hint for a filter that matched no passage of ``collection``, or None when the sample
    shows no slip (the filter may simply keep nothing)."""
    sample = store.metadata_sample(collection)
    hints = [_shadowed(name) for name in sorted(FIELDS & bare_names(wanted.text))
             if any(name in row for row in sample)]
    hints += [hint for key in wanted.metadata_keys
              if (hint := other_kind(key, wanted.text, sample)) is not None]
    return "; ".join(hints) or None


def _shadowed(name: str) -> str:
    return (f"'{name}' in the filter is the passage's own field ({FIELD_MEANING[name]}); the "
            f"records' metadata key of that name is {METADATA}[\"{name}\"]")


def other_kind(key: str, text: str, sample: list[dict]) -> str | None:
    """The hint for ``key`` compared with a quoted value while its values are numbers, or with
    a number while they are text; None when neither."""
    compared = next((m for pattern in _COMPARED
                     if (m := re.search(pattern.format(key=re.escape(key)), text))), None)
    values = [row[key] for row in sample if key in row]
    if compared is None or not values:
        return None
    quoted = compared.group("value") in "\"'"
    numbers = [v for v in values if isinstance(v, int | float) and not isinstance(v, bool)]
    if quoted and len(numbers) == len(values):
        return (f"metadata '{key}' holds numbers (e.g. {numbers[0]}), and the filter compares it "
                f"with a quoted value: write the number without quotes")
    if not quoted and all(isinstance(v, str) for v in values):
        return (f"metadata '{key}' holds text (e.g. \"{values[0]}\"), and the filter compares it "
                f"with a number: quote the value")
    return None
