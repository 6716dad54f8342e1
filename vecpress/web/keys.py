"""Where the API keys of ``vecpress api`` come from: settings, a key file, a Prefect Secret block.

``VECPRESS_API_KEYS`` (comma-separated), ``--api-key-file PATH`` (one key per line, ``#``
comments) and ``--api-key-secret NAME`` (a Prefect Secret block: one key per line or a JSON list)
add up. A source that is named but unusable is a configuration error that names it (never the
keys in it).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import cast

from vecpress.infra.search_settings import LOCAL_HOSTS, ApiSettings

MIN_KEY_LENGTH = 16


class KeySourceError(ValueError):
    """A key file or Secret block that was named cannot be used."""


def _parse(text: str, where: str) -> list[str]:
    stripped = text.strip()
    if stripped.startswith("["):
        try:
            values = json.loads(stripped)
        except json.JSONDecodeError as exc:
            raise KeySourceError(f"{where}: not a JSON list of keys ({exc.msg})") from None
        if not all(isinstance(v, str) for v in values):
            raise KeySourceError(f"{where}: the JSON list must hold strings")
        return [v.strip() for v in values if v.strip()]
    return [line.strip() for line in text.splitlines()
            if line.strip() and not line.strip().startswith("#")]


def _from_file(path: str) -> list[str]:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise KeySourceError(f"cannot read the API key file {path}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise KeySourceError(f"the API key file {path} is not UTF-8 text") from None
    keys = _parse(text, path)
    if not keys:
        raise KeySourceError(f"the API key file {path} holds no key; write one per line")
    return keys


def _from_secret(name: str) -> list[str]:
    from prefect.blocks.system import Secret

    try:
        # Called without an event loop: Prefect's dual sync/async API returns the block itself.
        value = cast(Secret, Secret.load(name)).get()
    except ValueError as exc:
        raise KeySourceError(f"no Prefect Secret block named '{name}' ({exc}); create it in the "
                             "Prefect UI (Blocks) or give another --api-key-secret") from None
    except Exception as exc:
        raise KeySourceError(f"could not read the Prefect Secret block '{name}': {exc}; is "
                             "PREFECT_API_URL the server that holds it?") from None
    keys = value if isinstance(value, list) else _parse(str(value), f"Secret '{name}'")
    if not keys:
        raise KeySourceError(f"the Prefect Secret block '{name}' holds no key")
    return [str(k) for k in keys]


def load_keys(api: ApiSettings) -> list[str]:
    """Every key the server accepts. Refuses short keys, and serving a non-local address without
    keys unless ``api.insecure``."""
    keys = [k.get_secret_value() for k in api.keys]
    if api.key_file:
        keys += _from_file(api.key_file)
    if api.key_secret:
        keys += _from_secret(api.key_secret)
    if any(not k.isascii() or not k.isprintable() or " " in k for k in keys):
        raise KeySourceError("an API key holds a space or a character outside printable ASCII; "
                             "HTTP headers carry ASCII keys only")
    short = sum(len(k) < MIN_KEY_LENGTH for k in keys)
    if short:
        raise KeySourceError(f"{short} API key(s) shorter than {MIN_KEY_LENGTH} characters; use "
                             "long random keys (python -c 'import secrets; "
                             "print(secrets.token_urlsafe(32))')")
    if not keys and api.host not in LOCAL_HOSTS and not api.insecure:
        raise KeySourceError(
            f"serving on {api.host} without API keys would let anyone who reaches the port read "
            "every text; give --api-key-file (or VECPRESS_API_KEYS, --api-key-secret), or "
            "--insecure to serve without keys on a trusted network")
    return keys
