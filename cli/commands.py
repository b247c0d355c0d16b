"""The client commands: `kiln login | logout | projects | builds | build | logs | rebuild |
cancel`. Each returns the process's exit code; failures raise CliError."""

from __future__ import annotations

import argparse
import getpass
import sys

from cli import config
from cli.client import Api, CliError
from cli.follow import follow
from cli.output import build_details, builds_table, first_line, print_json, table


def _api() -> tuple[Api, config.Login]:
    try:
        login = config.current()
    except config.NotLoggedIn as exc:
        raise CliError(str(exc)) from None
    return Api(login.server, login.token), login


def login(args: argparse.Namespace) -> int:
    server = args.server.rstrip("/")
    if not server.startswith(("http://", "https://")):
        raise CliError("--server must be an http:// or https:// URL")
    if args.token:
        token = args.token.strip()
        who = "with a token"
        Api(server, token).call("GET", "/api/project/projects")  # is it any good?
    else:
        if not args.email:
            raise CliError("give --email EMAIL (the password is asked for) or --token TOKEN")
        password = _password(args.password_stdin)
        answer = Api(server).call(
            "POST", "/api/auth/login", {"email": args.email, "password": password}
        )
        token, who = answer["token"], f"as {answer['user']['email']}"
    path = config.save(config.Login(server, token))
    print(f"Logged in to {server} {who} (saved in {path})")
    return 0


def _password(from_stdin: bool) -> str:
    if from_stdin:
        return sys.stdin.readline().rstrip("\n")
    if not sys.stdin.isatty():
        raise CliError("no terminal to ask for the password: use --password-stdin")
    return getpass.getpass("Password: ")


def logout(_args: argparse.Namespace) -> int:
    print("Logged out" if config.forget() else "Not logged in")
    return 0


def projects(args: argparse.Namespace) -> int:
    api, _ = _api()
    answer = api.call("GET", "/api/project/projects")
    if args.json:
        print_json(answer)
        return 0
    rows = []
    for project in answer["projects"]:
        newest = project["builds"][0] if project["builds"] else None
        last = f"#{newest['id']} {newest['status']}" if newest else "-"
        rows.append(
            [str(project["id"]), project["name"], project["branch"], last, project["repoUrl"]]
        )
    print(
        table(["ID", "NAME", "BRANCH", "LAST BUILD", "REPOSITORY"], rows)
        if rows
        else "No projects yet"
    )
    return 0


def builds(args: argparse.Namespace) -> int:
    api, _ = _api()
    query = f"limit={args.limit}" + (f"&status={args.status}" if args.status else "")
    answer = api.call("GET", f"/api/project/projects/{args.project_id}/builds?{query}")
    if args.json:
        print_json(answer)
    elif answer["builds"]:
        print(builds_table(answer["builds"]))
    else:
        print("No builds")
    return 0


def build(args: argparse.Namespace) -> int:
    api, _ = _api()
    answer = api.call("GET", f"/api/build/{args.build_id}")
    if args.json:
        print_json(answer)
    else:
        print(build_details(answer["build"]))
    return 0


def logs(args: argparse.Namespace) -> int:
    api, login_ = _api()
    if args.follow:
        return follow(login_.server, login_.token, args.build_id)
    answer = api.call("GET", f"/api/build/{args.build_id}/logs")
    sys.stdout.write(answer["logs"])
    return 0


def rebuild(args: argparse.Namespace) -> int:
    api, login_ = _api()
    answer = api.call("POST", f"/api/build/rebuild/{args.build_id}")
    new = answer["build"]
    if args.json and not args.follow:
        print_json(answer)
        return 0
    print(
        f"Build #{new['id']} queued: rebuild of #{args.build_id} at {new['commitHash'][:7]}"
        f" ({first_line(new.get('commit')) or new['branch']})",
        file=sys.stderr if args.follow else sys.stdout,
    )
    return follow(login_.server, login_.token, new["id"]) if args.follow else 0


def cancel(args: argparse.Namespace) -> int:
    api, _ = _api()
    answer = api.call("POST", f"/api/build/{args.build_id}/cancel")
    if args.json:
        print_json(answer)
    else:
        print(f"Cancel requested for build #{args.build_id}; it stops within seconds")
    return 0


def positive_id(text: str) -> int:
    if not (text.isascii() and text.isdigit()) or int(text) == 0:
        raise argparse.ArgumentTypeError(f"'{text}' is not a positive integer id")
    return int(text)


def add_client_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """The client's subcommands, each with its handler in `handler`."""
    one = commands.add_parser("login", help="log in to a Kiln server and remember it")
    one.add_argument("--server", required=True, help="e.g. http://127.0.0.1:8000")
    one.add_argument("--email")
    one.add_argument("--password-stdin", action="store_true", help="read the password from stdin")
    one.add_argument("--token", help="an API token instead of email and password")
    one.set_defaults(handler=login)
    commands.add_parser("logout", help="forget the stored login").set_defaults(handler=logout)

    one = commands.add_parser("projects", help="your projects")
    one.add_argument("--json", action="store_true", help="print the API's JSON")
    one.set_defaults(handler=projects)

    one = commands.add_parser("builds", help="a project's builds, newest first")
    one.add_argument("project_id", type=positive_id, metavar="PROJECT_ID")
    one.add_argument("--status", choices=["queued", "running", "passed", "failed", "canceled"])
    one.add_argument("--limit", type=int, default=20, choices=range(1, 101), metavar="N")
    one.add_argument("--json", action="store_true", help="print the API's JSON")
    one.set_defaults(handler=builds)

    for name, handler, text in (
        ("build", build, "one build"),
        ("logs", logs, "a build's output"),
        ("rebuild", rebuild, "build the same commit again"),
        ("cancel", cancel, "stop a queued or running build"),
    ):
        one = commands.add_parser(name, help=text)
        one.add_argument("build_id", type=positive_id, metavar="BUILD_ID")
        if name in ("logs", "rebuild"):
            one.add_argument(
                "--follow", action="store_true", help="stream the output live; exit with the result"
            )
        if name != "logs":
            one.add_argument("--json", action="store_true", help="print the API's JSON")
        one.set_defaults(handler=handler)
