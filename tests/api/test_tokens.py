"""API tokens: a secret shown once, usable wherever a login token is, revocable."""

from __future__ import annotations

import pytest

from tests.api.support import Api, assert_error

TOKENS = "/api/tokens"


def bearer(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"}


async def test_a_token_is_created_with_its_secret_shown_once_and_listed_without_it(
    api: Api,
) -> None:
    user = await api.register()
    response = await api.http.post(TOKENS, json={"name": "laptop CLI"}, headers=user.headers)
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["message"] == "Token created"
    assert set(body["token"]) == {"id", "name", "createdAt", "lastUsedAt"}
    assert body["token"]["name"] == "laptop CLI" and body["token"]["lastUsedAt"] is None
    secret = body["secret"]
    assert secret.startswith("kiln_") and len(secret) > 40

    listed = await api.http.get(TOKENS, headers=user.headers)
    assert listed.status_code == 200
    assert listed.json()["message"] == "Tokens fetched"
    assert [t["id"] for t in listed.json()["tokens"]] == [body["token"]["id"]]
    assert secret not in listed.text


async def test_a_token_works_like_a_login_and_notes_when_it_was_used(api: Api) -> None:
    user = await api.register()
    created = (await api.http.post(TOKENS, json={"name": "ci"}, headers=user.headers)).json()
    projects = await api.http.get("/api/project/projects", headers=bearer(created["secret"]))
    assert projects.status_code == 200
    # A token can manage tokens too.
    listed = await api.http.get(TOKENS, headers=bearer(created["secret"]))
    assert listed.json()["tokens"][0]["lastUsedAt"] is not None


async def test_a_deleted_token_is_refused_from_then_on(api: Api) -> None:
    user = await api.register()
    created = (await api.http.post(TOKENS, json={"name": "old"}, headers=user.headers)).json()
    token_id = created["token"]["id"]
    deleted = await api.http.delete(f"{TOKENS}/{token_id}", headers=user.headers)
    assert deleted.status_code == 200
    assert deleted.json() == {"message": "Token deleted", "tokenId": token_id}
    refused = await api.http.get("/api/project/projects", headers=bearer(created["secret"]))
    assert assert_error(refused, 401) == "Authorization token is invalid"
    again = await api.http.delete(f"{TOKENS}/{token_id}", headers=user.headers)
    assert assert_error(again, 404) == "Token not found"


async def test_another_users_token_is_not_found_and_a_made_up_secret_is_refused(
    api: Api,
) -> None:
    owner = await api.register()
    other = await api.register()
    created = (await api.http.post(TOKENS, json={"name": "mine"}, headers=owner.headers)).json()
    response = await api.http.delete(f"{TOKENS}/{created['token']['id']}", headers=other.headers)
    assert assert_error(response, 404) == "Token not found"
    assert (await api.http.get(TOKENS, headers=other.headers)).json()["tokens"] == []
    made_up = await api.http.get(TOKENS, headers=bearer("kiln_" + "x" * 43))
    assert assert_error(made_up, 401) == "Authorization token is invalid"


@pytest.mark.parametrize("name", ["", "   ", "x" * 101, "bad\x00name", "tab\tname"])
async def test_a_bad_token_name_is_a_bad_request(api: Api, name: str) -> None:
    user = await api.register()
    response = await api.http.post(TOKENS, json={"name": name}, headers=user.headers)
    assert assert_error(response, 400).startswith("name:")


async def test_tokens_need_a_login_or_a_token(api: Api) -> None:
    assert_error(await api.http.post(TOKENS, json={"name": "x"}), 401)
    assert_error(await api.http.get(TOKENS), 401)
    assert_error(await api.http.delete(f"{TOKENS}/1"), 401)
