"""Who may use the recording proxy: the client token, the webhook secret, loopback.

* Clients: with a client token (``--client-token`` / ``SEEDLEDGER_PROXY_TOKEN``) every
  forwarded request must carry ``X-Seedledger-Token: <token>`` (401 otherwise); the header
  is never forwarded or recorded. A bind beyond loopback without a client token is refused.
* Webhooks: deliveries are accepted only at ``/_seedledger/webhook/<secret>``. The secret is
  ``--webhook-token`` or, when none is given, one generated at first start and kept in
  ``<spool>/webhook-token`` (mode 0600) so pending tasks survive a restart.
* Both secrets are compared in constant time (``hmac.compare_digest``).
"""

from __future__ import annotations

import hmac
import ipaddress
import os
import secrets
from pathlib import Path

from ledger.errors import UsageError

CLIENT_TOKEN_HEADER = b"x-seedledger-token"
WEBHOOK_TOKEN_FILE = "webhook-token"
MIN_TOKEN_CHARS = 16


def check_token(name: str, token: str | None) -> None:
    if token is not None and (len(token) < MIN_TOKEN_CHARS or not token.isprintable() or "/" in token):
        raise UsageError(f"{name} must be at least {MIN_TOKEN_CHARS} printable characters without '/'")


def same_secret(given: bytes | str | None, expected: str) -> bool:
    """Constant-time comparison (the time does not depend on how much of ``given`` matches)."""
    if given is None:
        return False
    if isinstance(given, str):
        given = given.encode("utf-8", "surrogateescape")
    return hmac.compare_digest(given, expected.encode())


def is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host.strip("[]").split("%", 1)[0]).is_loopback
    except ValueError:
        return host == "localhost"


def webhook_secret(spool: Path, configured: str | None) -> tuple[str, Path | None]:
    """The webhook secret and, when it was generated, the file that holds it."""
    if configured is not None:
        check_token("--webhook-token", configured)
        return configured, None
    path = spool / WEBHOOK_TOKEN_FILE
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        token = path.read_text(encoding="ascii").strip()
        check_token(str(path), token)
        return token, path
    token = secrets.token_urlsafe(32)
    with os.fdopen(fd, "w", encoding="ascii") as out:
        out.write(token + "\n")
    return token, path
