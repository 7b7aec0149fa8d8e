"""A linearizability checker for histories of operations on independent keys.

A history is a list of `Op`s: which key, what was asked (`call`), when the client
invoked it, when it completed (None when it never did, or the client could not
tell whether it took effect) and what it returned. Keys are independent, so each
key is checked on its own: is there a total order of that key's operations that
respects real time (an operation that completed before another was invoked comes
first) in which every completed operation returns exactly what the sequential
model gives? An operation with an unknown outcome may take effect at any point
after its invocation, or never.

The search is Wing and Gong's, with Lowe's memoisation (Knossos does the same):
depth first over which operation takes effect next, never visiting the same
(set of operations taken, model state) twice. Three reductions keep a few hundred
operations per key fast, and none changes the verdict:

- a completed observation (a read or a refusal: an operation that leaves every
  state as it is whenever it returns what it returned) is taken as soon as it may
  go next and returns what the model gives;
- an unknown operation that would leave the state as it is is never taken (not
  taking it is the same as taking it);
- unknown operations with the same call are interchangeable once invoked, so they
  are taken in the order they were invoked.

A model has `initial` (its state before the first operation), `step(state, call)`
returning `(next_state, result)`, `observes(call, result)`: whether an operation
that returned `result` left the state as it was, whatever it was, and may have
`hopeless(state, pending)`: whether some completed operation among those not taken
yet can never return what it returned, whatever order the rest take (a sound
cut, which keeps the search short on histories that are not linearizable).

`Register` — state `(version, value)`; version 0 and value None before the first
write, value None after a delete.
    ("read",)                   -> (version, value)
    ("write", value)            -> ("ok", new_version); value None deletes (deleting
                                   an absent key changes nothing)
    ("cas", version, value)     -> ("ok", new_version) when the key exists with that
                                   version, else ("refused", current_version or None)

`Counter` — state an int64, 0 before the first change.
    ("read",)                   -> value
    ("add", delta, low, high)   -> ("ok", new_value) when low <= value + delta <= high,
                                   else ("refused", value)

Any part of a recorded result may be `ANY` when the client could not see it (a
404 carries no version, so it reads as `(ANY, None)`).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any, Hashable, Iterable

INT64_MIN = -(1 << 63)
INT64_MAX = (1 << 63) - 1


class _Any:
    """Matches any value in a recorded result."""

    def __repr__(self) -> str:
        return "ANY"


ANY = _Any()


def matches(recorded: Any, computed: Any) -> bool:
    """Whether a recorded result agrees with the model's, `ANY` matching anything."""
    if recorded is ANY:
        return True
    if isinstance(recorded, tuple) and isinstance(computed, tuple):
        return len(recorded) == len(computed) and all(matches(r, c) for r, c in zip(recorded, computed))
    return recorded == computed


@dataclass(frozen=True)
class Op:
    """One operation as a client saw it. `completed` None: the outcome is unknown."""

    key: Hashable
    call: tuple
    invoked: float
    completed: float | None
    result: Any = None
    client: Any = None

    def __post_init__(self):
        if self.completed is not None and self.completed < self.invoked:
            raise ValueError(f"{self} completed before it was invoked")

    def __repr__(self) -> str:
        end = "?" if self.completed is None else f"{self.completed:.6f}"
        outcome = "unknown" if self.completed is None else repr(self.result)
        who = "" if self.client is None else f"{self.client}: "
        return f"<{who}{self.call!r} [{self.invoked:.6f}, {end}] -> {outcome}>"


# ---------------------------------------------------------------------------
# Models


class Register:
    """A versioned register with compare-and-set on the version."""

    initial = (0, None)

    @staticmethod
    def observes(call, result) -> bool:
        return call[0] == "read" or (call[0] == "cas" and isinstance(result, tuple) and result[0] == "refused")

    @staticmethod
    def hopeless(state, pending) -> bool:
        """Versions never go down: a completed operation that saw an older version can no longer go."""
        version = state[0]
        for op in pending:
            if op.completed is None or not isinstance(op.result, tuple):
                continue
            seen = op.result[0] if op.call[0] == "read" else op.result[1]
            if seen is ANY or seen is None:
                continue
            if op.result[0] == "ok" and op.call[0] != "read" and op.call[-1] is not None:
                seen -= 1  # it made this version; a delete may have found it already deleted
            if seen < version:
                return True
        return False

    @staticmethod
    def step(state, call):
        version, value = state
        kind = call[0]
        if kind == "read":
            return state, state
        if kind == "write":
            new = call[1]
            if new is None and value is None:
                return state, ("ok", version)
            return (version + 1, new), ("ok", version + 1)
        if kind == "cas":
            expected, new = call[1], call[2]
            if value is None or version != expected:
                return state, ("refused", version if value is not None else None)
            return (version + 1, new), ("ok", version + 1)
        raise ValueError(f"unknown register call {call!r}")


