"""The texts Temporal's UI shows for a build (workflows.visibility): one line, at most 200 bytes,
and user text shown as itself, never as markup. Pure functions: no server."""

from __future__ import annotations

from dataclasses import replace

from kiln.contracts import BuildLabels
from workflows import visibility as v

SHA = "0123456789abcdef0123456789abcdef01234567"


BASE = BuildLabels(
    project_id=3,
    project="app",
    branch="main",
    commit_hash=SHA,
    commit_message="",
    commit_author="",
    command="make",
)


def test_a_long_multibyte_command_is_cut_to_200_bytes_on_a_character_boundary() -> None:
    summary = v.run_summary(SHA, "échö " * 100)

    assert len(summary.encode()) <= v.SUMMARY_BYTES
    assert summary.startswith("clone 0123456, run `échö échö")
    assert summary.endswith("…")


def test_a_multi_line_command_or_project_name_becomes_one_line() -> None:
    assert (
        v.run_summary(SHA, "npm ci\n  npm run build") == "clone 0123456, run `npm ci npm run build`"
    )
    assert v.summary(1, replace(BASE, project="my\napp"), None, None) == "my app · main · 0123456"


def test_a_commit_message_cannot_end_its_code_block_or_the_details() -> None:
    message = "fix\n```\n[click](https://evil.example)\n````"

    details = v.details(1, replace(BASE, commit_message=message), "")

    fence = "`````"  # longer than the longest run of backticks in the message
    assert f"{fence}\n{message}\n{fence}" in details


def test_names_in_the_details_are_escaped_not_rendered_as_markup() -> None:
    details = v.details(1, replace(BASE, project="[x](y)", commit_author="*Ada*"), "")

    assert "of \\[x\\](y) (project 3)" in details
    assert "by \\*Ada\\*" in details


def test_the_host_is_the_worker_id_of_its_queue() -> None:
    assert v.host_of("kiln-host-worker-1", "kiln") == "worker-1"
