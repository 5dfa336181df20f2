"""Declare a node's parameters with their checks (smolvla.parameters): read-only unless live, validated at start and
at every change.

`ros2 param set` on a parameter the node only reads at start is refused by rclpy (read-only), so an accepted set is
never silently ignored; a live parameter's new value is checked before it is stored (refused with the reason) and
then handed to the node's `apply` function.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from rcl_interfaces.msg import ParameterDescriptor, SetParametersResult
from rcl_interfaces.srv import SetParameters
from rclpy.node import Node
from rclpy.parameter import Parameter

from smolvla.parameters import Check, problems


class ConfigurationError(ValueError):
    """A parameter value the node cannot run with."""


def declare_checked(
    node: Node,
    defaults: Mapping[str, object],
    checks: Mapping[str, Check],
    live: Mapping[str, Callable[[object], None]] | None = None,
) -> dict[str, object]:
    """Declare `defaults` on node and return their values; raises ConfigurationError naming every invalid one.

    live: parameter name -> function applying a new (already checked) value while the node runs; every other
    parameter is read-only. Call it before creating anything that uses the values.
    """
    live = dict(live or {})
    for name, default in defaults.items():
        node.declare_parameter(name, default, ParameterDescriptor(read_only=name not in live))
    values = {name: node.get_parameter(name).value for name in defaults}
    found = problems(checks, values)
    if found:
        raise ConfigurationError("invalid parameters: " + "; ".join(found))

    def validate(parameters: list[Parameter]) -> SetParametersResult:
        found = problems(checks, {p.name: p.value for p in parameters if p.name in defaults})
        return SetParametersResult(successful=not found, reason="; ".join(found))

    def apply(parameters: list[Parameter]) -> None:
        for parameter in parameters:
            if parameter.name in live:
                live[parameter.name](parameter.value)

    node.add_on_set_parameters_callback(validate)
    node.add_post_set_parameters_callback(apply)
    return values


def set_parameters_request(values: Mapping[str, object]) -> SetParameters.Request:
    """A SetParameters request (the service behind `ros2 param set`) for another node's /<node>/set_parameters."""
    return SetParameters.Request(parameters=[Parameter(name, value=v).to_parameter_msg() for name, v in values.items()])
