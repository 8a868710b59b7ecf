"""The timing every bench shares (bench/bench_metrics.py): the order its sides run in. The
benches' figures themselves are measured by running them, not here."""
import os
import sys
from collections import Counter

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "bench"))
from bench_metrics import in_turn, interleaved  # noqa: E402


@pytest.mark.parametrize("sides, rounds", [(3, 6), (5, 5), (2, 7)])
def test_sides_take_turns_each_holding_each_place_once(sides, rounds):
    """Every round runs every side once; the first place passes to the next side each round, and
    over len(sides) rounds each side holds each place once. Catches a fixed order (one side
    always first, or always right after a long one), a side skipped or run twice in a round, and
    a wrong count of rounds."""
    names = [f"s{i}" for i in range(sides)]
    orders = list(in_turn(names, rounds))
    assert [r for r, _ in orders] == list(range(rounds))
    assert all(sorted(order) == names for _, order in orders)
    assert [order[0] for _, order in orders] == [names[r % sides] for r in range(rounds)]
    places = Counter((name, place) for _, order in orders[:sides] for place, name in enumerate(order))
    assert len(places) == sides * sides and set(places.values()) == {1}


def test_interleaved_times_each_side_after_an_untimed_call():
    """interleaved calls each side once untimed, then `repeat` timed times in turn, and returns each
    side's sorted times and its last result. Catches the warm-up call dropped or timed, and a side
    timed more or fewer times than asked."""
    calls = []
    sides = {n: (lambda n=n: calls.append(n) or n.upper()) for n in ("a", "b", "c")}
    out, _ = interleaved(sides, 4)
    assert calls[:3] == ["a", "b", "c"]  # the untimed calls
    assert calls[3:] == ["a", "b", "c", "b", "c", "a", "c", "a", "b", "a", "b", "c"]
    for n in sides:
        times, last = out[n]
        assert len(times) == 4 and times == sorted(times) and last == n.upper()
