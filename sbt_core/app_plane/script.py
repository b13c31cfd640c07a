"""The first-party job kind ``script``: a bash script, as sbt-aws's ScriptJob runs one in CodeBuild.

```toml
[[jobs]]
preset = "provisioning"
script = '''
DB_NAME="tenant_${tenantId//-/_}"
createdb "$DB_NAME"
'''
post_script = 'echo "done: $SBT_JOB_SUCCEEDING"'   # optional, runs after the script either way
export_tenant_data = ["DB_NAME"]
```

How a run goes (the CodeBuild buildspec's ``build`` + ``post_build`` phases with ``exported-variables``):

- bash runs a small wrapper in a new process group, in ``working_dir`` (default: the config file's
  folder), with only the job's environment plus ``PATH`` (this process's, unless the job sets it), no
  profile or rc file. The wrapper sources the script (``script`` inline, or ``script_file``), so the
  script's shell variables, exported or not, are what the job exports, as with CodeBuild's
  ``exported-variables``.
- When the script ends — normally, with ``exit``, or by ``set -e`` — an EXIT trap runs the post script
  in the same shell (``SBT_JOB_SUCCEEDING`` is 1 or 0, as CodeBuild's ``CODEBUILD_BUILD_SUCCEEDING``), then
  writes each exported name that is set, NUL-separated, to a file in the run's temporary folder; that
  file, never the output, is where the values are read from. The run fails when the script or the post
  script exits non-zero. A script that sets its own EXIT trap replaces the wrapper's: export nothing then.
- Output (stdout and stderr) goes to the log line by line, as ``<job>/<job id> | <line>``, with the values
  of secret variables masked; the last lines are kept with the run.
- Past ``timeout_seconds`` (or when the application plane stops) the whole process group gets SIGTERM,
  then SIGKILL after ``kill_grace_seconds``; the run fails as timed out.
"""

from __future__ import annotations

import os
import shlex
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from collections import deque
from pathlib import Path
from typing import IO, Any

import attrs

from ..job_kind import OUTPUT_TAIL, JobKind, JobRequest, JobResult, mask

__all__ = ["ScriptJob", "ScriptSettings"]


@attrs.frozen
class ScriptSettings:
    """The ``script`` kind's keys of a ``[[jobs]]`` table: exactly one of ``script`` (bash, inline) and
    ``script_file`` (relative to the config file), an optional ``post_script``, the ``bash`` to run,
    the ``working_dir`` (default: the config file's folder) and the grace between SIGTERM and SIGKILL."""

    script: str | None = None
    script_file: Path | None = None
    post_script: str | None = None
    bash: str = "bash"
    working_dir: Path | None = None
    kill_grace_seconds: float = attrs.field(default=5.0, validator=attrs.validators.ge(0))


def _wrapper(main: Path, post: Path | None, export: tuple[str, ...], exports_file: Path) -> str:
    """The bash program that runs ``main`` then ``post`` in one shell and dumps ``export`` to ``exports_file``."""
    post_block = ""
    if post is not None:
        post_block = (f'  if [ "$__sbt_status" -eq 0 ]; then SBT_JOB_SUCCEEDING=1; else SBT_JOB_SUCCEEDING=0; fi\n'
                      f"  . {shlex.quote(str(post))}\n"
                      '  __sbt_post_status=$?\n'
                      '  if [ "$__sbt_status" -eq 0 ]; then __sbt_status=$__sbt_post_status; fi\n')
    names = " ".join(export)
    return ("__sbt_finish() {\n"
            "  __sbt_status=$?\n"
            "  trap - EXIT\n"
            "  set +eu\n"
            f"{post_block}"
            f"  for __sbt_name in {names}; do\n"
            '    if [[ -v $__sbt_name ]]; then printf \'%s\\0%s\\0\' "$__sbt_name" "${!__sbt_name}"; fi\n'
            f"  done > {shlex.quote(str(exports_file))}\n"
            '  exit "$__sbt_status"\n'
            "}\n"
            "trap __sbt_finish EXIT\n"
            f". {shlex.quote(str(main))}\n")


