"""A party's transport takes messages as large as its job's model needs, and no larger."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np

from consortium.jobs.party import MIN_MESSAGE_BYTES, message_limits
from consortium.runtime import LocalData
from consortium.transport.grpc_common import DEFAULT_LIMITS


def _data(*shapes: tuple[int, ...]) -> LocalData:
    weights = {f"w{i}": np.zeros(shape, np.float32) for i, shape in enumerate(shapes)}
    return LocalData(model_factory=lambda: SimpleNamespace(get_weights=lambda: weights))


def test_a_small_model_gets_the_floor():
    assert message_limits(_data((64, 10), (10,))).max_message_bytes == MIN_MESSAGE_BYTES


def test_a_large_model_gets_four_times_its_size_and_the_header():
    limits = message_limits(_data((5_000, 2_000), (2_000,)))
    model_bytes = (5_000 * 2_000 + 2_000) * 4
    assert limits.max_message_bytes == 4 * model_bytes + limits.max_header_bytes


def test_a_job_without_a_model_keeps_the_transports_default():
    assert message_limits(SimpleNamespace(tables={})) is DEFAULT_LIMITS
    assert message_limits(LocalData()) is DEFAULT_LIMITS
