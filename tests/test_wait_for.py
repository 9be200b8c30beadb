"""`ajan.simulate.stack.wait_for`, the poll every test and script waits with."""

from __future__ import annotations

import numpy as np
import pytest

from ajan.simulate.stack import StackError, StackTimeoutError, wait_for


@pytest.mark.parametrize("no", [None, False, np.False_], ids=["None", "False", "numpy False"])
def test_none_and_false_booleans_are_not_an_answer(no: object) -> None:
    with pytest.raises(StackTimeoutError, match="waiting for the thing"):
        wait_for(lambda: no, timeout=0.05, what="the thing", interval=0.01)


@pytest.mark.parametrize("yes", [True, np.True_, 0, "", {"phase": "Running"}])
def test_anything_else_is_the_answer(yes: object) -> None:
    assert wait_for(lambda: yes, timeout=0.05, what="the thing", interval=0.01) is yes


def test_a_stack_error_ends_the_wait_at_once() -> None:
    def exited() -> None:
        raise StackError("prometheus exited")

    with pytest.raises(StackError, match="exited"):
        wait_for(exited, timeout=60, what="prometheus")
