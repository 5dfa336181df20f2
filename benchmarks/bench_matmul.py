"""What bounds a SmolVLA chunk on this CPU: matrix-product throughput per number format, and the work per chunk.

Times one linear layer of the vision tower's MLP (1024 patch tokens of 768 -> 3072, the shape that dominates a
chunk) in float32, bfloat16 and int8 with dynamic activation scales (torch.ao's quantized linear, per-tensor and
per-channel weight scales), and prints GFLOP/s for each. Then counts the floating-point work of one 450M chunk
(random weights, `torch.utils.flop_counter`) for the given camera counts, split vision tower / VLM prefix pass /
10 expert steps, and divides it by each rate: the time a chunk cannot beat on this machine with that number format
(every stage at the measured matrix-product rate, nothing else counted). Prints the CPU's bf16/int8 flags, the load
average and the share of the CPUs other processes used, and one JSON line.

Usage: python benchmarks/bench_matmul.py [--cameras 2 3] [--threads T] [--repeats N]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import warnings
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_model import LoadMeter  # noqa: E402

from smolvla.model_dtype import cpu_flags  # noqa: E402

TOKENS, WIDTH, HIDDEN = 1024, 768, 3072  # SigLIP in SmolVLM2-500M: 32 x 32 patches of a 512 x 512 image
FLAGS_SHOWN = ("avx2", "avx512f", "avx512_bf16", "avx512_vnni", "avx_vnni", "amx_bf16", "amx_int8", "bf16", "i8mm")


def _seconds_per_call(layer: nn.Module, x: torch.Tensor, repeats: int) -> float:
    with torch.inference_mode():
        layer(x)
        t = time.perf_counter()
        for _ in range(repeats):
            layer(x)
        return (time.perf_counter() - t) / repeats


def matmul_rates(repeats: int) -> dict[str, float]:
    """GFLOP/s of the vision MLP's first linear layer per number format."""
    from torch.ao.quantization import default_dynamic_qconfig, per_channel_dynamic_qconfig, quantize_dynamic

    torch.manual_seed(0)
    x = torch.randn(TOKENS, WIDTH)
    flop = 2 * TOKENS * WIDTH * HIDDEN
    layer = nn.Sequential(nn.Linear(WIDTH, HIDDEN))
    rates = {"float32": flop / _seconds_per_call(layer, x, repeats) / 1e9}
    bf16 = nn.Sequential(nn.Linear(WIDTH, HIDDEN)).to(torch.bfloat16)
    rates["bfloat16"] = flop / _seconds_per_call(bf16, x.to(torch.bfloat16), max(1, repeats // 4)) / 1e9
    with warnings.catch_warnings():  # torch.ao.quantization announces its move to torchao
        warnings.simplefilter("ignore")
        for name, qconfig in (
            ("int8 dynamic", default_dynamic_qconfig),
            ("int8 dynamic per-channel", per_channel_dynamic_qconfig),
        ):
            quantized = quantize_dynamic(layer, {nn.Linear: qconfig})
            rates[name] = flop / _seconds_per_call(quantized, x, repeats) / 1e9
    return rates


def chunk_gflop(cameras: int) -> dict[str, float]:
    """Floating-point work (GFLOP) of one chunk of the 450M architecture, per stage."""
    import numpy as np
    from torch.utils.flop_counter import FlopCounterMode

    from smolvla.policy import SmolVLAConfig, SmolVLAPolicy
    from smolvla.policy.tiny import make_tiny_tokenizer

    base = SmolVLAConfig()
    config = base.replace(camera_names=base.camera_names[:cameras], camera_shapes=base.camera_shapes[:cameras])
    policy = SmolVLAPolicy.random(config, make_tiny_tokenizer(), dtype="float32", seed=0)
    model = policy.model
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, size=(256, 256, 3), dtype=np.uint8) for _ in range(cameras)]
    state = rng.normal(size=config.state_dim).astype(np.float32)
    noise = torch.randn(1, config.chunk_size, config.max_action_dim, generator=torch.Generator().manual_seed(0))
    pixels, mask, tokens, token_mask, state_t = policy.prepare(images, state, "pick up the cube")
    work = {}
    with torch.inference_mode():
        with FlopCounterMode(display=False) as counter:
            visual = model.embed_images(pixels[mask])
        work["vision"] = counter.get_total_flops() / 1e9
        with FlopCounterMode(display=False) as counter:
            cache = model.build_cache(model.assemble_prefix(visual, mask, tokens, token_mask, state_t))
        work["prefix"] = counter.get_total_flops() / 1e9
        with FlopCounterMode(display=False) as counter:
            model.integrate(lambda x, t: model.cached_velocity(cache, x, t), noise)
        work["expert"] = counter.get_total_flops() / 1e9
    work["total"] = sum(work.values())
    return work


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cameras", type=int, nargs="+", default=[2, 3])
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="torch intra-op threads")
    parser.add_argument("--repeats", type=int, default=20, help="timed calls per number format")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    cpuinfo = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    names = [line.split(":", 1)[1].strip() for line in cpuinfo.splitlines() if line.startswith("model name")]
    flags = cpu_flags() or frozenset()
    machine = {
        "cpu": names[0] if names else "unknown",
        "cpus": os.cpu_count(),
        "flags": [f for f in FLAGS_SHOWN if f in flags],
        "torch": torch.__version__,
        "threads": args.threads,
    }
    print(f"matrix products and work per chunk on {machine}", flush=True)
    meter = LoadMeter()
    meter.start()
    load_before = os.getloadavg()[0]
    rates = matmul_rates(args.repeats)
    others = meter.stop()
    load = f"load average {load_before:.2f}->{os.getloadavg()[0]:.2f}, other processes {100 * others:.0f} % of the CPUs"
    print(f"linear {TOKENS}x{WIDTH} -> {HIDDEN} ({load}):")
    for name, rate in rates.items():
        print(f"  {name:26s} {rate:7.1f} GFLOP/s  ({rate / rates['float32']:.2f}x float32)")
    work = {cameras: chunk_gflop(cameras) for cameras in args.cameras}
    print("| cameras | GFLOP vision / prefix / expert = total | " + " | ".join(f"bound {n} s" for n in rates) + " |")
    print("|---|---|" + "---|" * len(rates))
    for cameras, w in work.items():
        split = f"{w['vision']:.0f} / {w['prefix']:.0f} / {w['expert']:.0f} = {w['total']:.0f}"
        bounds = " | ".join(f"{w['total'] / rate:.2f}" for rate in rates.values())
        print(f"| {cameras} | {split} | {bounds} |")
    print(
        json.dumps(
            {
                "benchmark": "smolvla_matmul",
                "machine": machine,
                "gflop_per_s": rates,
                "chunk_gflop": work,
                "loadavg_before": load_before,
                "other_processes_cpu_share": others,
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
