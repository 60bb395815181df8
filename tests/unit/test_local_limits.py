"""The in-process moving windows behind the rate limits when no Redis shares them."""

from __future__ import annotations

from limits import parse

from board.ratelimit import SWEEP_EVERY, LocalWindows


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_window_takes_its_amount_then_refuses_until_the_oldest_hit_leaves() -> None:
    clock = Clock()
    windows = LocalWindows(clock)
    three = parse("3/minute")
    for _ in range(3):
        assert windows.ask(three, "post", "board", "p:1")
        clock.now += 10
    assert not windows.ask(three, "post", "board", "p:1")  # 3 hits in the last 60 s
    assert windows.ask(three, "post", "board", "p:2")  # another person has their own budget
    clock.now = 1000.0 + 60.0  # the first hit (t=1000) has just left the window
    assert windows.ask(three, "post", "board", "p:1")
    assert not windows.ask(three, "post", "board", "p:1")


def test_a_check_does_not_count() -> None:
    windows = LocalWindows(Clock())
    one = parse("1/minute")
    assert windows.ask(one, "miss", "10.0.0.1", count=False)
    assert windows.ask(one, "miss", "10.0.0.1", count=False)
    assert windows.ask(one, "miss", "10.0.0.1")
    assert not windows.ask(one, "miss", "10.0.0.1", count=False)


def test_refused_hits_are_not_counted_so_a_flood_does_not_extend_the_wait() -> None:
    clock = Clock()
    windows = LocalWindows(clock)
    two = parse("2/second")
    assert windows.ask(two, "ws", "s1") and windows.ask(two, "ws", "s1")
    for _ in range(100):
        assert not windows.ask(two, "ws", "s1")
    clock.now += 1.0
    assert windows.ask(two, "ws", "s1")


def test_idle_keys_are_forgotten_by_the_sweep() -> None:
    clock = Clock()
    windows = LocalWindows(clock)
    minute = parse("30/minute")
    for person in range(50):
        windows.ask(minute, "post", f"p:{person}")
    assert len(windows) == 50
    clock.now += SWEEP_EVERY + 1  # past the one-minute window and the sweep period
    windows.ask(minute, "post", "p:late")
    assert len(windows) == 1
