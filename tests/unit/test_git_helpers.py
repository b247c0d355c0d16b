"""kiln.git's pure helpers: credentials kept out of text, repository keys, full commit hashes."""

from __future__ import annotations

import pytest

from kiln.git import SHA_RE, redact, repo_key


def test_redact_removes_a_token_embedded_in_an_https_url() -> None:
    text = "fatal: unable to access 'https://x-access-token:ghp_s3cret@github.com/o/r.git/'"
    redacted = redact(text)
    assert "ghp_s3cret" not in redacted
    assert "x-access-token" not in redacted
    assert redacted == "fatal: unable to access 'https://***@github.com/o/r.git/'"


def test_redact_removes_credentials_from_every_url_in_the_text_whatever_the_scheme_case() -> None:
    text = "tried HTTP://alice:pw1@a.example/r then https://bob@b.example/r"
    assert redact(text) == "tried HTTP://***@a.example/r then https://***@b.example/r"


@pytest.mark.parametrize(
    "text",
    [
        "https://github.com/o/r.git",
        "see https://example.com/users/@me for details",
        "mail alice@example.com",
        "",
    ],
)
def test_redact_leaves_text_without_credentials_as_it_was(text: str) -> None:
    assert redact(text) == text


def test_the_clone_url_and_the_html_url_of_one_github_repo_have_the_same_key() -> None:
    clone = repo_key("https://github.com/octo/hello-world.git")
    html = repo_key("https://github.com/octo/hello-world")
    assert clone == html == "https://github.com/octo/hello-world"


@pytest.mark.parametrize(
    "url",
    [
        "https://GitHub.COM/octo/hello-world",
        "HTTPS://github.com/octo/hello-world.git",
        "https://github.com/octo/hello-world/",
        "https://github.com/octo/hello-world.git/",
        "https://token:x@github.com/octo/hello-world.git",
        "  https://github.com/octo/hello-world  ",
    ],
)
def test_spellings_of_one_repository_url_map_to_one_key(url: str) -> None:
    assert repo_key(url) == "https://github.com/octo/hello-world"


def test_the_path_and_a_port_stay_part_of_the_key() -> None:
    assert repo_key("http://git.local:8080/a/b.git") == "http://git.local:8080/a/b"
    assert repo_key("https://github.com/octo/other") != repo_key("https://github.com/octo/hello")


@pytest.mark.parametrize("url", ["https://github.com:notaport/o/r", "https://[::1/o/r"])
def test_a_url_that_does_not_parse_raises_value_error(url: str) -> None:
    with pytest.raises(ValueError):
        repo_key(url)


@pytest.mark.parametrize("sha", ["0" * 40, "0123456789abcdef0123456789abcdef01234567", "a" * 64])
def test_sha_re_accepts_full_sha1_and_sha256_hashes(sha: str) -> None:
    assert SHA_RE.match(sha)


@pytest.mark.parametrize(
    "sha",
    ["a" * 39, "a" * 41, "a" * 63, "a" * 65, "A" * 40, "g" * 40, "main", "", " " + "a" * 40],
)
def test_sha_re_refuses_abbreviations_upper_case_and_anything_else(sha: str) -> None:
    assert not SHA_RE.match(sha)


def test_sha_re_refuses_a_hash_followed_by_a_newline() -> None:
    assert not SHA_RE.match("a" * 40 + "\n")
