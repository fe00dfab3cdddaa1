"""The fault suite's shared parts: the table of faults every test records a row in (printed at
the end of the run), one local Ray for the in-process extraction runs of the whole package, and
helpers to run the `linkedout` CLI in this process or as a killable process session.

Every test records what it did: `fault_report.record(fault, survived=..., lost=..., message=...)`
with `message` the line the user saw (the CLI's stderr or summary line, or the failure row the
store kept). A test that fails without recording gets a row saying so."""

from __future__ import annotations

import contextlib
import io
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.s3 import FaultyProxy, Wire, environment

REPO = Path(__file__).resolve().parents[2]
REPORT_KEY = pytest.StashKey["FaultReport"]()


@dataclass
class FaultRow:
    fault: str
    survived: bool
    lost: int
    message: str
    test: str


@dataclass
class FaultReport:
    rows: list[FaultRow] = field(default_factory=list)
    _tests_with_rows: set[str] = field(default_factory=set)

    def record(self, fault: str, *, survived: bool, lost: int = 0, message: str, test: str) -> None:
        self.rows.append(FaultRow(fault, survived, lost, " ".join(message.split()), test))
        self._tests_with_rows.add(test)

    def has_rows(self, test: str) -> bool:
        return test in self._tests_with_rows


class FaultRecorder:
    """What a test gets as `fault_report`: records rows under the test's id."""

    def __init__(self, report: FaultReport, test: str) -> None:
        self._report, self._test = report, test

    def record(self, fault: str, *, survived: bool, lost: int = 0, message: str) -> None:
        self._report.record(fault, survived=survived, lost=lost, message=message, test=self._test)


def pytest_configure(config: pytest.Config) -> None:
    config.stash[REPORT_KEY] = FaultReport()


@pytest.fixture
def fault_report(request: pytest.FixtureRequest) -> FaultRecorder:
    return FaultRecorder(request.config.stash[REPORT_KEY], request.node.nodeid)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> Iterator:
    report = yield
    if report.when == "call" and report.failed and REPORT_KEY in item.config.stash:
        faults = item.config.stash[REPORT_KEY]
        if not faults.has_rows(item.nodeid):
            reason = call.excinfo.exconly() if call.excinfo else "failed"
            faults.record(
                item.name,
                survived=False,
                lost=-1,
                message=f"TEST FAILED: {reason}",
                test=item.nodeid,
            )
    return report


def pytest_terminal_summary(terminalreporter, exitstatus: int, config: pytest.Config) -> None:
    if REPORT_KEY not in config.stash or not config.stash[REPORT_KEY].rows:
        return
    rows = config.stash[REPORT_KEY].rows
    tr = terminalreporter
    tr.section("fault table")
    width = max(len(r.fault) for r in rows)
    tr.write_line(f"{'fault':<{width}}  survived  items lost  message the user saw")
    tr.write_line(f"{'-' * width}  --------  ----------  {'-' * 40}")
    for r in rows:
        lost = "?" if r.lost < 0 else str(r.lost)
        survived = "yes" if r.survived else "NO"
        tr.write_line(f"{r.fault:<{width}}  {survived:<8}  {lost:>10}  {r.message}")
    n_survived = sum(r.survived for r in rows)
    n_lost = sum(max(r.lost, 0) for r in rows)
    tr.write_line(
        f"faults tried: {len(rows)}, survived: {n_survived}, items lost: {n_lost}"
        + ("" if all(r.lost >= 0 for r in rows) else " (some unknown: a test failed)")
    )


# --- shared fixtures ------------------------------------------------------------------------


@pytest.fixture(scope="package")
def ray_local() -> Iterator[None]:
    """One local Ray (loopback, no dashboard) for the package's in-process extraction runs."""
    import ray

    from pipelines.ray_runtime import ensure_ray

    ensure_ray()
    yield
    ray.shutdown()


@pytest.fixture(scope="package")
def extract_config(tiny_model: Path):
    """The demo's first prompt alone: the fault table breaks one store version at a time."""
    from featurizer.config import load_preset

    return load_preset("demo").replace(model=str(tiny_model), prompts=())


@pytest.fixture(scope="module")
def wire(s3) -> Iterator[Wire]:
    """The proxy in front of the S3 server, and a local Ray whose workers reach the store
    through it (a Ray node's environment is fixed when it starts); a Ray started before is
    started again after."""
    import ray

    from pipelines.ray_runtime import ensure_ray

    proxy = FaultyProxy(s3.endpoint)
    had_ray = ray.is_initialized()
    ray.shutdown()
    with environment(s3.env(AWS_ENDPOINT_URL=proxy.url)):
        ensure_ray()
        try:
            yield Wire(proxy, s3.bucket(), s3)
        finally:
            ray.shutdown()
    proxy.stop()
    if had_ray:  # the package's ray_local outlives this module
        ensure_ray()


