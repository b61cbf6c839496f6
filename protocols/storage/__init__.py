"""Storage: the tiled catalog with its JSONL backup, and the in-situ experiment's journal."""

from .catalog import (
    DEFAULT_LOCATION,
    LOCATION_ENV_VAR,
    CatalogUnavailableError,
    RunNotFoundError,
    RunStore,
    StorageFailure,
    StoredRun,
    iter_backup,
    load_backup,
)
from .journal import (
    JOURNAL_NAME,
    ExperimentJournal,
    JournalState,
    read_journal,
)

__all__ = [
    "DEFAULT_LOCATION",
    "JOURNAL_NAME",
    "LOCATION_ENV_VAR",
    "CatalogUnavailableError",
    "ExperimentJournal",
    "JournalState",
    "RunNotFoundError",
    "RunStore",
    "StorageFailure",
    "StoredRun",
    "iter_backup",
    "load_backup",
    "read_journal",
]
