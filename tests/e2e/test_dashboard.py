"""The dashboard in a real browser (Debian's chromium, driven by Playwright): what a person
sees and does. Screenshots of every page land in the test's tmp dir (`KILN_SCREENSHOTS` to keep
them elsewhere)."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import os
import re
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from playwright.async_api import Browser, Page, WebSocketRoute, async_playwright, expect

from kiln.crypto import generate_key
from kiln.workspaces import workspace_path
from testbed.git_server import GitRepo, GitServer
from testbed.stack import Stack, User, eventually, running_stack, stack_settings
from tests.support.helpers import holds
from tests.support.receiver import Receiver

CHROMIUM = "/usr/bin/chromium"
WAIT_MS = 60_000


@pytest.fixture(scope="module")
async def web(
    temporal_address: str,
    git_server: GitServer,
    busybox: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[Stack]:
    """A running Kiln on SQLite (the browser tests are about the page, not the database)."""
    from kiln.migrate import upgrade

    root = tmp_path_factory.mktemp("dashboard")
    url = f"sqlite:///{root / 'kiln.db'}"
    upgrade(url)
    settings = stack_settings(url, temporal_address, root / "workspaces").model_copy(
        update={"secrets_key": generate_key()}
    )
    async with running_stack(settings, git_server, busybox) as stack:
        yield stack


@pytest.fixture(scope="module")
async def browser() -> AsyncIterator[Browser]:
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(executable_path=CHROMIUM)
        yield launched
        await launched.close()


@pytest.fixture
def shots(tmp_path: Path) -> Path:
    folder = Path(os.environ.get("KILN_SCREENSHOTS", tmp_path / "screenshots"))
    folder.mkdir(parents=True, exist_ok=True)
    return folder


class Visitor:
    """A person at the dashboard, with every request the page made."""

    def __init__(self, page: Page, base_url: str, shots: Path) -> None:
        self.page = page
        self.base_url = base_url
        self.shots = shots
        self.requests: list[str] = []
        self.dialogs: list[str] = []
        page.on("request", lambda request: self.requests.append(request.url))
        page.on("dialog", lambda dialog: self.dialogs.append(dialog.message))

    async def open(self, path: str) -> None:
        await self.page.goto(self.base_url + path)

    async def shot(self, name: str) -> None:
        await self.page.screenshot(path=self.shots / f"{name}.png", full_page=True)

    async def sign_up(self, name: str = "Jane Doe") -> str:
        email = f"jane-{uuid.uuid4().hex[:8]}@example.com"
        await self.open("/signup")
        await self.page.get_by_label("Name").fill(name)
        await self.page.get_by_label("Email").fill(email)
        await self.page.get_by_label("Password").fill("correct horse battery")
        await self.page.get_by_role("button", name="Sign up").click()
        await expect(self.page.get_by_role("heading", name="Projects", exact=True)).to_be_visible()
        return email

    async def create_project(self, name: str, repo: GitRepo, command: str, image: str) -> None:
        page = self.page
        if not await page.get_by_label("Repository URL").is_visible():
            await page.get_by_role("button", name="New project").click()
        await page.get_by_label("Name").fill(name)
        await page.get_by_label("Repository URL").fill(repo.url)
        await page.get_by_label("Image").fill(image)
        await page.get_by_label("Build command").fill(command)
        await page.get_by_role("button", name="Create project").click()
        heading = page.get_by_role("heading", name=name, exact=True)
        await expect(heading).to_be_visible(timeout=WAIT_MS)


def new_repo(git: GitServer, message: str = "Add the app\n\nwith a body") -> GitRepo:
    repo = git.create_repo(f"web-{uuid.uuid4().hex[:8]}")
    repo.commit({"README": "hello\n"}, message)
    return repo


@pytest.fixture
async def visitor(browser: Browser, web: Stack, shots: Path) -> AsyncIterator[Visitor]:
    context = await browser.new_context(viewport={"width": 1280, "height": 800})
    page = await context.new_page()
    page.set_default_timeout(WAIT_MS)
    yield Visitor(page, web.base_url, shots)
    await context.close()


def only_kiln(visitor: Visitor) -> list[str]:
    """Requests that went anywhere but this Kiln (there must be none)."""
    return [url for url in visitor.requests if not url.startswith(visitor.base_url)]


async def test_a_new_user_signs_up_creates_a_project_and_watches_its_first_build_pass(
    visitor: Visitor, web: Stack
) -> None:
    page = visitor.page
    await visitor.open("/login")
    await expect(page.get_by_role("button", name="Log in")).to_be_visible()
    await visitor.shot("login")
    await visitor.sign_up()
    await visitor.shot("projects-empty")
    repo = new_repo(web.git)
    # The build waits at a gate the test opens (a file in its workspace), so "running" is seen.
    command = (
        "echo step one; while [ ! -e gate ]; do sleep 0.1; done;"
        " printf '\\033[32mgreen\\033[0m text\\n'; echo done"
    )
    await visitor.create_project("my-vite-app", repo, command, web.image)

    # The project page lists its first build; it opens the build page.
    row = page.locator(".build-row").first
    await expect(row).to_contain_text("main", timeout=WAIT_MS)
    await visitor.shot("project")
    await row.get_by_role("link").first.click()
    await expect(page.get_by_role("heading", name=re.compile(r"Build #\d+"))).to_be_visible()

    # Output appears while the build runs, then the status turns `passed` — all pushed live.
    log = page.get_by_label("Build output")
    await expect(log).to_contain_text("step one", timeout=WAIT_MS)
    heading = page.get_by_role("heading", name=re.compile(r"Build #\d+"))
    await expect(heading).to_contain_text("running")
    await visitor.shot("build-running")
    build_id = int(page.url.rsplit("/", 1)[1])
    (workspace_path(web.settings.workspace_dir, build_id) / "gate").touch()
    await expect(heading).to_contain_text("passed", timeout=WAIT_MS)
    await expect(log).to_contain_text("done")
    # The commit the worker checked out: its message's first line, the exit code.
    await expect(page.locator(".details")).to_contain_text("Add the app")
    await expect(page.locator(".details")).to_contain_text("Exit code0")
    green = log.locator("span.fg2", has_text="green")
    await expect(green).to_have_count(1)
    await expect(page.get_by_role("button", name="Cancel build")).to_be_hidden()
    await visitor.shot("build-passed")
    assert only_kiln(visitor) == []
    assert visitor.dialogs == []


async def test_the_log_arrives_live_without_polling(visitor: Visitor, web: Stack) -> None:
    await visitor.sign_up()
    repo = new_repo(web.git)
    await visitor.create_project(
        "live", repo, "for i in 1 2 3 4 5; do echo line $i; sleep 1; done", web.image
    )
    await visitor.page.locator(".build-row a.build-link").first.click()
    log = visitor.page.get_by_label("Build output")
    await expect(log).to_contain_text("line 1", timeout=WAIT_MS)
    fetched = len([url for url in visitor.requests if "/logs" in url])
    await expect(log).to_contain_text("line 5", timeout=WAIT_MS)
    # Lines 2 to 5 came over Socket.io: no further log requests were made.
    assert len([url for url in visitor.requests if "/logs" in url]) == fetched
    lines = await log.locator("li").all_inner_texts()
    assert [line for line in lines if line.startswith("line")] == [f"line {i}" for i in range(1, 6)]


async def test_rebuild_opens_the_new_build_and_cancel_stops_a_long_one(
    visitor: Visitor, web: Stack
) -> None:
    page = visitor.page
    await visitor.sign_up()
    repo = new_repo(web.git)
    await visitor.create_project("long", repo, "echo started; sleep 300", web.image)
    await page.locator(".build-row a.build-link").first.click()
    heading = page.get_by_role("heading", name=re.compile(r"Build #\d+"))
    first = await heading.inner_text()
    await expect(page.get_by_label("Build output")).to_contain_text("started", timeout=WAIT_MS)

    await page.get_by_role("button", name="Cancel build").click()
    await expect(heading).to_contain_text("canceled", timeout=WAIT_MS)
    await expect(page.get_by_role("button", name="Cancel build")).to_be_hidden()
    await visitor.shot("build-canceled")

    await page.get_by_role("button", name="Rebuild").click()
    await expect(heading).not_to_have_text(first)
    await expect(page).to_have_url(re.compile(r"/builds/\d+$"))
    await expect(heading).to_contain_text(re.compile("queued|running"), timeout=WAIT_MS)
    await page.get_by_role("button", name="Cancel build").click()
    await expect(heading).to_contain_text("canceled", timeout=WAIT_MS)


async def test_a_wrong_password_shows_the_apis_message(visitor: Visitor) -> None:
    email = await visitor.sign_up()
    await visitor.page.get_by_role("button", name="Log out").click()
    await visitor.page.get_by_label("Email").fill(email)
    await visitor.page.get_by_label("Password").fill("not the password")
    await visitor.page.get_by_role("button", name="Log in").click()
    await expect(visitor.page.get_by_role("alert")).to_have_text("Invalid email or password")
    await visitor.shot("login-wrong-password")


async def test_the_form_shows_the_apis_message_beside_it(visitor: Visitor, web: Stack) -> None:
    await visitor.sign_up()
    page = visitor.page
    await page.get_by_label("Name").fill("broken")
    await page.get_by_label("Repository URL").fill(web.git.base_url + "/no-such-repo.git")
    await page.get_by_role("button", name="Create project").click()
    alert = page.get_by_role("alert")
    await expect(alert).to_contain_text("Could not resolve branch 'main'")
    await visitor.shot("new-project-error")


async def test_another_users_build_is_refused(visitor: Visitor, web: Stack) -> None:
    owner = await web.register()
    repo = new_repo(web.git)
    created = await web.create_project(owner, repo.url, "true")
    await visitor.sign_up("Mallory")
    await visitor.open(f"/builds/{created['build']['id']}")
    await expect(visitor.page.get_by_role("alert")).to_have_text(
        "You do not have access to this build"
    )


async def test_build_output_is_shown_as_text_never_as_html(visitor: Visitor, web: Stack) -> None:
    await visitor.sign_up()
    repo = new_repo(web.git, message="<b>bold</b> <img src=x onerror=alert(1)>")
    await visitor.create_project(
        "xss",
        repo,
        "echo '<img src=x onerror=alert(1)>'; echo '<script>alert(2)</script>'",
        web.image,
    )
    page = visitor.page
    await page.locator(".build-row a.build-link").first.click()
    log = page.get_by_label("Build output")
    await expect(log).to_contain_text("<img src=x onerror=alert(1)>", timeout=WAIT_MS)
    await expect(log).to_contain_text("<script>alert(2)</script>")
    assert await page.locator("main img").count() == 0
    assert await page.locator("main script").count() == 0
    assert await page.locator("main b").count() == 0
    assert visitor.dialogs == []


async def test_the_pages_work_on_a_phone(browser: Browser, web: Stack, shots: Path) -> None:
    context = await browser.new_context(viewport={"width": 390, "height": 844}, is_mobile=True)
    page = await context.new_page()
    page.set_default_timeout(WAIT_MS)
    visitor = Visitor(page, web.base_url, shots)
    try:
        await visitor.sign_up()
        repo = new_repo(web.git)
        await visitor.create_project("phone", repo, "echo hello from a phone", web.image)
        await visitor.shot("phone-project")
        await page.locator(".build-row a.build-link").first.click()
        heading = page.get_by_role("heading", name=re.compile(r"Build #\d+"))
        await expect(heading).to_contain_text("passed", timeout=WAIT_MS)
        await visitor.shot("phone-build")
        # Nothing wider than the screen: no sideways scrolling.
        width = await page.evaluate("document.documentElement.scrollWidth")
        assert width <= 390
    finally:
        await context.close()


async def test_settings_are_saved_through_the_api_and_bad_values_show_its_message(
    visitor: Visitor, web: Stack
) -> None:
    await visitor.sign_up()
    repo = new_repo(web.git)
    await visitor.create_project("settings", repo, "true", web.image)
    page = visitor.page
    project_id = int(page.url.rsplit("/", 1)[1])
    await page.get_by_label("Timeout (seconds)").fill("600")
    await page.get_by_label("Max concurrent builds").fill("2")
    await page.get_by_role("button", name="Save settings").click()
    await expect(page.get_by_role("status")).to_have_text("Settings saved.")
    token = await page.evaluate("localStorage.getItem('kiln.token')")
    answer = await web.http.get(
        f"/api/project/projects/{project_id}", headers={"Authorization": f"Bearer {token}"}
    )
    project = answer.json()["project"]
    assert (project["timeoutSeconds"], project["maxConcurrentBuilds"]) == (600, 2)

    await page.get_by_label("Timeout (seconds)").fill("0")
    await page.get_by_role("button", name="Save settings").click()
    await expect(page.get_by_role("alert")).to_contain_text("timeoutSeconds")
    # The webhook's URL and secret are there to copy.
    settings = page.get_by_role("region", name="Settings")
    await expect(settings).to_contain_text(f"/api/webhook/github/{project_id}")
    await page.get_by_role("button", name="Show").click()
    await expect(settings).to_contain_text(project["webhookSecret"])
    await visitor.shot("project-settings")


async def test_history_pages_in_and_filters_by_status(visitor: Visitor, web: Stack) -> None:
    from kiln.models import Build, BuildStatus, utcnow

    await visitor.sign_up()
    repo = new_repo(web.git)
    await visitor.create_project("history", repo, "true", web.image)
    page = visitor.page
    project_id = int(page.url.rsplit("/", 1)[1])
    await expect(page.locator(".build-row").first).to_contain_text("passed", timeout=WAIT_MS)
    with web.sessions.begin() as session:  # a long history, finished long ago
        for number in range(30):
            status = BuildStatus.FAILED if number % 3 == 0 else BuildStatus.PASSED
            session.add(
                Build(
                    project_id=project_id,
                    branch="main",
                    commit_hash=repo.head(),
                    commit=f"change {number}",
                    status=status,
                    exit_code=1 if status == BuildStatus.FAILED else 0,
                    finished_at=utcnow(),
                )
            )
    await page.reload()
    rows = page.locator(".build-row")
    await expect(rows).to_have_count(20)
    await expect(rows.first).to_contain_text("change 29")
    await page.get_by_role("button", name="Load more").click()
    await expect(rows).to_have_count(31)
    await expect(page.get_by_role("button", name="Load more")).to_be_hidden()

    await page.get_by_label("Filter by status").select_option("failed")
    await expect(rows).to_have_count(10)
    assert set(await rows.locator(".status").all_inner_texts()) == {"failed"}
    await visitor.shot("project-history-failed")


async def test_deleting_a_project_asks_first_then_removes_it(visitor: Visitor, web: Stack) -> None:
    await visitor.sign_up()
    repo = new_repo(web.git)
    await visitor.create_project("doomed", repo, "true", web.image)
    page = visitor.page
    await page.get_by_role("button", name="Delete project").click()
    await expect(page.get_by_text("Delete doomed and all its builds?")).to_be_visible()
    await page.get_by_role("button", name="Keep it").click()
    await expect(page.get_by_role("heading", name="doomed", exact=True)).to_be_visible()
    await page.get_by_role("button", name="Delete project").click()
    await page.get_by_role("button", name="Delete for good").click()
    await expect(page.get_by_role("heading", name="Projects", exact=True)).to_be_visible()
    await expect(page.get_by_role("link", name="doomed")).to_have_count(0)


async def test_the_log_downloads_as_raw_text(visitor: Visitor, web: Stack) -> None:
    await visitor.sign_up()
    repo = new_repo(web.git)
    await visitor.create_project(
        "download", repo, "printf 'one\\n\\033[31mtwo\\033[0m\\n'", web.image
    )
    page = visitor.page
    await page.locator(".build-row a.build-link").first.click()
    heading = page.get_by_role("heading", name=re.compile(r"Build #\d+"))
    await expect(heading).to_contain_text("passed", timeout=WAIT_MS)
    async with page.expect_download() as waiting:
        await page.get_by_role("button", name="Download log").click()
    download = await waiting.value
    text = Path(await download.path()).read_text()
    assert text.startswith("one\n\x1b[31mtwo\x1b[0m\n")
    assert download.suggested_filename.endswith(".log")


async def test_after_a_lost_connection_the_page_catches_up_with_no_gap_and_no_repeat(
    visitor: Visitor, web: Stack
) -> None:
    page = visitor.page
    held = asyncio.Event()
    release = asyncio.Event()
    routes: list[WebSocketRoute] = []

    async def relay(socket: WebSocketRoute) -> None:
        routes.append(socket)
        if held.is_set():
            await release.wait()  # the reconnect stays unanswered until the test lets it through
        socket.connect_to_server()

    await page.route_web_socket(re.compile(r"/socket\.io/"), relay)
    await visitor.sign_up()
    repo = new_repo(web.git)
    command = "for i in 1 2 3 4 5 6 7 8; do echo line $i; sleep 1; done"
    await visitor.create_project("reconnect", repo, command, web.image)
    await page.locator(".build-row a.build-link").first.click()
    build_id = int(page.url.rsplit("/", 1)[1])
    log = page.get_by_label("Build output")
    await expect(log).to_contain_text("line 2", timeout=WAIT_MS)

    held.set()
    await routes[-1].close()  # the connection drops; events meanwhile are lost to this page
    await expect(page.get_by_role("status")).to_contain_text("reconnecting", timeout=WAIT_MS)
    user = User(id=0, email="", token=await page.evaluate("localStorage.getItem('kiln.token')"))
    await web.wait_final(user, build_id)  # the build ends while the page is cut off
    release.set()

    heading = page.get_by_role("heading", name=re.compile(r"Build #\d+"))
    await expect(heading).to_contain_text("passed", timeout=WAIT_MS)
    await expect(log).to_contain_text("line 8")
    lines = await log.locator("li").all_inner_texts()
    assert [line for line in lines if line.startswith("line")] == [f"line {i}" for i in range(1, 9)]


async def test_variables_secrets_and_credentials_are_set_in_the_settings(
    visitor: Visitor, web: Stack
) -> None:
    secret_value = f"s3cr3t-{uuid.uuid4().hex[:10]}"
    await visitor.sign_up()
    repo = new_repo(web.git)
    command = 'echo "token=$NPM_TOKEN mode=$NODE_ENV"'
    await visitor.create_project("variables", repo, command, web.image)
    page = visitor.page
    project_id = int(page.url.rsplit("/", 1)[1])
    token = await page.evaluate("localStorage.getItem('kiln.token')")
    headers = {"Authorization": f"Bearer {token}"}

    # A plain variable: added, saved, in the project record; a bad name shows the API's words.
    await page.get_by_role("button", name="Add variable").click()
    await page.get_by_label("Variable 1 name").fill("NODE_ENV")
    await page.get_by_label("Variable 1 value").fill("production")
    variables = page.get_by_role("form", name="Build variables")
    await variables.get_by_role("button", name="Save variables").click()
    await expect(variables.get_by_role("status")).to_have_text("Variables saved.")
    project = (await web.http.get(f"/api/project/projects/{project_id}", headers=headers)).json()
    assert project["project"]["env"] == {"NODE_ENV": "production"}
    await page.get_by_role("button", name="Add variable").click()
    await page.get_by_label("Variable 2 name").fill("lower-case")
    await variables.get_by_role("button", name="Save variables").click()
    await expect(variables.get_by_role("alert")).to_contain_text("not a valid variable name")
    await page.get_by_role("button", name="Remove variable 2").click()

    # A secret: saved, listed by name, its value gone from the page, masked in the build's log.
    secrets = page.get_by_role("form", name="Secrets")
    await page.get_by_label("Secret name").fill("NPM_TOKEN")
    await page.get_by_label("Secret value").fill(secret_value)
    await secrets.get_by_role("button", name="Save secret").click()
    await expect(secrets.get_by_role("status")).to_have_text("Secret NPM_TOKEN saved.")
    await expect(page.get_by_role("list", name="Secrets")).to_contain_text("NPM_TOKEN")
    assert await page.get_by_label("Secret value").input_value() == ""
    assert secret_value not in await page.content()
    await visitor.shot("project-variables")
    first = project["project"]["builds"][0]["id"]
    rebuilt = await web.http.post(f"/api/build/rebuild/{first}", headers=headers)
    assert rebuilt.status_code == 201, rebuilt.text
    await visitor.open(f"/builds/{rebuilt.json()['build']['id']}")
    await expect(page.locator(".log")).to_contain_text("token=*** mode=production", timeout=WAIT_MS)
    assert secret_value not in await page.content()

    # Git credentials: saved once they open the repository, then removed; bad ones explained.
    await visitor.open(f"/projects/{project_id}")
    credentials = page.get_by_role("form", name="Git credentials")
    await expect(credentials).to_contain_text("read anonymously")
    await page.get_by_label("Git username").fill("bad:name")
    await page.get_by_label("Git token").fill("tok")
    await credentials.get_by_role("button", name="Save credentials").click()
    await expect(credentials.get_by_role("alert")).to_contain_text("may not contain ':'")
    await page.get_by_label("Git username").fill("ci")
    await page.get_by_label("Git token").fill("tok")
    await credentials.get_by_role("button", name="Save credentials").click()
    await expect(credentials.get_by_role("status")).to_contain_text("Credentials saved")
    await expect(credentials).to_contain_text("read with saved credentials")
    await credentials.get_by_role("button", name="Remove credentials").click()
    await expect(credentials.get_by_role("status")).to_have_text("Credentials removed.")

    # Deleting the secret empties the list.
    await page.get_by_role("button", name="Delete secret NPM_TOKEN").click()
    await expect(page.get_by_role("list", name="Secrets")).to_contain_text("No secrets yet.")
    assert not only_kiln(visitor)


async def test_a_github_token_and_a_notification_hook_are_set_in_the_settings(
    visitor: Visitor, web: Stack
) -> None:
    await visitor.sign_up()
    await visitor.create_project("notified", new_repo(web.git), "true", web.image)
    page = visitor.page
    project_id = int(page.url.rsplit("/", 1)[1])
    token = await page.evaluate("localStorage.getItem('kiln.token')")
    headers = {"Authorization": f"Bearer {token}"}

    # The GitHub token: saved (the record says so, the page never shows it), then removed.
    github = page.get_by_role("form", name="GitHub commit statuses")
    await expect(github).to_contain_text("no commit statuses are posted")
    await page.get_by_label("GitHub token").fill("ghp_dashboard-test-token")
    await github.get_by_role("button", name="Save GitHub token").click()
    await expect(github.get_by_role("status")).to_have_text("GitHub token saved.")
    answer = await web.http.get(f"/api/project/projects/{project_id}", headers=headers)
    assert answer.json()["project"]["hasGithubToken"] is True
    assert "ghp_dashboard-test-token" not in await page.content()
    await github.get_by_role("button", name="Remove GitHub token").click()
    await expect(github.get_by_role("status")).to_have_text("GitHub token removed.")

    with Receiver(status=200) as receiver:
        # A hook with no event is refused with the API's words; one on `passed` is added, its
        # secret shown once, and it hears of the next build that passes.
        hooks = page.get_by_role("form", name="Notification hooks")
        await page.get_by_label("Hook URL").fill(receiver.url + "/kiln")
        await hooks.get_by_label("failed").uncheck()
        await hooks.get_by_role("button", name="Add hook").click()
        await expect(hooks.get_by_role("alert")).to_be_visible()
        await hooks.get_by_label("passed").check()
        await hooks.get_by_role("button", name="Add hook").click()
        await expect(hooks.get_by_role("status")).to_contain_text("shown this once")
        await expect(page.get_by_role("list", name="Hooks")).to_contain_text(receiver.url)
        await visitor.shot("project-integrations")
        secret = await hooks.locator(".ok .secret").inner_text()
        first = answer.json()["project"]["builds"][0]["id"]
        rebuilt = await web.http.post(f"/api/build/rebuild/{first}", headers=headers)
        assert rebuilt.status_code == 201, rebuilt.text
        await eventually(lambda: holds(bool(receiver.delivered())), timeout=90)
        notice = receiver.delivered()[0]
        assert notice.json()["event"] == "passed"
        assert (
            notice.headers["x-kiln-signature-256"]
            == "sha256=" + hmac.new(secret.encode(), notice.body, hashlib.sha256).hexdigest()
        )

    # Reloaded, the secret is gone from the page; the hook is deleted with its button.
    await visitor.open(f"/projects/{project_id}")
    assert secret not in await page.content()
    await page.get_by_role("button", name=f"Delete hook {receiver.url}/kiln").click()
    await expect(page.get_by_role("list", name="Hooks")).to_contain_text("No hooks yet.")
    assert not only_kiln(visitor)
