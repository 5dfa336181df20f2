"""The interfaces work between two processes over real DDS: an ActionChunk arrives intact, SetInstruction refuses
an empty instruction and accepts a valid one."""

import subprocess
import sys
from pathlib import Path

import pytest

from smolvla_msgs.msg import ActionChunk
from smolvla_msgs.srv import SetInstruction

TEST_DIR = Path(__file__).resolve().parent
pytestmark = pytest.mark.ros


def test_chunk_and_instruction_service_across_processes(ros, processes):
    peer = processes.start_python("dds_peer", TEST_DIR / "dds_peer.py")
    node = ros.node("dds_receiver")
    received: list[ActionChunk] = []
    node.create_subscription(ActionChunk, "action_chunk", received.append, 10)
    client = node.create_client(SetInstruction, "set_instruction")

    ros.wait_for(lambda: bool(received), 30.0, "an ActionChunk from the peer process")
    chunk = received[0]
    assert (chunk.header.stamp.sec, chunk.header.stamp.nanosec) == (12, 345)
    assert (chunk.chunk_id, chunk.request_id, chunk.first_tick) == (7, 3, 101)
    assert chunk.control_period.nanosec == 33_333_333
    assert list(chunk.trajectory.joint_names) == ["shoulder_pan", "gripper"]
    positions = [x for p in chunk.trajectory.points for x in p.positions]
    assert positions == pytest.approx([x for k in range(4) for x in (0.1 * k, -0.5 * k)])
    assert [p.time_from_start.nanosec for p in chunk.trajectory.points] == [33_333_333 * k for k in range(4)]
    assert chunk.inference_latency == 1.25
    assert chunk.instruction == "pick up the cube"

    assert client.wait_for_service(timeout_sec=30.0)
    refused = ros.call(client, SetInstruction.Request(instruction=""))
    assert not refused.accepted
    assert "empty" in refused.message
    accepted = ros.call(client, SetInstruction.Request(instruction="stack the blocks"))
    assert accepted.accepted
    assert "stack the blocks" in accepted.message

    # The same service from a shell, through the smolvla_set_instruction command in its own process.
    command = [sys.executable, "-m", "smolvla_ros.set_instruction", "--service", "/set_instruction"]
    refused_cli = subprocess.run([*command, "  "], capture_output=True, text=True, timeout=60)
    assert refused_cli.returncode == 1
    assert "refused: instruction is empty" in refused_cli.stdout
    accepted_cli = subprocess.run([*command, "wipe the table"], capture_output=True, text=True, timeout=60)
    assert accepted_cli.returncode == 0, accepted_cli.stdout + accepted_cli.stderr
    assert "accepted: instruction set: 'wipe the table'" in accepted_cli.stdout

    assert processes.stop(peer) == 0


def test_set_instruction_command_reports_a_missing_policy():
    result = subprocess.run(
        [sys.executable, "-m", "smolvla_ros.set_instruction", "--timeout", "1", "pick"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    assert "no policy offers /smolvla/set_instruction" in result.stdout
