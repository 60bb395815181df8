"""Property tests of the pure facilitation rules in board/domain.py (votes, visibility,
settings, timer), driven by hypothesis."""

from __future__ import annotations

from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from board.domain import (
    MAX_TIMER_SECONDS,
    MAX_VOTE_BUDGET,
    PHASES,
    SETTING_KEYS,
    VOTE_PHASE,
    card_visible,
    check_settings,
    check_unvote,
    check_vote,
    timer_state,
)
from board.errors import RuleViolation

ITEMS = st.sampled_from(["c1", "c2", "c3", "t1", "t2"])  # cards and themes alike
OPS = st.lists(
    st.one_of(
        st.tuples(st.just("add"), ITEMS),
        st.tuples(st.just("remove"), ITEMS),
        st.tuples(st.just("phase"), st.sampled_from(PHASES)),
    ),
    max_size=60,
)
TIMER_ACTIONS = st.sampled_from(["start", "pause", "add", "reset"])
TIMER_SECONDS = st.none() | st.integers(1, MAX_TIMER_SECONDS)


@settings(max_examples=300, deadline=None)
@given(budget=st.integers(1, MAX_VOTE_BUDGET), max_per_item=st.none() | st.integers(1, 3),
       phase=st.sampled_from(PHASES), ops=OPS)
def test_dots_respect_budget_item_limit_and_phase(budget: int, max_per_item: int | None,
                                                  phase: str, ops: list[tuple[str, str]]
                                                  ) -> None:
    """Dots never exceed the budget or the per-item limit, remaining is exact, only in vote."""
    dots: list[str] = []
    for op, arg in ops:
        if op == "phase":
            phase = arg
            continue
        before = list(dots)
        on_item = dots.count(arg)
        if op == "add":
            may_add = (phase == VOTE_PHASE and len(dots) < budget
                       and (max_per_item is None or on_item < max_per_item))
            try:
                remaining = check_vote(phase=phase, budget=budget, max_per_item=max_per_item,
                                       my_votes=len(dots), my_votes_on_item=on_item)
            except RuleViolation as refused:
                assert not may_add, refused.code
                expected = ("not_voting" if phase != VOTE_PHASE else "vote_budget_spent"
                            if len(dots) >= budget else "vote_item_limit")
                assert refused.code == expected
            else:
                assert may_add
                dots.append(arg)
                assert remaining == budget - len(dots)
        else:
            may_remove = phase == VOTE_PHASE and on_item > 0
            try:
                check_unvote(phase=phase, my_votes_on_item=on_item)
            except RuleViolation as refused:
                assert not may_remove, refused.code
                assert refused.code == ("not_voting" if phase != VOTE_PHASE
                                        else "no_vote_to_remove")
            else:
                assert may_remove
                dots.remove(arg)
        if phase != VOTE_PHASE:
            assert dots == before
        assert len(dots) <= budget
        if max_per_item is not None:
            assert max(Counter(dots).values(), default=0) <= max_per_item


@settings(max_examples=300, deadline=None)
@given(hidden=st.booleans(), deleted=st.booleans(), merged=st.booleans(), own=st.booleans(),
       silent=st.booleans(), is_animator=st.booleans())
def test_card_visibility(hidden: bool, deleted: bool, merged: bool, own: bool, silent: bool,
                         is_animator: bool) -> None:
    """Silent writing hides others' cards; hidden/deleted/merged never reach non-animators."""
    visible = card_visible(hidden=hidden, deleted=deleted, merged=merged, own=own,
                           silent=silent, is_animator=is_animator)
    if not is_animator:
        if silent and not own:
            assert not visible
        if hidden or deleted or merged:
            assert not visible
        if own and not (hidden or deleted or merged):
            assert visible  # your own card is always yours to see
        if not silent and not (hidden or deleted or merged):
            assert visible
    else:
        assert visible == (not deleted and not merged)


VALID_SETTINGS = st.fixed_dictionaries({}, optional={
    "phase": st.sampled_from(PHASES),
    "silent": st.booleans(),
    "locked": st.booleans(),
    "results_visible": st.booleans(),
    "vote_budget": st.integers(1, MAX_VOTE_BUDGET),
    "max_votes_per_item": st.none() | st.integers(1, MAX_VOTE_BUDGET),
})


