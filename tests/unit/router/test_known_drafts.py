"""The front door's drafts of bodies read before: kept by caller and exact bytes, bounded, and
never a way around what admission checks on every request."""

from __future__ import annotations

from services.router.admission import Asked, Draft
from services.router.known_drafts import KnownDrafts
from shared.chat import Role, Turn
from tests.unit.router.door_rig import HEADERS, admission, door_app, http_client

BODY = b'{"model": "chat", "messages": [{"role": "user", "content": "Hi?"}]}'


def drafted(question: str = "Hi?") -> Draft:
    return admission().draft("acme-key", Asked("chat", (Turn(Role.USER, question),)))


def test_a_draft_is_found_by_the_same_caller_and_the_same_bytes_only() -> None:
    known = KnownDrafts()
    draft = drafted()
    known.keep("acme-key", BODY, draft)
    assert known.get("acme-key", bytes(bytearray(BODY))) is draft
    assert known.get("other-key", BODY) is None
    assert known.get("acme-key", BODY + b" ") is None


def test_drafts_are_bounded_by_count_and_bytes_oldest_out() -> None:
    known = KnownDrafts(max_entries=2, max_bytes=3 * len(BODY), max_body_bytes=len(BODY))
    for n in range(3):
        known.keep("acme-key", BODY.replace(b"Hi", b"H" + str(n).encode()), drafted())
    assert len(known) == 2 and known.get("acme-key", BODY.replace(b"Hi", b"H0")) is None
    known.keep("acme-key", BODY + b"   ", drafted())  # over max_body_bytes: not kept
    assert len(known) == 2 and known.nbytes == 2 * len(BODY)


async def test_a_repeated_body_is_still_refused_what_admission_refuses_each_time() -> None:
    # The first body is drafted and kept; its repeat is admitted again (its own request id),
    # and the same bytes under a key that is not the caller's find nothing kept.
    async with http_client(door_app()) as client:
        first = await client.post("/v1/chat/completions", content=BODY, headers=HEADERS)
        again = await client.post("/v1/chat/completions", content=BODY, headers=HEADERS)
        stranger = await client.post(
            "/v1/chat/completions",
            content=BODY,
            headers={"authorization": "Bearer stolen-key"},
        )
    assert first.status_code == again.status_code == 200
    assert first.json()["id"] != again.json()["id"]
    assert stranger.status_code == 401


async def test_a_repeated_stream_body_still_streams() -> None:
    body = BODY[:-1] + b', "stream": true}'
    async with http_client(door_app()) as client:
        for _ in range(2):
            reply = await client.post("/v1/chat/completions", content=body, headers=HEADERS)
            assert reply.headers["content-type"].startswith("text/event-stream")
            assert reply.text.endswith("data: [DONE]\n\n")