def _read_exports(path: Path) -> dict[str, str]:
    """``name\\0value\\0`` pairs written by the wrapper (a missing file: the shell died before its trap)."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return {}
    parts = raw.split(b"\0")
    return {parts[i].decode(): parts[i + 1].decode("utf-8", "replace") for i in range(0, len(parts) - 1, 2)}


def _kill_group(proc: subprocess.Popen[bytes], grace: float) -> None:
    """SIGTERM the process group of ``proc``, SIGKILL it after ``grace`` seconds if ``proc`` still runs."""
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, None)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(wait)
            if sig is signal.SIGTERM:
                # The shell is gone; what it started may not be: the group gets SIGKILL all the same.
                os.killpg(proc.pid, signal.SIGKILL)
            return
        except subprocess.TimeoutExpired:
            continue
        except ProcessLookupError:
            return


class ScriptJob(JobKind):
    """Job kind ``script``: bash in a subprocess (see the module docstring)."""

    settings_class = ScriptSettings

    def check(self, settings: Any, base_dir: Path) -> list[str]:
        assert isinstance(settings, ScriptSettings)
        problems = []
        if (settings.script is None) == (settings.script_file is None):
            problems.append("script: give exactly one of script (inline bash) and script_file")
        elif settings.script_file is not None and not (base_dir / settings.script_file).is_file():
            problems.append(f"script_file: no such file {str(base_dir / settings.script_file)!r}")
        if shutil.which(settings.bash) is None:
            problems.append(f"bash: {settings.bash!r} not found on PATH")
        if settings.working_dir is not None and not (base_dir / settings.working_dir).is_dir():
            problems.append(f"working_dir: no such folder {str(base_dir / settings.working_dir)!r}")
        return problems

    def run(self, request: JobRequest) -> JobResult:
        settings = request.settings
        assert isinstance(settings, ScriptSettings)
        with tempfile.TemporaryDirectory(prefix="sbt-job-") as tmp:
            folder = Path(tmp)
            if settings.script_file is not None:
                main = (request.base_dir / settings.script_file).resolve()
            else:
                main = folder / "script.sh"
                main.write_text(settings.script or "")
            post = None
            if settings.post_script is not None:
                post = folder / "post_script.sh"
                post.write_text(settings.post_script)
            exports_file = folder / "exports"
            wrapper = folder / "run.sh"
            wrapper.write_text(_wrapper(main, post, request.export, exports_file))
            env = {"PATH": os.environ.get("PATH", os.defpath), **request.environment}
            cwd = request.base_dir / settings.working_dir if settings.working_dir else request.base_dir
            # Found on this process's PATH: the job's own PATH (it may set one) is for its commands.
            bash = shutil.which(settings.bash) or settings.bash
            return self._run(request, settings, [bash, "--noprofile", "--norc", str(wrapper)], env, cwd, exports_file)

    def _run(self, request: JobRequest, settings: ScriptSettings, argv: list[str], env: dict[str, str], cwd: Path,
             exports_file: Path) -> JobResult:
        secrets = frozenset(request.environment[name] for name in request.secrets if name in request.environment)
        tail: deque[str] = deque(maxlen=OUTPUT_TAIL)
        try:
            proc = subprocess.Popen(argv, env=env, cwd=cwd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                    stderr=subprocess.STDOUT, start_new_session=True)
        except OSError as exc:
            return JobResult(error=f"cannot start {settings.bash}: {exc.strerror or exc}")
        assert proc.stdout is not None
        reader = threading.Thread(target=self._stream, args=(proc.stdout, request, secrets, tail),
                                  name=f"sbt-job-output:{request.run_name}", daemon=True)
        reader.start()
        deadline = time.monotonic() + request.timeout_seconds
        stopped = None
        while True:
            try:
                proc.wait(min(0.2, max(0.0, deadline - time.monotonic())))
                break
            except subprocess.TimeoutExpired:
                if request.stop.is_set():
                    stopped = "stopped: the application plane is shutting down"
                elif time.monotonic() >= deadline:
                    stopped = f"timed out after {request.timeout_seconds:g} s"
                if stopped:
                    _kill_group(proc, settings.kill_grace_seconds)
                    break
        reader.join(timeout=5)  # a daemonised grandchild may keep the pipe open: never wait on it for long
        output = tuple(tail)
        if stopped is not None:
            return JobResult(error=stopped, timed_out=stopped.startswith("timed out"), output=output)
        exported = _read_exports(exports_file)
        code = proc.returncode
        if code < 0:
            return JobResult(error=f"killed by {signal.Signals(-code).name}", exported=exported, output=output)
        return JobResult(exit_code=code, exported=exported, output=output,
                         error=None if code == 0 else f"exit code {code}")

    @staticmethod
    def _stream(pipe: IO[bytes], request: JobRequest, secrets: frozenset[str], tail: deque[str]) -> None:
        """Log each line of ``pipe`` as ``<job>/<id> | line`` (secrets masked) and keep the last ones."""
        with pipe:
            for raw in pipe:
                line = mask(raw.decode("utf-8", "replace").rstrip("\r\n"), secrets)
                tail.append(line)
                request.log.info("%s | %s", request.run_name, line)
