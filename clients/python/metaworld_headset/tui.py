"""The operator's terminal view: room, link health and who is near, refreshed live."""

from __future__ import annotations

from typing import Final

import trio
from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from metaworld_headset.headset import Headset, Status

REFRESH_HZ: Final = 4.0


def render(status: Status) -> Group:
    """One frame of the view, from a status snapshot (pure: no clock, no I/O)."""
    link = "connected" if status.connected else "reconnecting"
    ping = "-" if status.ping_ms is None else f"{status.ping_ms:.0f} ms"
    summary = Text.assemble(
        ("room ", "dim"),
        (status.room or "-", "bold"),
        ("  avatar ", "dim"),
        str(status.avatar),
        ("  link ", "dim"),
        (link, "green" if status.connected else "yellow"),
        ("  ping ", "dim"),
        ping,
        ("  packets/s in ", "dim"),
        f"{status.packets_in_per_s:.0f}",
        ("  out ", "dim"),
        f"{status.packets_out_per_s:.0f}",
        ("  poses sent ", "dim"),
        str(status.poses_sent),
    )
    near = Table(title="Near you", expand=False)
    near.add_column("avatar", justify="right")
    near.add_column("name")
    near.add_column("role")
    near.add_column("distance", justify="right")
    for n in status.neighbours:
        near.add_row(str(n.avatar), n.label, n.role, f"{n.distance:.1f} m")
    if not status.neighbours:
        near.add_row("-", "nobody in view", "", "")
    return Group(summary, near)


async def show(headset: Headset, console: Console | None = None) -> None:
    """Redraw the view until cancelled (run it next to Headset.run)."""
    with Live(
        render(headset.status()), console=console, auto_refresh=False, transient=False
    ) as live:
        while True:
            await trio.sleep(1.0 / REFRESH_HZ)
            live.update(render(headset.status()), refresh=True)