class Counter:
    """A signed 64-bit counter whose additions are refused rather than leave their bounds."""

    initial = 0

    @staticmethod
    def observes(call, result) -> bool:
        return call[0] == "read" or (isinstance(result, tuple) and result[0] == "refused") or call[1] == 0

    @staticmethod
    def hopeless(state, pending) -> bool:
        """When every addition left goes one way, a completed operation that needs a value on the other side can no longer go."""
        rises = any(op.call[0] == "add" and op.call[1] > 0 and Counter._may_change(op) for op in pending)
        falls = any(op.call[0] == "add" and op.call[1] < 0 and Counter._may_change(op) for op in pending)
        for op in pending:
            if op.completed is None:
                continue
            if op.call[0] == "read":
                before = op.result
            elif isinstance(op.result, tuple) and op.result[1] is not ANY:
                before = op.result[1] - op.call[1] if op.result[0] == "ok" else op.result[1]
            else:
                continue
            if before is ANY:
                continue
            if (before > state and not rises) or (before < state and not falls):
                return True
        return False

    @staticmethod
    def _may_change(op) -> bool:
        return op.completed is None or not (isinstance(op.result, tuple) and op.result[0] == "refused")

    @staticmethod
    def step(state, call):
        kind = call[0]
        if kind == "read":
            return state, state
        if kind == "add":
            delta, low, high = call[1], call[2], call[3]
            total = state + delta
            if not (INT64_MIN <= total <= INT64_MAX and low <= total <= high):
                return state, ("refused", state)
            return total, ("ok", total)
        raise ValueError(f"unknown counter call {call!r}")


# ---------------------------------------------------------------------------
# The search


@dataclass
class Verdict:
    """The outcome for one key. `ok` is False when no order fits or the search gave up."""

    key: Hashable
    ok: bool
    operations: int
    visited: int
    gave_up: bool = False
    message: str = ""
    stuck: list = field(default_factory=list)

    def __bool__(self) -> bool:
        return self.ok


def check_key(ops: Iterable[Op], model, initial=None, key: Hashable = None, max_visited: int = 2_000_000) -> Verdict:
    """Checks the operations of one key against `model`, starting from `initial` (else the model's)."""
    ops = sorted((op for op in ops if not (op.completed is None and op.call[0] == "read")), key=lambda op: op.invoked)
    count = len(ops)
    state0 = model.initial if initial is None else initial
    invoked = [op.invoked for op in ops]
    done = [op.completed for op in ops]
    by_completion = sorted((i for i in range(count) if done[i] is not None), key=lambda i: done[i])
    all_completed = 0
    for i in by_completion:
        all_completed |= 1 << i
    observation = [done[i] is not None and model.observes(op.call, op.result) for i, op in enumerate(ops)]
    # For an unknown operation, the unknown operation with the same call invoked just before it.
    previous_twin = [-1] * count
    last_of_call: dict = {}
    for i, op in enumerate(ops):
        if op.completed is None:
            previous_twin[i] = last_of_call.get(op.call, -1)
            last_of_call[op.call] = i

    def frontier(mask: int) -> float:
        """The earliest completion among completed operations not taken yet."""
        for i in by_completion:
            if not mask >> i & 1:
                return done[i]
        return float("inf")

    def close(mask: int, state):
        """Takes every observation that may go next and returns what the model gives."""
        progress = True
        while progress:
            progress = False
            limit = frontier(mask)
            for i in range(count):
                if invoked[i] > limit:
                    break
                if mask >> i & 1 or not observation[i]:
                    continue
                after, result = model.step(state, ops[i].call)
                if after == state and matches(ops[i].result, result):
                    mask |= 1 << i
                    progress = True
                    limit = frontier(mask)
        return mask

    def successors(mask: int, state):
        limit = frontier(mask)
        found = []
        for i in range(count):
            if invoked[i] > limit:
                break
            if mask >> i & 1:
                continue
            op = ops[i]
            after, result = model.step(state, op.call)
            if done[i] is None:
                if after == state:
                    continue
                twin = previous_twin[i]
                if twin >= 0 and not mask >> twin & 1:
                    continue
            elif not matches(op.result, result):
                continue
            found.append((done[i] if done[i] is not None else float("inf"), i, after))
        found.sort(key=lambda item: (item[0], item[1]))
        return found

    start = close(0, state0)
    visited = {(start, state0)}
    stack = [(start, state0)]
    best_mask, best_state, best_taken = start, state0, -1
    hopeless = getattr(model, "hopeless", None)
    while stack:
        mask, state = stack.pop()
        if mask & all_completed == all_completed:
            return Verdict(key, True, count, len(visited))
        taken = bin(mask & all_completed).count("1")
        if taken > best_taken:
            best_mask, best_state, best_taken = mask, state, taken
        if hopeless is not None and hopeless(state, [ops[i] for i in range(count) if not mask >> i & 1]):
            continue
        if len(visited) > max_visited:
            return Verdict(key, False, count, len(visited), gave_up=True,
                           message=f"gave up after visiting {len(visited)} configurations")
        for _, i, after in reversed(successors(mask, state)):
            child = close(mask | 1 << i, after)
            if (child, after) not in visited:
                visited.add((child, after))
                stack.append((child, after))

    limit = frontier(best_mask)
    stuck = [ops[i] for i in range(count) if not best_mask >> i & 1 and invoked[i] <= limit]
    completed_total = len(by_completion)
    return Verdict(
        key, False, count, len(visited), stuck=stuck,
        message=(f"no order fits: at most {best_taken} of {completed_total} completed operations linearize; "
                 f"then the state is {best_state!r} and none of these can go next: {stuck[:8]!r}"))


def check(history: Iterable[Op], model, initial=None, max_visited: int = 2_000_000) -> dict:
    """Checks every key of `history` on its own; returns {key: Verdict}."""
    per_key = defaultdict(list)
    for op in history:
        per_key[op.key].append(op)
    return {key: check_key(ops, model, initial, key, max_visited) for key, ops in per_key.items()}


def assert_linearizable(history: Iterable[Op], model, initial=None, max_visited: int = 2_000_000) -> dict:
    """Fails with the first key whose history no order explains; returns the verdicts."""
    verdicts = check(history, model, initial, max_visited)
    for key, verdict in verdicts.items():
        assert verdict.ok, f"key {key!r} ({verdict.operations} operations) is not linearizable: {verdict.message}"
    return verdicts
