"""How sure a rate is, and whether two variants differ: the rates page's statistics, in plain arithmetic.

- A rate's 95% interval is Wilson's score interval: unlike "p +/- 1.96 sqrt(p(1-p)/n)" it stays within 0 and 100% and is
  honest for small n and for rates near 0 or 100% (0 of 20 is 0.0 to 16.1%, not "0% ± 0").
- The difference between a variant's rate and the reference variant's (the first by name, e.g. `a`) has Newcombe's
  hybrid score interval (method 10 of Newcombe 1998, built from the two Wilson intervals), and a two-sided p-value
  from the pooled two-proportion z-test. A difference whose interval excludes 0 is significant at 95%; with many
  rates and variants compared, about 1 in 20 of them is by chance alone, which the page says.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

Z95 = 1.959963984540054  # the two-sided 95% quantile of the normal distribution
NO_VARIANT = "\u2013"  # a group's key part when its messages name none


def wilson(successes: int, trials: int, z: float = Z95) -> tuple[float, float]:
    """Wilson's score interval of `successes` / `trials` (trials > 0)."""
    if trials <= 0:
        raise ValueError("an interval needs at least one trial")
    p = successes / trials
    z2 = z * z
    denominator = 1 + z2 / trials
    centre = (p + z2 / (2 * trials)) / denominator
    half = z * math.sqrt(p * (1 - p) / trials + z2 / (4 * trials * trials)) / denominator
    return max(0.0, centre - half), min(1.0, centre + half)


@dataclass(frozen=True)
class Difference:
    """Rate 1 minus rate 2, its 95% interval and the two-sided p-value that they are equal."""

    value: float
    low: float
    high: float
    p_value: float

    @property
    def significant(self) -> bool:
        return self.low > 0 or self.high < 0

    @property
    def text(self) -> str:
        return f"{self.value * 100:+.1f} pts"

    @property
    def interval_text(self) -> str:
        return f"95% CI {self.low * 100:+.1f} to {self.high * 100:+.1f}"


def difference(k1: int, n1: int, k2: int, n2: int) -> Difference:
    """k1/n1 - k2/n2 with Newcombe's hybrid score interval and the pooled z-test's p-value (n1, n2 > 0)."""
    p1, p2 = k1 / n1, k2 / n2
    (l1, u1), (l2, u2) = wilson(k1, n1), wilson(k2, n2)
    d = p1 - p2
    low = d - math.sqrt((p1 - l1) ** 2 + (u2 - p2) ** 2)
    high = d + math.sqrt((u1 - p1) ** 2 + (p2 - l2) ** 2)
    pooled = (k1 + k2) / (n1 + n2)
    se = math.sqrt(pooled * (1 - pooled) * (1 / n1 + 1 / n2))
    p_value = 1.0 if se == 0 else math.erfc(abs(d) / se / math.sqrt(2))
    return Difference(d, low, high, p_value)


class RateLike(Protocol):
    @property
    def numerator(self) -> int: ...

    @property
    def denominator(self) -> int: ...


class GroupLike(Protocol):
    @property
    def key(self) -> tuple[str, ...]: ...

    @property
    def rates(self) -> Mapping[str, RateLike]: ...


@dataclass
class VariantRow:
    """One variant against the reference, rate by rate (None where either has no denominator)."""

    variant: str
    n: dict[str, tuple[int, int]] = field(default_factory=dict)  # rate -> (this variant's n, the reference's n)
    differences: dict[str, Difference | None] = field(default_factory=dict)


@dataclass
class Comparison:
    """The variants of one group (e.g. one type and channel) against its reference variant."""

    label: str
    reference: str
    rows: list[VariantRow]


def compare_variants(groups: Sequence[GroupLike], grouping: Sequence[str], rate_names: Sequence[str]
                     ) -> list[Comparison]:
    """Each group's variants against its first variant by name, when the grouping has `variant` and a group has two
    variants or more (messages without a variant are not compared)."""
    if "variant" not in grouping:
        return []
    at = list(grouping).index("variant")
    by_rest: dict[tuple[str, ...], dict[str, GroupLike]] = {}
    for g in groups:
        if g.key[at] != NO_VARIANT:
            by_rest.setdefault(g.key[:at] + g.key[at + 1:], {})[g.key[at]] = g
    comparisons = []
    for rest, variants in sorted(by_rest.items()):
        if len(variants) < 2:
            continue
        names = sorted(variants)
        reference = variants[names[0]]
        rows = []
        for name in names[1:]:
            row = VariantRow(name)
            for rate in rate_names:
                mine, theirs = variants[name].rates[rate], reference.rates[rate]
                row.n[rate] = (mine.denominator, theirs.denominator)
                row.differences[rate] = (difference(mine.numerator, mine.denominator, theirs.numerator,
                                                    theirs.denominator)
                                         if mine.denominator and theirs.denominator else None)
            rows.append(row)
        comparisons.append(Comparison(" \u00b7 ".join(rest) or "all", names[0], rows))
    return comparisons
