"""The metaworld wire protocol: message types, the codec and the close codes.

Every WebSocket frame is binary and holds one MessagePack-encoded message. A message is
an array whose first element is its type tag (a short string) followed by the fields in
the order declared below; trailing fields that have defaults may be left out, which is
how fields are added without breaking older peers. The WebSocket subprotocol
``metaworld.v1`` carries the major version; ``Hello.version`` carries it again so a
mismatch gets a readable reply.

Pose data travels as packed binary bodies (see :mod:`metaworld.quant`): a pose body is
28 bytes; a pose record on the downlink is the 2-byte avatar id plus the body.
"""

from __future__ import annotations

import enum
from typing import Annotated, Any, Final, Literal

import msgspec

from metaworld.layout import Layout
from metaworld.records.categories import Category
from metaworld.records.view import RecordView
from metaworld.roles import Role

PROTOCOL_VERSION: Final = 1
SUBPROTOCOL: Final = f"metaworld.v{PROTOCOL_VERSION}"
MAX_MESSAGE_BYTES: Final = 64 * 1024  # bytes; a larger inbound frame closes with 1009
MAX_CHAT_CHARS: Final = 500

ClientKind = Literal["webxr", "headset", "bot", "sdk"]
Text = Annotated[str, msgspec.Meta(max_length=MAX_CHAT_CHARS)]
Name = Annotated[str, msgspec.Meta(max_length=64)]
U32 = Annotated[int, msgspec.Meta(ge=0, le=2**32 - 1)]
U16 = Annotated[int, msgspec.Meta(ge=0, le=2**16 - 1)]


class CloseCode(enum.IntEnum):
    """WebSocket close codes the server uses, with the reason each stands for."""

    NORMAL = 1000  # the client said Leave, or the session ended normally
    GOING_AWAY = 1001  # the server is shutting down
    MESSAGE_TOO_BIG = 1009  # a frame over MAX_MESSAGE_BYTES
    BAD_HANDSHAKE = 4000  # the first message was not a valid Hello
    TOKEN_REJECTED = 4001  # token forged, expired, wrong audience/issuer, bad algorithm
    VERSION_UNSUPPORTED = 4002  # Hello.version is not one the server speaks
    MALFORMED = 4003  # undecodable message, unknown message type, or invalid fields
    HANDSHAKE_TIMEOUT = 4004  # no Hello within the handshake deadline
    TOO_SLOW = 4008  # the client fell too far behind its reliable queue
    REPLACED = 4010  # the same session was resumed on another connection
    SERVER_FULL = 4011  # the server holds as many sessions as it is configured for
    RATE_LIMITED = 4029  # the client sent far more messages than the protocol allows


class Tagged(msgspec.Struct, array_like=True, tag=True):
    """Base of every wire message: encoded as ``[tag, field1, field2, ...]``."""


# ---------------------------------------------------------------- client to server


class Hello(Tagged, tag="hello"):
    """First message of every connection: who I am and what I speak."""

    token: Annotated[str, msgspec.Meta(max_length=8192)]
    client: ClientKind
    version: int
    session: str | None = None  # set to resume a session after a dropped connection


class Pose(Tagged, tag="pose"):
    """Where my head and hands are now, in my current room (a 28-byte pose body).

    `epoch` is the last epoch the server told me in Placed or Correction; poses from an
    older epoch are ignored, so poses in flight during a teleport are never misread.
    """

    epoch: U32
    body: bytes
    seq: U32 = 0


class MoveTo(Tagged, tag="move_to"):
    """Teleport to a point in my current room (point-and-teleport locomotion)."""

    x: float
    z: float


class UseDoor(Tagged, tag="use_door"):
    """Go through a door I stand next to."""

    door: Name


class JoinRoom(Tagged, tag="join_room"):
    """Go to a room directly (a menu jump); entry rules and capacity still apply."""

    room: Name


class Admit(Tagged, tag="admit"):
    """Staff only: put a patient's avatar on my current room's appointment allow-list."""

    avatar: U16


class Chat(Tagged, tag="chat"):
    """Say something to everyone in my current room."""

    text: Text


class Ping(Tagged, tag="ping"):
    """Clock probe: the server answers with Pong at once."""

    nonce: U32
    client_time: float  # seconds, the client's own clock


