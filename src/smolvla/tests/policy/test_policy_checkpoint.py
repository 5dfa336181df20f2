"""Checkpoints: the published layout, exact save/load round trip, clear mismatch errors, hub cache, backbone."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from smolvla.policy import CheckpointMismatchError, SmolVLAConfig, SmolVLAPolicy, make_tiny_checkpoint
from smolvla.policy.checkpoint import internal_to_published
from smolvla.policy.modeling import SmolVLAModel
from smolvla.policy.tiny import make_tiny_tokenizer, tiny_config
from smolvla.robot_interface import (
    INTERFACE_FILE,
    SO100_JOINT_NAMES,
    RobotInterface,
    RobotInterfaceError,
    so100_interface,
)

PUBLISHED_TSV = Path(__file__).parent / "data" / "smolvla_base-state-dict.tsv"
LM_HEAD = "model.vlm_with_expert.vlm.lm_head.weight"


def test_full_size_model_maps_onto_every_published_tensor():
    """The smolvla_base architecture, mapped to published names, gives exactly the released tensors and shapes
    (the unused lm_head excepted)."""
    rows = [line.split("\t") for line in PUBLISHED_TSV.read_text().splitlines()[1:]]
    published = {name: tuple(int(n) for n in shape.strip("()").split(",") if n.strip()) for name, shape, *_ in rows}
    with torch.device("meta"):
        model = SmolVLAModel(SmolVLAConfig())
    ours = {internal_to_published(k): tuple(v.shape) for k, v in model.state_dict().items()}
    assert set(published) - set(ours) == {LM_HEAD}
    assert set(ours) <= set(published)
    assert {k: published[k] for k in ours} == ours
    assert sum(int(np.prod(s)) for s in published.values()) == 450_046_176


def test_tiny_checkpoint_is_in_the_published_layout(tiny_dir):
    names = set(load_file(str(tiny_dir / "model.safetensors")))
    assert LM_HEAD in names
    assert "model.vlm_with_expert.lm_expert.layers.1.self_attn.k_proj.weight" in names
    assert "model.state_proj.bias" in names
    config = json.loads((tiny_dir / "config.json").read_text())
    assert config["type"] == "smolvla"
    assert config["input_features"]["observation.state"] == {"type": "STATE", "shape": [6]}
    pre = load_file(str(tiny_dir / "policy_preprocessor_step_5_normalizer_processor.safetensors"))
    assert set(pre) >= {"observation.state.mean", "observation.state.std", "action.mean", "action.std"}


def test_save_load_round_trip_is_exact(tiny_dir, tiny_policy, tmp_path, observation, noise):
    saved = tiny_policy.save_pretrained(tmp_path / "copy")
    loaded = SmolVLAPolicy.from_pretrained(str(saved))
    original = tiny_policy.model.state_dict()
    for name, value in loaded.model.state_dict().items():
        assert torch.equal(value, original[name]), name
    # Everything in the source file comes back, the unused lm_head included, bit for bit.
    src = load_file(str(tiny_dir / "model.safetensors"))
    dst = load_file(str(saved / "model.safetensors"))
    assert src.keys() == dst.keys() and all(torch.equal(src[k], dst[k]) for k in src)
    for stat in ("state_mean", "state_std", "action_mean", "action_std"):
        assert torch.equal(getattr(loaded.normalizer, stat), getattr(tiny_policy.normalizer, stat))
    assert loaded.config == tiny_policy.config
    images, state, instruction = observation(7)
    np.testing.assert_array_equal(
        loaded.predict_chunk(images, state, instruction, noise=noise),
        tiny_policy.predict_chunk(images, state, instruction, noise=noise),
    )


def _break(tiny_dir: Path, tmp_path: Path) -> Path:
    broken = tmp_path / "broken"
    shutil.copytree(tiny_dir, broken)
    tensors = load_file(str(broken / "model.safetensors"))
    del tensors["model.vlm_with_expert.lm_expert.layers.2.mlp.up_proj.weight"]
    tensors["model.vlm_with_expert.lm_expert.layers.9.mlp.up_proj.weight"] = torch.zeros(3)
    tensors["model.action_out_proj.bias"] = torch.zeros(5)
    save_file(tensors, str(broken / "model.safetensors"))
    return broken


def test_broken_checkpoint_fails_listing_the_names(tiny_dir, tmp_path):
    with pytest.raises(CheckpointMismatchError) as info:
        SmolVLAPolicy.from_pretrained(str(_break(tiny_dir, tmp_path)))
    err = info.value
    assert err.missing == ["model.vlm_with_expert.lm_expert.layers.2.mlp.up_proj.weight"]
    assert err.unexpected == ["model.vlm_with_expert.lm_expert.layers.9.mlp.up_proj.weight"]
    assert err.wrong_shape == ["model.action_out_proj.bias: checkpoint [5], model [8]"]
    for name in (*err.missing, *err.unexpected, "model.action_out_proj.bias"):
        assert name in str(err)


def test_checkpoint_without_statistics_or_with_wrong_ones_is_refused(tiny_dir, tmp_path):
    no_stats = tmp_path / "no_stats"
    shutil.copytree(tiny_dir, no_stats)
    (no_stats / "policy_postprocessor.json").unlink()
    with pytest.raises(FileNotFoundError, match="normalisation statistics"):
        SmolVLAPolicy.from_pretrained(str(no_stats))
    wrong = tmp_path / "wrong"
    shutil.copytree(tiny_dir, wrong)
    stats_file = wrong / "policy_postprocessor_step_0_unnormalizer_processor.safetensors"
    save_file({"action.mean": torch.zeros(4), "action.std": torch.ones(4)}, str(stats_file))
    with pytest.raises(ValueError, match="state/action sizes"):
        SmolVLAPolicy.from_pretrained(str(wrong))


def test_compiled_model_prefix_is_accepted(tiny_dir, tmp_path, tiny_policy):
    """LeRobot checkpoints of torch.compile'd policies name tensors `model._orig_mod.*`."""
    renamed = tmp_path / "compiled"
    shutil.copytree(tiny_dir, renamed)
    tensors = load_file(str(renamed / "model.safetensors"))
    renamed_tensors = {k.replace("model.", "model._orig_mod.", 1): v for k, v in tensors.items()}
    save_file(renamed_tensors, str(renamed / "model.safetensors"))
    loaded = SmolVLAPolicy.from_pretrained(str(renamed))
    assert torch.equal(loaded.model.state_proj.weight, tiny_policy.model.state_proj.weight)
    resaved = load_file(str(loaded.save_pretrained(tmp_path / "resaved") / "model.safetensors"))
    assert resaved.keys() == tensors.keys()  # written back under the published names


