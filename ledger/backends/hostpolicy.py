"""Which hosts a download may reach, and the address it must then connect to.

Only globally reachable unicast addresses are allowed by default. Python's
``ipaddress.is_global`` is not enough on its own (3.11 calls 192.0.0.8, 6to4 and NAT64
spellings of loopback "global"), so this module keeps the IANA special-purpose
registries itself and judges an IPv4 address embedded in an IPv6 one (IPv4-mapped,
6to4, NAT64, Teredo) as that IPv4 address.

The check resolves a name once and returns the address it approved; the client then
connects to that address (Host header and TLS SNI keep the name), so a name that
resolves to something else a moment later (DNS rebinding) is never connected to.
"""

from __future__ import annotations

import asyncio
import ipaddress
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

from ledger.backends.base import DownloadError

__all__ = ["HostPolicy", "PinnedURL", "address_kind"]

_Net = ipaddress.IPv4Network | ipaddress.IPv6Network

# IANA IPv4 Special-Purpose Address Registry: blocks that are not globally reachable.
_V4_NOT_GLOBAL: tuple[_Net, ...] = tuple(
    ipaddress.ip_network(n)
    for n in (
        "0.0.0.0/8",
        "10.0.0.0/8",
        "100.64.0.0/10",  # shared address space (carrier NAT; cloud metadata 100.100.100.200)
        "127.0.0.0/8",
        "169.254.0.0/16",
        "172.16.0.0/12",
        "192.0.0.0/24",  # IETF protocol assignments (.9 and .10 excepted below)
        "192.0.2.0/24",
        "192.31.196.0/24",
        "192.52.193.0/24",
        "192.88.99.0/24",  # deprecated 6to4 relay anycast
        "192.168.0.0/16",
        "192.175.48.0/24",
        "198.18.0.0/15",
        "198.51.100.0/24",
        "203.0.113.0/24",
        "224.0.0.0/4",
        "240.0.0.0/4",
    )
)
_V4_GLOBAL_EXCEPTIONS = frozenset(ipaddress.IPv4Address(a) for a in ("192.0.0.9", "192.0.0.10"))
# IPv6: only global unicast (2000::/3) can be global; these blocks inside it are not.
_V6_GLOBAL_UNICAST = ipaddress.IPv6Network("2000::/3")
_V6_NOT_GLOBAL: tuple[_Net, ...] = tuple(
    ipaddress.ip_network(n) for n in ("2001::/23", "2001:db8::/32", "2001:10::/28", "3fff::/20", "5f00::/16")
)
_V6_GLOBAL_EXCEPTIONS: tuple[_Net, ...] = tuple(
    ipaddress.ip_network(n)
    for n in (
        "2001:1::1/128",
        "2001:1::2/128",
        "2001:3::/32",
        "2001:4:112::/48",
        "2001:20::/28",
        "2001:30::/28",
    )
)
_NAT64 = (ipaddress.IPv6Network("64:ff9b::/96"),)
_NAT64_LOCAL = ipaddress.IPv6Network("64:ff9b:1::/48")


def _embedded_v4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip.sixtofour is not None:
        return ip.sixtofour
    if ip.teredo is not None:
        return ip.teredo[1]  # the client's (obfuscation undone by ipaddress)
    if any(ip in net for net in _NAT64):
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    if ip.packed[:12] == bytes(12) and int(ip) > 1:  # deprecated IPv4-compatible ::a.b.c.d
        return ipaddress.IPv4Address(int(ip))
    return None


def _v4_kind(ip: ipaddress.IPv4Address) -> str:
    if ip.is_loopback:
        return "loopback"
    if ip in _V4_GLOBAL_EXCEPTIONS:
        return "global"
    return "private" if any(ip in net for net in _V4_NOT_GLOBAL) or ip.is_multicast else "global"


