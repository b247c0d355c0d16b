"""Where a build's checkout lives on its worker host: one directory per build, named for it, and
what keeps that directory from handing anything to the host.

The workspace is a bind mount the build writes to, so the host sees whatever the build leaves
there. Three rules keep that harmless:

- the workspaces root is 0700 (owned by the worker) and each workspace 0700, owned by the
  build's own unprivileged uid: no other user of the host can reach into a build's files;
- once the container has exited, and before anything else touches the tree, `defuse` strips
  setuid and setgid bits and removes device nodes, FIFOs and sockets (a build has no
  capabilities, but it may `chmod u+s` a file of its own);
- walks never follow symbolic links (a build may point one anywhere on the host), and every
  file is opened relative to its directory with O_NOFOLLOW.
"""

from __future__ import annotations

import errno
import os
import re
import shutil
import stat
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from kiln.errors import PermanentError

_NAME = re.compile(r"^build-(\d+)$")
_USER = re.compile(r"^(\d+)(?::(\d+))?$")
PRIVATE_DIR = 0o700
# Each entry counts as at least one block: a build cannot fill the host's inode table with
# millions of empty files for free.
MIN_ENTRY_BYTES = 4096
_SPECIAL = (stat.S_ISCHR, stat.S_ISBLK, stat.S_ISFIFO, stat.S_ISSOCK)


class WorkspaceError(PermanentError):
    """This host cannot prepare a build's workspace as configured."""


@dataclass(frozen=True)
class BuildUser:
    """The uid:gid a build runs as (`KILN_BUILD_USER`), numeric: the host must own the
    workspace to it without knowing the image's /etc/passwd."""

    uid: int
    gid: int

    @classmethod
    def parse(cls, value: str) -> BuildUser:
        match = _USER.fullmatch(value.strip())
        if not match:
            raise WorkspaceError(
                f"KILN_BUILD_USER must be a numeric uid:gid (like 1000:1000), not {value!r}"
            )
        uid = int(match.group(1))
        return cls(uid, int(match.group(2)) if match.group(2) is not None else uid)

    def __str__(self) -> str:
        return f"{self.uid}:{self.gid}"


def workspace_name(build_id: int) -> str:
    return f"build-{build_id}"


def workspace_path(root: Path, build_id: int) -> Path:
    return (root / workspace_name(build_id)).resolve()


def build_id_of(name: str) -> int | None:
    """The build a workspace directory belongs to, or None for anything else."""
    match = _NAME.match(name)
    return int(match.group(1)) if match else None


def prepare_root(root: Path) -> None:
    """The workspaces root, created if need be, private to the worker (0700)."""
    root.mkdir(mode=PRIVATE_DIR, parents=True, exist_ok=True)
    root.chmod(PRIVATE_DIR)


def hand_over(workspace: Path, user: BuildUser) -> None:
    """Give a fresh checkout to the build's user: every entry owned by it (symbolic links
    themselves, never their targets), the workspace itself 0700. Nothing else writes there
    yet: git has just made every path in it, each shorter than PATH_MAX."""
    if (os.geteuid(), os.getegid()) != (user.uid, user.gid):
        try:
            _chown_tree(str(workspace), user)
        except PermissionError:
            raise WorkspaceError(
                f"this worker (uid {os.geteuid()}) cannot give the workspace to build user "
                f"{user}: run the worker as root or set KILN_BUILD_USER={os.geteuid()}:"
                f"{os.getegid()}"
            ) from None
    workspace.chmod(PRIVATE_DIR)


def _chown_tree(top: str, user: BuildUser) -> None:
    os.chown(top, user.uid, user.gid, follow_symlinks=False)
    pending = [top]
    while pending:
        with os.scandir(pending.pop()) as entries:
            for entry in entries:
                os.chown(entry.path, user.uid, user.gid, follow_symlinks=False)
                if entry.is_dir(follow_symlinks=False):
                    pending.append(entry.path)


# --- walking a tree a build wrote ---------------------------------------------------------------
#
# Iterative, one open directory per level (never one per directory found), relative to its
# parent with O_NOFOLLOW: arbitrary nesting costs neither the recursion limit nor PATH_MAX.

_SUID_SGID = stat.S_ISUID | stat.S_ISGID
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_NOCTTY
# Levels `defuse` walks before it moves deeper directories up to the workspace's top (after the
# build, the tree's shape serves nothing but its removal); how deep the live measure looks.
DEFUSE_MAX_DEPTH = 64
LIVE_MAX_DEPTH = 256


def _entry_bytes(info: os.stat_result) -> int:
    return max(info.st_blocks * 512, MIN_ENTRY_BYTES)


def _open_dir(name: str | Path, dir_fd: int | None = None) -> int | None:
    """A directory's fd, or None when it is not (or no longer) a directory."""
    try:
        return os.open(name, _DIR_FLAGS, dir_fd=dir_fd)
    except OSError as exc:
        if exc.errno in (errno.ENOENT, errno.ELOOP, errno.ENOTDIR):
            return None
        raise