class Leave(Tagged, tag="leave"):
    """I am done; end the session (no resume)."""


Categories = Annotated[list[Category], msgspec.Meta(min_length=1, max_length=7)]
Purpose = Annotated[str, msgspec.Meta(max_length=16)]


class RecordRequest(Tagged, tag="record_request"):
    """Staff: show me part of the record of the patient whose avatar is `patient`.

    Answered with RecordShown or RecordDenied carrying the same `request`. `room`, when
    given, must be the room I am in.
    """

    request: U32
    patient: U16
    categories: Categories
    purpose: Purpose = "TREAT"
    room: Name | None = None


class ConsentGrant(Tagged, tag="consent_grant"):
    """Patient: let `grantee` (an avatar; None for every clinician) see these categories
    for this purpose, for `duration_s` seconds."""

    request: U32
    categories: Categories
    grantee: U16 | None = None
    purpose: Purpose = "TREAT"
    duration_s: Annotated[int, msgspec.Meta(ge=60, le=366 * 24 * 3600)] = 3600


class ConsentRevoke(Tagged, tag="consent_revoke"):
    """Patient: withdraw one of my consents; open views of my record are purged."""

    request: U32
    consent: Name


class ConsentQuery(Tagged, tag="consent_query"):
    """Patient: list my consents and who has viewed what (the accounting of disclosures)."""

    request: U32


class BreakGlass(Tagged, tag="break_glass"):
    """Clinician: claim time-boxed emergency access to a patient's record."""

    request: U32
    patient: U16
    reason: Annotated[str, msgspec.Meta(min_length=1, max_length=500)]
    duration_s: Annotated[int, msgspec.Meta(ge=60, le=4 * 3600)] = 900


ClientMessage = (
    Hello
    | Pose
    | MoveTo
    | UseDoor
    | JoinRoom
    | Admit
    | Chat
    | Ping
    | Leave
    | RecordRequest
    | ConsentGrant
    | ConsentRevoke
    | ConsentQuery
    | BreakGlass
)


# ---------------------------------------------------------------- server to client


class AvatarInfo(msgspec.Struct, array_like=True, frozen=True):
    """What a client learns about an avatar when it comes into view."""

    id: U16
    role: Role
    label: str  # display name for staff, a stable pseudonym for patients


class Welcome(Tagged, tag="welcome"):
    """Reply to Hello: the session is open."""

    session: str
    you: AvatarInfo
    tick_hz: int
    room: str
    layout: Layout
    resume_grace_s: float
    server_time: float  # seconds, the server's monotonic clock


class Snapshot(Tagged, tag="snapshot"):
    """The full visible set of my room: replaces whatever view the client had."""

    tick: U32
    room: str
    avatars: list[AvatarInfo]
    poses: bytes  # pose records of the visible avatars
    epoch: U32
    you: bytes  # my own pose body as the server holds it


class Delta(Tagged, tag="delta"):
    """One tick's change to my view: who entered, who left, and pose records."""

    tick: U32
    server_time: float
    entered: list[AvatarInfo]
    left: list[int]
    poses: bytes  # records of entered avatars and of visible avatars due this tick


class Placed(Tagged, tag="placed"):
    """The server moved me (teleport, door, room change, resume); adopt this pose."""

    epoch: U32
    room: str
    body: bytes
    reason: str


class Correction(Tagged, tag="correction"):
    """The server rejected my movement; I am where `body` says."""

    epoch: U32
    room: str
    body: bytes
    reason: str


class ChatMessage(Tagged, tag="chat_message"):
    room: str
    avatar: int
    label: str
    text: str
    server_time: float


class Presence(Tagged, tag="presence"):
    """Who is in my room (not only who I can see). `full` replaces the list."""

    room: str
    joined: list[AvatarInfo]
    left: list[int]
    full: bool = False


class Error(Tagged, tag="error"):
    """A request could not be carried out; the connection stays open."""

    code: str
    message: str


class Pong(Tagged, tag="pong"):
    nonce: int
    client_time: float
    server_time: float


class RecordShown(Tagged, tag="record_shown"):
    """Part of a record, sent only to the requester and to the patient it belongs to."""

    request: int  # the requester's request number (0 in the patient's copy)
    patient: int  # the patient's avatar
    viewer: AvatarInfo  # who asked
    view: RecordView
    consent_version: str


