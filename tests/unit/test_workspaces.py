"""Where a build's checkout lives (kiln.workspaces): one directory per build, named for it."""

from __future__ import annotations

from pathlib import Path

import pytest

from kiln.workspaces import build_id_of, workspace_name, workspace_path


@pytest.mark.parametrize("build_id", [1, 42, 2**31 - 1])
def test_a_workspace_name_leads_back_to_its_build(build_id: int) -> None:
    assert build_id_of(workspace_name(build_id)) == build_id


def test_a_workspace_lives_directly_under_the_root(tmp_path: Path) -> None:
    path = workspace_path(tmp_path, 7)
    assert path.parent == tmp_path.resolve()
    assert build_id_of(path.name) == 7


def test_workspaces_of_different_builds_differ(tmp_path: Path) -> None:
    assert workspace_path(tmp_path, 1) != workspace_path(tmp_path, 11)


@pytest.mark.parametrize(
    "name", ["build-", "build-x", "build-7.tmp", "build--7", "xbuild-7", "Build-7", "7", ".git"]
)
def test_a_directory_not_named_for_a_build_belongs_to_none(name: str) -> None:
    assert build_id_of(name) is None
