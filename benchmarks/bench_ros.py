"""ROS-side costs of the SmolVLA graph on this machine: executor tick jitter and the policy node's overhead.

1. Executor tick jitter at the control rate (default 30 Hz), measured from the executor's own ExecutorStatus stamps
   (one per tick) and, as the robot sees it, from the arrival times of its position commands: first with no policy
   computing, then while the policy node computes chunks with the full-size SmolVLA architecture (random weights,
   450M parameters) in another process. This process plays the robot (joint states following the commands) and
   a 256x256 camera.
2. ROS overhead of the policy node from chunk request to chunk publication, excluding the model's own time
   (round trip seen by a requester minus ActionChunk.inference_latency, which is the model's predict time): image
   conversion, observation assembly, DDS both ways, message building. Tiny checkpoint, 1 and 3 cameras of 512x512
   rgb8 published at 30 Hz by this process.

Every node is the installed executable started by smolvla_ros.launcher. Prints tables with the machine load
(os.getloadavg and the CPU share of other processes) and ends with one JSON line.

Usage: python benchmarks/bench_ros.py [--seconds 15] [--requests 40] [--model full|tiny] [--rate 30]
       FASTDDS_BUILTIN_TRANSPORTS=LARGE_DATA python benchmarks/bench_ros.py   (Fast DDS large-data transports)
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

# Own DDS domain on loopback, before rclpy creates a context, so concurrent runs and tests do not interfere.
os.environ.setdefault("ROS_DOMAIN_ID", str(100 + os.getpid() % 100))
os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"

import numpy as np  # noqa: E402
import psutil  # noqa: E402
import rclpy  # noqa: E402
from rclpy.executors import SingleThreadedExecutor  # noqa: E402
from rclpy.node import Node  # noqa: E402
from rclpy.qos import qos_profile_sensor_data  # noqa: E402
from sensor_msgs.msg import Image, JointState  # noqa: E402
from std_msgs.msg import Float64MultiArray  # noqa: E402

from smolvla.robot_interface import SO100_JOINT_NAMES  # noqa: E402
from smolvla_msgs.msg import ActionChunk, ChunkRequest, ExecutorStatus, PolicyStatus  # noqa: E402
from smolvla_ros.chunk_messages import seconds_to_time, time_to_seconds  # noqa: E402
from smolvla_ros.launcher import Launcher, NodeSpec, find_config, find_executable  # noqa: E402

JOINTS = list(SO100_JOINT_NAMES)
CAMERAS = ["/bench/camera0/image_raw", "/bench/camera1/image_raw", "/bench/camera2/image_raw"]


def percentiles(values: list[float]) -> dict[str, float]:
    """p50, p99, max and mean of values (milliseconds in, milliseconds out, rounded)."""
    ordered = sorted(values)
    p99 = ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]
    return {
        "p50": round(statistics.median(ordered), 3),
        "p99": round(p99, 3),
        "max": round(ordered[-1], 3),
        "mean": round(statistics.fmean(ordered), 3),
        "n": len(ordered),
    }


class CpuShare:
    """CPU time used by other processes than this one (share of all cores) between start() and stop()."""

    def start(self) -> None:
        self._cpu0 = psutil.cpu_times()
        self._own0 = sum(os.times()[:2])

    def stop(self) -> float:
        cpu = psutil.cpu_times()
        busy = (sum(cpu) - cpu.idle - cpu.iowait) - (sum(self._cpu0) - self._cpu0.idle - self._cpu0.iowait)
        total = sum(cpu) - sum(self._cpu0)
        own = sum(os.times()[:2]) - self._own0
        return max(0.0, busy - own) / total if total > 0 else 0.0


class Bench:
    """This process's side of the graph: a private rclpy context with one node playing robot, cameras and,
    for the overhead measurement, the executor."""

    def __init__(self) -> None:
        self.context = rclpy.Context()
        rclpy.init(context=self.context)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.node = Node("bench_ros", context=self.context)
        self.executor.add_node(self.node)
        self.position = np.zeros(6)
        self.command_times: list[float] = []
        self.status_stamps: list[float] = []
        self.chunks: dict[int, tuple[float, ActionChunk]] = {}
        self.no_chunk: dict[int, PolicyStatus] = {}
        self.images: list[tuple[object, Image]] = []
        self.state_pub = self.node.create_publisher(JointState, "/joint_states", qos_profile_sensor_data)
        self.request_pub = self.node.create_publisher(ChunkRequest, "/smolvla/chunk_request", 10)
        self.node.create_subscription(Float64MultiArray, "/forward_position_controller/commands", self.on_command, 10)
        self.node.create_subscription(ExecutorStatus, "/smolvla/executor_status", self.on_status, 10)
        self.node.create_subscription(ActionChunk, "/smolvla/action_chunk", self.on_chunk, 10)
        self.node.create_subscription(PolicyStatus, "/smolvla/policy_status", self.on_policy_status, 10)
        self.node.create_timer(0.02, self.publish_state)
        self.node.create_timer(1 / 30, self.publish_images)

    def set_cameras(self, count: int, size: int) -> None:
        """Publish `count` cameras of size x size rgb8 at 30 Hz (the message is built once, only stamps change)."""
        self.images = []
        for k in range(count):
            publisher = self.node.create_publisher(Image, CAMERAS[k], qos_profile_sensor_data)
            pixels = np.random.default_rng(k).integers(0, 256, (size, size, 3), dtype=np.uint8)
            msg = Image(height=size, width=size, encoding="rgb8", step=size * 3, data=pixels.tobytes())
            self.images.append((publisher, msg))

    def publish_state(self) -> None:
        msg = JointState(name=JOINTS, position=self.position.tolist())
        msg.header.stamp = seconds_to_time(time.time())
        self.state_pub.publish(msg)

    def publish_images(self) -> None:
        stamp = seconds_to_time(time.time())
        for publisher, msg in self.images:
            msg.header.stamp = stamp
            publisher.publish(msg)

    def on_command(self, msg: Float64MultiArray) -> None:
        self.command_times.append(time.perf_counter())
        self.position = np.array(msg.data)  # an ideal position-controlled arm

    def on_status(self, msg: ExecutorStatus) -> None:
        self.status_stamps.append(time_to_seconds(msg.header.stamp))

    def on_chunk(self, msg: ActionChunk) -> None:
        self.chunks[msg.request_id] = (time.perf_counter(), msg)

    def on_policy_status(self, msg: PolicyStatus) -> None:
        if not msg.ok:
            self.no_chunk[msg.request_id] = msg

    def spin_until(self, condition: Callable[[], bool], timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while not condition():
            if time.monotonic() > deadline:
                raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")
            self.executor.spin_once(timeout_sec=0.01)

    def spin_for(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            self.executor.spin_once(timeout_sec=0.01)

    def close(self) -> None:
        self.executor.shutdown()
        self.node.destroy_node()
        rclpy.shutdown(context=self.context)


def policy_spec(checkpoint: Path, cameras: int, **parameters: object) -> NodeSpec:
    return NodeSpec(
        "policy",
        (find_executable("policy_node"),),
        params_file=find_config("policy.yaml"),
        parameters={"checkpoint": str(checkpoint), "camera_topics": CAMERAS[:cameras], **parameters},
    )


def tick_jitter(bench: Bench, seconds: float, period: float) -> dict[str, dict[str, float]]:
    """Deviation of tick intervals from the period (ms), from status stamps and from command arrivals."""
    bench.status_stamps.clear()
    bench.command_times.clear()
    bench.spin_for(seconds)
    out = {}
    for name, times in (("executor_stamps", bench.status_stamps), ("command_arrivals", bench.command_times)):
        intervals = np.diff(np.asarray(times))
        out[name] = percentiles([abs(x - period) * 1e3 for x in intervals])
    return out


def measure_jitter(args, workdir: Path, log) -> dict:
    """Executor jitter with no policy computing, then while the policy computes in another process."""
    period = 1.0 / args.rate
    checkpoint = build_checkpoint(args.model, workdir, cameras=1, fps=args.rate)
    executor = NodeSpec(
        "executor",
        (find_executable("executor_node"),),
        params_file=find_config("executor.yaml"),
        parameters={"control_rate": float(args.rate), "status_rate": 0.0, "request_timeout": 5.0},
    )
    bench = Bench()
    bench.set_cameras(1, 256)
    result = {}
    try:
        with Launcher([executor], output=log):
            bench.spin_until(lambda: len(bench.status_stamps) > 30, 60, "executor ticks")
            meter = CpuShare()
            meter.start()
            result["policy_idle"] = tick_jitter(bench, args.seconds, period)
            result["policy_idle"]["others_cpu_share"] = round(meter.stop(), 3)
            with Launcher([policy_spec(checkpoint, 1, warmup=False)], output=log) as policy:
                bench.spin_until(lambda: bench.node.count_publishers("/smolvla/policy_status") > 0, 300, "the policy")
                process = psutil.Process(policy.pids()["policy"])
                bench.spin_for(2.0)  # the executor's pending request reaches the policy, which starts computing
                process.cpu_percent()
                meter.start()
                chunks_before = len(bench.chunks)
                result["policy_computing"] = tick_jitter(bench, args.seconds, period)
                result["policy_computing"]["others_cpu_share"] = round(meter.stop(), 3)
                result["policy_computing"]["policy_process_cpu_percent"] = round(process.cpu_percent(), 1)
                result["policy_computing"]["chunks_during_window"] = len(bench.chunks) - chunks_before
                latencies = [msg.inference_latency for _, msg in bench.chunks.values()]
                result["policy_computing"]["model_seconds_per_chunk"] = (
                    round(statistics.median(latencies), 2) if latencies else None
                )
    finally:
        bench.close()
    return result


def measure_overhead(args, workdir: Path, log) -> dict:
    """Request -> chunk round trip minus model time, for 1 and 3 cameras of 512x512.

    The policy gets a long maximum sample age (its history spans it too) here: this measures the cost of serving a
    request, not whether a loaded machine delivers every frame in time (requests without a chunk are counted apart).
    """
    result = {}
    for cameras in (1, 3):
        checkpoint = build_checkpoint("tiny", workdir, cameras=cameras, fps=30.0)
        bench = Bench()
        bench.set_cameras(cameras, 512)
        spec = policy_spec(checkpoint, cameras, max_sample_age=10.0)
        try:
            with Launcher([spec], output=log):
                bench.spin_until(lambda b=bench: b.node.count_publishers("/smolvla/policy_status") > 0, 120, "policy")
                bench.spin_for(1.0)  # frames in the policy's history
                overheads, round_trips, model, failed = [], [], [], []
                meter = CpuShare()
                meter.start()
                for request_id in range(1, args.requests + 6):
                    stamp = seconds_to_time(time.time())
                    sent = time.perf_counter()
                    bench.request_pub.publish(
                        ChunkRequest(request_id=request_id, observation_tick=request_id, capture_stamp=stamp)
                    )
                    bench.spin_until(
                        lambda r=request_id, b=bench: r in b.chunks or r in b.no_chunk, 30, f"answer to {request_id}"
                    )
                    if request_id in bench.no_chunk:
                        failed.append(bench.no_chunk[request_id].reason)
                    elif request_id > 5:  # the first answers warm caches up
                        received, chunk = bench.chunks[request_id]
                        round_trips.append((received - sent) * 1e3)
                        model.append(chunk.inference_latency * 1e3)
                        overheads.append((received - sent - chunk.inference_latency) * 1e3)
                    bench.spin_for(1 / 30)  # requests come at most once per tick
                others = meter.stop()
        finally:
            bench.close()
        if not overheads:
            raise RuntimeError(f"no chunk for any request with {cameras} cameras: {failed[:3]}")
        result[f"{cameras}_camera{'s' if cameras > 1 else ''}_512"] = {
            "overhead_ms": percentiles(overheads),
            "round_trip_ms": percentiles(round_trips),
            "model_ms": percentiles(model),
            "requests_without_chunk": len(failed),
            "reasons_without_chunk": sorted({reason[:100] for reason in failed}),
            "others_cpu_share": round(others, 3),
        }
    return result


def build_checkpoint(model: str, workdir: Path, cameras: int, fps: float) -> Path:
    """A tiny checkpoint, or the full-size SmolVLA architecture with random weights (the real tokenizer is not
    downloaded: the instruction is padded to 48 tokens anyway, so the work is the same); SO-100 joints in radians
    at `fps` (the executor's rate)."""
    from smolvla.policy import SmolVLAConfig, SmolVLAPolicy, make_tiny_checkpoint
    from smolvla.policy.tiny import make_tiny_tokenizer
    from smolvla.robot_interface import so100_interface

    directory = workdir / f"{model}_{cameras}_{fps:g}"
    if directory.exists():
        return directory
    if model == "tiny":
        return make_tiny_checkpoint(directory, n_cameras=cameras, chunk_size=50, fps=fps)
    base = SmolVLAConfig()
    config = base.replace(camera_names=base.camera_names[:cameras], camera_shapes=base.camera_shapes[:cameras])
    policy = SmolVLAPolicy.random(config, make_tiny_tokenizer(), seed=0)
    policy.robot_interface = so100_interface(config.camera_names, fps=fps)
    return policy.save_pretrained(directory)


def print_jitter(jitter: dict, rate: float) -> None:
    print(f"\nExecutor tick jitter at {rate:g} Hz: |interval - {1e3 / rate:.1f} ms| in ms")
    print(f"{'policy':<18}{'measured at':<18}{'p50':>8}{'p99':>8}{'max':>8}{'ticks':>7}  others' CPU")
    for phase, values in jitter.items():
        for where in ("executor_stamps", "command_arrivals"):
            s = values[where]
            print(
                f"{phase:<18}{where:<18}{s['p50']:>8.2f}{s['p99']:>8.2f}{s['max']:>8.2f}{s['n']:>7}"
                f"  {values['others_cpu_share']:.0%}"
            )
    computing = jitter["policy_computing"]
    print(
        f"policy process CPU during the window: {computing['policy_process_cpu_percent']:.0f}% "
        f"(100% = one core), chunks finished: {computing['chunks_during_window']}, "
        f"model time per chunk: {computing['model_seconds_per_chunk']} s"
    )


def print_overhead(overhead: dict) -> None:
    print("\nPolicy node overhead, request -> chunk received, minus model time (ms)")
    print(f"{'cameras':<18}{'p50':>8}{'p99':>8}{'max':>8}   round trip p50   model p50  no chunk  others' CPU")
    for name, values in overhead.items():
        o, trip, model = values["overhead_ms"], values["round_trip_ms"], values["model_ms"]
        print(
            f"{name:<18}{o['p50']:>8.2f}{o['p99']:>8.2f}{o['max']:>8.2f}   {trip['p50']:>10.2f}   {model['p50']:>9.2f}"
            f"  {values['requests_without_chunk']:>8}  {values['others_cpu_share']:.0%}"
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=15.0, help="length of each jitter window")
    parser.add_argument("--requests", type=int, default=40, help="chunk requests per camera count")
    parser.add_argument("--model", choices=("full", "tiny"), default="full", help="policy model for the jitter run")
    parser.add_argument("--rate", type=float, default=30.0, help="executor control rate (Hz)")
    args = parser.parse_args(argv)

    load_before = os.getloadavg()
    transports = os.environ.get("FASTDDS_BUILTIN_TRANSPORTS", "default")
    print(f"machine: {os.cpu_count()} CPUs, load average before {load_before[0]:.2f} {load_before[1]:.2f}")
    print(f"Fast DDS builtin transports: {transports} (FASTDDS_BUILTIN_TRANSPORTS, inherited by the nodes)")
    with tempfile.TemporaryDirectory(prefix="bench_ros_") as tmp:
        workdir = Path(tmp)
        with open(workdir / "nodes.log", "w") as log:
            try:
                overhead = measure_overhead(args, workdir, log)
                jitter = measure_jitter(args, workdir, log)
            except (TimeoutError, RuntimeError):
                log.flush()
                print((workdir / "nodes.log").read_text()[-4000:], file=sys.stderr)
                raise
    load_after = os.getloadavg()
    print_overhead(overhead)
    print_jitter(jitter, args.rate)
    print(f"load average after: {load_after[0]:.2f} {load_after[1]:.2f} {load_after[2]:.2f}")
    summary = {
        "benchmark": "bench_ros",
        "rate_hz": args.rate,
        "jitter_model": args.model,
        "fastdds_builtin_transports": transports,
        "jitter_ms": jitter,
        "overhead": overhead,
        "cpus": os.cpu_count(),
        "loadavg_before": [round(x, 2) for x in load_before],
        "loadavg_after": [round(x, 2) for x in load_after],
    }
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
