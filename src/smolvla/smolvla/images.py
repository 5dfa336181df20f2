"""Camera images from their wire form (sensor_msgs/Image fields, CompressedImage bytes) to HxWx3 uint8 RGB arrays.

cv_bridge is not available without a ROS install, and the conversion is small enough to own: raw images are read
row by row honouring `step` (rows may be padded), colour order and alpha are normalised to RGB, JPEG and PNG are
decoded with Pillow. Anything else is refused with an ImageConversionError that says what was wrong, never with a
crash or a silently wrong picture. Plain Python: the policy node passes the message fields in.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass

import numpy as np
from PIL import Image

#: Raw encodings understood (sensor_msgs/image_encodings names) -> (channels, index of R, G, B in a pixel).
RAW_ENCODINGS: dict[str, tuple[int, tuple[int, int, int]]] = {
    "rgb8": (3, (0, 1, 2)),
    "bgr8": (3, (2, 1, 0)),
    "rgba8": (4, (0, 1, 2)),
    "bgra8": (4, (2, 1, 0)),
    "mono8": (1, (0, 0, 0)),
}

#: Compressed formats understood, as Pillow names them.
COMPRESSED_FORMATS = ("JPEG", "PNG")

#: Largest image accepted (pixels). Refuses absurd headers before allocating for them; 4096x4096 is above any
#: camera this policy is used with.
MAX_PIXELS = 4096 * 4096


class ImageConversionError(ValueError):
    """The image cannot be converted; the message says why."""


def _check_size(height: int, width: int, max_pixels: int) -> None:
    if height <= 0 or width <= 0:
        raise ImageConversionError(f"image size {width}x{height} is empty")
    if height * width > max_pixels:
        raise ImageConversionError(f"image size {width}x{height} exceeds the limit of {max_pixels} pixels")


def raw_to_rgb(
    encoding: str,
    height: int,
    width: int,
    step: int,
    data: bytes | bytearray | memoryview | np.ndarray,
    *,
    max_pixels: int = MAX_PIXELS,
) -> np.ndarray:
    """Convert a raw image (the fields of sensor_msgs/Image) to a new (height, width, 3) uint8 RGB array.

    step is the length of one row in bytes and may exceed width * channels (padding is skipped). Every 8-bit
    encoding is byte-order independent, so is_bigendian does not matter. Raises ImageConversionError for an
    unsupported encoding, an empty or oversized image, a step shorter than a row, or too little data.
    """
    key = encoding.strip().lower()
    if key not in RAW_ENCODINGS:
        raise ImageConversionError(
            f"unsupported encoding {encoding!r}; supported: {', '.join(RAW_ENCODINGS)} (raw) or JPEG/PNG (compressed)"
        )
    channels, rgb_index = RAW_ENCODINGS[key]
    _check_size(height, width, max_pixels)
    row_bytes = width * channels
    if step < row_bytes:
        raise ImageConversionError(f"step {step} is shorter than a row of {width} {key} pixels ({row_bytes} bytes)")
    buffer = np.frombuffer(data, dtype=np.uint8)
    # The last row need not carry its padding.
    needed = step * (height - 1) + row_bytes
    if buffer.size < needed:
        raise ImageConversionError(
            f"{width}x{height} {key} image with step {step} needs {needed} bytes of data, got {buffer.size}"
        )
    if buffer.size < step * height:
        buffer = np.concatenate([buffer[:needed], np.zeros(step * height - needed, np.uint8)])
    rows = buffer[: step * height].reshape(height, step)[:, :row_bytes]
    pixels = rows.reshape(height, width, channels)
    if key == "mono8":
        return np.repeat(pixels, 3, axis=2)
    if key == "rgb8":
        return pixels.copy()  # a view would alias (and pin) the message's buffer
    return np.ascontiguousarray(pixels[:, :, list(rgb_index)])


def compressed_to_rgb(data: bytes | bytearray | memoryview, *, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """Decode JPEG or PNG bytes (sensor_msgs/CompressedImage data) to a (height, width, 3) uint8 RGB array.

    The format is recognised from the bytes themselves; CompressedImage.format is free text (e.g. "rgb8; jpeg
    compressed bgr8") and only informative. Grey, palette and alpha images are converted to RGB. Raises
    ImageConversionError for other formats, corrupt data or oversized images.
    """
    if len(data) == 0:
        raise ImageConversionError("compressed image has no data")
    try:
        with warnings.catch_warnings():
            # Our own size check below replaces Pillow's decompression-bomb warning.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(bytes(data)), formats=COMPRESSED_FORMATS)
            width, height = image.size
            _check_size(height, width, max_pixels)
            rgb = np.asarray(image.convert("RGB"), dtype=np.uint8)
    except ImageConversionError:
        raise
    except Image.UnidentifiedImageError as error:
        raise ImageConversionError(
            f"compressed image is not {' or '.join(COMPRESSED_FORMATS)} (first bytes {bytes(data[:8]).hex()})"
        ) from error
    except (OSError, ValueError, Image.DecompressionBombError) as error:
        raise ImageConversionError(f"cannot decode compressed image: {error}") from error
    return rgb


@dataclass(frozen=True)
class RawImage:
    """A raw camera frame as sensor_msgs/Image carries it (data may be the message's own buffer: no copy)."""

    encoding: str
    height: int
    width: int
    step: int
    data: bytes | bytearray | memoryview | np.ndarray

    def to_rgb(self, *, max_pixels: int = MAX_PIXELS) -> np.ndarray:
        """See raw_to_rgb."""
        return raw_to_rgb(self.encoding, self.height, self.width, self.step, self.data, max_pixels=max_pixels)


@dataclass(frozen=True)
class CompressedImage:
    """A compressed camera frame as sensor_msgs/CompressedImage carries it."""

    format: str
    data: bytes | bytearray | memoryview | np.ndarray

    def to_rgb(self, *, max_pixels: int = MAX_PIXELS) -> np.ndarray:
        """See compressed_to_rgb."""
        return compressed_to_rgb(self.data, max_pixels=max_pixels)
