"""Routing calls to batcher replicas by hash (the router side, services/router/clients/batchers.py):
stable across routers, spread across replicas, and minimally disturbed by a change of replicas."""

from __future__ import annotations

import collections
import hashlib

import grpc

from services.router.clients import BatcherReplicas, rendezvous

REPLICAS = [f"10.0.0.{n}:50054" for n in range(1, 5)]
KEYS = [hashlib.sha256(str(n).encode()).digest() for n in range(2000)]


def first(key: bytes, addresses: list[str]) -> str:
    return rendezvous(key, addresses)[0]


def test_every_router_ranks_the_replicas_the_same_whatever_order_it_learnt_them():
    shuffled = [REPLICAS[2], REPLICAS[0], REPLICAS[3], REPLICAS[1]]
    for key in KEYS[:200]:
        assert rendezvous(key, REPLICAS) == rendezvous(key, shuffled)


def test_keys_spread_evenly_over_the_replicas():
    counts = collections.Counter(first(key, REPLICAS) for key in KEYS)
    assert set(counts) == set(REPLICAS)
    assert all(abs(n - len(KEYS) / 4) < len(KEYS) * 0.06 for n in counts.values())


def test_removing_a_replica_moves_only_the_keys_it_owned():
    survivors = REPLICAS[:3]
    for key in KEYS:
        before = first(key, REPLICAS)
        after = first(key, survivors)
        if before != REPLICAS[3]:
            assert after == before
        else:
            # Its keys go to their second choice, so a retry lands where the key will live.
            assert after == rendezvous(key, REPLICAS)[1]


def test_adding_a_replica_takes_about_a_fair_share_of_keys():
    grown = [*REPLICAS, "10.0.0.9:50054"]
    moved = [key for key in KEYS if first(key, REPLICAS) != first(key, grown)]
    assert all(first(key, grown) == "10.0.0.9:50054" for key in moved)
    assert abs(len(moved) - len(KEYS) / 5) < len(KEYS) * 0.06


class Channels:
    def __init__(self) -> None:
        self.opened: list[str] = []

    def __call__(self, address: str) -> grpc.aio.Channel:
        self.opened.append(address)
        return grpc.aio.insecure_channel(address)


async def test_a_comma_separated_list_is_a_fixed_set_of_replicas():
    channels = Channels()
    replicas = BatcherReplicas("127.0.0.1:1, 127.0.0.1:2", channels)
    await replicas.start()
    ranked = [address for address, _ in replicas.ranked(KEYS[0])]
    assert sorted(ranked) == ["127.0.0.1:1", "127.0.0.1:2"] and channels.opened == sorted(ranked)
    assert ranked == rendezvous(KEYS[0], ranked)
    await replicas.close()


async def test_a_name_is_resolved_to_one_channel_per_address_and_refreshed():
    answers = [["10.0.0.1:50054", "10.0.0.2:50054"], [], ["10.0.0.2:50054", "10.0.0.3:50054"]]
    asked: list[tuple[str, int]] = []

    async def resolve(host: str, port: int) -> list[str]:
        asked.append((host, port))
        return answers.pop(0)

    channels = Channels()
    replicas = BatcherReplicas("batcher.sluice.svc:50054", channels, resolve, refresh_s=3600)
    assert [a for a, _ in replicas.ranked(KEYS[0])] == ["batcher.sluice.svc:50054"]
    await replicas.start()
    assert sorted(a for a, _ in replicas.ranked(KEYS[0])) == ["10.0.0.1:50054", "10.0.0.2:50054"]
    await replicas.refresh()  # resolves to nothing: the known replicas stay
    assert len(replicas.ranked(KEYS[0])) == 2
    await replicas.refresh()
    assert sorted(a for a, _ in replicas.ranked(KEYS[0])) == ["10.0.0.2:50054", "10.0.0.3:50054"]
    assert asked == [("batcher.sluice.svc", 50054)] * 3
    assert channels.opened.count("10.0.0.2:50054") == 1, "a kept replica keeps its channel"
    await replicas.close()
