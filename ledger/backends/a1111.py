"""AUTOMATIC1111 / Forge WebUI adapter (``/sdapi/v1/txt2img`` and ``img2img``).

A replay posts the stored payload with the stored seed, ``batch_size`` set to the
number of outputs wanted, and the checkpoint pinned through
``override_settings.sd_model_checkpoint``. The seeds actually used are read from the
response's ``info`` (a JSON *string*: ``all_seeds``, ``all_subseeds``,
``index_of_first_image``…), never derived. Images come back base64-encoded.

Records imported from PNGs carry A1111 *infotext* ("Steps: 20, Sampler: …, Seed: …")
rather than an API payload; :func:`a1111_payload` turns either into a payload.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import httpx

from ledger.backends.base import (
    AuthenticationError,
    BackendHTTPError,
    DownloadError,
    GeneratedOutput,
    GenerationRequest,
    GenerationResult,
    MalformedResponse,
    TaskFailed,
    UnsupportedRequest,
    request_from_params,
    sniff_media_type,
)
from ledger.backends.environments import ServerProbe, a1111_from_info, a1111_from_sysinfo
from ledger.backends.http import (
    DEFAULT_MAX_DOWNLOAD_BYTES,
    DEFAULT_MAX_RESPONSE_BYTES,
    CallStats,
    HttpBackend,
    HttpClient,
    RetryPolicy,
    Secret,
    safe_url,
)
from ledger.core import infotext as core_infotext
from ledger.core.records import utcnow
from ledger.core.seeds import check_seed_for_backend, parse_seed
from ledger.errors import InvalidSeedError

__all__ = [
    "DEFAULT_URL",
    "A1111Backend",
    "a1111_payload",
    "forge_backend",
    "request_from_a1111",
]

DEFAULT_URL = "http://127.0.0.1:7860"

# Infotext key -> payload field and type (A1111 create_infotext / infotext_utils).
_INFOTEXT_FIELDS: dict[str, tuple[str, type]] = {
    "Prompt": ("prompt", str),
    "Negative prompt": ("negative_prompt", str),
    "Steps": ("steps", int),
    "Sampler": ("sampler_name", str),
    "Schedule type": ("scheduler", str),
    "CFG scale": ("cfg_scale", float),
    "Seed": ("seed", int),
    "Size-1": ("width", int),
    "Size-2": ("height", int),
    "Variation seed": ("subseed", int),
    "Variation seed strength": ("subseed_strength", float),
    "Seed resize from-1": ("seed_resize_from_w", int),
    "Seed resize from-2": ("seed_resize_from_h", int),
    "Denoising strength": ("denoising_strength", float),
    "Eta": ("eta", float),
    "Hires upscale": ("hr_scale", float),
    "Hires upscaler": ("hr_upscaler", str),
    "Hires steps": ("hr_second_pass_steps", int),
    "Hires sampler": ("hr_sampler_name", str),
    "Hires schedule type": ("hr_scheduler", str),
}
# Infotext keys that are settings, replayed through override_settings.
_INFOTEXT_SETTINGS: dict[str, tuple[str, type]] = {
    "Model": ("sd_model_checkpoint", str),
    "VAE": ("sd_vae", str),
    "Clip skip": ("CLIP_stop_at_last_layers", int),
    "ENSD": ("eta_noise_seed_delta", int),
    "RNG": ("randn_source", str),
}
_INFOTEXT_MARKERS = frozenset({"Steps", "Sampler", "CFG scale", "Seed", "Size", "Size-1"})


def _convert(value: Any, kind: type, key: str) -> Any:
    if kind is str:
        return str(value)
    try:
        if kind is int:
            return int(str(value).strip())
        return float(str(value).strip())
    except ValueError:
        raise UnsupportedRequest(f"A1111 infotext {key!r}: {value!r} is not a number") from None


def a1111_payload(params: Mapping[str, Any]) -> dict[str, Any]:
    """A txt2img/img2img payload from a record's params.

    Accepts an API payload (returned as a copy), parsed infotext keys ("Steps",
    "Sampler", "Size-1"…), or ``{"parameters": "<infotext>"}`` as read from a PNG.
    """
    source: Mapping[str, Any] = params
    if isinstance(params.get("parameters"), str) and "prompt" not in params:
        source = core_infotext.parse_infotext(params["parameters"]).stated()
    if not _INFOTEXT_MARKERS & set(source):
        return dict(source)
    info = dict(source)
    size = core_infotext.image_size(info["Size"]) if isinstance(info.get("Size"), str) else None
    if size is not None:
        del info["Size"]
        info["Size-1"], info["Size-2"] = size
    payload: dict[str, Any] = {}
    settings: dict[str, Any] = {}
    for key, value in info.items():
        if key in _INFOTEXT_FIELDS:
            name, kind = _INFOTEXT_FIELDS[key]
            payload[name] = _convert(value, kind, key)
        elif key in _INFOTEXT_SETTINGS:
            name, kind = _INFOTEXT_SETTINGS[key]
            settings[name] = _convert(value, kind, key)
    if str(payload.get("scheduler", "")).lower() == "automatic":
        del payload["scheduler"]
    if "hr_scale" in payload or "hr_upscaler" in payload:
        payload["enable_hr"] = True
    if settings:
        payload["override_settings"] = settings
    return payload


def request_from_a1111(
    params: Mapping[str, Any],
    *,
    seed: int | None = None,
    model: str | None = None,
    number_results: int = 1,
) -> GenerationRequest:
    """A replay request from an A1111 record's params (payload or infotext).

    The seed defaults to the payload's own (unless it is -1, "random"), the model to
    its ``override_settings.sd_model_checkpoint``.
    """
    payload = a1111_payload(params)
    if seed is None and payload.get("seed") not in (None, -1, "-1"):
        try:
            seed = parse_seed(payload["seed"])
        except InvalidSeedError as exc:
            raise UnsupportedRequest(f"A1111 params: {exc}") from None
    settings = payload.get("override_settings")
    if model is None and isinstance(settings, Mapping):
        checkpoint = settings.get("sd_model_checkpoint")
        model = str(checkpoint) if checkpoint else None
    return request_from_params(
        "a1111",
        payload,
        seed=seed,
        model=model,
        number_results=number_results,
        task_type="imageInference",
    )


class A1111Backend(HttpBackend):
    """An AUTOMATIC1111 or Forge WebUI started with ``--api``."""

    protocol = "a1111"

    def __init__(
        self,
        url: str = DEFAULT_URL,
        *,
        name: str = "a1111",
        auth: tuple[str, str] | None = None,
        retry: RetryPolicy | None = None,
        timeout: float | httpx.Timeout = 600.0,
        max_download_bytes: int = DEFAULT_MAX_DOWNLOAD_BYTES,
        max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
        transport: httpx.AsyncBaseTransport | None = None,
        sleep: Callable[[float], Awaitable[Any]] | None = None,
        limits: httpx.Limits | None = None,
        **_ignored: Any,
    ) -> None:
        self.check_url(url, name, "WebUI URL")
        self.name = name
        self.url = url.rstrip("/")
        self.max_download_bytes = max_download_bytes
        self._auth_header: Secret | None = None
        secrets: tuple[str, ...] = ()
        if auth is not None:
            token = base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
            self._auth_header = Secret(f"Basic {token}")
            secrets = (auth[1], token)
        extra: dict[str, Any] = {"sleep": sleep} if sleep is not None else {}
        self._http = HttpClient(
            backend=name,
            timeout=timeout,
            retry=retry,
            max_download_bytes=max_download_bytes,
            max_response_bytes=max_response_bytes,
            secrets=secrets,
            transport=transport,
            limits=limits,
            **extra,
        )

        self._probe = ServerProbe(self._sysinfo, f"{name} /internal/sysinfo")

    async def _sysinfo(self) -> dict[str, Any]:
        headers = {"Authorization": self._auth_header.reveal()} if self._auth_header else None
        url = f"{self.url}/internal/sysinfo"
        status, body = await self._http.request_json("GET", url, stats=CallStats(), headers=headers)
        return a1111_from_sysinfo(body, self.name) if status == 200 else {}

    def _environment(self, info: Mapping[str, Any]) -> dict[str, Any]:
        """What the server told: the info's version, plus its sysinfo once fetched."""
        told, probed = a1111_from_info(info, self.name), self._probe.peek()
        if not (told or probed):
            return {}
        source = f"{self.name} " + (
            " and ".join(s for s, f in (("/internal/sysinfo", probed), ("info", told)) if f)
        )
        return {"source": source, **told, **probed}

    def build_payload(self, request: GenerationRequest) -> tuple[str, dict[str, Any]]:
        """(endpoint, payload) this request posts."""
        self.check_protocol(request)
        payload = a1111_payload(request.params)
        endpoint = "img2img" if payload.get("init_images") else "txt2img"
        if request.seed is not None:
            try:
                check_seed_for_backend(request.seed, "a1111")
            except InvalidSeedError as exc:
                raise UnsupportedRequest(str(exc), code="seed-out-of-range") from None
            payload["seed"] = request.seed
        strength = payload.get("subseed_strength")
        if isinstance(strength, int | float) and strength > 0 and payload.get("subseed") in (None, -1, "-1"):
            # A1111 would draw a fresh variation seed: the replay could not match.
            raise UnsupportedRequest(
                "the variation seed (subseed) was not captured; this output cannot be replayed",
                code="seed-not-captured",
            )
        payload["batch_size"] = request.number_results
        payload["n_iter"] = 1
        settings = dict(payload.get("override_settings") or {})
        if request.model and not settings.get("sd_model_checkpoint"):
            settings["sd_model_checkpoint"] = request.model
        if settings:
            payload["override_settings"] = settings
        payload["send_images"] = True
        payload["save_images"] = False
        return endpoint, payload

    async def generate(self, request: GenerationRequest) -> GenerationResult:
        started_at = utcnow()
        stats = CallStats()
        endpoint, payload = self.build_payload(request)
        self._probe.start()  # once per instance, beside this generation
        url = f"{self.url}/sdapi/v1/{endpoint}"
        headers = {"Authorization": self._auth_header.reveal()} if self._auth_header else None
        status, body = await self._http.request_json("POST", url, stats=stats, json=payload, headers=headers)
        if not 200 <= status < 300:
            raise self._error(status, body, endpoint, stats)
        if not isinstance(body, Mapping):
            raise MalformedResponse(f"{self.name}: {endpoint} answered with a non-object", status=status)
        images = body.get("images")
        if not isinstance(images, list) or not all(isinstance(i, str) for i in images):
            raise MalformedResponse(f"{self.name}: {endpoint} answer has no list of base64 images")
        info = self._info(body.get("info"), endpoint)
        first = info.get("index_of_first_image", 0)
        first = first if isinstance(first, int) and 0 <= first <= len(images) else 0
        all_seeds = _int_list(info.get("all_seeds"))
        all_subseeds = _int_list(info.get("all_subseeds"))
        raw_infotexts = info.get("infotexts")
        infotexts: list[Any] = raw_infotexts if isinstance(raw_infotexts, list) else []
        generated = images[first:]
        # Extensions append extra images (e.g. ControlNet maps) after the batch.
        count = min(len(generated), len(all_seeds)) if all_seeds else len(generated)
        if count == 0:
            raise MalformedResponse(f"{self.name}: {endpoint} returned no images")
        outputs = []
        for index in range(count):
            data = self._decode(generated[index], f"{self.name}: image {index}")
            seed = all_seeds[index] if index < len(all_seeds) else _maybe_seed(info.get("seed"))
            meta: dict[str, Any] = {
                key: info[key]
                for key in (
                    "sampler_name",
                    "scheduler",
                    "sd_model_name",
                    "sd_model_hash",
                    "sd_vae_name",
                    "subseed_strength",
                    "version",
                )
                if key in info
            }
            if index < len(all_subseeds):
                meta["subseed"] = all_subseeds[index]
            if index + first < len(infotexts):
                meta["infotext"] = infotexts[index + first]
            outputs.append(
                GeneratedOutput(
                    data=data,
                    seed=seed,
                    media_type=sniff_media_type(data),
                    index=index,
                    metadata=self._http.redact_value(meta),
                )
            )
        return GenerationResult(
            backend=self.name,
            request=request,
            task_uuid=None,
            outputs=tuple(outputs),
            attempts=stats.attempts,
            retries=stats.retries,
            elapsed_s=stats.elapsed,
            started_at=started_at,
            metadata={
                "url": safe_url(url),
                "extra_images": len(generated) - count,
                **({"environment": env} if (env := self._environment(info)) else {}),
            },
        )

    async def aclose(self) -> None:
        self._probe.cancel()
        await super().aclose()

    def _info(self, raw: Any, endpoint: str) -> dict[str, Any]:
        if isinstance(raw, Mapping):
            return dict(raw)
        if not isinstance(raw, str):
            raise MalformedResponse(f"{self.name}: {endpoint} answer has no info string")
        try:
            info = json.loads(raw)
        except ValueError:
            raise MalformedResponse(f"{self.name}: {endpoint} info is not a JSON string") from None
        if not isinstance(info, dict):
            raise MalformedResponse(f"{self.name}: {endpoint} info is not a JSON object")
        return info

    def _decode(self, encoded: str, where: str) -> bytes:
        if encoded.startswith("data:"):
            encoded = encoded.partition(",")[2]
        if len(encoded) // 4 * 3 > self.max_download_bytes + 3:
            raise DownloadError(
                f"{where} is larger than the {self.max_download_bytes}-byte cap", code="too-large"
            )
        try:
            data = base64.b64decode(encoded, validate=True)
        except (binascii.Error, ValueError):
            raise MalformedResponse(f"{where} is not valid base64") from None
        if not data:
            raise MalformedResponse(f"{where} is empty")
        return data

    def _error(self, status: int, body: Any, endpoint: str, stats: CallStats) -> Exception:
        where = f"{self.name}: {endpoint}"
        counts: dict[str, Any] = {"status": status, "attempts": stats.attempts, "retries": stats.retries}
        if status in (401, 403):
            return AuthenticationError(f"{where}: HTTP {status} (check the WebUI's --api-auth)", **counts)
        if status == 404:
            return BackendHTTPError(
                f"{where}: HTTP 404; is the WebUI running with --api at {safe_url(self.url)}?", **counts
            )
        if status == 422 and isinstance(body, Mapping) and isinstance(body.get("detail"), list):
            problems = []
            for item in body["detail"][:5]:
                if isinstance(item, Mapping):
                    loc = ".".join(str(p) for p in item.get("loc", []) if p != "body")
                    problems.append(f"{loc}: {item.get('msg', 'invalid')}")
            message = self._http.redact("; ".join(problems) or "invalid request")
            return TaskFailed(f"{where} rejected the request: {message}", code="validation", **counts)
        detail = self._http.describe(body)
        return BackendHTTPError(f"{where}: HTTP {status}{': ' + detail if detail else ''}", **counts)


def forge_backend(url: str = DEFAULT_URL, **options: Any) -> A1111Backend:
    """A Forge WebUI: the same API as AUTOMATIC1111."""
    options.setdefault("name", "forge")
    return A1111Backend(url, **options)


def _int_list(value: Any) -> list[int]:
    if not isinstance(value, list):
        return []
    out = []
    for item in value:
        seed = _maybe_seed(item)
        if seed is None:
            return []
        out.append(seed)
    return out


def _maybe_seed(value: Any) -> int | None:
    try:
        return parse_seed(value)
    except InvalidSeedError:
        return None
