"""Shared HTTP plumbing for every adapter: retries, bounded reads, safe downloads.

One place decides how seedledger talks HTTP:

- **Retries** on 408, 429, 5xx, connection failures and timeouts, with exponential
  backoff and full jitter (delay drawn uniformly from 0 … min(cap, base·2^n)), or the
  server's ``Retry-After`` (seconds or an HTTP date, capped) when it sends one. Every
  attempt and retry is counted in :class:`CallStats`, which results surface.
- **Bounded reads**: response bodies are streamed and abandoned as soon as they pass
  the size cap; a declared ``Content-Length`` over the cap is refused before reading.
- **Downloads** (URLs a backend hands back) are checked against a :class:`HostPolicy`
  (http/https only; private, loopback and link-local addresses refused unless
  allowed), follow a bounded number of redirects checking every hop, must declare an
  expected content type, never carry the API credentials, and have a total deadline.
- **Logs** show the method, a redacted URL and the status, never headers; httpx's own
  request log line goes through the same URL redaction.
"""

from __future__ import annotations

import asyncio
import json as jsonlib
import logging
import random
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import SplitResult, urljoin, urlsplit

import httpx

from ledger.backends.base import (
    AsyncBackend,
    BackendHTTPError,
    BackendTimeout,
    BackendUnavailable,
    DownloadError,
    MalformedResponse,
    RateLimited,
    sniff_media_type,
)
from ledger.backends.hostpolicy import HostPolicy, PinnedURL
from ledger.backends.policies import PollPolicy, RetryPolicy, parse_retry_after
from ledger.backends.redacting import Secret, describe_error, safe_url
from ledger.core.redaction import redact, redact_text
from ledger.errors import UsageError

log = logging.getLogger("ledger.backends.http")

__all__ = [
    "DEFAULT_MAX_DOWNLOAD_BYTES",
    "DEFAULT_MAX_RESPONSE_BYTES",
    "CallStats",
    "Downloaded",
    "HostPolicy",
    "HttpBackend",
    "HttpClient",
    "PollPolicy",
    "RawResponse",
    "RetryPolicy",
    "Secret",
    "describe_error",
    "parse_retry_after",
    "safe_url",
]

DEFAULT_MAX_DOWNLOAD_BYTES = 64 * 1024 * 1024
#: JSON answers carry base64 images (20 × a large PNG), so their cap is higher.
DEFAULT_MAX_RESPONSE_BYTES = 256 * 1024 * 1024
_ERROR_BODY_BYTES = 8192
MEDIA_TYPES = ("image/", "video/", "audio/", "model/", "application/octet-stream")


# -- exchanges -------------------------------------------------------------------------


@dataclass
class CallStats:
    """A mutable tally for one logical operation (a generate call)."""

    attempts: int = 0
    retries: int = 0
    polls: int = 0
    bytes_downloaded: int = 0
    started: float = field(default_factory=time.monotonic)

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self.started


@dataclass(frozen=True)
class RawResponse:
    status: int
    headers: Mapping[str, str]
    body: bytes
    url: str

    @property
    def media_type(self) -> str:
        return self.headers.get("content-type", "").split(";", 1)[0].strip().lower()


@dataclass(frozen=True)
class Downloaded:
    data: bytes
    media_type: str
    url: str  # redacted


class _TooLarge(Exception):
    pass


