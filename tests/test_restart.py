"""The restart policy and its budget (model/restart.py), with a clock in the test's hand."""
import pytest

from prisond.model.restart import RestartBudget, RestartPolicy, wants_restart

EXIT0, EXIT3, KILLED = 0, 3 << 8, 9  # wait statuses


@pytest.mark.parametrize("policy,status,want", [
    ("no", EXIT3, False), ("no", KILLED, False), ("on-failure", EXIT0, False), ("on-failure", EXIT3, True),
    ("on-failure", KILLED, True), ("always", EXIT0, True)])
def test_which_ends_call_for_a_restart(policy, status, want):
    assert wants_restart(RestartPolicy(policy=policy), status) is want


def test_delays_double_up_to_the_maximum_then_the_limit_fails_it():
    b = RestartBudget(RestartPolicy(delay=1, max_delay=3, burst=4, interval=60))
    assert [b.next_delay(t, ran_for=0.1) for t in (0, 1, 3, 6)] == [1, 2, 3, 3]
    assert b.next_delay(9, ran_for=0.1) is None  # a fifth within 60 s
    assert "4 restarts within 60s" in b.limit_text()


def test_old_restarts_leave_the_window_and_a_long_run_resets_the_doubling():
    b = RestartBudget(RestartPolicy(delay=1, max_delay=30, burst=2, interval=10))
    assert b.next_delay(0, 0) == 1 and b.next_delay(2, 0) == 2 and b.next_delay(4, 0) is None
    assert b.next_delay(20, ran_for=15) == 1  # the window moved on, and it had run a while