def test_hub_id_loads_from_the_cache_offline(tiny_dir, tmp_path, monkeypatch):
    """A hub id resolves through huggingface_hub's cache; offline, nothing else is tried."""
    import huggingface_hub.constants as hub_constants

    cache = tmp_path / "hub"
    repo = cache / "models--someone--tiny-smolvla"
    commit = "0" * 40
    shutil.copytree(tiny_dir, repo / "snapshots" / commit)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    monkeypatch.setattr(hub_constants, "HF_HUB_CACHE", str(cache))
    policy = SmolVLAPolicy.from_pretrained("someone/tiny-smolvla")
    assert policy.camera_names == ["observation.image", "observation.image2"]
    with pytest.raises(Exception, match="(?i)offline|cache|local"):
        SmolVLAPolicy.from_pretrained("someone/not-cached")
    with pytest.raises(FileNotFoundError, match="neither an existing directory nor a hub repo id"):
        SmolVLAPolicy.from_pretrained(str(tmp_path / "does" / "not" / "exist"))


def test_build_from_backbone_weights_alone(tmp_path):
    """A SmolVLM checkpoint with more text layers than SmolVLA keeps gives the VLM weights (first layers only);
    the expert is freshly initialised."""
    from transformers import SmolVLMForConditionalGeneration

    from smolvla.policy.modeling import build_backbone_hf_config

    config = tiny_config()
    deeper = config.replace(num_vlm_layers=config.backbone.text_layers)
    hf_config = build_backbone_hf_config(deeper)
    hf_config.text_config.num_hidden_layers = 6
    torch.manual_seed(1)
    vlm = SmolVLMForConditionalGeneration(hf_config)
    vlm.save_pretrained(tmp_path / "vlm")
    make_tiny_tokenizer().save_pretrained(str(tmp_path / "vlm"))
    with safe_open(str(tmp_path / "vlm" / "model.safetensors"), framework="pt") as f:
        assert "model.text_model.layers.5.mlp.up_proj.weight" in f.keys()  # noqa: SIM118

    policy = SmolVLAPolicy.from_backbone(str(tmp_path / "vlm"), config.replace(backbone=config.backbone))
    assert policy.config.backbone.text_layers == 6 and policy.config.num_vlm_layers == 4
    source = vlm.model.state_dict()
    for name, value in policy.model.vlm.state_dict().items():
        assert torch.equal(value, source[name]), name
    assert policy.model.expert.layers[0].self_attn.q_proj.weight.std().item() == pytest.approx(0.02, rel=0.2)
    assert policy.predict_chunk([np.zeros((32, 32, 3), np.uint8)], np.zeros(6), "go").shape == (10, 6)


