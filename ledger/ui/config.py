"""What `seedledger ui` was started with."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from ledger import config
from ledger.errors import UsageError

ENV_TOKEN = config.UI_TOKEN.name
#: Uploads to /find larger than this are refused before they are decoded.
DEFAULT_MAX_UPLOAD_BYTES = 20 * 1024 * 1024
DEFAULT_PAGE_SIZE = 50


@dataclass(frozen=True, kw_only=True, repr=False)
class UIConfig:
    db_url: str | None = None
    archive_dir: str | None = None
    #: Required for any non-loopback bind; compared in constant time.
    token: str | None = None
    #: Trusted checkpoint keys for Verify (as `seedledger verify --key`).
    verifier_keys: tuple[str, ...] = ()
    host: str = "127.0.0.1"
    max_upload_bytes: int = DEFAULT_MAX_UPLOAD_BYTES
    page_size: int = DEFAULT_PAGE_SIZE

    def __post_init__(self) -> None:
        if self.token is not None and len(self.token) < 16:
            raise UsageError("--token must be at least 16 characters")
        if not is_loopback(self.host) and not self.token:
            raise UsageError(
                f"binding {self.host} exposes the ledger beyond this machine; "
                f"pass --token (or set {ENV_TOKEN}), or listen on 127.0.0.1"
            )

    def __repr__(self) -> str:  # the token never reaches a log line
        return f"UIConfig(db_url=…, host={self.host!r}, token={'set' if self.token else None})"


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def parse_listen(listen: str) -> tuple[str, int]:
    host, sep, port = listen.rpartition(":")
    if not sep or not host or not port.isdigit() or int(port) > 65535:
        raise UsageError(f"--listen {listen!r}: expected HOST:PORT, e.g. 127.0.0.1:8765")
    return host.strip("[]"), int(port)
