"""The read-only web UI (`seedledger ui`): server-rendered pages over the ledger.

Starlette + Jinja2, plain HTML and CSS, no script. Every page is a link (filters live
in the URL) and has a JSON twin (the same path with ``.json``). Nothing here writes
to the ledger; the Verify action only reads.
"""

from ledger.ui.app import create_app
from ledger.ui.config import UIConfig

__all__ = ["UIConfig", "create_app"]
