"""Images of in-process pipelines: taken as decoded pixels on the caller's path, encoded
to PNG by the writer.

:func:`take` runs on the caller's path and only copies: a PIL image's raw bytes (or an
HxWxC numpy array's), never an encoder. :func:`png` runs in the spool writer and gives
the same bytes the hook used to encode on the caller's path (Pillow, ``compress_level=1``),
so a record's ``file_sha256`` does not depend on where the encoding ran. Images whose PNG
would carry more than their pixels (a palette, an ICC profile, a transparency key: PIL
``info``) or that are too large for one spool entry are encoded at once instead.
"""

from __future__ import annotations

import io
from typing import Any

from ledger.capture.entries import Output, Pixels

__all__ = ["MAX_RAW_BYTES", "encode_image", "png", "take"]

#: Modes whose raw bytes rebuild the same image with ``Image.frombytes`` alone.
RAW_MODES = frozenset({"L", "LA", "RGB", "RGBA"})
_CHANNEL_MODES = {1: "L", 3: "RGB", 4: "RGBA"}
#: Pixels above this are PNG-encoded on the caller's path: their base64 must fit a
#: spool entry (frames.MAX_ENTRY, 256 MiB) with room to spare.
MAX_RAW_BYTES = 64 * 1024 * 1024


def encode_image(image: Any) -> bytes:
    """PNG bytes of a PIL image, as the hook has always written them."""
    buffer = io.BytesIO()
    image.save(buffer, "PNG", compress_level=1)  # fast: fingerprints hash decoded pixels
    return buffer.getvalue()


def take(image: Any) -> Output | None:
    """What to spool for one output image: its pixels (a copy, so the caller may change
    the image at once), PNG bytes for an image raw bytes cannot rebuild, or None for
    what is not an image (latents, tensors on a device)."""
    from PIL import Image

    if isinstance(image, Image.Image):
        width, height = image.size
        if not width or not height:  # no pixels to keep: the record is stored without them
            return None
        if image.mode in RAW_MODES and not image.info and width * height * len(image.mode) <= MAX_RAW_BYTES:
            return Output(pixels=Pixels(image.mode, width, height, image.tobytes()))
        return Output(data=encode_image(image))
    try:
        import numpy as np

        array = np.asarray(image)
    except Exception:  # a tensor on a device, latents, …
        return None
    if array.ndim != 3 or array.shape[-1] not in _CHANNEL_MODES or array.dtype.kind not in "biuf":
        return None
    height, width, channels = array.shape
    if not width or not height:
        return None
    if array.nbytes > MAX_RAW_BYTES:
        data = png(Pixels(_CHANNEL_MODES[channels], width, height, array.tobytes(), array.dtype.str))
        return Output(data=data)
    return Output(pixels=Pixels(_CHANNEL_MODES[channels], width, height, array.tobytes(), array.dtype.str))


def png(pixels: Pixels) -> bytes:
    """The PNG of ``pixels``. Raises ValueError for pixels that do not make an image."""
    import numpy as np
    from PIL import Image

    if pixels.mode not in RAW_MODES:
        raise ValueError(f"pixels of mode {pixels.mode!r} are not spooled raw")
    size = (pixels.width, pixels.height)
    if pixels.dtype == "|u1":
        return encode_image(Image.frombytes(pixels.mode, size, pixels.data))
    try:
        dtype = np.dtype(pixels.dtype)
    except TypeError:
        dtype = None
    if dtype is None or dtype.kind not in "biuf":
        raise ValueError(f"pixels of dtype {pixels.dtype!r} are not an image")
    channels = len(pixels.mode)
    array = np.frombuffer(pixels.data, dtype=dtype).reshape(pixels.height, pixels.width, channels)
    # The conversion diffusers' own numpy_to_pil makes, as the hook always did.
    array = (np.clip(array, 0.0, 1.0) * 255).round().astype(np.uint8)
    return encode_image(Image.fromarray(array.squeeze(-1) if channels == 1 else array))
