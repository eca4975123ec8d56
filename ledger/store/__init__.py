"""SQL storage: schema, engines, migrations and the Ledger repository."""

from ledger.store.engine import ENV_DATABASE_URL, display_url, resolve_url
from ledger.store.filters import ORDERINGS, RecordFilter
from ledger.store.ledger import Ledger

__all__ = ["ENV_DATABASE_URL", "ORDERINGS", "Ledger", "RecordFilter", "display_url", "resolve_url"]
