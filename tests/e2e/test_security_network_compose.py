"""docker-compose.yml as an operator meets it: it refuses to start without generated secrets,
gives every service its own database role and password, publishes the API on loopback only,
and runs the images as an unprivileged user (the worker excepted, and said why). The roles
script is run for real on the local PostgreSQL: a Kiln whose API and worker use their own
roles builds, and neither role can change the schema or open Temporal's databases."""

from __future__ import annotations

import os
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
import yaml  # type: ignore[import-untyped]
from sqlalchemy import create_engine, text
from sqlalchemy.exc import OperationalError, ProgrammingError

from kiln.db import make_engine, make_session_factory
from kiln.migrate import upgrade
from testbed.databases import POSTGRES_ADMIN_URL
from testbed.git_server import GitServer
from testbed.stack import Stack, running_api, running_worker, stack_settings
from tests.support.helpers import new_repo

ROOT = Path(__file__).resolve().parents[2]
ROLES_SCRIPT = ROOT / "deploy" / "postgres" / "10-kiln-roles.sh"


def generated_env(tmp_path: Path) -> Path:
    env = tmp_path / "kiln.env"
    env.write_text(
        subprocess.run(
            [str(ROOT / "deploy" / "generate-env")], check=True, capture_output=True, text=True
        ).stdout
    )
    return env


