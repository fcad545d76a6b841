"""`feedstore user|group|token ...`: manage who may authenticate (credentials.py).

Like `feedstore schema`, each command works on `--redis-url` or on the embedded Redis of
`--data` (a running serve's, or one started for the command), so it works while a server runs.
"""

from __future__ import annotations

import argparse
import getpass
import re
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from feedstore.cli_store import CliError, add_store_options, redis_client, redis_url_of
from feedstore.credentials import CredentialError, Credentials, TokenInfo, User

Subcommands = argparse._SubParsersAction
DURATION = re.compile(r"([0-9]{1,9})([smhd])")
SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def add_commands(subcommands: Subcommands) -> None:
    """Register `feedstore user`, `feedstore group` and `feedstore token`."""
    user = _command(subcommands, "user", "add, change, disable or list users")
    actions = user.add_subparsers(title="actions", required=True, metavar="ACTION")
    add = _action(actions, "add", run_user_add, "add a user (prompts for the password)")
    add.add_argument("account")
    add.add_argument("--admin", action="store_true", help="put the user in /_group/$admin")
    add.add_argument("--group", action="append", default=[], help="a group (repeatable)")
    add.add_argument("--password-stdin", action="store_true", help="read the password from stdin")
    passwd = _action(actions, "passwd", run_user_passwd, "set a user's password")
    passwd.add_argument("account")
    passwd.add_argument("--password-stdin", action="store_true")
    disable = _action(
        actions, "disable", run_user_disable, "refuse logins, revoke tokens, end sessions"
    )
    disable.add_argument("account")
    _action(actions, "list", run_user_list, "list the users")

    group = _command(subcommands, "group", "add users to groups, remove them, list groups")
    actions = group.add_subparsers(title="actions", required=True, metavar="ACTION")
    for name, run in (("add", run_group_add), ("remove", run_group_remove)):
        parser = _action(
            actions, name, run, f"{name} a user {'to' if name == 'add' else 'from'} a group"
        )
        parser.add_argument("group")
        parser.add_argument("account")
    _action(actions, "list", run_group_list, "list the groups and their members")

    token = _command(subcommands, "token", "create, list or revoke API tokens")
    actions = token.add_subparsers(title="actions", required=True, metavar="ACTION")
    create = _action(actions, "create", run_token_create, "create a token (printed once)")
    create.add_argument("account")
    create.add_argument("--name", default="", help="what the token is for")
    create.add_argument("--expires", type=duration, help="lifetime: 30m, 12h, 90d (never)")
    create.add_argument(
        "--service", action="store_true", help="a server-side token (the E right of ACLs)"
    )
    listing = _action(actions, "list", run_token_list, "list tokens (never their secrets)")
    listing.add_argument("account", nargs="?")
    revoke = _action(actions, "revoke", run_token_revoke, "revoke a token by its id")
    revoke.add_argument("token_id")


def _command(subcommands: Subcommands, name: str, help: str) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = subcommands.add_parser(name, help=help, description=help)
    return parser


def _action(
    actions: Subcommands, name: str, run: Callable[[argparse.Namespace], int], help: str
) -> argparse.ArgumentParser:

    parser: argparse.ArgumentParser = actions.add_parser(name, help=help, description=help)
    add_store_options(parser)
    parser.set_defaults(command=run)
    return parser


def duration(text: str) -> int:
    """`90d` -> seconds."""
    match = DURATION.fullmatch(text)
    if match is None:
        raise argparse.ArgumentTypeError(f"must be a number and s, m, h or d, not {text}")
    return int(match[1]) * SECONDS[match[2]]


@contextmanager
def credentials_of(args: argparse.Namespace) -> Iterator[Credentials]:
    """The credentials of the command's Redis; a CredentialError becomes a CliError."""

    with redis_url_of(args.redis_url, args.data.absolute()) as url:
        client = redis_client(url)
        try:
            yield Credentials(client)
        except CredentialError as e:
            raise CliError(str(e)) from e
        finally:
            client.close()


def read_password(from_stdin: bool) -> str:
    """The new password: one line of stdin, or typed twice at a prompt."""

    if from_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = getpass.getpass("Password: ")
        if getpass.getpass("Password again: ") != password:
            raise CliError("the passwords differ")
    if not password:
        raise CliError("the password is empty")
    return password


def run_user_add(args: argparse.Namespace) -> int:
    password = read_password(args.password_stdin)
    groups = [*args.group, *(["$admin"] if args.admin else [])]
    with credentials_of(args) as credentials:
        user = credentials.add_user(args.account, password, groups)
    print(f"user {user.account} added, uid {user.uid}")
    return 0


def run_user_passwd(args: argparse.Namespace) -> int:
    with credentials_of(args) as credentials:
        credentials.user(args.account)  # before the prompt: no password typed for nothing
        credentials.set_password(args.account, read_password(args.password_stdin))
    print(f"password of {args.account} changed")
    return 0


def run_user_disable(args: argparse.Namespace) -> int:
    with credentials_of(args) as credentials:
        credentials.disable(args.account)
    print(f"user {args.account} disabled")
    return 0


def run_user_list(args: argparse.Namespace) -> int:
    with credentials_of(args) as credentials:
        users = credentials.users()
    for user in users:
        print(user_line(user))
    return 0


def user_line(user: User) -> str:
    """uid, account, groups (or -), and `disabled`: tab-separated."""
    state = "\tdisabled" if user.disabled else ""
    return f"{user.uid}\t{user.account}\t{' '.join(user.groups) or '-'}{state}"


def run_group_add(args: argparse.Namespace) -> int:
    with credentials_of(args) as credentials:
        credentials.add_to_group(args.group, args.account)
    print(f"{args.account} added to {args.group}")
    return 0


def run_group_remove(args: argparse.Namespace) -> int:
    with credentials_of(args) as credentials:
        credentials.remove_from_group(args.group, args.account)
    print(f"{args.account} removed from {args.group}")
    return 0


def run_group_list(args: argparse.Namespace) -> int:
    with credentials_of(args) as credentials:
        groups = credentials.groups()
    for group, accounts in groups.items():
        print(f"{group}\t{' '.join(accounts)}")
    return 0


def run_token_create(args: argparse.Namespace) -> int:
    with credentials_of(args) as credentials:
        token, _ = credentials.create_token(args.account, args.name, args.expires, args.service)
    print(token)
    return 0


def run_token_list(args: argparse.Namespace) -> int:
    with credentials_of(args) as credentials:
        tokens = credentials.tokens(args.account)
    for token in tokens:
        print(token_line(token))
    return 0


def token_line(token: TokenInfo) -> str:
    """id, account, name, expiry, last use, service: tab-separated."""
    expires = "never" if token.expires is None else _when(token.expires)
    used = "never used" if token.last_used is None else f"used {_when(token.last_used)}"
    service = "\tservice" if token.service else ""
    return f"{token.id}\t{token.account}\t{token.name or '-'}\texpires {expires}\t{used}{service}"


def run_token_revoke(args: argparse.Namespace) -> int:
    with credentials_of(args) as credentials:
        credentials.revoke_token(args.token_id)
    print(f"token {args.token_id} revoked")
    return 0


def _when(seconds: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(seconds))
