"""The examples of README.md and docs/api.md, run in order against a real `feedstore serve`.

What runs:
- README.md: every fenced block whose info string is exactly `sh`, in order. In its first block,
  `./scripts/serve` means "the server this harness started" and `./scripts/test` (this suite) is
  skipped; those two lines are the only ones handled specially.
- docs/api.md: only the blocks whose info string is exactly `sh runnable`, in order. A document
  that does not exist, or has no such block, passes with nothing run.
Each document gets its own fresh server (an empty `./feedstore-data`), in a working directory where
`examples/` is the repository's and `.venv/bin/feedstore` is this Python's `feedstore`, so a command
pasted from the repository root (`.venv/bin/feedstore schema set examples/schema.json`) does the
same here. The commands run in one `bash`, one after another, so shell variables (`H=...`) carry
over from command to command and from block to block. `localhost:8080` in a command is replaced by
the server's real address.

How a block is read:
- A command is one line, or several joined by trailing `\\`. A trailing ` # remark` is a shell
  comment and is allowed.
- Comment lines after a command may give its expected output: `# {...}`, `# [...]` or `# <...` is
  the body it prints; `# 409 {...}` is the HTTP status and then the body; `# 204` is a status with
  an empty body. A following `#` line indented further than the first (`#      "error":...`)
  continues the expected text; any whitespace, or none, may stand at such a join. A comment line
  that starts with anything else is prose and is not checked.
- In expected text, `...` matches any text, `<timestamp>` an RFC 3339 time with milliseconds and
  an offset, and `<cursor>` a base64url cursor. Everything else must be exactly what is printed.

How a command is checked:
- `curl` is found first on PATH as a wrapper that runs the real curl, as given, plus a
  `--write-out` that reports each answer's status on the side (so commands must not use `-w`).
  Standard output is passed through unchanged.
- The whole standard output (CRLF read as LF, trailing whitespace stripped) must fully match the
  expected body; with a status, the last answer's status must be it. A command with no expected
  output must exit 0, and every answer it got must be 2xx.
A failure names the document, line, command, expected and actual output of every mismatch.
"""

from __future__ import annotations

import contextlib
import os
import re
import select
import shlex
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

import pytest

from tests.serving import Server, running_serve

REPOSITORY = Path(__file__).resolve().parent.parent
# The documents, and the info string that makes one of their blocks run.
DOCUMENTS = {"README.md": "sh", "docs/api.md": "sh runnable"}
# In README.md's first block: the harness's own server, and this suite.
SERVED_BY_HARNESS = "./scripts/serve"
THIS_SUITE = "./scripts/test"
COMMAND_TIMEOUT = 30.0
PLACEHOLDERS = {
    "...": r".*?",
    "<timestamp>": r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}(?:Z|[+-]\d\d:\d\d)",
    "<cursor>": r"[A-Za-z0-9_-]+",
}
_TOKENS = re.compile("(" + "|".join(map(re.escape, PLACEHOLDERS)) + ")")
_STATUS = re.compile(r"([1-5][0-9]{2})(?:\s+(.*))?")
_FENCE = re.compile(r"( *)(`{3,}|~{3,})\s*(.*?)\s*")
_STATUS_MARK = "README-STATUS "
CURL_WRAPPER = """#!/usr/bin/env bash
# curl as given, each answer's HTTP status appended to the status file; stdout untouched.
# %{{stderr}} sends the rest of the --write-out to stderr, whose other lines are passed on.
errors=$(mktemp)
{curl} -q "$@" --write-out '%{{stderr}}\\n{mark}%{{http_code}}\\n' 2>"$errors"
code=$?
sed -n 's/^{mark}//p' "$errors" >>{status_file}
grep -v -e '^{mark}' -e '^$' "$errors" >&2
rm -f "$errors"
exit "$code"
"""


class ExampleError(Exception):
    """A block that can't be read under the convention (e.g. expected output with no command)."""


