"""Tenant folders: loading them (``loader.py``), their schemas, semantic checks, formatting
(``fmt.py``) and adoption from a Teams export (``export.py``). The package re-exports what the
rest of the reconciler uses of the loader."""

from reconciler.config.loader import (
    CACHE_KEY,
    LEAVES_CONFIG,
    MAX_FILE_BYTES,
    LoadedConfig,
    Reused,
    UsersCache,
    file_hashes,
    inside,
    load_config,
    locate_findings,
    nothing_to_read,
    tenant_files,
    tenant_findings,
    tenant_names,
)

__all__ = [
    "CACHE_KEY",
    "LEAVES_CONFIG",
    "MAX_FILE_BYTES",
    "LoadedConfig",
    "Reused",
    "UsersCache",
    "file_hashes",
    "inside",
    "load_config",
    "locate_findings",
    "nothing_to_read",
    "tenant_files",
    "tenant_findings",
    "tenant_names",
]