def address_kind(address: str) -> str:
    """``global``, ``loopback`` or ``private`` (every other non-global address)."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv4Address):
        return _v4_kind(ip)
    if ip.is_loopback:
        return "loopback"
    embedded = _embedded_v4(ip)
    if embedded is not None:
        # Loopback wrapped in IPv6 is no way a loopback server is named: it is a
        # filter bypass, so only allow_private lets it through.
        return "global" if _v4_kind(embedded) == "global" else "private"
    if ip in _NAT64_LOCAL:
        return "private"
    if ip not in _V6_GLOBAL_UNICAST:
        return "private"
    if any(ip in net for net in _V6_NOT_GLOBAL) and not any(ip in net for net in _V6_GLOBAL_EXCEPTIONS):
        return "private"
    return "global"


@dataclass(frozen=True)
class PinnedURL:
    """A checked URL and the address to connect to (None: connect by name, e.g. a
    configured API host, which serves its own URLs)."""

    url: str
    host: str
    address: str | None

    def connect_url(self) -> str:
        """The URL with the host replaced by the approved address."""
        if self.address is None:
            return self.url
        parts = urlsplit(self.url)
        literal = f"[{self.address}]" if ":" in self.address else self.address
        netloc = literal if parts.port is None else f"{literal}:{parts.port}"
        return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


@dataclass(frozen=True)
class HostPolicy:
    """Which hosts a download may reach.

    Globally reachable addresses are allowed. Loopback needs ``allow_loopback``; every
    other non-global address (private, shared, link-local, reserved, documentation,
    multicast, and IPv6 spellings of these) needs ``allow_private``. Hosts in
    ``allowed_hosts`` (e.g. the configured API host, whose own URLs it serves) are
    always allowed. A name is resolved once and every address must pass; the
    connection then goes to the approved address (:class:`PinnedURL`).
    """

    allow_loopback: bool = False
    allow_private: bool = False
    allowed_hosts: frozenset[str] = frozenset()

    def with_host(self, host: str | None) -> HostPolicy:
        if not host:
            return self
        return HostPolicy(
            allow_loopback=self.allow_loopback,
            allow_private=self.allow_private,
            allowed_hosts=self.allowed_hosts | {host.lower()},
        )

    def _address_allowed(self, address: str) -> bool:
        kind = address_kind(address)
        if kind == "loopback":
            return self.allow_loopback or self.allow_private
        if kind == "private":
            return self.allow_private
        return True

    async def check(self, url: str) -> PinnedURL:
        """The URL pinned to an approved address; :class:`DownloadError` unless it may be fetched."""
        try:
            parts = urlsplit(url)
            port = parts.port
        except ValueError:
            raise DownloadError("refused a malformed URL", code="url-refused") from None
        if parts.scheme not in ("http", "https"):
            raise DownloadError(
                f"refused a {parts.scheme or 'schemeless'} URL: only http and https are fetched",
                code="url-refused",
            )
        host = (parts.hostname or "").lower()
        if not host:
            raise DownloadError("refused a URL without a host", code="url-refused")
        if host in self.allowed_hosts:
            return PinnedURL(url, host, None)
        try:
            addresses = [str(ipaddress.ip_address(host))]
            literal = True
        except ValueError:
            literal = False
            try:
                infos = await asyncio.get_running_loop().getaddrinfo(
                    host, port or (443 if parts.scheme == "https" else 80)
                )
            except OSError:
                raise DownloadError(f"cannot resolve download host {host}", code="url-refused") from None
            addresses = sorted({str(info[4][0]) for info in infos})
        if not addresses:
            raise DownloadError(f"cannot resolve download host {host}", code="url-refused")
        for address in addresses:
            if not self._address_allowed(address):
                what = "a loopback" if address_kind(address) == "loopback" else "a private or reserved"
                raise DownloadError(
                    f"refused download from {host}: {address} is {what} address, not a public one "
                    "(allow it in the backend's host policy if this is intended)",
                    code="url-refused",
                )
        return PinnedURL(url, host, None if literal else addresses[0])
