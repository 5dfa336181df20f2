import array
import io

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from smolvla.images import ImageConversionError, compressed_to_rgb, raw_to_rgb


def encode_raw(rgb: np.ndarray, encoding: str, padding: int) -> tuple[int, bytes]:
    """The wire form a camera driver would produce: pixels in the encoding's order, rows padded to `step`."""
    if encoding == "mono8":
        pixels = rgb[:, :, :1]
    else:
        alpha = np.full(rgb.shape[:2] + (1,), 77, np.uint8)
        order = {"rgb8": rgb, "bgr8": rgb[:, :, ::-1]}
        order["rgba8"] = np.concatenate([rgb, alpha], axis=2)
        order["bgra8"] = np.concatenate([rgb[:, :, ::-1], alpha], axis=2)
        pixels = order[encoding]
    height, width, channels = pixels.shape
    step = width * channels + padding
    rows = np.full((height, step), 0xEE, np.uint8)  # padding bytes must never leak into the picture
    rows[:, : width * channels] = pixels.reshape(height, -1)
    return step, rows.tobytes()


@settings(max_examples=60, deadline=None)
@given(
    height=st.integers(1, 12),
    width=st.integers(1, 12),
    padding=st.integers(0, 9),
    encoding=st.sampled_from(["rgb8", "bgr8", "rgba8", "bgra8", "mono8"]),
    seed=st.integers(0, 2**16),
)
def test_raw_encodings_round_trip_with_row_padding(height, width, padding, encoding, seed):
    rgb = np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)
    if encoding == "mono8":
        rgb[:, :, 1] = rgb[:, :, 2] = rgb[:, :, 0]
    step, data = encode_raw(rgb, encoding, padding)
    out = raw_to_rgb(encoding, height, width, step, data)
    assert out.shape == (height, width, 3) and out.dtype == np.uint8 and out.flags.c_contiguous
    np.testing.assert_array_equal(out, rgb)


def test_raw_accepts_rclpy_array_and_last_row_without_padding():
    rgb = np.arange(2 * 3 * 3, dtype=np.uint8).reshape(2, 3, 3)
    step, data = encode_raw(rgb, "bgr8", padding=4)
    trimmed = array.array("B", data[: step + 9])  # rclpy hands uint8[] over as array.array
    np.testing.assert_array_equal(raw_to_rgb("BGR8", 2, 3, step, trimmed), rgb)


def test_raw_output_does_not_alias_the_message_buffer():
    data = bytearray(np.zeros((2, 2, 3), np.uint8).tobytes())
    out = raw_to_rgb("rgb8", 2, 2, 6, data)
    data[0] = 255
    assert out[0, 0, 0] == 0


@pytest.mark.parametrize(
    "args, message",
    [
        (("mono16", 2, 2, 4, bytes(8)), "unsupported encoding 'mono16'; supported: rgb8, bgr8"),
        (("bayer_rggb8", 2, 2, 2, bytes(4)), "unsupported encoding"),
        (("rgb8", 0, 2, 6, b""), "empty"),
        (("rgb8", 2, 2, 5, bytes(12)), "step 5 is shorter than a row of 2 rgb8 pixels (6 bytes)"),
        (("rgb8", 2, 2, 6, bytes(11)), "needs 12 bytes of data, got 11"),
        (("rgb8", 5000, 5000, 15000, b""), "exceeds the limit"),
    ],
)
def test_raw_rejects_bad_images_with_a_reason(args, message):
    with pytest.raises(ImageConversionError, match=message.replace("(", r"\(").replace(")", r"\)")):
        raw_to_rgb(*args)


def encode(image: Image.Image, fmt: str) -> bytes:
    out = io.BytesIO()
    image.save(out, format=fmt)
    return out.getvalue()


def test_png_decodes_exactly_in_any_mode():
    rgb = np.random.default_rng(1).integers(0, 256, (9, 7, 3), dtype=np.uint8)
    np.testing.assert_array_equal(compressed_to_rgb(encode(Image.fromarray(rgb), "PNG")), rgb)
    rgba = Image.fromarray(np.dstack([rgb, np.full((9, 7), 200, np.uint8)]))
    np.testing.assert_array_equal(compressed_to_rgb(encode(rgba, "PNG")), rgb)
    grey = compressed_to_rgb(encode(Image.fromarray(rgb[:, :, 0]), "PNG"))
    np.testing.assert_array_equal(grey, np.repeat(rgb[:, :, :1], 3, axis=2))


def test_jpeg_decodes_to_rgb_with_the_right_colours():
    # Large flat patches survive JPEG nearly unchanged; a red/blue swap would be off by ~255.
    rgb = np.zeros((32, 32, 3), np.uint8)
    rgb[:, :16] = (220, 30, 40)
    rgb[:, 16:] = (20, 40, 230)
    out = compressed_to_rgb(memoryview(encode(Image.fromarray(rgb), "JPEG")))
    assert out.shape == (32, 32, 3)
    error = np.abs(out.astype(int) - rgb.astype(int))
    # Away from the edge between the patches, where chroma subsampling blurs the colours.
    assert error[:, :12].max() < 12 and error[:, 20:].max() < 12


@pytest.mark.parametrize(
    "data, message",
    [
        (b"", "no data"),
        (b"not an image at all", "is not JPEG or PNG"),
        (encode(Image.new("RGB", (4, 4)), "BMP"), "is not JPEG or PNG"),
    ],
)
def test_compressed_rejects_other_formats(data, message):
    with pytest.raises(ImageConversionError, match=message):
        compressed_to_rgb(data)


def test_compressed_rejects_truncated_and_oversized_images():
    jpeg = encode(Image.fromarray(np.full((64, 64, 3), 128, np.uint8)), "JPEG")
    with pytest.raises(ImageConversionError, match="cannot decode"):
        compressed_to_rgb(jpeg[: len(jpeg) // 2])
    with pytest.raises(ImageConversionError, match="exceeds the limit of 100 pixels"):
        compressed_to_rgb(jpeg, max_pixels=100)
