"""A prison's states: one table of moves, and nothing else gets through (model/states.py)."""
import pytest

from prisond.model.states import ALIVE, EVENT_OF, MOVES, BadMove, State, check_move


def test_every_state_has_its_moves_and_stopped_is_reachable_from_all():
    assert set(MOVES) == set(State)
    reach = {State.STOPPED}
    for _ in State:  # what can get to STOPPED, backwards
        reach |= {s for s, to in MOVES.items() if to & reach}
    assert reach == set(State)


@pytest.mark.parametrize("old,new", [(State.STOPPED, State.STOPPING), (State.RUNNING, State.STARTING),
                                     (State.STOPPING, State.RUNNING), (State.STARTING, State.STOPPED)])
def test_a_move_the_table_lacks_is_a_bug(old, new):
    with pytest.raises(BadMove):
        check_move(old, new)


def test_states_are_strings_on_the_wire():
    import json
    assert json.dumps({"state": State.RUNNING}) == '{"state": "running"}'
    assert State.FAILED not in ALIVE and EVENT_OF[State.STOPPED] == "stopped"
