"""Can a record's input images (seed, mask, reference) still be fetched?

Decided at audit time by trying, bounded: every http(s) URL a request used is fetched
once per run through the backends' downloader (host policy, size cap, deadline, a
couple of retries). Inline data (base64, data URIs) is always available; a bare UUID
names an image hosted by the backend itself, which only the backend can resolve, so
it is taken as available and left to the replay.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Final

from ledger.backends.http import CallStats, HostPolicy, HttpClient, RetryPolicy, safe_url
from ledger.core.warnings import INPUTS_UNAVAILABLE, RecordWarning, make_warning
from ledger.errors import BackendError

#: Request fields that carry input images (Runware, A1111, ComfyUI-style names).
INPUT_KEYS: Final = frozenset(
    k.lower()
    for k in (
        "seedImage",
        "maskImage",
        "referenceImages",
        "referenceImage",
        "inputImage",
        "inputImages",
        "guideImage",
        "init_images",
        "mask",
        "image",
        "images",
        "frameImages",
        "inputImageUUID",
    )
)
_UUID: Final = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
_SKIP: Final = frozenset({"positiveprompt", "negativeprompt", "prompt", "negative_prompt", "infotext"})


def input_urls(params: Mapping[str, Any]) -> list[str]:
    """Every http(s) input image URL in ``params`` (nested ``inputs``, ControlNet, …)."""
    found: dict[str, None] = {}
    for value in _input_values(params, 0):
        if isinstance(value, str) and value.strip().lower().startswith(("http://", "https://")):
            found[value.strip()] = None
    return list(found)


def _input_values(value: Any, depth: int, under_input: bool = False) -> Iterator[Any]:
    if depth > 6:
        return
    if isinstance(value, Mapping):
        for key, item in value.items():
            lowered = str(key).lower()
            if lowered in _SKIP:
                continue
            yield from _input_values(item, depth + 1, lowered in INPUT_KEYS)
    elif isinstance(value, list | tuple):
        for item in value[:64]:
            yield from _input_values(item, depth + 1, under_input)
    elif under_input:
        yield value


def is_backend_hosted(value: str) -> bool:
    return bool(_UUID.match(value.strip()))


@dataclass(frozen=True)
class InputStatus:
    url: str  # redacted
    available: bool
    detail: str = ""


class InputChecker:
    """Fetch each input URL at most once per run; concurrent askers share the fetch."""

    def __init__(
        self,
        *,
        timeout: float = 15.0,
        max_bytes: int = 32 * 1024 * 1024,
        allow_loopback: bool = False,
        allow_private: bool = False,
    ) -> None:
        self._http = HttpClient(
            backend="inputs",
            timeout=timeout,
            retry=RetryPolicy(max_attempts=2, base_delay=0.2, max_delay=1.0),
            host_policy=HostPolicy(allow_loopback=allow_loopback, allow_private=allow_private),
            max_download_bytes=max_bytes,
            download_deadline=timeout * 2,
        )
        self._seen: dict[str, asyncio.Future[InputStatus]] = {}

    async def aclose(self) -> None:
        await self._http.aclose()

    async def check(self, url: str) -> InputStatus:
        future = self._seen.get(url)
        if future is None:
            future = asyncio.get_running_loop().create_future()
            self._seen[url] = future
            try:
                status = await self._fetch(url)
            except BaseException as exc:  # cancelled: let the next asker try again
                del self._seen[url]
                future.cancel()
                raise exc
            future.set_result(status)
            return status
        return await asyncio.shield(future)

    async def _fetch(self, url: str) -> InputStatus:
        shown = safe_url(url)
        try:
            await self._http.download(url, stats=CallStats())
        except BackendError as exc:
            return InputStatus(shown, False, f"{shown}: {getattr(exc, 'code', 'error')}")
        return InputStatus(shown, True)

    async def warning_for(self, params: Mapping[str, Any]) -> RecordWarning | None:
        """``inputs-unavailable`` when any input URL of ``params`` cannot be fetched."""
        urls = input_urls(params)
        if not urls:
            return None
        statuses = await asyncio.gather(*(self.check(u) for u in urls))
        missing = [s.detail for s in statuses if not s.available]
        if not missing:
            return None
        return make_warning(INPUTS_UNAVAILABLE, "; ".join(missing))
