"""One module per page; each exposes ``routes`` (HTML path and its .json twin)."""
