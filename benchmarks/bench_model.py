"""SmolVLA latency per action chunk on this machine: full 450M architecture, random weights, batch 1.

For 1 and 3 cameras (smolvla_base layout: 256x256 cameras upsampled to 512x512, 48 language tokens, 6-D state) in
float32 and bfloat16 it prints the median/min/max seconds of `predict_chunk`, the split into vision tower /
VLM prefix pass / 10 expert steps, the peak RSS during inference, the machine load during the run (load average
and the share of the CPUs other processes used while we measured), and the bf16-vs-float32 deviation of the same
weights. Each configuration runs in its own process so that its peak RSS is its own. The last line is JSON.

--modes eager compiled also measures the compiled policy (`SmolVLAPolicy.compile`) and reports its first call,
which compiles. --reference runs the reference implementation (LeRobot 0.4.4, benchmarks/bench_reference.py in the
.venv-reference that tools/setup_reference_venv.sh creates) right after ours for every camera count and dtype, and
prints the speed-up measured side by side on this machine; the published reference figures (peer-latency.md) were
taken on another CPU and are shown for context only.

--rtc also times real-time chunking (`predict_chunk` guided toward 25 previous actions with a delay of 10 ticks,
smolvla.policy.rtc): the guided chunk's median and its extra time over the unguided one. --size tiny measures the
tiny test architecture (smolvla.policy.tiny, chunk of 50) instead of the 450M one; --checkpoint DIR a trained
checkpoint (e.g. the shipped demo model, checkpoints/so101_cube_scratch) with its own weights, cameras and
tokenizer (--cameras and --size do not apply).

Usage: python benchmarks/bench_model.py [--repeats N] [--threads T] [--cameras 1 3] [--dtypes float32 bfloat16 auto]
       [--modes eager compiled] [--reference [PYTHON]] [--rtc] [--size full|tiny] [--checkpoint DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

from smolvla.model_dtype import DTYPE_CHOICES, resolve_dtype

#: Published reference latencies (LeRobot 0.4.4, peer-latency.md): 2-vCPU Sapphire Rapids (AMX), VLM bf16 or
#: fp32, expert fp32; seconds per chunk. The 1-camera bf16 row used 16 language tokens (81 prefix tokens).
PUBLISHED_REFERENCE_S = {(1, "bfloat16"): 2.24, (3, "bfloat16"): 4.53, (1, "float32"): 3.42, (3, "float32"): 7.53}
BENCHMARKS = Path(__file__).resolve().parent
REFERENCE_PYTHON = BENCHMARKS.parent / ".venv-reference" / "bin" / "python"


def _cpu_busy_jiffies() -> tuple[int, int]:
    """(busy, total) jiffies of all CPUs from /proc/stat."""
    fields = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = fields[3] + fields[4]
    return sum(fields) - idle, sum(fields)


class LoadMeter:
    """Share of the machine's CPU time used by other processes between start() and stop()."""

    def start(self) -> None:
        self.busy0, self.total0 = _cpu_busy_jiffies()
        self.own0 = sum(os.times()[:2])
        self.wall0 = time.perf_counter()

    def stop(self) -> float:
        busy, total = _cpu_busy_jiffies()
        own = sum(os.times()[:2]) - self.own0
        ticks = os.sysconf("SC_CLK_TCK")
        others = max(0.0, (busy - self.busy0) / ticks - own)
        capacity = (total - self.total0) / ticks
        return others / capacity if capacity > 0 else 0.0


def _reset_peak_rss() -> None:
    # Writing 5 to clear_refs resets VmHWM (Linux), so that the peak covers inference only, not model building.
    Path("/proc/self/clear_refs").write_text("5")


def _peak_rss_gib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 2**20
    return float("nan")