def compose_config(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("KILN_", "POSTGRES_"))}
    return subprocess.run(
        ["docker-compose", "-f", str(ROOT / "docker-compose.yml"), *args, "config"],
        cwd=ROOT,
        env=base | env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def rendered(tmp_path: Path, **env: str) -> dict[str, Any]:
    done = compose_config("--env-file", str(generated_env(tmp_path)), **env)
    assert done.returncode == 0, done.stderr
    config: dict[str, Any] = yaml.safe_load(done.stdout)
    return config["services"]  # type: ignore[no-any-return]


def test_compose_refuses_to_start_without_generated_secrets(tmp_path: Path) -> None:
    empty = tmp_path / "empty.env"
    empty.write_text("")
    done = compose_config("--env-file", str(empty))
    assert done.returncode != 0
    assert "run deploy/generate-env > .env first" in done.stderr


def test_every_service_has_its_own_database_role_and_generated_password(tmp_path: Path) -> None:
    services = rendered(tmp_path)
    logins = {}
    for name in ("migrate", "api", "worker"):
        url = urlsplit(services[name]["environment"]["KILN_DATABASE_URL"])
        logins[name] = (url.username, url.password)
    temporal = services["temporal"]["environment"]
    logins["temporal"] = (temporal["POSTGRES_USER"], temporal["POSTGRES_PWD"])
    assert [user for user, _ in logins.values()] == ["kiln", "kiln_api", "kiln_worker", "temporal"]
    passwords = [password for _, password in logins.values()]
    superuser = services["postgres"]["environment"]["POSTGRES_PASSWORD"]
    assert len(set(passwords + [superuser])) == 5, "each role has its own password"
    assert all(password and len(password) >= 32 for password in passwords + [superuser])
    assert "POSTGRES_USER" not in services["postgres"]["environment"]  # the superuser: postgres
    assert "kiln:kiln@" not in yaml.safe_dump(services)


def test_the_api_is_published_on_loopback_unless_configured(tmp_path: Path) -> None:
    assert rendered(tmp_path)["api"]["ports"] == ["127.0.0.1:8000:8000/tcp"]
    configured = rendered(tmp_path, KILN_API_BIND="192.0.2.10", KILN_API_PORT="8443")
    assert configured["api"]["ports"] == ["192.0.2.10:8443:8000/tcp"]
    for service in rendered(tmp_path).values():
        for port in service.get("ports", []):
            assert port.startswith("127.0.0.1:"), port


def test_images_run_as_an_unprivileged_user_and_only_the_worker_as_root(tmp_path: Path) -> None:
    lines = (ROOT / "Dockerfile").read_text().splitlines()
    last_stage = max(i for i, line in enumerate(lines) if line.startswith("FROM "))
    users = [line.split()[1] for line in lines[last_stage:] if line.startswith("USER ")]
    assert users == ["kiln"]
    services = rendered(tmp_path)
    assert "user" not in services["api"] and "user" not in services["migrate"]
    assert services["api"]["cap_drop"] == ["ALL"] and services["api"]["read_only"] is True
    # The worker: root in the host's network namespace, to install the build network's rules.
    assert services["worker"]["user"] == "0:0"
    assert services["worker"]["network_mode"] == "host"
    assert services["worker"]["environment"]["KILN_BUILD_NETWORK"] == ""


# --- the roles script, on the local PostgreSQL -------------------------------------------------


def _admin() -> Any:
    return create_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT")


def _url(role: str, database: str) -> str:
    host = urlsplit(POSTGRES_ADMIN_URL)
    return f"postgresql+psycopg://{role}:pw@{host.hostname}:{host.port}/{database}"


@pytest.fixture
def roles() -> Iterator[str]:
    """The roles and databases of the script, under a unique name, on the local server (trust
    authentication there, so passwords are not exercised); dropped afterwards."""
    name = f"kiln_roles_{uuid.uuid4().hex[:8]}"
    env = dict(os.environ) | {
        "PGHOST": str(urlsplit(POSTGRES_ADMIN_URL).hostname),
        "POSTGRES_USER": "postgres",
        "POSTGRES_DB": "postgres",
        "KILN_DB": name,
        "TEMPORAL_DB_USER": f"{name}_temporal",
        "TEMPORAL_DB": f"{name}_tdb",
        "TEMPORAL_VISIBILITY_DB": f"{name}_tvis",
        "KILN_DB_PASSWORD": "a" * 32,
        "KILN_API_DB_PASSWORD": "b" * 32,
        "KILN_WORKER_DB_PASSWORD": "c" * 32,
        "TEMPORAL_DB_PASSWORD": "d" * 32,
    }
    try:
        done = subprocess.run(
            ["sh", str(ROLES_SCRIPT)], env=env, capture_output=True, text=True, timeout=60
        )
        assert done.returncode == 0, done.stderr
        yield name
    finally:
        admin = _admin()
        with admin.connect() as conn:
            for database in (name, f"{name}_tdb", f"{name}_tvis"):
                conn.execute(text(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)'))
            for role in (name, f"{name}_api", f"{name}_worker", f"{name}_temporal"):
                conn.execute(text(f'DROP ROLE IF EXISTS "{role}"'))
        admin.dispose()


async def test_a_kiln_on_its_own_roles_builds_and_no_service_role_can_change_the_schema(
    roles: str,
    temporal_address: str,
    git_server: GitServer,
    busybox: str,
    tmp_path: Path,
) -> None:
    upgrade(_url(roles, roles))  # `migrate`, as the owner
    api_settings = stack_settings(_url(f"{roles}_api", roles), temporal_address, tmp_path)
    worker_settings = api_settings.model_copy(
        update={"database_url": _url(f"{roles}_worker", roles)}
    )
    engine = make_engine(api_settings.database_url)
    async with running_worker(worker_settings), running_api(api_settings) as base_url:
        async with httpx.AsyncClient(base_url=base_url, timeout=30) as http:
            stack = Stack(api_settings, make_session_factory(engine), base_url, http, git_server,
                          busybox)  # fmt: skip
            user = await stack.register()
            repo = new_repo(git_server, "roles")
            created = await stack.create_project(user, repo.url, "echo built")
            final = await stack.wait_final(user, created["build"]["id"])
            assert final["status"] == "passed", await stack.logs(user, final["id"])
    engine.dispose()

    for role in (f"{roles}_api", f"{roles}_worker"):
        service = create_engine(_url(role, roles), isolation_level="AUTOCOMMIT")
        with service.connect() as conn:
            assert conn.execute(text("SELECT count(*) FROM users")).scalar_one() == 1
            for ddl in ("CREATE TABLE intruder (id int)", "DROP TABLE builds",
                        "ALTER TABLE users ADD COLUMN x int", "TRUNCATE builds"):  # fmt: skip
                with pytest.raises(ProgrammingError, match="permission denied|must be owner"):
                    conn.execute(text(ddl))
        service.dispose()
        for database in (f"{roles}_tdb", f"{roles}_tvis"):
            other = create_engine(_url(role, database))
            with pytest.raises(OperationalError, match="permission denied for database"):
                other.connect().close()
            other.dispose()
    temporal = create_engine(_url(f"{roles}_temporal", roles))
    with pytest.raises(OperationalError, match="permission denied for database"):
        temporal.connect().close()
    temporal.dispose()
