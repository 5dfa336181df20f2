"""Simulated SO-101 timings: scene build, physics steps per second, camera frames, expert chunk planning.

Prints one line per figure and the machine load (os.getloadavg) before and after. Run: python benchmarks/bench_sim.py
"""

from __future__ import annotations

import os
import time

import numpy as np

from smolvla.sim.arm import SimArm
from smolvla.sim.expert import ExpertObservation, PickPlaceExpert
from smolvla.sim.scene import CAMERA_NAMES, SceneOptions, build_model


def _per_call(fn, repeats: int) -> float:
    fn()
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    return (time.perf_counter() - start) / repeats


def main() -> None:
    """Print the figures."""
    print(f"load average before: {os.getloadavg()[0]:.2f} ({os.cpu_count()} CPUs)")
    start = time.perf_counter()
    model = build_model()
    print(f"scene build (first, meshes simplified): {time.perf_counter() - start:.2f} s")
    shipped = build_model(SceneOptions(visual_cell_size=0.0))
    for name, m in (("simplified", model), ("shipped", shipped)):
        visual = [g for g in range(m.ngeom) if m.geom_group[g] == 2 and m.geom_dataid[g] >= 0]
        print(f"visual triangles, {name} meshes: {sum(int(m.mesh_facenum[m.geom_dataid[g]]) for g in visual)}")
    for size in (256, 512):
        with SimArm(SceneOptions(image_width=size, image_height=size), seed=0) as sim:
            for camera in CAMERA_NAMES:
                ms = 1000 * _per_call(lambda c=camera, s=sim: s.render(c), 30)
                print(f"render {camera} {size}x{size}: {ms:.1f} ms per frame")
    with SimArm(seed=0) as sim:
        sim.set_command(np.array([0.3, -0.3, 0.4, 0.5, 0.0, 0.5]))
        steps_per_s = 1.0 / _per_call(lambda: sim.step(sim.physics_dt), 2000)
        print(
            f"physics: {steps_per_s:.0f} steps/s at {1000 * sim.physics_dt:.0f} ms "
            f"({steps_per_s * sim.physics_dt:.0f}x real time)"
        )
        expert = PickPlaceExpert(sim.model)
        state = sim.scene_state()
        obs = ExpertObservation(sim.joint_positions(), state.cube_position, state.target_position)
        ms = 1000 * _per_call(lambda: expert.chunk(obs, 50), 10)
        print(f"expert: {ms:.1f} ms per fresh 50-action chunk")
    print(f"load average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