def _scan(dir_fd: int) -> list[tuple[str, os.stat_result]]:
    found = []
    with os.scandir(dir_fd) as entries:
        for entry in entries:
            try:
                found.append((entry.name, entry.stat(follow_symlinks=False)))
            except FileNotFoundError:
                continue
    return found


def _strip(fd: int) -> None:
    mode = os.fstat(fd).st_mode
    if mode & _SUID_SGID:
        os.fchmod(fd, stat.S_IMODE(mode) & ~_SUID_SGID)


def _defuse_entries(dir_fd: int) -> tuple[int, list[str]]:
    """Defuse one directory's entries: the bytes they use and the subdirectories to visit."""
    used, subdirs = 0, []
    for name, info in _scan(dir_fd):
        mode = info.st_mode
        if any(kind(mode) for kind in _SPECIAL):
            try:
                os.unlink(name, dir_fd=dir_fd)
            except FileNotFoundError:
                pass
            continue
        used += _entry_bytes(info)
        if stat.S_ISDIR(mode):
            subdirs.append(name)
        elif stat.S_ISREG(mode) and mode & _SUID_SGID:
            try:
                fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK, dir_fd=dir_fd)
            except OSError as exc:
                if exc.errno in (errno.ENOENT, errno.ELOOP):
                    continue
                raise
            try:
                if stat.S_ISREG(os.fstat(fd).st_mode):
                    _strip(fd)
            finally:
                os.close(fd)
    return used, subdirs


def defuse(workspace: Path) -> int:
    """Make what a build left in its workspace harmless to the host: strip setuid/setgid bits,
    remove device nodes, FIFOs and sockets. Returns the disk the tree uses, in bytes (each
    entry counted as at least MIN_ENTRY_BYTES). Call it only once no container writes there:
    directories nested deeper than DEFUSE_MAX_DEPTH are moved up to the top of the workspace.
    A workspace that does not exist uses 0 bytes."""
    top = _open_dir(workspace)
    if top is None:
        return 0
    # (directory fd, subdirectories still to visit), one per level being walked.
    levels: list[tuple[int, list[str]]] = []
    try:
        _strip(top)
        used = _entry_bytes(os.fstat(top))
        bytes_here, subdirs = _defuse_entries(top)
        used += bytes_here
        levels.append((top, subdirs))
        while levels:
            fd, subdirs = levels[-1]
            if not subdirs:
                levels.pop()
                if levels:  # the top is closed below
                    os.close(fd)
                continue
            name = subdirs.pop()
            if len(levels) >= DEFUSE_MAX_DEPTH:
                moved = f".kiln-deep-{uuid.uuid4().hex}"
                os.rename(name, moved, src_dir_fd=fd, dst_dir_fd=top)
                levels[0][1].append(moved)
                continue
            child = _open_dir(name, fd)
            if child is None:
                continue
            try:
                _strip(child)
                bytes_here, grandchildren = _defuse_entries(child)
            except BaseException:
                os.close(child)
                raise
            used += bytes_here
            levels.append((child, grandchildren))
    finally:
        for fd, _ in levels[1:]:
            os.close(fd)
        os.close(top)
    return used


def disk_usage(workspace: Path, *, stop: Callable[[], bool] = lambda: False) -> int:
    """The disk a workspace uses, in bytes, counted as `defuse` counts it (down to
    LIVE_MAX_DEPTH levels). Read-only and safe while a build writes there: links are never
    followed, entries that vanish meanwhile are skipped. `stop` ends the walk early."""
    top = _open_dir(workspace)
    if top is None:
        return 0
    used = 0
    levels: list[tuple[int, list[str]]] = []

    def enter(fd: int) -> None:
        nonlocal used
        subdirs = []
        for name, info in _scan(fd):
            used += _entry_bytes(info)
            if stat.S_ISDIR(info.st_mode):
                subdirs.append(name)
        levels.append((fd, subdirs if len(levels) < LIVE_MAX_DEPTH else []))

    try:
        used += _entry_bytes(os.fstat(top))
        enter(top)
        while levels and not stop():
            fd, subdirs = levels[-1]
            if not subdirs:
                levels.pop()
                if levels:
                    os.close(fd)
                continue
            child = _open_dir(subdirs.pop(), fd)
            if child is not None:
                try:
                    enter(child)
                except BaseException:
                    os.close(child)
                    raise
    finally:
        for fd, _ in levels[1:]:
            os.close(fd)
        os.close(top)
    return used


def remove_workspace(workspace: Path) -> None:
    """Remove a workspace, whatever a build left in it."""
    try:
        shutil.rmtree(workspace, ignore_errors=True)
    except RecursionError:  # nested too deep for rmtree: flatten it first
        pass
    if os.path.lexists(workspace):
        defuse(workspace)
        shutil.rmtree(workspace, ignore_errors=True)
