"""One /diagnostics message from a node's health: the same shape for every node of the graph."""

from __future__ import annotations

from collections.abc import Iterable

from builtin_interfaces.msg import Time
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue


def diagnostic_array(
    stamp: Time, name: str, level: int | bytes, message: str, values: Iterable[tuple[str, str]]
) -> DiagnosticArray:
    """A DiagnosticArray holding one status: level as diagnostic_msgs numbers it (OK 0, WARN 1, ERROR 2)."""
    status = DiagnosticStatus(
        level=level if isinstance(level, bytes) else bytes([int(level)]),
        name=name,
        message=message,
        hardware_id="",
        values=[KeyValue(key=key, value=value) for key, value in values],
    )
    array = DiagnosticArray(status=[status])
    array.header.stamp = stamp
    return array
