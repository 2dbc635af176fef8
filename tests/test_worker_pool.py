"""Process pools leave no process behind and never hang: Ctrl-C, kill, errors, crashes."""

import contextlib
import fcntl
import multiprocessing
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest

from scalp_ml.data.synthetic import plan_sessions, write_session
from scalp_ml.workers import WorkerPool

ROOT = Path(__file__).parents[1]
DEADLINE = 10.0  # seconds for what a well-behaved pool does in well under one
STARTUP = 120.0  # seconds for a command and its workers to start on a busy machine
CPUS = sorted(os.sched_getaffinity(0))[:2]  # what each command may use: so as many workers

POOL_SCRIPT = """
import sys
from scalp_ml.workers import WorkerPool
from tests.test_worker_pool import announce_and_sleep
try:
    with WorkerPool(2) as pool:
        list(pool.imap(announce_and_sleep, range(4)))
except KeyboardInterrupt:
    sys.exit(130)
"""
SITECUSTOMIZE = """
import scalp_ml.data.images
from tests.test_worker_pool import announce_and_sleep
scalp_ml.data.images.decode_rgb = announce_and_sleep  # every image takes minutes to decode
"""
CACHE_SCRIPT = """
import sys
from pathlib import Path
from scalp_ml.data import cache
from tests.test_worker_pool import announce_and_sleep
cache._write_rows = announce_and_sleep
root = Path(sys.argv[1])
cache.open_cache(root, sorted(p.name for p in root.iterdir()), (8, 8), sys.argv[2], workers=2)
"""


def announce_and_sleep(*_: object) -> None:
    """A task that records its worker's PID in the folder ``$WORKER_PIDS``, then outlasts tests."""
    (Path(os.environ["WORKER_PIDS"]) / str(os.getpid())).touch()
    time.sleep(120)


def fail_on_three(item: int) -> int:
    if item == 3:
        raise ValueError(f"item {item} is bad")
    return item


def die(_: int) -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie, dead but not yet reaped, does not)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] not in "ZX"


