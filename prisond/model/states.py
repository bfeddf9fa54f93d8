"""A prison's states and the moves between them, in one table (as Supervisor's ProcessStates
and its change_state): the engine changes a prison's state in one place, which checks the move
against this table.  Pure."""
from __future__ import annotations

import enum


class State(enum.StrEnum):
    STOPPED = "stopped"
    STARTING = "starting"
    RUNNING = "running"          # its init is up, and its service (if it has one) runs
    EXITED = "exited"            # the service ended and is not restarted (restart: no, or a clean exit)
    RESTARTING = "restarting"    # waiting to start the service (or the whole prison) again
    STOPPING = "stopping"
    FAILED = "failed"            # a start failed, or restarts hit their limit: nothing is left


MOVES: dict[State, frozenset[State]] = {
    State.STOPPED: frozenset({State.STARTING, State.RUNNING}),  # RUNNING: adopted after a daemon's crash
    State.STARTING: frozenset({State.RUNNING, State.FAILED}),
    State.RUNNING: frozenset({State.STOPPING, State.EXITED, State.RESTARTING, State.FAILED}),
    State.EXITED: frozenset({State.STOPPING, State.RESTARTING, State.FAILED}),  # its init may die too
    State.RESTARTING: frozenset({State.RUNNING, State.STARTING, State.STOPPING, State.FAILED,
                                 State.RESTARTING}),  # an attempt that failed: another wait
    State.STOPPING: frozenset({State.STOPPED}),
    State.FAILED: frozenset({State.STARTING, State.STOPPED}),
}

# processes may exist: recorded in the state store, so that a later daemon finds them
ALIVE = frozenset({State.STARTING, State.RUNNING, State.EXITED, State.RESTARTING, State.STOPPING})
# up: its init runs (exec works, its addresses are held)
UP = frozenset({State.RUNNING, State.EXITED, State.RESTARTING})

# the event each arrival records (kinds of the event log); STARTING and STOPPING record none
EVENT_OF = {State.RUNNING: "started", State.FAILED: "failed", State.STOPPED: "stopped", State.EXITED: "exited",
            State.RESTARTING: "restarting"}


class BadMove(RuntimeError):
    """A move the table does not have: a bug in the engine, never the user's doing."""


def check_move(old: State, new: State) -> None:
    if new not in MOVES[old]:
        raise BadMove(f"a prison cannot go from {old} to {new}")
