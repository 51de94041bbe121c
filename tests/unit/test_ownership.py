"""Which partitions a worker owns, and the order in which the rest of the worker hears of a change."""

from __future__ import annotations

import pytest

from consumers.ownership import Ownership, partition_for

pytestmark = pytest.mark.unit


# Kafka's own murmur2 test vectors (clients/src/test/.../UtilsTest.testMurmur2): a Java producer's hash of each key.
MURMUR2 = {"21": -973932308, "foobar": -790332482, "a-little-bit-long-string": -985981536,
           "a-little-bit-longer-string": -1486304829, "abc": 479470107}


@pytest.mark.parametrize("partitions", [3, 7, 12])
@pytest.mark.parametrize("key", sorted(MURMUR2))
def test_partition_for__is_where_a_java_producer_puts_the_key(key: str, partitions: int) -> None:
    # Java's DefaultPartitioner: toPositive(murmur2(key)) % partitions. Events keyed by recipient id by any
    # producer land where Herald's state for that recipient lives.
    assert partition_for(key, partitions) == (MURMUR2[key] & 0x7FFFFFFF) % partitions


@pytest.mark.parametrize(("owned", "share"), [((), 0.0), ((0,), 1 / 3), ((0, 2), 2 / 3), ((0, 1, 2), 1.0)])
def test_ownership__share_is_the_fraction_of_partitions_owned(owned: tuple[int, ...], share: float) -> None:
    assert Ownership(3, owned).share == pytest.approx(share)


def test_ownership__without_an_assignment_it_owns_everything() -> None:
    whole = Ownership(3)
    assert whole.partitions == {0, 1, 2} and all(whole.owns(f"u{i}") for i in range(10))


async def test_ownership__revocations_go_last_registered_first_then_assignments_in_order() -> None:
    heard: list[tuple[str, list[int], list[int]]] = []
    ownership = Ownership(4, [0, 1])

    def listener(name: str):  # type: ignore[no-untyped-def]
        async def hear(assigned: frozenset[int], revoked: frozenset[int]) -> None:
            heard.append((name, sorted(assigned), sorted(revoked)))
        return hear

    ownership.on_change(listener("store"))
    ownership.on_change(listener("critical lane"))
    await ownership.set([1, 2, 3])
    assert heard == [("critical lane", [], [0]), ("store", [], [0]),
                     ("store", [2, 3], []), ("critical lane", [2, 3], [])]
    heard.clear()
    await ownership.set([1, 2, 3])  # no change: nobody is told
    await ownership.revoke([1])
    assert heard == [("critical lane", [], [1]), ("store", [], [1])] and ownership.partitions == {2, 3}
    assert ownership.owns_partition(2) and not ownership.owns_partition(1)
