"""Replication: turning the world into one state message per client per tick.

Theory of operation. Each tick, for every room, the interest core gives the visible
pairs. The world holds every avatar's pose as a ready 30-byte record; a client's message
is a slice of those records spliced together, plus who entered and who left its view.
No pose is encoded per client.

"Entered" and "left" must be relative to what the client has actually been sent, not
to what we computed last tick: the server keeps only the newest state message for a
slow client, so a message may be replaced before it is sent. The server tells the
replicator, per client, what view its last *sent* message established (`confirm`);
for clients that are keeping up that equals last tick's visible set, so the common
path stays vectorized, and only lagging clients get their base swapped in.

A client that just joined, changed room or resumed gets a Snapshot instead of a Delta:
its complete view, which replaces whatever it had.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from metaworld import protocol, quant
from metaworld.interest import (
    ID_BITS,
    ID_MASK,
    IntArray,
    InterestConfig,
    Visible,
    changes,
    compute_visible,
    due_mask,
    pair_keys,
)
from metaworld.world import World

_NO_IDS: npt.NDArray[np.int64] = np.empty(0, dtype=np.int64)


@dataclass(slots=True)
class Outgoing:
    """One client's state message for this tick and the view it establishes."""

    avatar: int  # the viewer this message is for
    data: bytes
    view: IntArray  # sorted target ids the client sees once this message is applied
    is_snapshot: bool


@dataclass
class Replicator:
    world: World
    config: InterestConfig = field(default_factory=InterestConfig)
    tick: int = 0

    def __post_init__(self) -> None:
        self.visible: dict[str, Visible] = {}
        self.records = self.world.records
        self._sent: dict[int, IntArray] = {}  # viewer -> view its last sent message set
        self._lagging: set[int] = set()
        self._needs_snapshot: set[int] = set()
        self._infos: dict[int, protocol.AvatarInfo] = {}

    # ------------------------------------------------------------ bookkeeping

    def request_snapshot(self, avatar_id: int) -> None:
        """The client's view is unknown (join, room change, resume): send it whole."""
        self._needs_snapshot.add(avatar_id)

    def confirm(self, avatar_id: int, view: IntArray) -> None:
        """The writer handed a message establishing `view` to the client's socket."""
        self._sent[avatar_id] = view
        self._lagging.discard(avatar_id)

    def mark_lagging(self, avatar_id: int) -> None:
        """The client's previous state message was replaced before it was sent."""
        self._lagging.add(avatar_id)

    def forget(self, avatar_id: int) -> None:
        self._sent.pop(avatar_id, None)
        self._lagging.discard(avatar_id)
        self._needs_snapshot.discard(avatar_id)
        self._infos.pop(avatar_id, None)

    def info(self, avatar_id: int) -> protocol.AvatarInfo:
        info = self._infos.get(avatar_id)
        if info is None:
            avatar = self.world.avatars[avatar_id]
            info = protocol.AvatarInfo(avatar.id, avatar.role, avatar.label)
            self._infos[avatar_id] = info
        return info

    # ------------------------------------------------------------ the tick

    def step(self, now: float) -> dict[int, Outgoing]:
        """Advance one tick; return the state message for every client that needs one."""
        self.tick += 1
        out: dict[int, Outgoing] = {}
        for room_id in self.world.rooms:
            members = np.array(self.world.room_members(room_id), dtype=np.int64)
            previous = self.visible.get(room_id, Visible.empty())
            if not len(members):
                self.visible.pop(room_id, None)
                continue
            xz = self.world.poses[members, 0][:, [0, 2]]
            current = compute_visible(members, xz, previous, self.config)
            self.visible[room_id] = current
            self._room_messages(room_id, members, previous, current, now, out)
        return out

    def _base(self, members: IntArray, previous: Visible) -> Visible:
        """What each client of the room has been sent, as a set of pairs."""
        lagging = [m for m in members.tolist() if m in self._lagging]
        if not lagging:
            return previous
        viewers = previous.keys >> ID_BITS
        keep = previous.keys[~np.isin(viewers, lagging)]
        sent = [
            pair_keys(np.full(len(v), m), v)
            for m in lagging
            if len(v := self._sent.get(m, _NO_IDS))
        ]
        keys = np.sort(np.concatenate([keep, *sent]))
        return Visible(keys, np.zeros(len(keys)))

    def _room_messages(
        self,
        room_id: str,
        members: IntArray,
        previous: Visible,
        current: Visible,
        now: float,
        out: dict[int, Outgoing],
    ) -> None:
        # Set work for the whole room at once; per viewer only slicing and encoding.
        entered, left = changes(self._base(members, previous), current)
        send = due_mask(current, self.tick, self.config)
        send[np.searchsorted(current.keys, entered)] = True  # entered pairs always go out
        send_keys = current.keys[send]
        records = self.records[send_keys & ID_MASK].tobytes()
        view_at = _bounds(current.keys, members)
        send_at = _bounds(send_keys, members)
        came_at = _bounds(entered, members)
        went_at = _bounds(left, members)
        targets = current.keys & ID_MASK
        came_ids = (entered & ID_MASK).tolist()
        went_ids = (left & ID_MASK).tolist()
        size = quant.RECORD_SIZE
        for k, viewer in enumerate(members.tolist()):
            view = targets[view_at[k] : view_at[k + 1]]
            if viewer in self._needs_snapshot:
                self._needs_snapshot.discard(viewer)
                out[viewer] = Outgoing(viewer, self._snapshot(viewer, room_id, view), view, True)
                continue
            came = came_ids[came_at[k] : came_at[k + 1]]
            went = went_ids[went_at[k] : went_at[k + 1]]
            first, last = send_at[k], send_at[k + 1]
            # A lagging client gets a message even with nothing new in it: its unsent
            # one, which this replaces, may hold a view that is no longer current.
            if not (came or went or last > first or viewer in self._lagging):
                continue
            delta = protocol.Delta(
                tick=self.tick,
                server_time=now,
                entered=[self.info(i) for i in came],
                left=went,
                poses=records[first * size : last * size],
            )
            out[viewer] = Outgoing(viewer, protocol.encode(delta), view, False)

    def _snapshot(self, viewer: int, room_id: str, view: IntArray) -> bytes:
        avatar = self.world.avatars[viewer]
        return protocol.encode(
            protocol.Snapshot(
                tick=self.tick,
                room=room_id,
                avatars=[self.info(i) for i in view.tolist()],
                poses=self.records[view].tobytes(),
                epoch=avatar.epoch,
                you=self.world.body_of(viewer),
            )
        )


def _bounds(keys: IntArray, viewers: IntArray) -> list[int]:
    """Where each viewer's pairs start in sorted `keys`, and where the last one's end:
    viewer k owns keys[b[k]:b[k + 1]] (viewers sorted ascending)."""
    edges = np.searchsorted(keys, np.append(viewers, viewers[-1] + 1) << ID_BITS)
    return [int(e) for e in edges.tolist()]
