"""The sim-group of seed 000: one face identity grown from a seed face. Which candidate is admitted, which is a near
miss, and which members are dropped as the group grows; pure logic on 128-d face encodings, no pictures.

The rules, exactly (seed 000's sim-score is the mean face distance from a face to a set of faces):
- The first face considered is the seed: it founds the group.
- A candidate's distance to the group is its sim-score: the mean of its face distances to every member.
  At most `tolerance` (0.40): admitted. Above it and at most `near_miss` (0.60): a near miss, kept apart.
  Above that: rejected. A face within DUPLICATE of a member is the same picture again: a duplicate, not admitted.
- Re-check (`recheck`): after each admission, each member's mean distance to the other members is looked at; while
  the worst exceeds `drop_tolerance` (default: the tolerance) it is dropped (the oldest first on a tie), and the
  others' means are taken again without it. A group of fewer than 3 has no majority and drops no one; with
  `pin_seed` the seed face is never dropped. A dropped member is not considered again.

Cost: the members' encodings live in one (M, 128) array, so a candidate is one vectorised distance computation
against the group (O(M)), into a buffer kept for it (a fresh (M, 128) array per candidate cost 9x more at M = 1000,
in page faults). Each member's summed distance to the others is kept up to date as members come and go, so a
re-check costs O(M) too, never the O(M^2) of recomputing every pair.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np

from studio.faces.identity import DEFAULT_TOLERANCE

# face_recognition's own tolerance: a face up to here is what it would still call the same person.
NEAR_MISS = 0.60
# Two encodings this close come from the same pixels (dlib is deterministic): the same picture twice.
DUPLICATE = 1e-6
DECISIONS = ("seed", "admitted", "near miss", "rejected", "duplicate")
MIN_GROUP_TO_DROP = 3


@dataclass(frozen=True)
class Rules:
    tolerance: float = DEFAULT_TOLERANCE
    near_miss: float = NEAR_MISS
    recheck: bool = True
    drop_tolerance: float | None = None  # None: the tolerance
    pin_seed: bool = False

    def __post_init__(self) -> None:
        if not 0.0 < self.tolerance < 2.0:
            raise ValueError(f"`tolerance` must be between 0 and 2 but is {self.tolerance}")
        if not self.tolerance <= self.near_miss < 2.0:
            raise ValueError(f"`near_miss` must be at least the tolerance ({self.tolerance}) and below 2 but is "
                             f"{self.near_miss}")
        if self.drop_tolerance is not None and not 0.0 < self.drop_tolerance < 2.0:
            raise ValueError(f"`drop_tolerance` must be between 0 and 2 (or None: the tolerance) but is "
                             f"{self.drop_tolerance}")

    @property
    def drop_limit(self) -> float:
        return self.tolerance if self.drop_tolerance is None else self.drop_tolerance


@dataclass
class Member:
    """A face in (or once in) the group, and where it came from."""

    index: int  # the candidate's number in the job; -1 for a seed face the user gave
    source: str  # "seed 1234" for a generated candidate, else the picture's file name
    file: str = ""  # the kept picture, relative to the job folder
    sha256: str = ""  # of the kept picture's bytes (the face cache's key)
    seed: int | None = None  # generated candidates: the seed that regenerates it
    distance: float | None = None  # its sim-score when it was admitted; None for the seed

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, d: dict) -> "Member":
        return cls(**d)


@dataclass
class Drop:
    member: Member
    mean: float  # its mean distance to the other members when it was dropped
    at: int  # the candidate whose admission set the re-check off
    left: int  # members left after it went

    def reason(self, limit: float) -> str:
        return (f"mean distance {self.mean:.4f} to the other {self.left} members exceeds {limit:g} after candidate "
                f"{self.at} was admitted")


@dataclass
class Verdict:
    decision: str  # one of DECISIONS
    distance: float | None  # sim-score: mean face distance to the members (None for the seed)
    nearest: float | None  # distance to the closest member
    dropped: list[Drop] = field(default_factory=list)


class SimGroup:
    """The members and their encodings; `consider` applies the rules to one candidate face."""

    def __init__(self, rules: Rules, capacity: int = 64):
        self.rules = rules
        self.members: list[Member] = []
        self._encodings = np.zeros((capacity, 128))  # (capacity, 128); rows [:size] are the members'
        self._sums = np.zeros(capacity)  # (capacity,); member i's summed face distance to the other members
        self._scratch = np.zeros((capacity, 128))  # (capacity, 128); where distances() works
        self.seed_index: int | None = None  # the seed member's candidate index

    @property
    def size(self) -> int:
        return len(self.members)

    @property
    def encodings(self) -> np.ndarray:
        """(M, 128), a view in member order."""
        return self._encodings[:self.size]

    def distances(self, encoding: np.ndarray) -> np.ndarray:
        """(M,) face distance from `encoding` (128,) to each member: studio.faces.face_distance to the last bit."""
        m = self.size
        diff = np.subtract(self._encodings[:m], encoding, out=self._scratch[:m])  # (M, 128)
        np.multiply(diff, diff, out=diff)
        return np.sqrt(diff.sum(axis=1))

    def mean_to_rest(self) -> np.ndarray:
        """(M,) each member's mean face distance to the other members (zeros for a group of one)."""
        m = self.size
        return self._sums[:m] / (m - 1) if m > 1 else np.zeros(m)

    @property
    def mean_distance(self) -> float | None:
        """The group's mean distance over all pairs of members; None below two members."""
        m = self.size
        return float(self._sums[:m].sum() / (m * (m - 1))) if m > 1 else None

    def consider(self, candidate: Member, encoding: np.ndarray) -> Verdict:
        """Apply the rules to one candidate face; an admitted candidate joins as `candidate` (its distance set)."""
        encoding = np.asarray(encoding, dtype=np.float64).reshape(128)
        if self.size == 0:
            self._add(candidate, encoding, np.zeros(0))
            self.seed_index = candidate.index
            return Verdict("seed", None, None)
        d = self.distances(encoding)  # (M,)
        score, nearest = float(d.mean()), float(d.min())
        if nearest <= DUPLICATE:
            return Verdict("duplicate", score, nearest)
        if score > self.rules.tolerance:
            return Verdict("near miss" if score <= self.rules.near_miss else "rejected", score, nearest)
        candidate.distance = score
        self._add(candidate, encoding, d)
        dropped = self._recheck(candidate.index) if self.rules.recheck else []
        return Verdict("admitted", score, nearest, dropped)

    def _add(self, member: Member, encoding: np.ndarray, distances: np.ndarray) -> None:
        m = self.size
        if m == len(self._sums):  # double the room: appending stays O(1) on average
            self._encodings = np.concatenate([self._encodings, np.zeros_like(self._encodings)])
            self._sums = np.concatenate([self._sums, np.zeros_like(self._sums)])
            self._scratch = np.zeros_like(self._encodings)
        self._sums[:m] += distances
        self._encodings[m] = encoding
        self._sums[m] = distances.sum()
        self.members.append(member)

    def _remove(self, position: int) -> None:
        m = self.size
        row = self.distances(self._encodings[position])  # (M,); 0 at `position`
        self._sums[:m] -= row
        keep = np.arange(m) != position
        self._encodings[:m - 1] = self._encodings[:m][keep]
        self._sums[:m - 1] = self._sums[:m][keep]
        del self.members[position]

    def _recheck(self, at: int) -> list[Drop]:
        drops = []
        while self.size >= MIN_GROUP_TO_DROP:
            means = self.mean_to_rest()
            if self.rules.pin_seed:
                means = np.where([mb.index == self.seed_index for mb in self.members], -np.inf, means)
            worst = int(np.argmax(means))  # the first (oldest) of equals
            if means[worst] <= self.rules.drop_limit:
                break
            member = self.members[worst]
            self._remove(worst)
            drops.append(Drop(member, float(means[worst]), at, self.size))
        return drops

    # ---- exact save and restore: a continued job must decide as one uninterrupted job would ----------------------

    def to_state(self) -> dict:
        """Members and their running sums (floats round-trip exactly through JSON); encodings are stored apart."""
        return {"members": [m.to_json() for m in self.members], "sums": [float(s) for s in self._sums[:self.size]],
                "seed_index": self.seed_index}

    @classmethod
    def from_state(cls, rules: Rules, state: dict, encodings: dict[int, np.ndarray]) -> "SimGroup":
        """The group saved by to_state; `encodings` by candidate index must hold every member's."""
        members = [Member.from_json(m) for m in state["members"]]
        group = cls(rules, capacity=max(64, 2 * len(members)))  # the room differs; the arithmetic does not
        for i, member in enumerate(members):
            if member.index not in encodings:
                raise ValueError(f"the encoding of member {member.index} ({member.source}) is missing")
            group._encodings[i] = encodings[member.index]
        group._sums[:len(members)] = state["sums"]
        group.members = members
        group.seed_index = state.get("seed_index")
        return group
