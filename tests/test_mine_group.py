"""The sim-group's rules on synthetic 128-d encodings: admit, near miss, reject, duplicate, the drop of a drifting
member, the running sums against a naive recomputation, and an exact save and restore."""

from __future__ import annotations

import json

import numpy as np
import pytest

from studio.faces import face_distance
from studio.mine.group import Member, Rules, SimGroup


def point(x: float, jitter: float = 0.0, axis: int = 1) -> np.ndarray:
    """An encoding `x` along axis 0, moved `jitter` along another axis (so two points are never the same)."""
    e = np.zeros(128)
    e[0], e[axis] = x, jitter
    return e


def offer(group: SimGroup, index: int, encoding: np.ndarray):
    return group.consider(Member(index, f"seed {index}", seed=index), encoding)


def test_admit_near_miss_reject_and_duplicate_by_the_mean_distance():
    group = SimGroup(Rules(tolerance=0.4, near_miss=0.6))
    assert offer(group, 0, point(0.0)).decision == "seed"
    admitted = offer(group, 1, point(0.3))
    assert (admitted.decision, admitted.distance) == ("admitted", pytest.approx(0.3))
    # mean of 0.5 (to the seed) and 0.2 (to member 1) is 0.35: admitted although the seed is farther than 0.4
    assert offer(group, 2, point(0.5)).distance == pytest.approx(0.35)
    assert group.size == 3
    near = offer(group, 3, point(0.8))  # distances 0.8, 0.5, 0.3: mean 0.533
    assert (near.decision, near.distance) == ("near miss", pytest.approx(1.6 / 3))
    far = offer(group, 4, point(1.2))  # distances 1.2, 0.9, 0.7: mean 0.933
    assert far.decision == "rejected" and far.nearest == pytest.approx(0.7)
    assert offer(group, 5, point(0.3)).decision == "duplicate"
    assert [m.index for m in group.members] == [0, 1, 2]
    assert group.mean_distance == pytest.approx((0.3 + 0.5 + 0.2) / 3)


def test_a_drifting_member_is_dropped_with_its_reason():
    # The seed at 0, three members at 0.28, then faces at 0.5: each is close to the group's majority (admitted),
    # and each pulls the seed's mean distance to the rest up: 0.392 after the third, 0.408 after the fourth.
    def run(**rules) -> tuple[SimGroup, list]:
        group, drops = SimGroup(Rules(**rules)), []
        sequence = [point(0.0)] + [point(0.28, 0.01 * k, axis=k) for k in (1, 2, 3)]
        sequence += [point(0.5, 0.01 * k, axis=k) for k in (4, 5, 6, 7, 8)]
        for i, e in enumerate(sequence):
            verdict = offer(group, i, e)
            assert verdict.decision in ("seed", "admitted"), (i, verdict)
            drops += verdict.dropped
        return group, drops

    group, drops = run()
    assert len(drops) == 1
    drop = drops[0]
    assert drop.member.index == 0 and drop.at == 7 and drop.left == 7
    assert drop.mean == pytest.approx((3 * 0.28 + 4 * 0.5) / 7, abs=5e-3) and drop.mean > 0.4
    assert drop.reason(0.4) == (f"mean distance {drop.mean:.4f} to the other 7 members exceeds 0.4 after candidate 7 "
                                "was admitted")
    assert [m.index for m in group.members] == [1, 2, 3, 4, 5, 6, 7, 8]
    assert group.mean_to_rest().max() <= 0.4
    # the rules as knobs: a pinned seed stays, no re-check drops no one, a looser drop tolerance keeps it longer
    assert [m.index for m in run(pin_seed=True)[0].members][0] == 0
    assert run(recheck=False)[1] == []
    assert run(drop_tolerance=0.45)[1] == []


