"""Hard bounds of Milvus that settings, the search limits and the CLI's help text all quote.

Kept apart from ``infra.settings`` so that ``vecpress --help`` and the CLI's option text can name
them without importing pydantic and the settings models at every command's start.
"""

from __future__ import annotations

# Milvus VARCHAR fields hold at most 65,535 bytes (a server counts UTF-8 bytes, Milvus Lite
# characters): passages are split to fit, and longer ids or source URLs are input errors.
MAX_VARCHAR_BYTES = 65_535
# Milvus returns at most MILVUS_TOPK candidates per query and a search asks it for
# k × milvus.rescore_factor of them: MAX_K results keep the whole short list up to a factor of 16
# (8 by default); past that the candidates are capped and rescoring sees fewer per result.
MILVUS_TOPK = 16_384
MAX_K = 1024