def run_one(
    cameras: int,
    dtype: str,
    repeats: int,
    threads: int,
    check_bf16: bool,
    compile: bool = False,
    rtc: bool = False,
    size: str = "full",
    checkpoint: str | None = None,
) -> dict:
    """Measure one configuration in this process (a checkpoint: all its cameras, `cameras` is ignored)."""
    import numpy as np
    import torch

    from smolvla.policy import SmolVLAConfig, SmolVLAPolicy
    from smolvla.policy.tiny import make_tiny_tokenizer, tiny_config

    torch.set_num_threads(threads)
    t0 = time.perf_counter()
    if checkpoint:
        policy = SmolVLAPolicy.from_pretrained(checkpoint, dtype=dtype)
        config, size, cameras = policy.config, "checkpoint", len(policy.camera_names)
    else:
        base = SmolVLAConfig() if size == "full" else tiny_config(n_cameras=3, chunk_size=50)
        config = base.replace(camera_names=base.camera_names[:cameras], camera_shapes=base.camera_shapes[:cameras])
        # The real tokenizer is not downloaded: instructions are always padded to 48 tokens, so any tokenizer gives
        # the same amount of work.
        policy = SmolVLAPolicy.random(config, make_tiny_tokenizer(), dtype=dtype, seed=0)
    if compile:
        policy.compile()
    build_s = time.perf_counter() - t0
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, size=(256, 256, 3), dtype=np.uint8) for _ in range(cameras)]
    state = rng.normal(size=config.state_dim).astype(np.float32)
    instruction = "pick up the red cube and place it in the bowl"
    noise = torch.randn(1, config.chunk_size, config.max_action_dim, generator=torch.Generator().manual_seed(0))

    t0 = time.perf_counter()
    policy.predict_chunk(images, state, instruction, noise=noise)  # warm-up (allocator, oneDNN primitives)
    first_call_s = time.perf_counter() - t0
    _reset_peak_rss()
    meter = LoadMeter()
    meter.start()
    load_before = os.getloadavg()
    totals = []
    cpu0 = sum(os.times()[:2])
    for _ in range(repeats):
        t = time.perf_counter()
        actions = policy.predict_chunk(images, state, instruction, noise=noise)
        totals.append(time.perf_counter() - t)
    cpu_per_chunk = (sum(os.times()[:2]) - cpu0) / repeats
    guided = []
    if rtc:
        previous = actions[25:]  # the second half of a chunk still queued, 10 ticks of delay
        policy.predict_chunk(images, state, instruction, noise=noise, previous_actions=previous, delay=10)
        cpu0 = sum(os.times()[:2])
        for _ in range(repeats):
            t = time.perf_counter()
            policy.predict_chunk(images, state, instruction, noise=noise, previous_actions=previous, delay=10)
            guided.append(time.perf_counter() - t)
        rtc_cpu_per_chunk = (sum(os.times()[:2]) - cpu0) / repeats

    # Split: the same work as predict_chunk, stage by stage.
    model = policy.model
    splits = {"vision": [], "prefix": [], "expert": []}
    for _ in range(max(1, repeats // 2)):
        pixels, mask, tokens, token_mask, state_t = policy.prepare(images, state, instruction)
        with torch.inference_mode():
            t = time.perf_counter()
            visual = model.embed_images(pixels[mask])
            t1 = time.perf_counter()
            prefix = model.assemble_prefix(visual, mask, tokens, token_mask, state_t)
            cache = model.build_cache(prefix)
            t2 = time.perf_counter()
            model.integrate(lambda x, tt, c=cache: model.cached_velocity(c, x, tt), noise)
            t3 = time.perf_counter()
        splits["vision"].append(t1 - t)
        splits["prefix"].append(t2 - t1)
        splits["expert"].append(t3 - t2)
    other_cpu = meter.stop()
    result = {
        "size": size,
        "cameras": cameras,
        "dtype": dtype,
        "threads": threads,
        "prefix_tokens": cameras * config.backbone.image_tokens + config.tokenizer_max_length + 1,
        "median_s": statistics.median(totals),
        "min_s": min(totals),
        "max_s": max(totals),
        "runs": len(totals),
        "cpu_s_per_chunk": cpu_per_chunk,
        "vision_s": statistics.median(splits["vision"]),
        "prefix_s": statistics.median(splits["prefix"]),
        "expert_s": statistics.median(splits["expert"]),
        "peak_rss_gib": _peak_rss_gib(),
        "loadavg_before": load_before[0],
        "loadavg_after": os.getloadavg()[0],
        "other_processes_cpu_share": other_cpu,
        "build_s": build_s,
        "mode": "compiled" if compile else "eager",
        "first_call_s": first_call_s,
        "published_reference_s": PUBLISHED_REFERENCE_S.get((cameras, dtype)) if size == "full" else None,
        "rtc_median_s": statistics.median(guided) if guided else None,
        "rtc_cpu_s_per_chunk": rtc_cpu_per_chunk if guided else None,
    }
    if check_bf16:
        # Same weights and inputs in bfloat16: deviation of what the network adds to the noise, relative to its
        # spread (the float32 run is the reference).
        moved = (torch.as_tensor(actions) - noise[0, :, : config.action_dim]).numpy()
        policy.model.set_dtype(torch.bfloat16)
        bf16 = policy.predict_chunk(images, state, instruction, noise=noise)
        moved_bf16 = (torch.as_tensor(bf16) - noise[0, :, : config.action_dim]).numpy()
        result["bf16_vs_f32_max_rel_err"] = float(np.abs(moved_bf16 - moved).max() / moved.std())
    return result


def _table(rows: list[dict]) -> str:
    head = (
        "| cameras | dtype | mode | prefix tokens | median s | min s | max s | vision s | prefix s | 10 expert steps s "
        "| CPU s | first call s | peak RSS GiB | load avg | others' CPU | RTC s (extra) | RTC CPU s | reference here s "
        "| speed-up here | published ref s (other CPU) |"
    )
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for r in rows:
        ref = r.get("reference")
        here = f"{ref['median_s']:.2f} | **{ref['median_s'] / r['median_s']:.2f}x**" if ref else "- | -"
        guided = r.get("rtc_median_s")
        rtc = "- | -"
        if guided is not None:
            rtc = f"{guided:.3f} (+{guided - r['median_s']:.3f}) | {r['rtc_cpu_s_per_chunk']:.3f}"
        lines.append(
            f"| {r['cameras']} | {r['dtype']} | {r['mode']} | {r['prefix_tokens']} | {r['median_s']:.2f} | "
            f"{r['min_s']:.2f} | {r['max_s']:.2f} | {r['vision_s']:.2f} | {r['prefix_s']:.2f} | {r['expert_s']:.2f} | "
            f"{r['cpu_s_per_chunk']:.2f} | {r['first_call_s']:.1f} | {r['peak_rss_gib']:.2f} | "
            f"{r['loadavg_before']:.2f}->{r['loadavg_after']:.2f} | "
            f"{100 * r['other_processes_cpu_share']:.0f} % | {rtc} | {here} | {r['published_reference_s'] or '-'} |"
        )
    return "\n".join(lines)


def _last_json_line(cmd: list[str]) -> dict:
    out = subprocess.run(cmd, check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5, help="timed predict_chunk calls per configuration")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="torch intra-op threads")
    parser.add_argument("--cameras", type=int, nargs="+", default=[1, 3])
    parser.add_argument(
        "--dtypes",
        nargs="+",
        default=["float32", "bfloat16"],
        choices=DTYPE_CHOICES,
        help="auto: the dtype the policy node's dtype auto picks on this machine",
    )
    parser.add_argument("--modes", nargs="+", default=["eager"], choices=["eager", "compiled"])
    parser.add_argument(
        "--reference",
        nargs="?",
        const=str(REFERENCE_PYTHON),
        metavar="PYTHON",
        help="also time LeRobot 0.4.4 with this interpreter (default: .venv-reference/bin/python)",
    )
    parser.add_argument("--rtc", action="store_true", help="also time real-time chunking (guided sampling)")
    parser.add_argument("--size", choices=["full", "tiny"], default="full", help="450M or the tiny test model")
    parser.add_argument("--checkpoint", help="a trained checkpoint directory instead (its own cameras)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        cameras, dtype, mode = args.child.split(":")
        compile = mode == "compiled"
        # The compiled model has its weights frozen in: no dtype change after compiling.
        check = dtype == "float32" and not compile
        result = run_one(
            int(cameras), dtype, args.repeats, args.threads, check, compile, args.rtc, args.size, args.checkpoint
        )
        print(json.dumps(result))
        return 0
    args.dtypes = list(dict.fromkeys(resolve_dtype(d, "cpu").dtype for d in args.dtypes))
    if args.reference and args.checkpoint:
        parser.error("--reference compares random 450M weights: not with --checkpoint")
    if args.reference and not Path(args.reference).exists():
        parser.error(f"{args.reference} does not exist: run tools/setup_reference_venv.sh (or make bench-reference)")

    import torch

    cpuinfo = Path("/proc/cpuinfo").read_text()
    names = [line.split(":", 1)[1].strip() for line in cpuinfo.splitlines() if line.startswith("model name")]
    cpu = names[0] if names else platform.processor()
    machine = {
        "cpu": cpu,
        "cpus": os.cpu_count(),
        "avx512_bf16": "avx512_bf16" in cpuinfo,
        "amx_bf16": "amx_bf16" in cpuinfo,
        "torch": torch.__version__,
        "threads": args.threads,
        "python": platform.python_version(),
    }
    if args.checkpoint:
        model = f"checkpoint {args.checkpoint}, its weights and cameras"
    else:
        model = ("450M" if args.size == "full" else "tiny test architecture") + ", random weights"
    print(f"SmolVLA latency per chunk ({model}, batch 1, 10 steps) on {machine}")
    rows = []
    for dtype in args.dtypes:
        for cameras in [0] if args.checkpoint else args.cameras:
            config_rows = []
            for mode in args.modes:
                cmd = [sys.executable, __file__, "--child", f"{cameras}:{dtype}:{mode}", "--repeats", str(args.repeats)]
                cmd += ["--size", args.size] + (["--rtc"] if args.rtc else [])
                cmd += ["--checkpoint", args.checkpoint] if args.checkpoint else []
                print(f"measuring {cameras or 'all'} camera(s), {dtype}, {mode} ...", flush=True)
                config_rows.append(_last_json_line(cmd + ["--threads", str(args.threads)]))
            if args.reference:
                print(f"measuring the reference (LeRobot 0.4.4), {cameras} camera(s), {dtype} ...", flush=True)
                ref = _last_json_line(
                    [args.reference, str(BENCHMARKS / "bench_reference.py"), "--cameras", str(cameras)]
                    + ["--dtype", dtype, "--repeats", str(args.repeats), "--threads", str(args.threads)]
                )
                for row in config_rows:
                    row["reference"] = ref
            for row in config_rows:
                print(_table([row]).splitlines()[-1], flush=True)
            rows += config_rows
    print()
    print(_table(rows))
    bf16_errors = [r["bf16_vs_f32_max_rel_err"] for r in rows if "bf16_vs_f32_max_rel_err" in r]
    if bf16_errors:
        print(f"bf16 vs float32 (same weights/noise): max deviation {max(bf16_errors):.3%} of the output spread")
    print(json.dumps({"benchmark": "smolvla_model", "machine": machine, "results": rows}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
