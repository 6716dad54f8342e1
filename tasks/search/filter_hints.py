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

from vecpress.infra.milvus_reads import MilvusReads
from vecpress.tasks.search.filters import FIELDS, METADATA, Filter, bare_names, words

# A passage field's meaning, for the hint that a metadata key of that name is shadowed.
FIELD_MEANING = {"doc_id": "the record's id", "chunk": "the passage's number in its record",
                 "text": "the passage's text", "source": "the file it came from",
                 "codec_id": "the codec that compressed it", "pk": "its primary key"}
COMPARISONS = {"==", "!=", "<=", ">=", "<", ">"}


def why_nothing_matched(store: MilvusReads, collection: str, wanted: Filter) -> str | None:
    """A hint for a filter that matched no passage of ``collection``, or None when the sample
    shows no slip (the filter may simply keep nothing)."""
    return hint(store.metadata_sample(collection), wanted)


def hint(sample: list[dict], wanted: Filter) -> str | None:
    """The hint for ``wanted`` given a sample of the records' metadata (``why_nothing_matched``)."""
    hints = [_shadowed(name) for name in sorted(FIELDS & bare_names(wanted.text))
             if any(name in row for row in sample)]
    told: set[str] = set()
    for key, quoted in compared_keys(wanted.text, set(wanted.metadata_keys)):
        if key not in told and (said := other_kind(key, quoted, sample)) is not None:
            hints.append(said)
            told.add(key)
    return "; ".join(hints) or None


def compared_keys(text: str, bare_keys: set[str]) -> list[tuple[str, bool]]:
    """(key, whether the value is quoted) of every comparison of a metadata key with a literal,
    on either side: the key bare (one of ``bare_keys``) or written ``metadata["key"]``."""
    terms = _terms(words(text), bare_keys)
    found = []
    for at in range(1, len(terms) - 1):
        if terms[at] != ("op", "op"):
            continue
        for key, value in ((terms[at - 1], terms[at + 1]), (terms[at + 1], terms[at - 1])):
            if key[0] == "key" and value[0] in ("string", "number"):
                found.append((key[1], value[0] == "string"))
    return found


def _terms(tokens: list[tuple[str, str]], bare_keys: set[str]) -> list[tuple[str, str]]:
    """Tokens joined into the terms of a comparison: a key (bare, or ``metadata["key"]``), an
    operator (``>=`` is two tokens), a number with its minus sign; others as they are."""
    terms: list[tuple[str, str]] = []
    at = 0
    while at < len(tokens):
        kind, token = tokens[at]
        ahead = [t for _, t in tokens[at + 1:at + 4]]
        if token == METADATA and len(ahead) == 3 and ahead[0] == "[" and ahead[2] == "]" \
                and tokens[at + 2][0] == "string":
            terms.append(("key", ahead[1][1:-1]))
            at += 4
        elif kind == "other" and token + "".join(ahead[:1]) in COMPARISONS:
            terms.append(("op", "op"))
            at += 2
        elif kind == "other" and token in COMPARISONS:
            terms.append(("op", "op"))
            at += 1
        elif token == "-" and tokens[at + 1:at + 2] and tokens[at + 1][0] == "number":
            terms.append(("number", "-" + tokens[at + 1][1]))
            at += 2
        else:
            terms.append(("key", token) if kind == "name" and token in bare_keys else (kind, token))
            at += 1
    return terms


def _shadowed(name: str) -> str:
    return (f"'{name}' in the filter is the passage's own field ({FIELD_MEANING[name]}); the "
            f"records' metadata key of that name is {METADATA}[\"{name}\"]")


def other_kind(key: str, quoted: bool, sample: list[dict]) -> str | None:
    """The hint for ``key`` compared with a quoted value while its values are numbers, or with
    a number while they are text; None when neither."""
    values = [row[key] for row in sample if key in row]
    if not values:
        return None
    numbers = [v for v in values if isinstance(v, int | float) and not isinstance(v, bool)]
    if quoted and len(numbers) == len(values):
        return (f"metadata '{key}' holds numbers (e.g. {numbers[0]}), and the filter compares it "
                f"with a quoted value: write the number without quotes")
    if not quoted and all(isinstance(v, str) for v in values):
        return (f"metadata '{key}' holds text (e.g. \"{values[0]}\"), and the filter compares it "
                f"with a number: quote the value")
    return None