@dataclass(frozen=True)
class Expected:
    """What a command should print: the status of its last answer (if given) and its body."""

    status: int | None
    body: str  # the parts of a continued comment joined by "\n"; "" for `# 204`
    line: int = 0  # where it starts in the document

    def pieces(self) -> list[tuple[str, str]]:
        """The body as (regular expression, text) pieces: literal text, placeholders, and any
        whitespace at each join of a continued comment."""
        pieces: list[tuple[str, str]] = []
        for number, segment in enumerate(self.body.split("\n")):
            if number:
                pieces.append((r"\s*", ""))
            for text in _TOKENS.split(segment.strip()):
                if text:
                    pieces.append((PLACEHOLDERS.get(text) or re.escape(text), text))
        return pieces

    def pattern(self) -> re.Pattern[str]:
        return re.compile("".join(regex for regex, _ in self.pieces()), re.DOTALL)

    def divergence(self, actual: str) -> str:
        """Where what was printed stops following the expected text: the expected text from
        there, after the last bit that still matched."""
        prefix = ""
        for regex, text in self.pieces():
            if text and re.match(prefix + regex, actual, re.DOTALL) is None:
                kept = 0  # a placeholder matches whole or not at all
                if text not in PLACEHOLDERS:
                    kept = max(
                        k
                        for k in range(len(text) + 1)
                        if re.match(prefix + re.escape(text[:k]), actual, re.DOTALL)
                    )
                return f"{text[kept:]!r}, after {text[max(0, kept - 30) : kept]!r}"
            prefix += regex
        return "the end: more was printed"

    def __str__(self) -> str:
        status = f"{self.status} " if self.status is not None else ""
        return (status + self.body).strip()


@dataclass
class Example:
    """One command of a document, where it is, and what it should print."""

    document: str
    line: int
    command: str
    expected: Expected | None = None
    skip: bool = False  # README's `./scripts/serve` and `./scripts/test`


@dataclass(frozen=True)
class Outcome:
    """What a command did: its exit status, what it printed, and the statuses curl got."""

    exit_status: int
    stdout: str
    stderr: str
    statuses: list[int] = field(default_factory=list)


def normalized(output: str) -> str:
    """CRLF as LF, no trailing whitespace on any line or at the end."""
    lines = output.replace("\r\n", "\n").split("\n")
    return "\n".join(line.rstrip() for line in lines).rstrip()


def mismatch(example: Example, outcome: Outcome) -> str | None:
    """Why an outcome is not what the example says, or None when it is."""
    if outcome.exit_status == 2 and "unexpected EOF while looking for matching" in outcome.stderr:
        return "a quote is not closed: a command goes on to the next line only after a trailing \\"
    expected = example.expected
    if expected is None:
        failed = [status for status in outcome.statuses if not 200 <= status < 300]
        if outcome.exit_status != 0:
            return f"exit status {outcome.exit_status}, expected 0"
        if failed:
            return f"HTTP status {failed[0]}, expected 2xx"
        return None
    stdout = normalized(outcome.stdout)
    if expected.status is not None:
        last = outcome.statuses[-1] if outcome.statuses else None
        if last != expected.status:
            return f"HTTP status {last}, expected {expected.status}"
    if expected.pattern().fullmatch(stdout) is None:
        return "the output differs"
    return None


def report(example: Example, outcome: Outcome, reason: str) -> str:
    """A mismatch as a reader needs it: where, what ran, what was expected, what came."""
    statuses = " ".join(map(str, outcome.statuses)) or "none"
    expected, stdout = example.expected, normalized(outcome.stdout)
    lines = [
        f"{example.document}:{example.line}: {reason}",
        "  command:  " + indented(example.command),
        "  expected: " + (indented(str(expected)) if expected else "(success: exit 0, 2xx)"),
        f"  actual:   exit {outcome.exit_status}, HTTP {statuses}",
        "            " + indented(stdout or "(no output)"),
    ]
    if expected is not None and expected.pattern().fullmatch(stdout) is None:
        lines.append("  differs at: " + indented(expected.divergence(stdout)))
    if outcome.stderr.strip():
        lines.append("  stderr:   " + indented(normalized(outcome.stderr)))
    return "\n".join(lines)


def indented(text: str) -> str:
    """The later lines of a value in a report, lined up under its first."""
    return text.replace("\n", "\n" + " " * 12)


# -- reading documents ------------------------------------------------------------------------


