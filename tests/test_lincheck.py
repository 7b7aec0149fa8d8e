"""The linearizability checker of tests/lincheck.py on hand-made histories: it accepts
what some order explains, refuses stale reads, lost updates and double-applied
decrements, and treats operations of unknown outcome as taking effect once or never."""

from __future__ import annotations

import random
import time

from tests.lincheck import ANY, INT64_MAX, INT64_MIN, Counter, Op, Register, assert_linearizable, check, check_key

DOWN = ("add", -1, 0, INT64_MAX)


def op(call, invoked, completed, result=None, key="k", client=None) -> Op:
    return Op(key=key, call=call, invoked=invoked, completed=completed, result=result, client=client)


def linearizable(history, model, **kwargs) -> bool:
    return all(verdict.ok for verdict in check(history, model, **kwargs).values())


# ---------------------------------------------------------------------------
# Register


def test_empty_and_sequential_register_histories_pass():
    """The empty history and a sequential write, read, compare-and-set, delete, read are linearizable."""
    assert linearizable([], Register)
    assert linearizable([
        op(("write", "a"), 1, 2, ("ok", 1)),
        op(("read",), 3, 4, (1, "a")),
        op(("cas", 1, "b"), 5, 6, ("ok", 2)),
        op(("write", None), 7, 8, ("ok", 3)),
        op(("read",), 9, 10, (ANY, None)),
        op(("write", None), 11, 12, ("ok", 3)),
        op(("cas", 3, "c"), 13, 14, ("refused", None)),
        op(("write", "d"), 15, 16, ("ok", 4)),
    ], Register)


def test_a_stale_read_is_refused():
    """A read invoked after a write completed must see that write, not the value before it."""
    history = [op(("write", "a"), 1, 2, ("ok", 1)), op(("write", "b"), 3, 4, ("ok", 2)), op(("read",), 5, 6, (1, "a"))]
    verdicts = check(history, Register)
    assert not verdicts["k"].ok
    assert "no order fits" in verdicts["k"].message
    # Overlapping the second write, the same read is fine: it took effect first.
    assert linearizable([history[0], history[1], op(("read",), 3.5, 6, (1, "a"))], Register)


def test_overlapping_writes_take_effect_in_either_order_but_reads_must_agree():
    """Two concurrent writes may land in either order; two later reads cannot see both orders."""
    first, second = op(("write", "a"), 1, 10, ("ok", ANY)), op(("write", "b"), 2, 11, ("ok", ANY))
    later = [op(("read",), 12, 13, (2, "a")), op(("read",), 14, 15, (2, "a"))]
    assert linearizable([first, second, *later], Register)
    assert not linearizable([first, second, later[0], op(("read",), 14, 15, (2, "b"))], Register)
    assert not linearizable([first, second, op(("read",), 12, 13, (3, "a"))], Register)


def test_a_lost_update_through_compare_and_set_is_refused():
    """Two compare-and-sets on the same version cannot both succeed; one must be refused with the winner's version."""
    base = op(("write", "x"), 0, 1, ("ok", 1))
    winner = op(("cas", 1, "a"), 2, 5, ("ok", 2))
    assert not linearizable([base, winner, op(("cas", 1, "b"), 3, 6, ("ok", 2))], Register)
    assert linearizable([base, winner, op(("cas", 1, "b"), 3, 6, ("refused", 2))], Register)
    # The refusal must name the version it was refused against.
    assert not linearizable([base, winner, op(("cas", 1, "b"), 3, 6, ("refused", 1))], Register)
    # Compare-and-set on a deleted key is refused with no current version.
    assert linearizable([base, op(("write", None), 2, 3, ("ok", 2)), op(("cas", 1, "c"), 4, 5, ("refused", None))], Register)


