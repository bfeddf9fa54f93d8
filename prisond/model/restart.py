"""What happens when a prison's service ends: the restart policy (systemd's Restart= and
StartLimitBurst=/StartLimitIntervalSec=, in a jail user's words) and its budget.  Pure: the
clock is passed in.

- policy `no`: the prison stays up (its init, anything exec'd), state `exited`;
- `on-failure` (the default): restarted when it exited non-zero or was killed by a signal;
- `always`: restarted whatever its end.
A restart waits `delay` seconds, doubled at each restart in a row up to `max_delay`; a service
that ran `interval` seconds or more starts the doubling afresh.  More than `burst` restarts
within `interval` seconds: the prison fails, with that as its reason.
"""
from __future__ import annotations

import os
from collections import deque
from dataclasses import dataclass

from prisond.model.params import default

POLICIES = ("no", "on-failure", "always")


@dataclass(frozen=True)
class RestartPolicy:  # the defaults are the parameter table's
    policy: str = default("prisons.NAME.restart", "policy")
    delay: float = default("prisons.NAME.restart", "delay")
    max_delay: float = default("prisons.NAME.restart", "max_delay")
    burst: int = default("prisons.NAME.restart", "burst")
    interval: float = default("prisons.NAME.restart", "interval")


def wants_restart(policy: RestartPolicy, status: int) -> bool:
    """Does this end of the service (a wait status) call for a restart?"""
    if policy.policy == "always":
        return True
    if policy.policy == "on-failure":
        return not (os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0)
    return False


class RestartBudget:
    """The restarts a prison has had lately; each decision consumes one."""

    def __init__(self, policy: RestartPolicy):
        self.policy = policy
        self.times: deque[float] = deque()
        self.in_a_row = 0

    def next_delay(self, now: float, ran_for: float) -> float | None:
        """Seconds to wait before the next restart, or None: the start limit is reached."""
        p = self.policy
        while self.times and now - self.times[0] >= p.interval:
            self.times.popleft()
        if ran_for >= p.interval:
            self.in_a_row = 0
        if len(self.times) >= p.burst:
            return None
        self.times.append(now)
        delay = min(p.delay * (2 ** self.in_a_row), p.max_delay)
        self.in_a_row += 1
        return delay

    def limit_text(self) -> str:
        return f"start limit reached: {self.policy.burst} restarts within {self.policy.interval:g}s"