def fenced_blocks(text: str, info: str) -> Iterator[tuple[int, list[str]]]:
    """The fenced blocks whose info string is exactly `info`: (line of their first line, lines)."""
    lines = text.split("\n")
    number = 0
    while number < len(lines):
        opening = _FENCE.fullmatch(lines[number])
        number += 1
        if opening is None:
            continue
        indent, fence, block_info = opening.groups()
        start, content = number + 1, []
        while number < len(lines):
            closing = _FENCE.fullmatch(lines[number])
            number += 1
            if closing and closing[2].startswith(fence) and not closing[3]:
                break
            content.append(lines[number - 1].removeprefix(indent))
        if block_info == info:
            yield start, content


def block_examples(document: str, start: int, lines: list[str]) -> list[Example]:
    """The commands of one block with the expected output under each (see the module doc)."""
    examples: list[Example] = []
    current: Example | None = None  # the command that comment lines may still belong to
    expected_indent: int | None = None  # the first expected line's, while it may be continued
    number = 0
    while number < len(lines):
        line, where = lines[number], start + number
        number += 1
        stripped = line.strip()
        if not stripped:
            current, expected_indent = None, None
            continue
        if not stripped.startswith("#"):
            command = [line]
            while command[-1].rstrip().endswith("\\") and number < len(lines):
                command.append(lines[number])
                number += 1
            current = Example(document, where, "\n".join(command).strip())
            examples.append(current)
            expected_indent = None
            continue
        text = stripped[1:]
        content, indent = text.strip(), len(text) - len(text.lstrip())
        if current is not None and expected_indent is not None and indent > expected_indent:
            assert current.expected is not None
            current.expected = replace(current.expected, body=f"{current.expected.body}\n{content}")
            continue
        status = _STATUS.fullmatch(content)
        if not (status or content[:1] in ("{", "[", "<")):
            expected_indent = None  # prose: not checked, and it ends any expected text
            continue
        if current is None:
            raise ExampleError(f"{document}:{where}: expected output with no command above it")
        if current.expected is not None:
            raise ExampleError(f"{document}:{where}: a second expected output for one command")
        if status:
            current.expected = Expected(int(status[1]), status[2] or "", where)
        else:
            current.expected = Expected(None, content, where)
        expected_indent = indent
    return examples


def document_examples(document: str, text: str) -> list[Example]:
    """Every command a document runs, in order."""
    examples = []
    for position, (start, lines) in enumerate(fenced_blocks(text, DOCUMENTS[document])):
        block = block_examples(document, start, lines)
        if document == "README.md" and position == 0:
            for example in block:
                example.skip = shell_words(example.command) in (
                    [SERVED_BY_HARNESS],
                    [THIS_SUITE],
                )
        examples += block
    return examples


def shell_words(command: str) -> list[str]:
    """The words of a simple command, without its trailing comment."""
    return command.split("#", 1)[0].split()


# -- running them -----------------------------------------------------------------------------


