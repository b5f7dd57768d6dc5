"""State backends behind one interface (``base.py``); ``open_store`` (``location.py``) picks
one from ``--state``.

A path is an SQLite file (the embedded default); a ``postgresql://`` or ``postgres://`` URL is
the shared PostgreSQL backend (``pip install 'audio-conferencing-reconciler[postgres]'``).
"""

from reconciler.state.base import (
    AppliedState,
    Archive,
    Commit,
    DeliveryQueue,
    FileIndex,
    Forgotten,
    LockLost,
    Locks,
    MailQueued,
    Outbox,
    SealBroken,
    StaleState,
    StateLocked,
    StateStore,
    TenantDump,
    redact,
    tenant_key,
)
from reconciler.state.location import (
    is_database_url,
    local_dir,
    new_outbox_key,
    open_store,
    printable,
)
from reconciler.state.read_only import EmptyState, ReadOnlyState

__all__ = [
    "AppliedState",
    "Archive",
    "Commit",
    "DeliveryQueue",
    "EmptyState",
    "FileIndex",
    "Forgotten",
    "LockLost",
    "Locks",
    "MailQueued",
    "Outbox",
    "ReadOnlyState",
    "SealBroken",
    "StaleState",
    "StateLocked",
    "StateStore",
    "TenantDump",
    "is_database_url",
    "local_dir",
    "new_outbox_key",
    "open_store",
    "printable",
    "redact",
    "tenant_key",
]
