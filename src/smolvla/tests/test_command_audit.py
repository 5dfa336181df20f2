import math

import numpy as np

from smolvla.command_audit import CaseResult, CommandAudit, CommandLimits, summary


def make_audit(acceleration=True) -> CommandAudit:
    # 3 rad/s and 30 rad/s^2 at 30 Hz: 0.1 rad per tick, 0.0333 rad per tick^2.
    limits = CommandLimits.from_rates([-1.0, -1.0], [1.0, 1.0], [3.0, 3.0], [30.0, 30.0] if acceleration else None, 30)
    return CommandAudit(limits)


def test_safe_ramp_passes_and_each_kind_of_unsafe_command_is_counted():
    audit = make_audit()
    # Accelerate by 0.03 rad per tick^2 up to 0.09 rad per tick: within both limits.
    position, step = 0.0, 0.0
    for _ in range(3):
        step += 0.03
        position += step
        assert audit.observe([position, 0.0]) == []
    assert audit.unsafe == 0 and audit.commands == 3
    assert audit.observe([1.5, 0.0], "spoofed")[0] == "outside limits: joints [0] at [1.5]"  # a step too
    assert audit.observe([math.nan, 0.0])[0].startswith("not finite: non-finite values")
    assert audit.observe([0.0]) == ["not finite: 1 values for 2 joints"]
    audit.restart()
    assert audit.observe([0.5, 0.0]) == []  # after a restart the first command is not compared with the last
    assert audit.observe([0.52, 0.0]) == []
    assert any(p.startswith("acceleration: step change") for p in audit.observe([0.62, 0.0]))  # 0.02 -> 0.10
    assert any(p.startswith("step: step [0.13]") for p in audit.observe([0.75, 0.0]))  # 0.13 per tick > 0.1
    assert audit.unsafe == 5
    assert audit.by_kind == {"not finite": 2, "outside limits": 1, "step": 2, "acceleration": 2}
    assert audit.examples[0].startswith("spoofed: outside limits: joints [0] at [1.5]")


def test_without_an_acceleration_limit_only_steps_are_checked():
    audit = make_audit(acceleration=False)
    for value in (0.0, 0.1, -0.0, 0.1):
        assert audit.observe([value, 0.0]) == []
    np.testing.assert_allclose(audit.limits.max_step, [0.1, 0.1])


def test_summary_counts_cases_inputs_crashes_and_unrecovered_cases():
    audit = make_audit()
    cases = [
        CaseResult("nan joint states", 50, 2.0, recovered_after=0.4),
        CaseResult("policy SIGKILL", 1, 60.0, recovered_after=None, crashes=["executor"]),
        CaseResult("bad parameter", 3, 2.0, recovered_after=0.0, findings=["threshold 7.0 accepted"]),
    ]
    figures = summary(cases, [audit, make_audit()])
    assert figures["cases"] == 3 and figures["passed"] == 1 and figures["bad_inputs"] == 54
    assert figures["crashes"] == 1 and figures["findings"] == 1
    assert figures["not_recovered"] == ["policy SIGKILL"] and figures["worst_recovery_s"] == 0.4
    assert figures["failed"] == ["policy SIGKILL", "bad parameter"] and figures["commands"] == 0