class Shell:
    """One bash that runs commands one at a time, keeping its variables between them."""

    def __init__(self, cwd: Path, scratch: Path, port: int) -> None:
        self.scratch = scratch
        self.port = port
        self.statuses = scratch / "statuses"
        wrappers = scratch / "bin"
        wrappers.mkdir()
        real_curl = shutil.which("curl")
        # scripts/test installs curl: a missing one is a broken environment, not a pass.
        assert real_curl is not None, "the examples need curl (scripts/test installs it)"
        wrapper = wrappers / "curl"
        wrapper.write_text(
            CURL_WRAPPER.format(
                curl=shlex.quote(real_curl),
                status_file=shlex.quote(str(self.statuses)),
                mark=_STATUS_MARK,
            )
        )
        wrapper.chmod(0o755)
        environment = {
            **os.environ,
            "PATH": f"{wrappers}{os.pathsep}{os.environ.get('PATH', '')}",
            "NO_PROXY": "localhost,127.0.0.1",
            "no_proxy": "localhost,127.0.0.1",
        }
        self.process = subprocess.Popen(
            ["bash", "--noprofile", "--norc"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            cwd=cwd,
            env=environment,
            start_new_session=True,
        )

    def run(self, command: str) -> Outcome:
        """Run one command in this shell (as if pasted) and collect what it did."""
        assert self.process.stdin is not None and self.process.stdout is not None
        script, stdout, stderr = (self.scratch / name for name in ("command", "stdout", "stderr"))
        script.write_text(command.replace("localhost:8080", f"localhost:{self.port}") + "\n")
        self.statuses.write_text("")
        script_path, stdout_path, stderr_path = (
            shlex.quote(str(p)) for p in (script, stdout, stderr)
        )
        line = f'. {script_path} </dev/null >{stdout_path} 2>{stderr_path}; echo "$?"\n'
        self.process.stdin.write(line.encode())
        self.process.stdin.flush()
        ready, _, _ = select.select([self.process.stdout], [], [], COMMAND_TIMEOUT)
        if not ready:
            raise AssertionError(f"no answer within {COMMAND_TIMEOUT} s: {command}")
        answer = self.process.stdout.readline()
        if not answer:
            raise AssertionError(f"the shell exited running: {command}")
        return Outcome(
            int(answer),
            stdout.read_text(errors="replace"),
            stderr.read_text(errors="replace"),
            [int(status) for status in self.statuses.read_text().split()],
        )

    def close(self) -> None:
        """End the shell and anything a command left running (its own session)."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.communicate()


@dataclass
class Run:
    """The result of running a document's examples."""

    ran: int = 0
    checked: int = 0
    failures: list[str] = field(default_factory=list)


def run_examples(
    examples: list[Example],
    server: Server,
    cwd: Path,
    scratch: Path,
    stop_at_first: bool = False,
) -> Run:
    """Run the examples in order in one shell; collect every mismatch."""
    result = Run()
    shell = Shell(cwd, scratch, server.port)
    try:
        for example in examples:
            if example.skip:
                continue
            outcome = shell.run(example.command)
            result.ran += 1
            result.checked += example.expected is not None
            reason = mismatch(example, outcome)
            if reason is not None:
                result.failures.append(report(example, outcome, reason))
                if stop_at_first:
                    break
    finally:
        shell.close()
    return result


def working_directory(root: Path) -> Path:
    """A directory laid out like the repository root for the commands the documents run."""
    root.mkdir()
    (root / "examples").symlink_to(REPOSITORY / "examples")
    venv_bin = root / ".venv" / "bin"
    venv_bin.mkdir(parents=True)
    (venv_bin / "feedstore").symlink_to(Path(sys.executable).parent / "feedstore")
    return root


@contextlib.contextmanager
def fresh_server(tmp_path: Path) -> Iterator[tuple[Server, Path, Path]]:
    """A new `feedstore serve` run from a repository-like directory, and a scratch directory."""
    cwd = working_directory(tmp_path / "w")
    scratch = tmp_path / "s"
    scratch.mkdir()
    with running_serve(data_dir=None, log_path=cwd / "serve.log") as server:
        yield server, cwd, scratch


# -- the tests --------------------------------------------------------------------------------


@pytest.mark.parametrize("document", DOCUMENTS)
def test_examples_do_what_their_comments_say(document: str, tmp_path: Path) -> None:
    path = REPOSITORY / document
    examples = document_examples(document, path.read_text()) if path.exists() else []
    if document == "README.md":
        assert sum(e.expected is not None for e in examples) > 20, "README's examples were lost"
    if not any(not e.skip for e in examples):
        return  # docs/api.md is not written yet, or runs nothing
    started = time.monotonic()
    with fresh_server(tmp_path) as (server, cwd, scratch):
        result = run_examples(examples, server, cwd, scratch)
    summary = (
        f"{document}: {result.ran} commands run, {result.checked} outputs checked, "
        f"{len(result.failures)} mismatches in {time.monotonic() - started:.1f} s"
    )
    print(summary)
    assert not result.failures, summary + "\n\n" + "\n\n".join(result.failures)


def test_an_edited_expected_output_fails(tmp_path: Path) -> None:
    """README.md with its first expected output changed: the run stops there, saying why."""
    text = (REPOSITORY / "README.md").read_text()
    examples = document_examples("README.md", text)
    first = next(e for e in examples if e.expected is not None)
    assert first.expected is not None
    lines = text.split("\n")
    original = lines[first.expected.line - 1]
    changed = original.replace("{", '{"edited":1,', 1)
    assert changed != original
    lines[first.expected.line - 1] = changed
    edited = document_examples("README.md", "\n".join(lines))
    with fresh_server(tmp_path) as (server, cwd, scratch):
        result = run_examples(edited, server, cwd, scratch, stop_at_first=True)
    assert result.ran == sum(not e.skip for e in examples[: examples.index(first) + 1])
    [failure] = result.failures
    assert failure.startswith(f"README.md:{first.line}: the output differs")
    assert f"command:  {first.command.splitlines()[0]}" in failure
    assert f"expected: {changed.lstrip('# ')}" in failure
    # What it printed is what the README said before the edit.
    assert failure.split("actual:", 1)[1].split("\n")[1].strip() == original.lstrip("# ")


# -- the convention, without a server ------------------------------------------------------------

BLOCK = """\
H=x                                  # a remark
curl -s -X PUT localhost:8080/d/ \\
  -d '{"a":1}'
# {"feed":{"title":"Updated."}}
# (prose: not checked)
curl -s localhost:8080/d/k
# 409 {"feed":{"title":"Optimistic locking failed."},
#      "error":{"status":409,...}}
# and more prose

curl -s 'localhost:8080/d/gone?e'
# 204
curl -s localhost:8080/_health
"""


def test_a_block_is_commands_with_the_expected_output_under_each() -> None:
    examples = block_examples("doc.md", 10, BLOCK.split("\n"))
    assert [(e.line, e.command.split()[0], e.expected) for e in examples] == [
        (10, "H=x", None),
        (11, "curl", Expected(None, '{"feed":{"title":"Updated."}}', 13)),
        (
            15,
            "curl",
            Expected(
                409,
                '{"feed":{"title":"Optimistic locking failed."},\n"error":{"status":409,...}}',
                16,
            ),
        ),
        (20, "curl", Expected(204, "", 21)),
        (22, "curl", None),
    ]
    assert examples[1].command == "curl -s -X PUT localhost:8080/d/ \\\n  -d '{\"a\":1}'"


@pytest.mark.parametrize(
    "lines",
    [
        ["# {}"],  # before any command
        ["true", "", "# {}"],  # a blank line ends the command's comments
        ["true", "# {}", "# []"],  # two outputs for one command
    ],
)
def test_expected_output_must_belong_to_one_command(lines: list[str]) -> None:
    with pytest.raises(ExampleError, match=r"doc\.md:"):
        block_examples("doc.md", 1, lines)


def test_only_blocks_with_the_exact_info_string_run() -> None:
    text = "```sh\na\n```\n\n```sh runnable\nb\n```\n\n```shell\nc\n```\n  ```sh\n  d\n  ```\n"
    assert [lines for _, lines in fenced_blocks(text, "sh")] == [["a"], ["d"]]
    assert list(fenced_blocks(text, "sh runnable")) == [(6, ["b"])]


def test_only_the_first_readme_block_names_the_harness_and_this_suite() -> None:
    text = (
        "```sh\n./scripts/serve   # serves\n./scripts/test\n./scripts/serve --port 1\n```\n"
        "```sh\n./scripts/serve\n```\n"
    )
    examples = document_examples("README.md", text)
    assert [(e.command.split()[0], e.skip) for e in examples] == [
        ("./scripts/serve", True),
        ("./scripts/test", True),
        ("./scripts/serve", False),
        ("./scripts/serve", False),
    ]


def outcome(stdout: str, *statuses: int, exit_status: int = 0) -> Outcome:
    return Outcome(exit_status, stdout, "", list(statuses))


def expecting(comment: str) -> Example:
    [example] = block_examples("doc.md", 1, ["curl x", comment])
    return example


@pytest.mark.parametrize(
    ("comment", "actual"),
    [
        ('# {"feed":{"title":"/11"}}', outcome('{"feed":{"title":"/11"}}\n', 201)),
        (
            '# {"feed":{"title":"/11"}}',
            outcome('{"feed":{"title":"/11"}}  \r\n\r\n', 201),
        ),
        ('# {"a":...,"c":3}', outcome('{"a":1,"b":[2,\n2],"c":3}', 200)),
        (
            '# {"t":"<timestamp>"}',
            outcome('{"t":"2015-12-01T13:44:46.067+09:00"}', 200),
        ),
        ('# {"t":"<timestamp>"}', outcome('{"t":"2015-12-01T13:44:46.067Z"}', 200)),
        ("# <cursor>", outcome("Aa0_-Zz9", 200)),
        (
            '# 409 {"feed":...}',
            outcome('{"feed":{"title":"Optimistic locking failed."}}', 409),
        ),
        (
            '# 409 {"feed":...}',
            outcome('{"feed":{}}', 200, 409),
        ),  # the last answer counts
        ("# 204", outcome("", 204)),
        (
            '# {"error":{"status":404}}',
            outcome('{"error":{"status":404}}', 404),
        ),  # no status given
    ],
)
def test_matching_outputs(comment: str, actual: Outcome) -> None:
    assert mismatch(expecting(comment), actual) is None


@pytest.mark.parametrize(
    ("comment", "actual", "reason"),
    [
        (
            '# {"feed":{"title":"/11"}}',
            outcome('{"feed":{"title":"/12"}}', 201),
            "output",
        ),
        (
            '# {"feed":{"title":"/11"}}',
            outcome('{"feed":{"title":"/11"}}{}', 201),
            "output",
        ),
        (
            '# {"feed":{"title":"/11"}}',
            outcome(' {"feed":{"title":"/11"}}', 201),
            "output",
        ),
        (
            '# {"t":"<timestamp>"}',
            outcome('{"t":"2015-12-01T13:44:46+09:00"}', 200),
            "output",
        ),
        ('# {"t":"<timestamp>"}', outcome('{"t":"yesterday"}', 200), "output"),
        ("# <cursor>", outcome("a/b+c=", 200), "output"),
        ('# 409 {"feed":...}', outcome('{"feed":{}}', 200), "status 200, expected 409"),
        ('# 409 {"feed":...}', outcome('{"feed":{}}'), "status None, expected 409"),
        ("# 204", outcome("{}", 204), "output"),
        ("# 204", outcome("", 200), "status 200, expected 204"),
    ],
)
def test_mismatching_outputs(comment: str, actual: Outcome, reason: str) -> None:
    found = mismatch(expecting(comment), actual)
    assert found is not None and reason in found


@pytest.mark.parametrize(
    ("actual", "reason"),
    [
        (outcome("", 200, 201, 204), None),
        (
            outcome("anything at all"),
            None,
        ),  # no curl in it: only the exit status counts
        (outcome("", 201, 404), "HTTP status 404, expected 2xx"),
        (outcome("", 200, exit_status=1), "exit status 1, expected 0"),
        (
            Outcome(2, "", "command: line 1: unexpected EOF while looking for matching `''"),
            "a quote is not closed: a command goes on to the next line only after a trailing \\",
        ),
    ],
)
def test_a_command_without_expected_output_must_succeed(
    actual: Outcome, reason: str | None
) -> None:
    assert mismatch(Example("doc.md", 1, "curl x"), actual) == reason


def test_a_mismatch_report_says_where_what_ran_what_was_expected_and_what_came() -> None:
    example = expecting('# 409 {"feed":...}')
    failure = report(example, outcome('{"feed":{}}\r\n', 200), "HTTP status 200, expected 409")
    assert failure == (
        "doc.md:1: HTTP status 200, expected 409\n"
        "  command:  curl x\n"
        '  expected: 409 {"feed":...}\n'
        "  actual:   exit 0, HTTP 200\n"
        '            {"feed":{}}'
    )


def test_a_report_points_at_where_the_output_leaves_the_expected_text() -> None:
    [example] = block_examples(
        "doc.md",
        7,
        ["curl x", '# {"feed":{"title":"<timestamp>"},', '#    "error":{"status":409}}'],
    )
    printed = '{"feed":{"title":"2015-12-01T13:44:46.067+09:00"},\n"error":{"status":412}}'
    assert report(example, outcome(printed, 412), "the output differs") == (
        "doc.md:7: the output differs\n"
        "  command:  curl x\n"
        '  expected: {"feed":{"title":"<timestamp>"},\n'
        '            "error":{"status":409}}\n'
        "  actual:   exit 0, HTTP 412\n"
        '            {"feed":{"title":"2015-12-01T13:44:46.067+09:00"},\n'
        '            "error":{"status":412}}\n'
        """  differs at: '09}}', after '"error":{"status":4'"""
    )


def test_the_readme_links_only_files_inside_the_repository() -> None:
    text = (REPOSITORY / "README.md").read_text()
    targets = re.findall(r"\]\(([^)\s]+)\)", text)
    local = [t for t in targets if not re.match(r"[a-z]+:|#", t)]
    assert "docs/api.md" in local
    for target in local:
        path = (REPOSITORY / target.split("#")[0]).resolve()
        assert path.is_relative_to(REPOSITORY), f"README.md links outside the repository: {target}"
        assert path.exists(), f"README.md links a missing file: {target}"
