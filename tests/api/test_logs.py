"""A build's stored output (docs/api.md, `GET /api/build/{buildId}/logs`): the bytes from
`offset` on, decoded as UTF-8, and the `nextOffset` to ask from next time."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest

from tests.api.support import Api, User, assert_error

CHUNKS = (b"hello ", b"world\n", b"done\n")
SIZE = sum(len(chunk) for chunk in CHUNKS)


@dataclass(frozen=True)
class Logged:
    owner: User
    build_id: int


@pytest.fixture(scope="module")
async def logged(api: Api) -> Logged:
    """A build whose log holds three chunks, written as the log writer writes them."""
    owner = await api.register()
    created = await api.create_project(owner)
    build_id: int = created["build"]["id"]
    api.append_log(build_id, *CHUNKS)
    return Logged(owner, build_id)


async def get_logs(api: Api, logged: Logged, **params: Any) -> dict[str, Any]:
    response = await api.http.get(
        f"/api/build/{logged.build_id}/logs", params=params, headers=logged.owner.headers
    )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def test_logs_answer_the_whole_output_and_where_it_ends(api: Api, logged: Logged) -> None:
    body = await get_logs(api, logged)

    assert body == {
        "message": "Build logs fetched",
        "buildId": logged.build_id,
        "logs": "hello world\ndone\n",
        "offset": 0,
        "nextOffset": SIZE,
    }


@pytest.mark.parametrize(
    ("offset", "logs"),
    [(6, "world\ndone\n"), (8, "rld\ndone\n"), (12, "done\n"), (SIZE - 1, "\n")],
    ids=["chunk-start", "inside-a-chunk", "last-chunk", "last-byte"],
)
async def test_logs_from_an_offset_answer_the_rest(
    api: Api, logged: Logged, offset: int, logs: str
) -> None:
    body = await get_logs(api, logged, offset=offset)

    assert (body["logs"], body["offset"], body["nextOffset"]) == (logs, offset, SIZE)


@pytest.mark.parametrize("offset", [SIZE, SIZE + 100])
async def test_logs_from_the_end_or_past_it_are_empty_and_next_offset_stays(
    api: Api, logged: Logged, offset: int
) -> None:
    body = await get_logs(api, logged, offset=offset)

    assert (body["logs"], body["offset"], body["nextOffset"]) == ("", offset, offset)


async def test_reading_on_from_next_offset_gets_exactly_the_new_output(
    api: Api, logged: Logged
) -> None:
    owner = logged.owner
    created = await api.create_project(owner)
    reader = Logged(owner, created["build"]["id"])
    api.append_log(reader.build_id, b"first\n")
    first = await get_logs(api, reader)

    api.append_log(reader.build_id, b"second\n")
    second = await get_logs(api, reader, offset=first["nextOffset"])

    assert (first["logs"], second["logs"]) == ("first\n", "second\n")
    assert second["nextOffset"] == len(b"first\nsecond\n")


async def test_invalid_utf8_is_replaced_and_offsets_count_bytes(api: Api, logged: Logged) -> None:
    created = await api.create_project(logged.owner)
    build = Logged(logged.owner, created["build"]["id"])
    api.append_log(build.build_id, "é".encode(), b"\xff\n")

    body = await get_logs(api, build)

    assert body["logs"] == "é\ufffd\n"
    assert body["nextOffset"] == 4


async def test_a_build_without_output_has_an_empty_log(api: Api, logged: Logged) -> None:
    created = await api.create_project(logged.owner)

    body = await get_logs(api, Logged(logged.owner, created["build"]["id"]))

    assert (body["logs"], body["offset"], body["nextOffset"]) == ("", 0, 0)


@pytest.mark.parametrize(
    ("offset", "message"),
    [
        ("-1", "offset: Input should be greater than or equal to 0"),
        ("abc", "offset: Input should be a valid integer, unable to parse string as an integer"),
        ("1.5", "offset: Input should be a valid integer, unable to parse string as an integer"),
        (str(2**62 + 1), "offset: Input should be less than or equal to 4611686018427387904"),
    ],
    ids=["negative", "letters", "fraction", "too-large"],
)
async def test_an_invalid_offset_is_a_400_naming_it(
    api: Api, logged: Logged, offset: str, message: str
) -> None:
    response = await api.http.get(
        f"/api/build/{logged.build_id}/logs",
        params={"offset": offset},
        headers=logged.owner.headers,
    )

    assert assert_error(response, 400) == message


async def test_the_largest_offset_allowed_is_answered(api: Api, logged: Logged) -> None:
    body = await get_logs(api, logged, offset=2**62)

    assert (body["logs"], body["nextOffset"]) == ("", 2**62)
