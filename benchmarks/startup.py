"""What a command costs before and after its work: CPU time of short ``reconciler`` processes.

Each figure is the CPU time (user + system) of a whole ``python -m reconciler ...`` process,
start to exit, read from ``getrusage(RUSAGE_CHILDREN)``: CPU time, not wall time, because on a
busy machine the wall clock also counts waiting for a core. Every command runs ``--runs`` times;
the minimum and the median are printed (the minimum is the least disturbed by other processes).

- ``--version`` and ``--help``: the command line alone;
- ``config check``: the settings, the secrets and the state database's schema check;
- ``pull`` against the sandbox's ``tiny`` scenario (a separate process), one month, both
  sources: a pull whose work is a few dozen lines, so its CPU time is nearly all fixed cost
  (imports, opening the database and the HTTP session, closing them). ``init`` runs once
  first; each timed pull is then an unchanged re-pull.

    .venv/bin/python benchmarks/startup.py [--runs 7]

Each command also prints which of the heavy optional modules (Alembic, Jinja2, the Prometheus
client, the sandbox, the reports) its process imported, measured by a second run of it under
``python -X importtime``.
"""

from __future__ import annotations

import argparse
import os
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HEAVY = ("alembic", "jinja2", "prometheus_client", "reconciler.sandbox", "reconciler.reports")
SANDBOX_OPTIONS = ("--port", "0", "--scenario", "tiny", "--edgerc-out", "sandbox.edgerc")
AS_OF = "2024-07-10"  # the tiny scenario's simulated day


def _children_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _environ() -> dict[str, str]:
    # Bytecode is written (and then read) as for an installed reconciler, whose modules pip
    # compiled at install: compiling every module on every start would be timed otherwise.
    skip = ("RECONCILER_", "FASTLY_", "PYTHONDONTWRITEBYTECODE")
    base = {k: v for k, v in os.environ.items() if not k.startswith(skip)}
    return {**base, "FASTLY_API_TOKEN": "sandbox-fastly-token"}


def _run(
    args: list[str], cwd: Path, *, importtime: bool = False
) -> subprocess.CompletedProcess[str]:
    flags = ["-X", "importtime"] if importtime else []
    result = subprocess.run(
        [sys.executable, *flags, "-m", "reconciler", *args],
        cwd=cwd,
        env=_environ(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    if result.returncode != 0:
        raise SystemExit(f"reconciler {' '.join(args)} failed:\n{result.stdout}{result.stderr}")
    return result


def cpu_of(args: list[str], cwd: Path, runs: int) -> list[float]:
    """CPU seconds of each of ``runs`` runs of ``reconciler ARGS`` in ``cwd`` (after one more,
    untimed, that leaves every module's bytecode cached)."""
    _run(args, cwd)
    times: list[float] = []
    for _ in range(runs):
        before = _children_cpu_s()
        _run(args, cwd)
        times.append(_children_cpu_s() - before)
    return times


def heavy_imports(args: list[str], cwd: Path) -> list[str]:
    """Which of :data:`HEAVY` a run of ``reconciler ARGS`` imports."""
    stderr = _run(args, cwd, importtime=True).stderr
    names = {m.group(1) for m in re.finditer(r"^import time:.*\|\s+(\S+)$", stderr, re.M)}
    return [h for h in HEAVY if any(n == h or n.startswith(h + ".") for n in names)]


def _start_sandbox(directory: Path) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "reconciler", "sandbox", "serve", *SANDBOX_OPTIONS],
        cwd=directory,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    banner: list[str] = []
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        banner.append(line)
        if line.startswith("contracts = "):  # the last line of the config snippet
            snippet = "".join(banner).split("# reconciler.toml:\n", 1)[1]
            return proc, snippet
    proc.kill()
    raise SystemExit("could not start the sandbox:\n" + "".join(banner))


def _figure(name: str, times: list[float], heavy: list[str]) -> str:
    loaded = ", ".join(heavy) if heavy else "none"
    return (
        f"{name:<28} min {min(times):.3f}s  median {statistics.median(times):.3f}s  "
        f"(heavy modules imported: {loaded})"
    )


def main(runs: int) -> None:
    with tempfile.TemporaryDirectory(prefix="reconciler-startup-") as tmp:
        directory = Path(tmp)
        sandbox, snippet = _start_sandbox(directory)
        try:
            config = '[state]\ndirectory = "state"\n\n' + snippet.replace(
                'data_lag = "0s"\n', 'data_lag = "0s"\nlookback_months = 1\n'
            )
            (directory / "reconciler.toml").write_text(config, encoding="utf-8")
            _run(["init"], directory)
            first = _run(["pull", "--as-of", AS_OF], directory)
            print(f"CPU time per process, {runs} runs each (python {sys.version.split()[0]})")
            for args in (["--version"], ["--help"], ["config", "check"]):
                times = cpu_of(args, directory, runs)
                print(_figure(" ".join(args), times, heavy_imports(args, directory)))
            pull = ["pull", "--as-of", AS_OF]
            times = cpu_of(pull, directory, runs)
            print(_figure("pull (tiny, unchanged)", times, heavy_imports(pull, directory)))
            print("the tiny pull's summary:")
            print("".join(f"  {line}\n" for line in first.stdout.splitlines()), end="")
        finally:
            sandbox.terminate()
            sandbox.wait(timeout=30)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7, help="runs of each command")
    main(parser.parse_args().runs)
