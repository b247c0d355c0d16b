"""A tiny local Docker image for tests, built without pulling anything from a registry.

The image is a busybox rootfs (the host's static ``/bin/busybox`` plus one symlink per applet)
imported with the Docker API, so ``sh``, ``echo``, ``cat``, ... work inside containers.
"""

from __future__ import annotations

import io
import shutil
import subprocess
import tarfile
import tempfile
from pathlib import Path

import docker
import docker.errors

HOST_BUSYBOX = Path("/bin/busybox")  # Debian package busybox-static: statically linked
DEFAULT_TAG = "kiln-test/busybox:latest"


def _owned_by_root(info: tarfile.TarInfo) -> tarfile.TarInfo:
    info.uid = info.gid = 0
    info.uname = info.gname = "root"
    return info


def _rootfs_tar(rootfs: Path) -> bytes:
    """The rootfs as an uncompressed tar (entries relative to ``/``, owned by root)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for path in sorted(rootfs.iterdir()):
            tar.add(path, arcname=path.name, filter=_owned_by_root)  # symlinks stay symlinks
    return buf.getvalue()


def ensure_busybox_image(tag: str = DEFAULT_TAG) -> str:
    """Return ``tag``, first importing a busybox image under it if it doesn't exist yet."""
    client = docker.from_env()
    try:
        client.images.get(tag)
        return tag
    except docker.errors.ImageNotFound:
        pass
    if not HOST_BUSYBOX.is_file():
        raise RuntimeError(
            f"{HOST_BUSYBOX} not found; it is needed to build the test image {tag!r}. "
            "Install it with: apt-get install busybox-static"
        )

    with tempfile.TemporaryDirectory(prefix="kiln-busybox-") as tmp:
        rootfs = Path(tmp)
        bin_dir = rootfs / "bin"
        bin_dir.mkdir()
        shutil.copy2(HOST_BUSYBOX, bin_dir / "busybox")
        applets = subprocess.run(
            [str(HOST_BUSYBOX), "--list"], check=True, capture_output=True, text=True
        ).stdout.split()
        for applet in applets:
            if applet != "busybox":  # /bin/busybox -> busybox would be a symlink loop
                (bin_dir / applet).symlink_to("busybox")
        for name in ("etc", "workspace"):
            (rootfs / name).mkdir(mode=0o755)
        (rootfs / "tmp").mkdir()
        (rootfs / "tmp").chmod(0o1777)  # world-writable + sticky, like a real /tmp
        data = _rootfs_tar(rootfs)

    repository, _, version = tag.rpartition(":")
    if not repository or "/" in version:  # no explicit tag (the ':' belongs to a registry port)
        repository, version = tag, "latest"
    client.api.import_image_from_data(
        data,
        repository=repository,
        tag=version,
        # Imported images have no config; without PATH the runtime can't find `sh`.
        changes=["ENV PATH=/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin"],
    )
    client.images.get(tag)  # fail loudly here if the import didn't produce the tag
    return tag
