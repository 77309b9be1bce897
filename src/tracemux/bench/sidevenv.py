"""Side virtual environments for tests and benchmarks that need packages the main ``.venv``
cannot hold.

Some checks need a package version that cannot share an environment with the rest of the
test suite (for example langfuse 2.x next to langfuse 5.x). :func:`side_venv` builds such an
environment once under ``<repo>/.venvs/<name>`` (gitignored) and returns the path of its
Python interpreter; tests then run their check in a subprocess with that interpreter::

    from tracemux.bench.sidevenv import side_venv

    python = side_venv("langfuse2", ["langfuse>=2.60,<3"])
    subprocess.run([str(python), script], check=True)

Properties:

* **Generic**: any name and any list of pip requirement specifiers.
* **Needs a source checkout** (:func:`repo_root`): the repository itself is installed
  editable (no extras) unless ``editable=()`` is passed, so code in the side environment
  can ``import tracemux``.
* **Idempotent**: a stamp file records what was installed (requirements, editable paths
  and a digest of their ``pyproject.toml``, base interpreter); a later call with the same
  arguments and unchanged project metadata returns at once; otherwise pip runs again in
  the same directory (so new dependencies of tracemux are picked up).
* **Safe under pytest-xdist**: creation is serialised with an exclusive ``flock`` on
  ``.venvs/<name>.lock``, so concurrent workers wait for one builder instead of racing.
* **Self-contained**: nothing has to exist beforehand; a fresh CI machine pays the install
  time on the first call (pip reaches the package index as configured on the machine).

POSIX only (uses :mod:`fcntl`).
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[3]  # src/tracemux/bench/sidevenv.py
VENVS_DIR = REPO_ROOT / ".venvs"


def repo_root() -> Path | None:
    """The source checkout tracemux runs from (side venvs install it editable), if any."""
    return REPO_ROOT if (REPO_ROOT / "pyproject.toml").is_file() else None


_STAMP = ".sidevenv-stamp.json"


def side_venv_dir(name: str) -> Path:
    """Return the directory of the side environment ``name`` (it may not exist yet)."""
    if not name or "/" in name or name.startswith("."):
        raise ValueError(f"invalid side venv name: {name!r}")
    return VENVS_DIR / name


def _python_in(env_dir: Path) -> Path:
    return env_dir / "bin" / "python"


def _project_digest(path: Path) -> str:
    """Digest of a local project's metadata files: a change means reinstall (new deps)."""
    h = hashlib.sha256()
    for name in ("pyproject.toml", "setup.py", "setup.cfg"):
        meta = path / name
        if meta.exists():
            h.update(name.encode() + b"\0" + meta.read_bytes())
    return h.hexdigest()[:16]


def _wanted(requirements: Sequence[str], editable: Sequence[Path], base: str) -> dict[str, object]:
    return {
        "requirements": list(requirements),
        "editable": {str(Path(p).resolve()): _project_digest(Path(p)) for p in editable},
        "base_python": base,
        "version": 2,
    }


def _run(cmd: list[str], log: Path) -> None:
    with log.open("a") as out:
        out.write(f"$ {' '.join(cmd)}\n")
        out.flush()
        proc = subprocess.run(cmd, stdout=out, stderr=subprocess.STDOUT, check=False)
    if proc.returncode != 0:
        tail = log.read_text(errors="replace")[-4000:]
        raise RuntimeError(f"side venv command failed ({proc.returncode}): {cmd}\n{tail}")


def side_venv(
    name: str,
    requirements: Sequence[str],
    *,
    editable: Sequence[Path | str] = (REPO_ROOT,),
    base_python: str | None = None,
    upgrade_pip: bool = False,
) -> Path:
    """Create (once) the side environment ``name`` and return its Python interpreter.

    Args:
        name: directory name under ``<repo>/.venvs``.
        requirements: pip requirement specifiers, e.g. ``["langfuse>=2.60,<3"]``.
        editable: local projects installed with ``pip install -e`` (default: this
            repository, without extras). Pass ``()`` for none.
        base_python: interpreter used to create the environment (default: the base
            interpreter of the running Python).
        upgrade_pip: upgrade pip in the new environment before installing (the pip that
            ``venv`` bundles can backtrack for an hour over big dependency trees such as
            langflow-base's; a recent one resolves them in minutes).

    Returns:
        Path to ``bin/python`` of the environment.

    Raises:
        RuntimeError: if ``venv`` creation or a pip install fails (the pip log is included).
    """
    env_dir = side_venv_dir(name)
    base = base_python or getattr(sys, "_base_executable", None) or sys.executable
    editable_paths = [Path(p) for p in editable]
    wanted = _wanted(requirements, editable_paths, base)
    VENVS_DIR.mkdir(parents=True, exist_ok=True)
    python = _python_in(env_dir)
    stamp = env_dir / _STAMP

    def up_to_date() -> bool:
        try:
            return python.exists() and json.loads(stamp.read_text()) == wanted
        except (OSError, ValueError):
            return False

    if up_to_date():
        return python
    lock_path = VENVS_DIR / f"{name}.lock"
    with lock_path.open("a+") as lock:
        fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
        try:
            if up_to_date():  # another process built it while we waited
                return python
            log = VENVS_DIR / f"{name}.log"
            log.write_text("")
            if not python.exists():
                _run([base, "-m", "venv", "--clear", str(env_dir)], log)
            if upgrade_pip:
                _run([str(python), "-m", "pip", "install", "-q", "--upgrade", "pip"], log)
            stamp.unlink(missing_ok=True)
            pip = [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check"]
            args = list(requirements)
            for path in editable_paths:
                args += ["-e", str(path.resolve())]
            if args:
                _run(pip + args, log)
            stamp.write_text(json.dumps(wanted, indent=2))
            return python
        finally:
            fcntl.flock(lock.fileno(), fcntl.LOCK_UN)
