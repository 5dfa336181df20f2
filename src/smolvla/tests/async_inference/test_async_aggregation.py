import numpy as np
import pytest

from smolvla.async_inference.aggregation import AGGREGATIONS, aggregate

OLD = np.array([[0.0, 10.0], [0.0, 10.0], [0.0, 10.0]])
NEW = np.array([[1.0, 0.0], [1.0, 0.0], [1.0, 0.0]])


@pytest.mark.parametrize(
    ("name", "new_weight"),
    [("weighted_average", 0.7), ("latest_only", 1.0), ("average", 0.5), ("conservative", 0.3)],
)
def test_constant_weight_functions(name, new_weight):
    expected = (1 - new_weight) * OLD + new_weight * NEW
    np.testing.assert_allclose(aggregate(name, OLD, NEW), expected)


def test_ramp_moves_weight_from_old_to_new_across_the_overlap():
    blended = aggregate("ramp", OLD, NEW)
    new_weight = blended[:, 0]  # old is 0 and new is 1 in the first joint
    np.testing.assert_allclose(new_weight, [0.25, 0.5, 0.75])
    np.testing.assert_allclose(blended[:, 1], 10 * (1 - new_weight))


def test_functions_do_not_alias_their_inputs():
    for name in AGGREGATIONS:
        out = aggregate(name, OLD, NEW)
        out[:] = 99
        assert OLD[0, 1] == 10 and NEW[0, 0] == 1, name


def test_shape_mismatch_and_unknown_name_are_errors():
    with pytest.raises(ValueError):
        aggregate("average", OLD, NEW[:2])
    with pytest.raises(KeyError):
        aggregate("median", OLD, NEW)