def descendants(pid: int) -> set[int]:
    """The PIDs of ``pid``'s children, their children, and so on."""
    parents = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            parents[int(stat.parent.name)] = int(stat.read_text().rsplit(")", 1)[1].split()[1])
        except (FileNotFoundError, ProcessLookupError):
            continue
    found: set[int] = set()
    frontier = {pid}
    while frontier:
        frontier = {child for child, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return found


def wait_until(condition: Callable[[], bool], seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def survivors(pids: set[int]) -> set[int]:
    """Those of ``pids`` still alive after waiting up to :data:`DEADLINE` for them to go."""
    wait_until(lambda: not any(map(alive, pids)), DEADLINE)
    return set(filter(alive, pids))


def new_children(before: set[multiprocessing.Process]) -> set[int]:
    return {p.pid for p in set(multiprocessing.active_children()) - before if p.pid}


def _ctrl_c_as_in_a_terminal() -> None:
    """SIGINT at its default in the child, also when the suite runs where it is ignored (nohup)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


class Command:
    """A Python subprocess in its own session (a terminal's foreground job) and its workers."""

    def __init__(self, tmp_path: Path, *args: str, python_path: str = str(ROOT)) -> None:
        self.pid_dir = tmp_path / "worker_pids"
        self.pid_dir.mkdir()
        env = {**os.environ, "PYTHONPATH": python_path, "WORKER_PIDS": str(self.pid_dir)}
        self.process = subprocess.Popen(
            [sys.executable, *args],
            cwd=tmp_path,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
            preexec_fn=_ctrl_c_as_in_a_terminal,
        )
        os.sched_setaffinity(self.process.pid, CPUS)  # before it starts any thread or worker

    def started_workers(self, count: int) -> set[int]:
        """The PIDs of ``count`` workers, once each runs a task."""
        started = wait_until(lambda: len(list(self.pid_dir.iterdir())) >= count, STARTUP)
        assert started, self.finish(1.0)[1]
        workers = {int(path.name) for path in self.pid_dir.iterdir()}
        assert workers <= descendants(self.process.pid)
        return workers

    def finish(self, seconds: float) -> tuple[int | None, str]:
        """The exit code (``None`` if still running after ``seconds``) and standard error."""
        try:
            _, stderr = self.process.communicate(timeout=seconds)
        except subprocess.TimeoutExpired:
            return None, "(still running)"
        return self.process.returncode, stderr

    def kill_all(self) -> None:
        """Kills what is left of the session: the test's own clean-up, whatever happened."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.communicate()


@pytest.fixture
def command(tmp_path: Path) -> Iterator[Callable[..., Command]]:
    started: list[Command] = []

    def start(*args: str, **kwargs: str) -> Command:
        started.append(Command(tmp_path, *args, **kwargs))
        return started[-1]

    yield start
    for each in started:
        each.kill_all()


def test_ctrl_c_stops_the_pool_at_once_without_worker_tracebacks(command) -> None:
    run = command("-c", POOL_SCRIPT)
    workers = run.started_workers(2)
    family = descendants(run.process.pid)  # the workers and multiprocessing's resource tracker
    os.killpg(run.process.pid, signal.SIGINT)  # Ctrl-C reaches every process of the job
    code, stderr = run.finish(DEADLINE)
    assert code == 130, stderr
    assert "Traceback" not in stderr
    assert not survivors(family | workers)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["SIGTERM", "SIGKILL"])
def test_workers_die_with_a_parent_killed_by(command, sig: signal.Signals) -> None:
    run = command("-c", POOL_SCRIPT)
    workers = run.started_workers(2)
    os.kill(run.process.pid, sig)  # the parent alone, which gets no chance to clean up
    assert run.finish(DEADLINE)[0] == -sig
    assert not survivors(workers)


def test_a_worker_exception_reaches_the_parent_and_no_worker_survives() -> None:
    before = set(multiprocessing.active_children())
    with pytest.raises(ValueError, match="item 3 is bad"), WorkerPool(2) as pool:
        results = pool.imap(fail_on_three, range(8))
        assert next(results) == 0  # the workers have started (the pool starts them lazily)
        workers = new_children(before)
        list(results)
    assert len(workers) == 2 and not survivors(workers)


def test_a_worker_that_dies_mid_task_fails_the_parent_instead_of_hanging() -> None:
    family = descendants(os.getpid())  # e.g. multiprocessing's resource tracker
    start = time.monotonic()
    with pytest.raises(ChildProcessError, match=r"worker process died"), WorkerPool(2) as pool:
        list(pool.imap(die, range(2)))
    assert time.monotonic() - start < DEADLINE
    assert not survivors(descendants(os.getpid()) - family)


def tiny_scalp(*_: object) -> np.ndarray:
    return np.zeros((16, 16, 3), np.uint8)


@pytest.fixture(scope="module")
def download(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One more verification task than there are workers (each stalls for minutes)."""
    # Imported here: SITECUSTOMIZE imports this file before `-m` runs the index module.
    from scalp_ml.data.aihub.index import VERIFY_CHUNK

    root = tmp_path_factory.mktemp("download")
    for plan in plan_sessions(len(CPUS) * VERIFY_CHUNK + 1, seed=0, validation_fraction=0.1):
        write_session(plan, root, duplicate_fraction=0.0, quality=90, render=tiny_scalp)
    return root


def test_ctrl_c_during_image_verification_exits_promptly_leaving_no_process(
    command, download: Path, tmp_path: Path
) -> None:
    (tmp_path / "sitecustomize.py").write_text(SITECUSTOMIZE)  # in every process it starts
    manifest = tmp_path / "manifest.csv"
    run = command(
        *("-m", "scalp_ml.data.aihub.index", f"data.root={download}", "data.verify_images=true"),
        f"data.manifest_file={manifest}",
        python_path=f"{tmp_path}{os.pathsep}{ROOT}",
    )
    workers = run.started_workers(len(CPUS))
    family = descendants(run.process.pid)
    os.killpg(run.process.pid, signal.SIGINT)
    code, stderr = run.finish(DEADLINE)
    assert code not in (None, 0), stderr
    assert "KeyboardInterrupt" in stderr
    assert not survivors(family | workers)
    assert not manifest.exists()


def test_a_killed_cache_build_leaves_no_worker_holding_its_lock(command, tmp_path: Path) -> None:
    images = tmp_path / "images"
    images.mkdir()
    for index in range(40):  # two chunks of the build, one per worker
        (images / f"img{index}.jpg").write_bytes(b"")
    run = command("-c", CACHE_SCRIPT, str(images), str(tmp_path / "cache"))
    workers = run.started_workers(2)
    os.kill(run.process.pid, signal.SIGKILL)
    run.finish(DEADLINE)
    assert not survivors(workers)
    with (tmp_path / "cache" / "images-8px.lock").open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)  # the next build would wait here