def test_config_validation_and_lerobot_round_trip():
    default = SmolVLAConfig()
    sizes = (default.expert_hidden_size, default.expert_intermediate_size, default.backbone.image_tokens)
    assert sizes == (720, 2048, 64)
    assert [default.is_cross_attention_layer(i) for i in range(4)] == [False, True, False, True]
    assert SmolVLAConfig.from_lerobot_dict(json.loads(json.dumps(default.to_lerobot_dict()))) == default
    for bad, match in (
        ({"state_dim": 40}, "state_dim"),
        ({"num_vlm_layers": 33}, "num_vlm_layers"),
        ({"camera_names": ()}, "at least one camera"),
        ({"num_expert_layers": 8}, "fewer layers"),
        ({"pad_language_to": "left"}, "pad_language_to"),
        ({"resize_imgs_with_padding": (224, 224)}, "vision tower"),
        ({"n_action_steps": 60}, "n_action_steps"),
    ):
        with pytest.raises(ValueError, match=match):
            default.replace(**bad)
    with pytest.raises(ValueError, match="attention_mode"):
        SmolVLAConfig.from_lerobot_dict({**default.to_lerobot_dict(), "attention_mode": "self_attn"})


def test_the_robot_interface_travels_with_the_checkpoint(tmp_path):
    directory = make_tiny_checkpoint(
        tmp_path / "lerobot_units",
        n_cameras=2,
        camera_names=("observation.images.wrist", "observation.images.front"),
        units="lerobot_range",
        fps=15.0,
    )
    policy = SmolVLAPolicy.from_pretrained(directory)
    assert policy.robot_interface == RobotInterface(
        SO100_JOINT_NAMES,
        ("range_m100_100",) * 5 + ("range_0_100",),
        15.0,
        ("observation.images.wrist", "observation.images.front"),
    )
    assert SmolVLAPolicy.from_pretrained(policy.save_pretrained(tmp_path / "copy")).robot_interface == (
        policy.robot_interface
    )
    # Saving a policy that says nothing over a directory that did must not leave the old claim behind.
    policy.robot_interface = None
    policy.save_pretrained(tmp_path / "copy")
    assert not (tmp_path / "copy" / INTERFACE_FILE).exists()


def test_a_lerobot_checkpoint_has_no_robot_interface(tmp_path):
    assert SmolVLAPolicy.from_pretrained(make_tiny_checkpoint(tmp_path, units=None)).robot_interface is None


def test_an_interface_that_does_not_fit_the_model_is_refused(tiny_dir, tiny_policy, tmp_path):
    with pytest.raises(RobotInterfaceError, match=r"7 joints, but the model's state has 6"):
        tiny_policy.robot_interface = RobotInterface((*SO100_JOINT_NAMES, "extra"), ("radians",) * 7, 30.0, ())
    copy = tmp_path / "copy"
    shutil.copytree(tiny_dir, copy)
    so100_interface(("observation.images.front", "observation.image2")).save(copy)
    with pytest.raises(RobotInterfaceError, match=r"but the model's are \['observation.image', 'observation.image2'\]"):
        SmolVLAPolicy.from_pretrained(copy)