def naive_group(rules: Rules, encodings: list[np.ndarray]) -> tuple[list[str], list[int], list[int]]:
    """The same rules recomputed from scratch at every step: every pair of members, every time."""
    members, decisions, dropped = [], [], []
    for i, e in enumerate(encodings):
        if not members:
            members.append(i)
            decisions.append("seed")
            continue
        d = np.array([np.linalg.norm(encodings[m] - e) for m in members])
        if d.min() <= 1e-6:
            decisions.append("duplicate")
        elif d.mean() <= rules.tolerance:
            decisions.append("admitted")
            members.append(i)
            while rules.recheck and len(members) >= 3:
                means = [np.mean([np.linalg.norm(encodings[a] - encodings[b]) for b in members if b != a])
                         for a in members]
                worst = int(np.argmax(means))
                if means[worst] <= rules.drop_limit:
                    break
                dropped.append(members.pop(worst))
        else:
            decisions.append("near miss" if d.mean() <= rules.near_miss else "rejected")
    return decisions, members, dropped


def identities(seed: int, count: int) -> list[np.ndarray]:
    """Faces of three made-up people (centres ~0.8 apart, two faces of one ~0.3 apart) in random order, and a chain
    of faces morphing from the first person into the second: its first face seeds the group, the rest come midway."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(3, 128)) * 0.05
    faces = [centres[rng.integers(3)] + rng.normal(size=128) * 0.019 for _ in range(count)]
    chain = [centres[0] + (centres[1] - centres[0]) * t + rng.normal(size=128) * 0.012 for t in np.linspace(0, 1, 40)]
    return chain[:1] + faces[:count // 2] + chain[1:] + faces[count // 2:]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_running_sums_decide_as_a_naive_recomputation(seed):
    rules = Rules(tolerance=0.4, near_miss=0.6)
    encodings = identities(seed, 120)
    group, decisions, dropped = SimGroup(rules, capacity=2), [], []  # capacity 2: the arrays grow many times
    for i, e in enumerate(encodings):
        verdict = offer(group, i, e)
        decisions.append(verdict.decision)
        dropped += [d.member.index for d in verdict.dropped]
    expected = naive_group(rules, encodings)
    assert (decisions, [m.index for m in group.members], dropped) == expected
    assert decisions.count("admitted") > 10 and dropped  # the case is not trivial
    members = np.stack([encodings[m.index] for m in group.members])
    assert np.array_equal(group.distances(encodings[0]), face_distance(members, encodings[0]))  # to the last bit
    pairwise = np.linalg.norm(members[:, None] - members[None], axis=2)  # (M, M)
    np.testing.assert_allclose(group.mean_to_rest(), pairwise.sum(1) / (len(members) - 1), rtol=1e-12)
    assert group.mean_distance == pytest.approx(pairwise.sum() / (len(members) * (len(members) - 1)), rel=1e-12)


def test_a_saved_group_goes_on_exactly_as_an_uninterrupted_one():
    rules = Rules()
    encodings = identities(5, 80)
    whole = SimGroup(rules)
    for i, e in enumerate(encodings):
        offer(whole, i, e)
    first = SimGroup(rules)
    for i, e in enumerate(encodings[:37]):
        offer(first, i, e)
    state = json.loads(json.dumps(first.to_state()))  # through JSON, as state.json keeps it
    stored = {m["index"]: np.array(json.loads(json.dumps(encodings[m["index"]].tolist()))) for m in state["members"]}
    second = SimGroup.from_state(rules, state, stored)
    for i, e in enumerate(encodings[37:], start=37):
        offer(second, i, e)
    assert [m.index for m in second.members] == [m.index for m in whole.members]
    assert np.array_equal(second.mean_to_rest(), whole.mean_to_rest())  # bit for bit
    assert [m.distance for m in second.members] == [m.distance for m in whole.members]


@pytest.mark.parametrize("knobs, message", [
    (dict(tolerance=0.0), "`tolerance` must be between 0 and 2 but is 0.0"),
    (dict(tolerance=0.5, near_miss=0.45), "`near_miss` must be at least the tolerance (0.5)"),
    (dict(drop_tolerance=2.5), "`drop_tolerance` must be between 0 and 2"),
])
def test_bad_rules_name_the_argument(knobs, message):
    with pytest.raises(ValueError) as raised:
        Rules(**knobs)
    assert message in str(raised.value)
