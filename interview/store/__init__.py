"""The database: its tables (tables.py), the Store's queries (queries.py), its migrations."""

from interview.store.queries import Store
from interview.store.tables import ReportRow, SessionRow, TurnRow

__all__ = ["ReportRow", "SessionRow", "Store", "TurnRow"]
