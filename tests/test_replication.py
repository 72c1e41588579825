"""A client that applies the messages it actually receives always holds the right view,
even when the server replaced some of its messages before sending them."""

import numpy as np
from hypothesis import example, given, settings
from hypothesis import strategies as st

from metaworld import protocol, quant
from metaworld.interest import InterestConfig
from metaworld.layout import load_layout
from metaworld.replication import Replicator
from metaworld.world import World


class FakeClient:
    """Applies snapshots and deltas the way every real client must."""

    def __init__(self) -> None:
        self.view: set[int] = set()

    def apply(self, data: bytes) -> None:
        message = protocol.decode_server(data)
        if isinstance(message, protocol.Snapshot):
            self.view = {a.id for a in message.avatars}
            return
        assert isinstance(message, protocol.Delta)
        assert not {a.id for a in message.entered} & self.view, "entered twice"
        assert set(message.left) <= self.view, "left without having entered"
        self.view -= set(message.left)
        self.view |= {a.id for a in message.entered}
        ids = quant.records_from_bytes(message.poses)["id"].tolist()
        assert set(ids) <= self.view, "a pose of an avatar the client does not know"


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 2**32 - 1), st.lists(st.booleans(), min_size=10, max_size=40))
# Found by this test: a lagging client whose step brought nothing new was sent its old,
# replaced message, with a view that had changed since.
@example(seed=89, sends=[False] * 25 + [True, False, False, False, True, True])
def test_views_stay_right_when_messages_are_replaced(seed, sends):
    rng = np.random.default_rng(seed)
    world = World(load_layout(), b"s")
    ids = []
    for i in range(25):
        avatar = world.spawn(f"a{i}", "trainee", None, 0.0)
        world.join_room(avatar.id, "training", 0.0)
        ids.append(avatar.id)
    ids = np.array(ids)
    world.poses[ids, :, 0] = rng.uniform(2, 20, (len(ids), 1))
    world.poses[ids, :, 2] = rng.uniform(32, 50, (len(ids), 1))
    replicator = Replicator(world, InterestConfig(radius=5.0, margin=1.0, cap=6))
    clients = {int(i): FakeClient() for i in ids}
    for i in ids:
        replicator.request_snapshot(int(i))
    pending: dict[int, object] = {}  # the server's newest unsent state per client
    for tick, deliver in enumerate(sends):
        world.poses[ids, :, 0] += rng.normal(0, 1.0, (len(ids), 1))
        world.poses[ids, :, 2] += rng.normal(0, 1.0, (len(ids), 1))
        for viewer, old in pending.items():  # what the server does before each step
            if old.is_snapshot:
                replicator.request_snapshot(viewer)
            else:
                replicator.mark_lagging(viewer)
        pending.update(replicator.step(tick * 0.05))
        # Client 0's socket only drains on some ticks; the others drain every tick.
        for viewer in list(pending):
            if viewer == int(ids[0]) and not deliver:
                continue
            out = pending.pop(viewer)
            replicator.confirm(viewer, out.view)
            clients[viewer].apply(out.data)
            assert clients[viewer].view == set(out.view.tolist())