def test_a_register_write_of_unknown_outcome_may_or_may_not_take_effect():
    """A write that never answered explains a later read of its value, and equally a read that never sees it."""
    lost = op(("write", "maybe"), 1, None)
    before = op(("write", "a"), 0, 0.5, ("ok", 1))
    assert linearizable([before, lost, op(("read",), 5, 6, (2, "maybe"))], Register)
    assert linearizable([before, lost, op(("read",), 5, 6, (1, "a"))], Register)
    # …but only after it was invoked.
    assert not linearizable([before, op(("write", "maybe"), 7, None), op(("read",), 5, 6, (2, "maybe"))], Register)
    # …and only once: it cannot explain two versions of its value.
    assert not linearizable([before, lost, op(("read",), 5, 6, (2, "maybe")), op(("read",), 7, 8, (3, "maybe"))], Register)


# ---------------------------------------------------------------------------
# Bounded counter


def test_a_bounded_counter_history_with_refusals_passes():
    """Decrements with min=0 succeed down to 0, then are refused with the current value 0."""
    history = [op(("add", 3, INT64_MIN, INT64_MAX), 0, 1, ("ok", 3))]
    history += [op(DOWN, 2 + i, 2.5 + i, ("ok", 2 - i)) for i in range(3)]
    history += [op(DOWN, 6, 7, ("refused", 0)), op(("read",), 8, 9, 0)]
    assert linearizable(history, Counter)


def test_a_double_applied_decrement_is_refused():
    """Three decrements of 5 cannot leave 1 behind (a decrement applied twice), nor go below the bound."""
    start = op(("add", 5, INT64_MIN, INT64_MAX), 0, 1, ("ok", 5))
    decrements = [op(DOWN, 2, 10, ("ok", 4)), op(DOWN, 3, 11, ("ok", 3)), op(DOWN, 4, 12, ("ok", 2))]
    assert linearizable([start, *decrements, op(("read",), 13, 14, 2)], Counter)
    assert not linearizable([start, *decrements, op(("read",), 13, 14, 1)], Counter)
    # Two decrements reporting the same new value: one of them was applied on a stale value.
    assert not linearizable([start, op(DOWN, 2, 10, ("ok", 4)), op(DOWN, 3, 11, ("ok", 4))], Counter)


def test_a_lost_counter_update_is_refused():
    """Two increments that both succeeded must both show: a later read of one of them alone lost an update."""
    up = ("add", 1, INT64_MIN, INT64_MAX)
    both = [op(up, 0, 5, ("ok", 1)), op(up, 1, 6, ("ok", 2))]
    assert linearizable([*both, op(("read",), 7, 8, 2)], Counter)
    assert not linearizable([*both, op(("read",), 7, 8, 1)], Counter)


def test_a_search_over_its_budget_gives_up_and_fails():
    """When the search visits more configurations than allowed, the verdict is a failure that says it gave up."""
    up = ("add", 1, INT64_MIN, INT64_MAX)
    history = [op(up, i * 0.01, None) for i in range(3)] + [op(("add", 2, INT64_MIN, INT64_MAX), 0, None)]
    history.append(op(("read",), 1, 2, 5))
    verdict = check_key(history, Counter, max_visited=2)
    assert not verdict.ok and verdict.gave_up and "gave up" in verdict.message
    assert check_key(history, Counter).ok


def test_the_last_seat_cannot_be_sold_twice():
    """With one unit left, two concurrent decrements with min=0: one succeeds and one is refused, never both succeed."""
    start = op(("add", 1, INT64_MIN, INT64_MAX), 0, 1, ("ok", 1))
    assert not linearizable([start, op(DOWN, 2, 5, ("ok", 0)), op(DOWN, 3, 6, ("ok", 0))], Counter)
    assert linearizable([start, op(DOWN, 2, 5, ("ok", 0)), op(DOWN, 3, 6, ("refused", 0))], Counter)
    # A refusal that completed before the success was invoked saw 1, not 0: it claims a value nobody held.
    assert not linearizable([start, op(DOWN, 2, 3, ("refused", 0)), op(DOWN, 4, 5, ("ok", 0))], Counter)


def test_a_counter_refuses_to_overflow():
    """An addition that would overflow 64 bits is refused with the current value, even without bounds."""
    history = [op(("add", INT64_MAX, INT64_MIN, INT64_MAX), 0, 1, ("ok", INT64_MAX)),
               op(("add", 1, INT64_MIN, INT64_MAX), 2, 3, ("refused", INT64_MAX))]
    assert linearizable(history, Counter)