# --- running the CLI ------------------------------------------------------------------------


@dataclass
class CliResult:
    code: int
    stdout: str
    stderr: str

    @property
    def error_line(self) -> str:
        """The CLI's error line (the last non-empty stderr line starting with `linkedout`)."""
        lines = [line for line in self.stderr.splitlines() if line.startswith("linkedout ")]
        return lines[-1] if lines else ""


def run_cli(argv: Sequence[str]) -> CliResult:
    """`linkedout ARGV` in this process (no Ray start of its own if Ray is up)."""
    from pipelines.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main([str(a) for a in argv])
    return CliResult(code, out.getvalue(), err.getvalue())


def assert_one_line_error(result: CliResult, *names: str) -> str:
    """The CLI failed with one `linkedout CMD: error: ...` line naming each of `names`, and
    printed no traceback. Returns the line."""
    assert result.code != 0, result
    assert "Traceback" not in result.stderr, result.stderr
    line = result.error_line
    assert ": error: " in line, result.stderr
    assert "\n" not in line
    for name in names:
        assert name in line, (name, line)
    return line


def cli_env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false", PYTHONUNBUFFERED="1")
    env.pop("RAY_ADDRESS", None)
    env.update(extra)
    return env


class CliProcess:
    """`linkedout ARGV`, with the tests' worker hooks installed, as its own process session (start_new_session), so that it and every
    process it starts (its local Ray: GCS, raylet, agents, workers, which Ray puts in process
    groups of their own but leaves in the session) can be killed at once."""

    def __init__(self, argv: Sequence[str], log_dir: Path, name: str, **env: str) -> None:
        log_dir.mkdir(parents=True, exist_ok=True)
        self.stdout_path = log_dir / f"{name}.out"
        self.stderr_path = log_dir / f"{name}.err"
        self.started = time.monotonic()
        with open(self.stdout_path, "wb") as out, open(self.stderr_path, "wb") as err:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "tests.worker_hooks", *map(str, argv)],
                cwd=REPO,
                env=cli_env(**env),
                stdout=out,
                stderr=err,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        self.sid = self.process.pid

    @property
    def stdout(self) -> str:
        return self.stdout_path.read_text(errors="replace")

    @property
    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")

    def poll(self) -> int | None:
        return self.process.poll()

    def wait(self, timeout: float) -> CliResult:
        code = self.process.wait(timeout=timeout)
        return CliResult(code, self.stdout, self.stderr)

    def kill(self) -> None:
        """SIGKILL the whole session, then reap the CLI process."""
        kill_session(self.sid)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=30)

    def survivors(self, grace: float = 10.0) -> list[str]:
        """Live (not zombie) processes still in the session after `grace` seconds."""
        deadline = time.monotonic() + grace
        while True:
            alive = session_processes(self.sid)
            if not alive or time.monotonic() > deadline:
                return [f"{pid} {cmd}" for pid, cmd in alive]
            time.sleep(0.2)


def session_processes(sid: int) -> list[tuple[int, str]]:
    """(pid, command) of the live, non-zombie processes of session `sid` (from /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            fields = stat.rsplit(")", 1)[1].split()
            state, session = fields[0], int(fields[3])
            if session != sid or state in ("Z", "X"):
                continue
            cmd = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            found.append((int(entry.name), cmd.strip()[:100]))
        except (OSError, IndexError, ValueError):
            continue
    return found


def kill_session(sid: int) -> None:
    for _ in range(3):  # a process may fork while we kill; a few passes catch the stragglers
        members = session_processes(sid)
        if not members:
            return
        for pid, _ in members:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.2)


@pytest.fixture
def cli_processes() -> Iterator[list[CliProcess]]:
    """CLI processes a test starts; whatever is left of them is killed at teardown."""
    started: list[CliProcess] = []
    yield started
    for process in started:
        process.kill()


def wait_for(predicate, timeout: float, interval: float = 0.05, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)


def tree_snapshot(root: Path, exclude: Sequence[Path] = ()) -> dict[str, tuple[int, int]]:
    """relative path -> (size, mtime_ns) of every file and directory under `root`, except
    under `exclude`: compared before and after a run, it shows anything written elsewhere."""
    skip = [p.resolve() for p in exclude]
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        here = Path(dirpath)
        dirnames[:] = [d for d in dirnames if (here / d).resolve() not in skip]
        for name in dirnames + filenames:
            path = here / name
            if path.resolve() in skip:
                continue
            st = path.lstat()
            out[str(path.relative_to(root))] = (st.st_size, st.st_mtime_ns)
    return out
