"""The installed `sts_bus_emulator` executable as launch files start it.

launch_ros appends `--ros-args ...` to every Node it starts (so100_driver.launch.py starts the emulator as one);
the emulator must skip those arguments and serve the bus, and still refuse arguments it does not know. The bus is
checked with real STS3215 packets over the pseudo-terminal behind the `--link` path.
"""

import os
import select
import signal
import subprocess
import termios
import time
import tty
from pathlib import Path

import pytest

EMULATOR = os.environ.get("STS_BUS_EMULATOR", "")
PING, READ = 0x01, 0x02
MODEL_NUMBER_ADDRESS, STS3215_MODEL = 3, 777

pytestmark = pytest.mark.skipif(not os.access(EMULATOR, os.X_OK), reason="STS_BUS_EMULATOR not built")


def _packet(servo: int, instruction: int, *params: int) -> bytes:
    body = [servo, len(params) + 2, instruction, *params]
    return bytes([0xFF, 0xFF, *body, ~sum(body) & 0xFF])


def _status(fd: int, timeout: float = 2.0) -> bytes:
    """One status packet: FF FF id len error params... checksum (checksum verified)."""
    data = b""
    deadline = time.monotonic() + timeout
    while len(data) < 4 or len(data) < 4 + data[3]:
        remaining = deadline - time.monotonic()
        assert remaining > 0, f"no complete status packet within {timeout} s, got {data.hex()}"
        if select.select([fd], [], [], remaining)[0]:
            data += os.read(fd, 64)
    assert data[:2] == b"\xff\xff"
    packet = data[: 4 + data[3]]
    assert packet[-1] == ~sum(packet[2:-1]) & 0xFF, f"bad checksum in {packet.hex()}"
    return packet


@pytest.fixture
def emulator_with_ros_args(tmp_path: Path):
    link = tmp_path / "so100_bus"
    # What launch_ros runs for Node(executable="sts_bus_emulator", arguments=["--link", ...], name=...).
    process = subprocess.Popen(
        [EMULATOR, "--link", str(link), "--ros-args", "-r", "__node:=x", "--params-file", "/dev/null"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    device = process.stdout.readline().strip()
    yield process, link, device
    if process.poll() is None:
        process.kill()
        process.wait()


def test_serves_the_bus_with_ros_arguments_appended(emulator_with_ros_args):
    process, link, device = emulator_with_ros_args
    assert process.poll() is None, process.stderr.read()
    assert device.startswith("/dev/pts/")
    assert os.path.realpath(link) == device
    fd = os.open(link, os.O_RDWR | os.O_NOCTTY)
    try:
        tty.setraw(fd)
        termios.tcflush(fd, termios.TCIOFLUSH)
        for servo in range(1, 7):
            os.write(fd, _packet(servo, PING))
            reply = _status(fd)
            assert (reply[2], reply[4]) == (servo, 0), f"PING of servo {servo}: {reply.hex()}"
        os.write(fd, _packet(1, READ, MODEL_NUMBER_ADDRESS, 2))
        reply = _status(fd)
        assert reply[5] | reply[6] << 8 == STS3215_MODEL
    finally:
        os.close(fd)
    process.send_signal(signal.SIGINT)
    assert process.wait(timeout=5) == 0
    assert not link.exists(), "the link is removed on exit"


def test_still_refuses_unknown_arguments_outside_the_ros_section(tmp_path: Path):
    argv = [EMULATOR, "--ros-args", "-r", "__node:=x", "--", "--bogus"]
    result = subprocess.run(argv, capture_output=True, text=True, timeout=10)
    assert result.returncode == 2
    assert "usage: sts_bus_emulator" in result.stderr