def test_unknown_decrements_may_apply_once_or_not_at_all():
    """Decrements of unknown outcome explain a final value anywhere from all applied to none applied, and nothing outside."""
    start = op(("add", 10, INT64_MIN, INT64_MAX), 0, 1, ("ok", 10))
    unknown = [op(DOWN, 2 + i * 0.1, None, client=i) for i in range(4)]
    for final in range(6, 11):
        assert linearizable([start, *unknown, op(("read",), 20, 21, final)], Counter), final
    assert not linearizable([start, *unknown, op(("read",), 20, 21, 5)], Counter)
    assert not linearizable([start, *unknown, op(("read",), 20, 21, 11)], Counter)
    # Reads may see them land one at a time, but never undone.
    reads = [op(("read",), 5, 6, 9), op(("read",), 7, 8, 9), op(("read",), 9, 10, 7)]
    assert linearizable([start, *unknown, *reads], Counter)
    assert not linearizable([start, *unknown, *reads, op(("read",), 11, 12, 8)], Counter)


def test_keys_are_checked_separately_and_the_failing_key_is_named():
    """A violation on one key fails that key only, and assert_linearizable names it."""
    good = [op(("add", 1, INT64_MIN, INT64_MAX), 0, 1, ("ok", 1), key="good"), op(("read",), 2, 3, 1, key="good")]
    bad = [op(("add", 1, INT64_MIN, INT64_MAX), 0, 1, ("ok", 1), key="bad"), op(("read",), 2, 3, 0, key="bad")]
    verdicts = check(good + bad, Counter)
    assert verdicts["good"].ok and not verdicts["bad"].ok
    try:
        assert_linearizable(good + bad, Counter)
    except AssertionError as error:
        assert "'bad'" in str(error)
    else:
        raise AssertionError("assert_linearizable accepted a stale read")


def test_a_few_hundred_concurrent_operations_on_one_key_are_checked_fast():
    """A simulated bounded counter with 300 overlapping decrements (some of unknown outcome) and readers checks in seconds, and so does the same history with one result corrupted, which is refused."""
    rng = random.Random(7)
    value, clock, history = 50, 0.0, [op(("add", 50, INT64_MIN, INT64_MAX), 0.0, 0.5, ("ok", 50))]
    pending = []
    for index in range(300):
        clock += rng.random() * 0.05
        pending.append((clock, index, "read" if index % 10 == 0 else "down"))
    # Operations take effect in order of their invocation plus a random delay and overlap widely.
    effects = sorted(((start + rng.random() * 5, start, index, kind) for start, index, kind in pending))
    for at, start, index, kind in effects:
        end = at + rng.random() * 5
        if kind == "read":
            history.append(op(("read",), start, end, value, client=index))
        elif index % 17 == 0:
            if rng.random() < 0.5 and value > 0:
                value -= 1
            history.append(op(DOWN, start, None, client=index))
        elif value > 0:
            value -= 1
            history.append(op(DOWN, start, end, ("ok", value), client=index))
        else:
            history.append(op(DOWN, start, end, ("refused", 0), client=index))
    started = time.monotonic()
    verdict = check_key(history, Counter)
    assert verdict.ok, verdict.message
    assert time.monotonic() - started < 10, f"{time.monotonic() - started:.1f} s"

    # Two decrements reporting the same new value: nothing ever adds, so one of them saw a stale value.
    successes = [i for i, o in enumerate(history) if o.call == DOWN and o.completed is not None and o.result[0] == "ok"]
    victim, twin = successes[len(successes) // 2], successes[len(successes) // 2 + 1]
    history[victim] = op(DOWN, history[victim].invoked, history[victim].completed, history[twin].result)
    started = time.monotonic()
    assert not check_key(history, Counter).ok
    assert time.monotonic() - started < 10, f"{time.monotonic() - started:.1f} s"
