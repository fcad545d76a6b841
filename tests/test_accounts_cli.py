"""`feedstore user|group|token` (accounts_cli.py) and serve's refusal to serve openly without
authentication."""

from __future__ import annotations

import io
import socket
from pathlib import Path

import pytest
import redis

from feedstore import cli
from feedstore.cli import main
from feedstore.credentials import Credentials
from feedstore.embedded import EmbeddedRedis
from tests.redis_cluster import RedisCluster
from tests.serving import running_serve


def run(args: list[str], capsys: pytest.CaptureFixture[str], stdin: str = "") -> tuple[int, str]:
    """Run the command line with `stdin`; its exit status and output."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("sys.stdin", io.StringIO(stdin))
        status = main(args)
    captured = capsys.readouterr()
    return status, captured.out + captured.err


@pytest.fixture
def url(real_redis: redis.Redis, redis_server: EmbeddedRedis) -> str:
    return redis_server.url


def test_user_add_list_and_a_token_that_authenticates(
    url: str, real_redis: redis.Redis, capsys: pytest.CaptureFixture[str]
) -> None:
    on = ["--redis-url", url]
    add = ["user", "add", "alice", "--admin", "--group", "sales", "--password-stdin", *on]
    assert run(add, capsys, "s3cret\n") == (0, "user alice added, uid 1\n")
    assert run(["user", "list", *on], capsys) == (0, "1\talice\t/_group/$admin /_group/sales\n")
    status, token = run(
        ["token", "create", "alice", "--name", "ci", "--expires", "90d", *on], capsys
    )
    assert status == 0 and token.startswith("fst_")
    principal = Credentials(real_redis).principal_of_token(token.strip())
    assert principal.account == "alice" and principal.admin
    assert Credentials(real_redis).check_password("alice", "s3cret") == "1"


def test_token_list_shows_no_secret_and_revoke_ends_it(
    url: str, real_redis: redis.Redis, capsys: pytest.CaptureFixture[str]
) -> None:
    on = ["--redis-url", url]
    Credentials(real_redis).add_user("alice", None)
    token = run(["token", "create", "alice", "--service", *on], capsys)[1].strip()
    token_id = token[4:16]
    status, listed = run(["token", "list", "alice", *on], capsys)
    assert status == 0 and listed.startswith(f"{token_id}\talice\t-\texpires never\tnever used")
    assert listed.endswith("\tservice\n") and token[17:] not in listed
    assert run(["token", "revoke", token_id, *on], capsys) == (0, f"token {token_id} revoked\n")
    assert run(["token", "list", *on], capsys) == (0, "")
    assert run(["token", "revoke", token_id, *on], capsys) == (
        1,
        f"feedstore: no token {token_id}\n",
    )


def test_group_add_remove_list(
    url: str, real_redis: redis.Redis, capsys: pytest.CaptureFixture[str]
) -> None:
    on = ["--redis-url", url]
    Credentials(real_redis).add_user("alice", None)
    Credentials(real_redis).add_user("bob", None)
    assert run(["group", "add", "sales", "alice", *on], capsys) == (0, "alice added to sales\n")
    assert run(["group", "add", "sales", "bob", *on], capsys)[0] == 0
    assert run(["group", "list", *on], capsys) == (0, "/_group/sales\talice bob\n")
    assert run(["group", "remove", "sales", "alice", *on], capsys)[0] == 0
    assert run(["group", "list", *on], capsys) == (0, "/_group/sales\tbob\n")
    assert run(["group", "add", "sales", "nobody", *on], capsys) == (
        1,
        "feedstore: no user nobody\n",
    )


def test_passwd_and_disable(
    url: str, real_redis: redis.Redis, capsys: pytest.CaptureFixture[str]
) -> None:
    on = ["--redis-url", url]
    Credentials(real_redis).add_user("alice", "old")
    assert run(["user", "passwd", "alice", "--password-stdin", *on], capsys, "new\n")[0] == 0
    assert Credentials(real_redis).check_password("alice", "new") == "1"
    assert run(["user", "disable", "alice", *on], capsys) == (0, "user alice disabled\n")
    assert run(["user", "list", *on], capsys) == (0, "1\talice\t-\tdisabled\n")
    assert Credentials(real_redis).check_password("alice", "new") is None


def test_the_password_prompt_asks_twice(
    url: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    answers = iter(["one", "two"])
    monkeypatch.setattr("getpass.getpass", lambda prompt: next(answers))
    assert run(["user", "add", "alice", "--redis-url", url], capsys) == (
        1,
        "feedstore: the passwords differ\n",
    )


def test_bad_names_and_durations_are_refused(url: str, capsys: pytest.CaptureFixture[str]) -> None:
    on = ["--redis-url", url]
    status, said = run(["user", "add", "12", "--password-stdin", *on], capsys, "pw\n")
    assert status == 1 and said.startswith("feedstore: bad account name: '12'")
    with pytest.raises(SystemExit):
        main(["token", "create", "alice", "--expires", "soon", *on])
    assert "must be a number and s, m, h or d, not soon" in capsys.readouterr().err


def test_user_commands_work_beside_a_running_serve(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "data"
    with running_serve(data_dir=data, log_path=tmp_path / "serve.log") as server:
        add = ["user", "add", "alice", "--password-stdin", "--data", str(data)]
        assert run(add, capsys, "s3cret\n")[0] == 0
        token = run(["token", "create", "alice", "--data", str(data)], capsys)[1].strip()
        assert token.startswith("fst_")
        assert server.request("GET", "/_health").status == 200


def test_serve_auth_on_authenticates_in_every_worker(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "data"
    with running_serve("--auth", "on", data_dir=data, log_path=tmp_path / "serve.log") as server:
        assert (
            run(["user", "add", "alice", "--password-stdin", "--data", str(data)], capsys, "pw\n")[
                0
            ]
            == 0
        )
        token = run(["token", "create", "alice", "--data", str(data)], capsys)[1].strip()
        for _ in range(4):  # whichever worker answers
            answer = server.request("GET", "/d/?_uid", headers={"Authorization": f"Bearer {token}"})
            assert (answer.status, answer.json()) == (200, {"feed": {"title": "1"}})
            answer = server.request("GET", "/d/?_uid")
            assert answer.status == 401
            assert answer.headers["www-authenticate"] == 'Bearer realm="feedstore"'


def test_the_commands_work_on_a_cluster(
    redis_cluster: RedisCluster, capsys: pytest.CaptureFixture[str]
) -> None:
    redis_cluster.flush()
    on = ["--redis-url", redis_cluster.url]
    assert run(["user", "add", "alice", "--admin", "--password-stdin", *on], capsys, "pw\n")[0] == 0
    token = run(["token", "create", "alice", *on], capsys)[1].strip()
    assert run(["user", "list", *on], capsys) == (0, "1\talice\t/_group/$admin\n")
    assert run(["token", "list", *on], capsys)[1].startswith(token[4:16])


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.0.2.1"])
def test_serve_refuses_a_non_loopback_host_without_auth(
    host: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    status = main(["serve", "--host", host, "--data", str(tmp_path / "data")])
    assert status == 2
    assert capsys.readouterr().err == (
        f"feedstore: Refusing to serve {host} without authentication; "
        "pass --auth off to do it anyway.\n"
    )
    assert not (tmp_path / "data").exists()


@pytest.mark.parametrize("auth", [["--auth", "off"], ["--auth", "on"]])
def test_serve_on_a_non_loopback_host_goes_on_when_auth_is_said(
    auth: list[str], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FEEDSTORE_AUTH", "off")  # restored after: serve sets it for its workers
    with socket.socket() as busy:  # a busy port: serve stops there, past the auth check
        busy.bind(("0.0.0.0", 0))
        busy.listen()
        port = busy.getsockname()[1]
        status = main(["serve", "--host", "0.0.0.0", "--port", str(port), *auth])
    assert (status, capsys.readouterr().err) == (
        1,
        f"feedstore: port {port} on 0.0.0.0 is already in use\n",
    )


@pytest.mark.parametrize(
    ("host", "loopback"),
    [("127.0.0.1", True), ("::1", True), ("localhost", True), ("0.0.0.0", False), ("::", False)],
)
def test_loopback_hosts(host: str, loopback: bool) -> None:
    assert cli.is_loopback(host) is loopback
