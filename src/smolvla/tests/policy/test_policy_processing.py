"""Pre/post-processing as published: resize with padding, [-1, 1] pixels, tokens, normalisation files."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from smolvla.policy.processing import Normalizer, preprocess_images, resize_with_pad, tokenize
from smolvla.policy.tiny import make_tiny_tokenizer, tiny_config


def test_resize_with_pad_upsamples_wide_image_bilinearly_and_pads_the_top():
    """1x2 -> 4x4: ratio 0.5 gives a 2x4 image (bilinear, align_corners=False: edge samples clamp, inner ones
    interpolate at 1/4 and 3/4), placed at the bottom with 2 padding rows on top."""
    a, b = 0.2, 1.0
    out = resize_with_pad(torch.tensor([[[[a, b]]]]), 4, 4)
    row = [a, 0.75 * a + 0.25 * b, 0.25 * a + 0.75 * b, b]
    expected = torch.tensor([[0.0] * 4, [0.0] * 4, row, row])
    torch.testing.assert_close(out[0, 0], expected)


def test_resize_with_pad_pads_tall_images_on_the_left():
    image = torch.arange(4.0).reshape(1, 1, 4, 1) + 1
    out = resize_with_pad(image, 4, 4)
    assert (out[0, 0, :, :3] == 0).all()
    torch.testing.assert_close(out[0, 0, :, 3], torch.tensor([1.0, 2.0, 3.0, 4.0]))


def test_resize_with_pad_truncates_sizes_like_the_reference():
    """100x300 to 64x64: ratio 300/64, height int(100 / ratio) = 21, so 43 rows of padding at the top."""
    out = resize_with_pad(torch.ones(2, 3, 100, 300), 64, 64)
    assert out.shape == (2, 3, 64, 64)
    assert (out[:, :, :43] == 0).all() and (out[:, :, 43:] == 1).all()


def test_preprocess_images_maps_to_minus_one_one_and_masks_missing_cameras():
    config = tiny_config(n_cameras=3)
    wide = np.full((32, 64, 3), 255, np.uint8)
    wide[..., 1] = 0
    pixels, mask = preprocess_images([wide, None, np.zeros((64, 64, 3), np.uint8)], config)
    assert pixels.shape == (1, 3, 3, 64, 64) and mask.tolist() == [[True, False, True]]
    top, bottom = pixels[0, 0, :, :32], pixels[0, 0, :, 32:]
    assert (top == -1).all()  # padding 0 in [0, 1] is -1 for SigLIP
    torch.testing.assert_close(bottom[0], torch.ones(32, 64))
    torch.testing.assert_close(bottom[1], -torch.ones(32, 64))
    assert (pixels[0, 1] == -1).all() and (pixels[0, 2] == -1).all()


def test_tokenize_terminates_with_newline_truncates_and_right_pads():
    tokenizer = make_tiny_tokenizer()
    config = tiny_config()  # tokenizer_max_length 16, padded to max_length as in smolvla_base
    ids, mask = tokenize(tokenizer, ["pick up the cube", "pick up the cube\n", "word " * 40], config)
    assert ids.shape == (3, 16)
    assert torch.equal(ids[0], ids[1])  # the newline is added when missing
    n = int(mask[0].sum())
    assert tokenizer.decode(ids[0, :n]) == "pick up the cube\n"
    assert mask[0, :n].all() and not mask[0, n:].any()
    assert (ids[0, n:] == tokenizer.pad_token_id).all()
    assert mask[2].all()  # truncated at 16 tokens
    longest = tokenize(tokenizer, ["go", "pick up the cube"], config.replace(pad_language_to="longest"))[0]
    assert longest.shape[1] == n


def test_normalizer_files_round_trip_in_lerobot_layout(tmp_path):
    config = tiny_config(state_dim=3, action_dim=2)
    norm = Normalizer(
        torch.tensor([1.0, 2, 3]), torch.tensor([2.0, 2, 0]), torch.tensor([0.5, -1]), torch.tensor([3.0, 4])
    )
    norm.save(tmp_path, config)
    loaded = Normalizer.load(tmp_path, config)
    for name in ("state_mean", "state_std", "action_mean", "action_std"):
        assert torch.equal(getattr(loaded, name), getattr(norm, name))
    state = torch.tensor([3.0, 2.0, 3.0])
    torch.testing.assert_close(norm.normalize_state(state), torch.tensor([1.0, 0.0, 0.0]))
    action = torch.tensor([[2.0, 3.0]])
    torch.testing.assert_close(norm.unnormalize_action(norm.normalize_action(action)), action)
    with pytest.raises(ValueError, match="state/action sizes"):
        Normalizer.load(tmp_path, config.replace(action_dim=4))
    with pytest.raises(ValueError, match="non-finite"):
        Normalizer(torch.tensor([float("nan")]), torch.ones(1), torch.zeros(1), torch.ones(1))
