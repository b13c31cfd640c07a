"""The ``script`` kind on its own: sourcing, the post script, exports read back exactly, stopping."""

from __future__ import annotations

import threading
from pathlib import Path

from sbt_core.app_plane.script import ScriptJob, ScriptSettings
from sbt_core.job_kind import JobRequest


def _run(tmp_path: Path, settings: ScriptSettings, export: tuple[str, ...] = (), **request: object):  # type: ignore[no-untyped-def]
    kind = ScriptJob()
    assert kind.check(settings, tmp_path) == []
    return kind.run(JobRequest(job="j", job_id="1", settings=settings, environment=request.pop("environment", {}),
                               export=export, base_dir=tmp_path, **request))  # type: ignore[arg-type]


def test_exports_are_read_back_exactly_whatever_the_value_holds(tmp_path: Path) -> None:
    script = ("PLAIN=abc\nexport EXPORTED='x y'\nMULTI=$'line 1\\nline 2 = \"quoted\" \\\\ $HOME'\nEMPTY=\n"
              "echo 'NOT_A_VAR=from stdout'")
    result = _run(tmp_path, ScriptSettings(script=script),
                  ("PLAIN", "EXPORTED", "MULTI", "EMPTY", "UNSET", "NOT_A_VAR"))
    assert result.succeeded and result.exit_code == 0
    assert result.exported == {"PLAIN": "abc", "EXPORTED": "x y", "MULTI": 'line 1\nline 2 = "quoted" \\ $HOME',
                               "EMPTY": ""}


def test_a_script_file_runs_in_the_config_folder(tmp_path: Path) -> None:
    (tmp_path / "jobs").mkdir()
    (tmp_path / "jobs" / "provision.sh").write_text('WHERE=$(pwd)\nWHO="$tenantId"\n')
    result = _run(tmp_path, ScriptSettings(script_file=Path("jobs/provision.sh")), ("WHERE", "WHO"),
                  environment={"tenantId": "t-1"})
    assert result.exported == {"WHERE": str(tmp_path), "WHO": "t-1"}


def test_the_post_script_runs_after_a_script_that_exits_and_the_run_keeps_its_exit_code(tmp_path: Path) -> None:
    settings = ScriptSettings(script="STEP=one\nexit 4\nSTEP=never", post_script='AFTER="$STEP/$SBT_JOB_SUCCEEDING"')
    result = _run(tmp_path, settings, ("STEP", "AFTER"))
    assert (result.exit_code, result.error) == (4, "exit code 4")
    assert result.exported == {"STEP": "one", "AFTER": "one/0"}


def test_a_failing_post_script_fails_a_run_whose_script_succeeded(tmp_path: Path) -> None:
    settings = ScriptSettings(script="set -e\ntrue", post_script='echo "post: $SBT_JOB_SUCCEEDING"\nfalse')
    result = _run(tmp_path, settings)
    assert (result.exit_code, result.output) == (1, ("post: 1",))


def test_a_stop_kills_the_run(tmp_path: Path) -> None:
    stop = threading.Event()
    stop.set()
    result = _run(tmp_path, ScriptSettings(script="sleep 300", kill_grace_seconds=0.2), stop=stop)
    assert result.error == "stopped: the application plane is shutting down" and not result.timed_out
