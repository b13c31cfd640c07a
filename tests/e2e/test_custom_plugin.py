"""examples/custom_plugin is a real plugin: it installs with pip into a fresh environment, shows in
`sbt plugins list`, is selected by a config, and its own tests pass with sbt's shipped pytest helpers."""

from __future__ import annotations

import json
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "custom_plugin"


def _run(python: Path, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    result = subprocess.run([str(python), *args], cwd=cwd, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, f"{args}:\n{result.stdout}\n{result.stderr}"
    return result


def test_the_example_installs_lists_selects_and_passes_its_tests(tmp_path: Path) -> None:
    # sbt-core and its dependencies come from the environment running the tests (a venv or not: a .pth
    # line adds its site directories, editable installs included); the example is installed like any package.
    venv.create(tmp_path / "venv", with_pip=True)
    python = tmp_path / "venv" / "bin" / "python"
    venv_site = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               capture_output=True, text=True, check=True).stdout.strip()
    parents = [p for p in sys.path if p.endswith("site-packages")]
    Path(venv_site, "_sbt_parent_env.pth").write_text(
        "".join(f"import site; site.addsitedir({p!r})\n" for p in parents))
    _run(python, "-m", "pip", "install", "--quiet", "--no-deps", str(EXAMPLE), cwd=tmp_path)

    plugins = {p["name"]: p for p in json.loads(_run(python, "-m", "sbt_core.cli", "plugins", "list", "--json",
                                                     cwd=tmp_path).stdout)}
    assert plugins["csv-ledger"]["status"] == "loaded"
    assert plugins["csv-ledger"]["interfaces"] == ["billing"]
    assert plugins["csv-ledger"]["distribution"] == "sbt-csv-ledger"

    config = str(EXAMPLE / "sbt.toml")
    _run(python, "-m", "sbt_core.cli", "config", "validate", "--config", config, cwd=tmp_path)
    bindings = json.loads(_run(python, "-m", "sbt_core.cli", "bindings", "--json", "--config", config,
                               cwd=tmp_path).stdout)
    billing = {b["hook"]: b for b in bindings if b["interface"] == "billing"}
    assert {b["provider"] for b in billing.values()} == {"csv-ledger"}
    assert billing["billing_put_usage"]["trigger"] == {"kind": "schedule", "expression": "rate(1 hour)"}

    tests = _run(python, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(EXAMPLE / "tests"), cwd=tmp_path)
    assert " passed" in tests.stdout and "failed" not in tests.stdout