class HttpClient:
    """One httpx.AsyncClient with seedledger's retry, size and host rules.

    ``secrets`` are values cut out of any text that reaches an exception or a log.
    """

    def __init__(
        self,
        *,
        backend: str,
        timeout: float | httpx.Timeout = 60.0,
        retry: RetryPolicy | None = None,
        host_policy: HostPolicy | None = None,
        max_download_bytes: int = DEFAULT_MAX_DOWNLOAD_BYTES,
        max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
        max_redirects: int = 5,
        download_deadline: float = 300.0,
        secrets: tuple[str, ...] = (),
        transport: httpx.AsyncBaseTransport | None = None,
        rng: random.Random | None = None,
        sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
        limits: httpx.Limits | None = None,
    ) -> None:
        self.backend = backend
        self.retry = retry or RetryPolicy()
        self.host_policy = host_policy or HostPolicy()
        self.max_download_bytes = max_download_bytes
        self.max_response_bytes = max_response_bytes
        self.max_redirects = max_redirects
        self.download_deadline = download_deadline
        self._secret_values = tuple(Secret(s) for s in secrets if s)
        self._rng = rng or random.Random()
        self._sleep = sleep
        self._client = httpx.AsyncClient(
            timeout=timeout if isinstance(timeout, httpx.Timeout) else httpx.Timeout(timeout),
            follow_redirects=False,
            transport=transport,
            limits=limits or httpx.Limits(max_connections=64, max_keepalive_connections=16),
            trust_env=False,
        )

    @property
    def _secrets(self) -> tuple[str, ...]:
        return tuple(s.reveal() for s in self._secret_values)

    def redact(self, text: str) -> str:
        return redact_text(text, self._secrets)

    def redact_value(self, value: Any) -> Any:
        """A JSON-like value with secret keys and this client's secrets removed."""
        return redact(value, self._secrets)

    def describe(self, value: Any) -> str:
        return describe_error(value, self._secrets)

    async def aclose(self) -> None:
        await self._client.aclose()

    def describe_body(self, body: bytes, limit: int = 200) -> str:
        """A short, redacted reason from an error body (JSON message fields only)."""
        try:
            value = jsonlib.loads(body) if body else None
        except (ValueError, RecursionError):
            return ""
        return describe_error(value, self._secrets, limit)

    # -- one attempt ---------------------------------------------------------------

    async def _once(
        self,
        method: str,
        url: str,
        *,
        json: Any = None,
        headers: Mapping[str, str] | None = None,
        params: Mapping[str, str] | None = None,
        max_bytes: int,
        accept: tuple[str, ...] | None = None,
        pinned: PinnedURL | None = None,
    ) -> RawResponse:
        extensions: dict[str, Any] = {}
        if pinned is not None and pinned.address is not None:
            # Connect to the address the host policy approved; the name stays in the
            # Host header and the TLS SNI (so the certificate is checked against it).
            url = pinned.connect_url()
            headers = {**(headers or {}), "Host": urlsplit(pinned.url).netloc.rsplit("@", 1)[-1]}
            extensions["sni_hostname"] = pinned.host
        request = self._client.build_request(
            method, url, json=json, headers=headers, params=params, extensions=extensions or None
        )
        response = await self._client.send(request, stream=True)
        try:
            status = response.status_code
            resp_headers = {k.lower(): v for k, v in response.headers.items()}
            if 300 <= status < 400:
                return RawResponse(status, resp_headers, b"", str(response.url))
            if accept is not None and not 200 <= status < 300:
                # A failed download: keep only enough of the body to say why.
                head = bytearray()
                async for chunk in response.aiter_bytes():
                    head += chunk
                    if len(head) >= _ERROR_BODY_BYTES:
                        break
                return RawResponse(status, resp_headers, bytes(head[:_ERROR_BODY_BYTES]), str(response.url))
            if accept is not None:
                media = resp_headers.get("content-type", "").split(";", 1)[0].strip().lower()
                if media and not media.startswith(accept):
                    raise DownloadError(
                        f"{self.backend}: download from {safe_url(url)} has content type "
                        f"{media!r}, expected {' or '.join(accept)}",
                        code="content-type",
                    )
            declared = response.headers.get("content-length")
            if declared and declared.isdigit() and int(declared) > max_bytes:
                raise _TooLarge
            chunks: list[bytes] = []
            total = 0
            async for chunk in response.aiter_bytes():
                total += len(chunk)
                if total > max_bytes:
                    raise _TooLarge
                chunks.append(chunk)
            return RawResponse(status, resp_headers, b"".join(chunks), str(response.url))
        finally:
            await response.aclose()

    # -- with retries --------------------------------------------------------------

    async def exchange(
        self,
        method: str,
        url: str,
        *,
        stats: CallStats,
        json: Any = None,
        headers: Mapping[str, str] | None = None,
        params: Mapping[str, str] | None = None,
        max_bytes: int | None = None,
        accept: tuple[str, ...] | None = None,
        pinned: PinnedURL | None = None,
    ) -> RawResponse:
        """Send with retries; return the first non-retryable response.

        Raises RateLimited / BackendHTTPError / BackendTimeout / BackendUnavailable
        when every attempt failed, DownloadError when the body passes the size cap.
        """
        cap = max_bytes if max_bytes is not None else self.max_response_bytes
        where = safe_url(url)
        attempt = 0
        while True:
            attempt += 1
            stats.attempts += 1
            retry_after: float | None = None
            failure: BackendTimeout | BackendUnavailable | BackendHTTPError | RateLimited
            try:
                raw = await self._once(
                    method,
                    url,
                    json=json,
                    headers=headers,
                    params=params,
                    max_bytes=cap,
                    accept=accept,
                    pinned=pinned,
                )
            except _TooLarge:
                raise DownloadError(
                    f"{self.backend}: response from {where} is larger than the {cap}-byte cap; aborted",
                    code="too-large",
                    attempts=stats.attempts,
                    retries=stats.retries,
                ) from None
            except httpx.TimeoutException as exc:
                failure = BackendTimeout(
                    f"{self.backend}: {method} {where} timed out ({type(exc).__name__})",
                    attempts=stats.attempts,
                    retries=stats.retries,
                )
            except (httpx.UnsupportedProtocol, httpx.LocalProtocolError, httpx.ProxyError) as exc:
                # Our side is wrong (bad URL scheme, bad request): trying again cannot help.
                raise BackendUnavailable(
                    f"{self.backend}: cannot send to {where} ({type(exc).__name__})",
                    attempts=stats.attempts,
                    retries=stats.retries,
                ) from None
            except (httpx.TransportError, OSError) as exc:
                failure = BackendUnavailable(
                    f"{self.backend}: cannot reach {where} ({type(exc).__name__}"
                    f"{': ' + self.redact(str(exc)) if str(exc) else ''})",
                    attempts=stats.attempts,
                    retries=stats.retries,
                )
            except httpx.DecodingError:
                raise MalformedResponse(
                    f"{self.backend}: the body from {where} could not be decoded (bad content encoding)",
                    attempts=stats.attempts,
                    retries=stats.retries,
                ) from None
            except (httpx.HTTPError, httpx.InvalidURL) as exc:
                raise BackendUnavailable(
                    f"{self.backend}: request to {where} failed ({type(exc).__name__})",
                    attempts=stats.attempts,
                    retries=stats.retries,
                ) from None
            else:
                if not self.retry.should_retry(raw.status):
                    log.debug("%s %s %s -> %d", self.backend, method, where, raw.status)
                    return raw
                retry_after = parse_retry_after(raw.headers.get("retry-after"))
                error_class = RateLimited if raw.status == 429 else BackendHTTPError
                detail = self.describe_body(raw.body)
                failure = error_class(
                    f"{self.backend}: HTTP {raw.status} from {where}{': ' + detail if detail else ''}",
                    status=raw.status,
                    attempts=stats.attempts,
                    retries=stats.retries,
                )
            if attempt >= self.retry.max_attempts:
                failure.attempts, failure.retries = stats.attempts, stats.retries
                failure.message = f"{failure.message} after {attempt} attempts"
                failure.args = (failure.message,)
                raise failure
            if retry_after is not None:
                delay = min(retry_after, self.retry.retry_after_cap)
            else:
                delay = self.retry.backoff(attempt, self._rng)
            stats.retries += 1
            log.debug(
                "%s %s %s failed (%s); retry %d in %.3fs",
                self.backend,
                method,
                where,
                failure,
                stats.retries,
                delay,
            )
            await self._sleep(delay)

    async def request_json(
        self,
        method: str,
        url: str,
        *,
        stats: CallStats,
        json: Any = None,
        headers: Mapping[str, str] | None = None,
        params: Mapping[str, str] | None = None,
    ) -> tuple[int, Any]:
        """(status, parsed body) of the first non-retryable answer.

        A 2xx body that is not JSON raises MalformedResponse; a non-2xx body that is
        not JSON comes back as ``None`` for the caller to describe.
        """
        raw = await self.exchange(method, url, stats=stats, json=json, headers=headers, params=params)
        try:
            return raw.status, jsonlib.loads(raw.body) if raw.body else None
        except (ValueError, RecursionError):
            if 200 <= raw.status < 300:
                raise MalformedResponse(
                    f"{self.backend}: {safe_url(url)} answered HTTP {raw.status} with a body that is "
                    "not JSON",
                    status=raw.status,
                    attempts=stats.attempts,
                    retries=stats.retries,
                ) from None
            return raw.status, None

    async def download(
        self,
        url: str,
        *,
        stats: CallStats,
        accept: tuple[str, ...] = MEDIA_TYPES,
        max_bytes: int | None = None,
        params: Mapping[str, str] | None = None,
    ) -> Downloaded:
        """Fetch an output URL under the host policy, size cap and deadline."""
        cap = max_bytes if max_bytes is not None else self.max_download_bytes
        try:
            async with asyncio.timeout(self.download_deadline):
                return await self._download(url, stats=stats, accept=accept, cap=cap, params=params)
        except TimeoutError:
            raise BackendTimeout(
                f"{self.backend}: download from {safe_url(url)} took longer than {self.download_deadline:g}s",
                attempts=stats.attempts,
                retries=stats.retries,
            ) from None

    async def _download(
        self,
        url: str,
        *,
        stats: CallStats,
        accept: tuple[str, ...],
        cap: int,
        params: Mapping[str, str] | None,
    ) -> Downloaded:
        current = url
        for _hop in range(self.max_redirects + 1):
            pinned = await self.host_policy.check(current)
            raw = await self.exchange(
                "GET", current, stats=stats, max_bytes=cap, accept=accept, params=params, pinned=pinned
            )
            params = None  # only the first hop carries explicit query parameters
            if 300 <= raw.status < 400 and raw.headers.get("location"):
                # Relative to the URL by name (raw.url may name the pinned address).
                current = urljoin(current, raw.headers["location"])
                continue
            if not 200 <= raw.status < 300:
                raise DownloadError(
                    f"{self.backend}: download from {safe_url(current)} failed with HTTP {raw.status}",
                    code="download-failed",
                    status=raw.status,
                    attempts=stats.attempts,
                    retries=stats.retries,
                )
            if not raw.body:  # a 200 with nothing in it is no output
                raise DownloadError(
                    f"{self.backend}: download from {safe_url(current)} returned an empty body",
                    code="download-failed",
                    status=raw.status,
                    attempts=stats.attempts,
                    retries=stats.retries,
                )
            stats.bytes_downloaded += len(raw.body)
            media = raw.media_type or sniff_media_type(raw.body)
            if media == "application/octet-stream":
                media = sniff_media_type(raw.body)
            return Downloaded(raw.body, media, safe_url(current))
        raise DownloadError(
            f"{self.backend}: download from {safe_url(url)} redirected more than {self.max_redirects} times",
            code="too-many-redirects",
            attempts=stats.attempts,
            retries=stats.retries,
        )


class HttpBackend(AsyncBackend):
    """What the HTTP adapters share: a checked endpoint URL, an :class:`HttpClient`
    (``self._http``, built by the adapter), a redacted repr and closing."""

    url: str
    _http: HttpClient

    @staticmethod
    def check_url(url: str, name: str, what: str) -> SplitResult:
        """The parts of an http(s) endpoint URL, or a UsageError naming ``what``."""
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise UsageError(f"{name}: the {what} must be http(s)://host…, got {safe_url(url)!r}")
        return parts

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, url={safe_url(self.url)!r})"

    async def aclose(self) -> None:
        await self._http.aclose()