@settings(max_examples=300, deadline=None)
@given(changes=VALID_SETTINGS)
def test_valid_settings_come_back_unchanged(changes: dict[str, object]) -> None:
    """Any combination of valid settings is accepted and returned as given."""
    assert check_settings(dict(changes)) == changes


@settings(max_examples=300, deadline=None)
@given(changes=VALID_SETTINGS,
       bad=st.one_of(
           st.tuples(st.just("vote_budget"),
                     st.integers(max_value=0) | st.integers(min_value=MAX_VOTE_BUDGET + 1)
                     | st.booleans() | st.text(max_size=3) | st.floats(1, 20)),
           st.tuples(st.sampled_from(["silent", "locked", "results_visible"]),
                     st.integers() | st.none() | st.text(max_size=3)),
           st.tuples(st.just("max_votes_per_item"),
                     st.integers(max_value=0) | st.integers(min_value=MAX_VOTE_BUDGET + 1)
                     | st.booleans() | st.text(max_size=3)),
           st.tuples(st.just("phase"), st.text(max_size=12).filter(lambda p: p not in PHASES)),
           st.tuples(st.text(min_size=1, max_size=12).filter(lambda k: k not in SETTING_KEYS),
                     st.integers()),
       ))
def test_one_bad_setting_refuses_the_whole_change(changes: dict[str, object],
                                                  bad: tuple[str, object]) -> None:
    """One bad value anywhere in a settings change is refused with its documented code."""
    key, value = bad
    expected = {"vote_budget": "bad_budget", "phase": "bad_phase"}.get(key, "invalid_field")
    with pytest.raises(RuleViolation) as refused:
        check_settings({**changes, key: value})
    assert refused.value.code == expected


@settings(max_examples=300, deadline=None)
@given(steps=st.lists(st.tuples(TIMER_ACTIONS, TIMER_SECONDS), max_size=30),
       elapsed=st.lists(st.floats(0, 2 * MAX_TIMER_SECONDS), max_size=30))
def test_timer_stays_within_bounds(steps: list[tuple[str, int | None]],
                                   elapsed: list[float]) -> None:
    """Any sequence of timer actions keeps remaining between 0 and MAX_TIMER_SECONDS."""
    running, remaining = False, 0.0
    for index, (action, seconds) in enumerate(steps):
        if running and index < len(elapsed):  # time passes as in commands.timer_dict
            remaining = max(0.0, remaining - elapsed[index])
        previous = remaining
        running, remaining = timer_state(action=action, seconds=seconds, running=running,
                                         remaining=remaining)
        assert 0.0 <= remaining <= MAX_TIMER_SECONDS
        if action == "start":
            assert running and remaining == (seconds if seconds is not None
                                             else previous or 300.0)
        elif action == "pause":
            assert not running and remaining == previous
        elif action == "add":
            assert remaining == min(previous + (seconds or 60), MAX_TIMER_SECONDS)
        else:
            assert (running, remaining) == (False, 0.0)


@settings(max_examples=300, deadline=None)
@given(action=st.text(max_size=8).filter(lambda a: a not in ("start", "pause", "add", "reset"))
       | st.none() | st.integers(), running=st.booleans(),
       remaining=st.floats(0, MAX_TIMER_SECONDS))
def test_timer_refuses_unknown_actions(action: object, running: bool, remaining: float) -> None:
    """An unknown timer action is refused as invalid_field."""
    with pytest.raises(RuleViolation) as refused:
        timer_state(action=action, seconds=None, running=running, remaining=remaining)
    assert refused.value.code == "invalid_field"


@settings(max_examples=300, deadline=None)
@given(action=TIMER_ACTIONS,
       seconds=st.integers(max_value=0) | st.integers(min_value=MAX_TIMER_SECONDS + 1)
       | st.booleans() | st.floats(1, 60) | st.text(max_size=4),
       running=st.booleans(), remaining=st.floats(0, MAX_TIMER_SECONDS))
def test_timer_refuses_bad_durations(action: str, seconds: object, running: bool,
                                     remaining: float) -> None:
    """Durations that are not whole seconds in 1..MAX_TIMER_SECONDS are refused."""
    with pytest.raises(RuleViolation) as refused:
        timer_state(action=action, seconds=seconds, running=running, remaining=remaining)
    assert refused.value.code == "invalid_field"
