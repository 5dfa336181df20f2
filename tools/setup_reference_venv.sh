#!/usr/bin/env bash
# Create .venv-reference: LeRobot 0.4.4 (the reference SmolVLA and LeRobotDataset) beside torch 2.13.0 (CPU), for
# benchmarks/bench_reference.py and the parity checks; the workspace's .venv is not touched. Safe to run again: a
# stamp holding this script's checksum skips the install when nothing changed.
#
# lerobot 0.4.4 pins torch < 2.11 and many packages its SmolVLA import chain does not need, so it is installed
# with --no-deps and every package below is pinned and installed with --no-deps too (nothing is resolved, so pip can
# never pull a CUDA torch). The list is the closure of what `import lerobot.policies.smolvla.modeling_smolvla` and
# SmolVLM's AutoProcessor need: transformers < 5 (lerobot's smolvla extra asks for >= 4.57.1, < 5), draccus,
# datasets/diffusers/accelerate/imageio/av/deepdiff/einops/pyserial (imported at module level on the way) and
# num2words (SmolVLM's processor). LeRobot's dataset code (benchmarks/dataset_parity_reference.py) needs nothing more.
# torchvision 0.25.0 is the newest release LeRobot 0.4.4 allows (< 0.26) and the last with `torchvision.io.VideoReader`,
# which LeRobot's pyav video backend decodes with (torchcodec, its default, cannot load beside CPU torch). PyPI only
# has a CUDA build, whose C ops cannot load here (they are built for another torch anyway), and bench_reference.py
# imports its pure-Python part (transforms, VideoReader over PyAV) around that.
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=.venv-reference
STAMP=$VENV/.reference-setup
PYTHON=${PYTHON:-python3.11}
checksum=$(sha256sum "$0" | cut -d' ' -f1)
if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$checksum" ]; then
  echo "setup-reference: $VENV is up to date"
  exit 0
fi

PACKAGES=(
  # The CPU build: on this machine's find-links; elsewhere set PIP_EXTRA_INDEX_URL=https://download.pytorch.org/whl/cpu
  # (the PyPI build of 2.13.0 is the CUDA one).
  torch==2.13.0+cpu
  torchvision==0.25.0
  lerobot==0.4.4
  transformers==4.57.6
  tokenizers==0.22.2
  huggingface-hub==0.35.3
  hf-xet==1.8.0
  safetensors==0.8.0
  accelerate==1.15.0
  diffusers==0.35.2
  datasets==4.8.5
  draccus==0.10.0
  num2words==0.5.14
  docopt==0.6.2
  av==15.1.0
  deepdiff==8.6.2
  orderly-set==5.5.0
  einops==0.8.2
  imageio==2.38.1
  pyserial==3.5
  pillow==12.3.0
  numpy==2.4.6
  pandas==3.1.1
  python-dateutil==4.0.0
  tzdata==2026.6
  pyarrow==26.0.1
  dill==0.4.1
  multiprocess==0.70.19
  xxhash==4.1.0
  fsspec==2026.2.0
  aiohttp==3.14.5
  aiohappyeyeballs==2.7.1
  aiosignal==1.4.0
  attrs==26.1.0
  frozenlist==1.8.0
  multidict==7.2.1
  propcache==0.5.4
  yarl==1.25.1
  httpx==0.28.1
  httpcore==1.0.9
  h11==0.16.0
  anyio==4.16.0
  requests==2.34.2
  urllib3==2.8.0
  idna==3.20
  certifi==2026.10.18
  charset-normalizer==3.5.2
  importlib_metadata==10.2.0
  zipp==4.1.2
  lazy-importer==0.1.0
  mergedeep==1.3.4
  pyyaml-include==1.4.1
  PyYAML==6.0.3
  toml==0.10.2
  typing-inspect==0.9.0
  mypy_extensions==1.2.0
  typing_extensions==4.16.0
  packaging==25.0
  psutil==7.2.2
  regex==2026.11.15
  tqdm==4.70.1
  filelock==4.2.11
  Jinja2==3.1.6
  MarkupSafe==3.0.4
  networkx==3.6.1
  sympy==1.14.0
  mpmath==1.3.0
)

if [ ! -x "$VENV/bin/python" ]; then
  echo "setup-reference: creating virtual environment $VENV"
  "$PYTHON" -m venv "$VENV"
fi
echo "setup-reference: installing ${#PACKAGES[@]} pinned packages (--no-deps)"
"$VENV/bin/pip" install --quiet --disable-pip-version-check --no-deps "${PACKAGES[@]}"
echo "setup-reference: checking that the reference SmolVLA and LeRobotDataset import"
"$VENV/bin/python" -c "
import sys
sys.path.insert(0, 'benchmarks')
from bench_reference import import_torchvision
import_torchvision()
import lerobot.policies.smolvla.modeling_smolvla
import lerobot.datasets.lerobot_dataset
from torchvision.io import VideoReader
"
echo "$checksum" > "$STAMP"