class RecordDenied(Tagged, tag="record_denied"):
    """No part of the record may be shown. The same reply whether or not a record, a
    patient or a consent exists; `reason` is "denied" or "unavailable" (fail closed)."""

    request: int
    reason: str
    message: str


class RecordPurge(Tagged, tag="record_purge"):
    """Forget every view of this patient's record you hold: consent was withdrawn."""

    patient: int


class ConsentSummary(msgspec.Struct, array_like=True, frozen=True):
    id: str
    version: int
    status: str
    categories: list[str]
    purpose: str
    grantee: str  # a label, or "every clinician"
    end_ms: int | None


class Disclosure(msgspec.Struct, array_like=True, frozen=True):
    """One audited decision about the patient's record."""

    at_ms: int
    kind: str
    who: str  # a label or subject id of the person who asked
    role: str
    categories: list[str]
    purpose: str
    outcome: str
    review: bool


class ConsentResult(Tagged, tag="consent_result"):
    """Reply to ConsentGrant, ConsentRevoke and BreakGlass."""

    request: int
    ok: bool
    consent: str = ""  # consent id, or break-the-glass grant id
    version: int = 0
    status: str = ""
    message: str = ""
    end_ms: int | None = None


class ConsentState(Tagged, tag="consent_state"):
    """Reply to ConsentQuery: my consents and the accounting of disclosures."""

    request: int
    consents: list[ConsentSummary]
    disclosures: list[Disclosure]


ServerMessage = (
    Welcome
    | Snapshot
    | Delta
    | Placed
    | Correction
    | ChatMessage
    | Presence
    | Error
    | Pong
    | RecordShown
    | RecordDenied
    | RecordPurge
    | ConsentResult
    | ConsentState
)

# Error codes carried by Error.code.
ERROR_CODES: Final = {
    "unknown_room": "no room by that id",
    "unknown_door": "no door by that id in this room",
    "too_far": "you are not close enough to that door",
    "room_full": "the room is at its capacity",
    "not_allowed": "your role may not enter that room",
    "no_appointment": "the room is reserved for another patient's appointment",
    "bad_target": "the target point is outside the room or inside furniture",
    "bad_pose": "the pose body is malformed",
    "not_staff": "only staff may do that",
    "unknown_avatar": "no such patient avatar",
    "rate_limited": "too many requests of this kind; slow down",
    "not_patient": "only a patient may change their own consent",
    "busy": "too many record or consent requests waiting; try again",
}


# ---------------------------------------------------------------- codec

_client_decoder = msgspec.msgpack.Decoder(ClientMessage)
_server_decoder = msgspec.msgpack.Decoder(ServerMessage)
_encoder = msgspec.msgpack.Encoder()


class ProtocolError(Exception):
    """A peer sent bytes that are not a valid message; the connection should close."""


def encode(message: Tagged) -> bytes:
    return _encoder.encode(message)


def decode_client(data: bytes | str) -> ClientMessage:
    """Decode a client-to-server frame, raising ProtocolError on anything invalid."""
    if isinstance(data, str):
        raise ProtocolError("text frames are not part of the protocol; send binary frames")
    try:
        return _client_decoder.decode(data)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise ProtocolError(str(exc)) from exc


def decode_server(data: bytes | str) -> ServerMessage:
    """Decode a server-to-client frame (used by clients and tests)."""
    if isinstance(data, str):
        raise ProtocolError("text frames are not part of the protocol; send binary frames")
    try:
        return _server_decoder.decode(data)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise ProtocolError(str(exc)) from exc


def json_schema() -> dict[str, Any]:
    """JSON Schema of both message unions, for implementing a client in another language."""
    (client, server), components = msgspec.json.schema_components(
        [ClientMessage, ServerMessage], ref_template="#/$defs/{name}"
    )
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": f"metaworld protocol v{PROTOCOL_VERSION}",
        "description": (
            "Each message is a MessagePack array: [tag, field, ...]. Pose bodies are "
            "28-byte packed binaries described in docs/protocol.md."
        ),
        "$defs": components,
        "properties": {"client_to_server": client, "server_to_client": server},
    }
