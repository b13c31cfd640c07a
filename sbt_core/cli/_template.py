"""What ``sbt plugins new INTERFACE NAME`` writes: a provider package skeleton for one interface, generated
from the contract so it always names today's hooks.

The package (``sbt-<name>/``) holds ``pyproject.toml`` (the ``sbt`` entry point, ``sbt-core`` as a
dependency, pytest with the ``test`` extra), ``sbt_<name>/`` (the provider class and its settings class,
``py.typed``), ``README.md`` and ``tests/test_conformance.py``, wired to the conformance kit
(``sbt_core.testing.conformance``). Every required hook is written as a stub raising
``NotImplementedError("<hook>: not written yet")``, so the kit runs at once and each failure names a hook
still to write; the optional hooks are listed in a comment.
"""

from __future__ import annotations

import inspect
import keyword
import re
from pathlib import Path

import attrs

from .. import models
from ..errors import BadRequestError
from ..hookspecs import CONTRACT, SBT_INTERFACES, SPEC_MODULES, Interface, hooks_of

__all__ = ["ProviderTemplate", "write_template"]

_NAME = re.compile(r"^[a-z][a-z0-9]*(-[a-z0-9]+)*$")
_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_SUFFIX: dict[Interface, str] = {"auth": "Auth", "billing": "Billing", "metering": "Metering"}


@attrs.frozen
class ProviderTemplate:
    """Names derived from the provider's type name ``name`` (``acme-ledger``): the distribution
    ``sbt-acme-ledger``, the package ``sbt_acme_ledger``, the class ``AcmeLedgerBilling``."""

    interface: Interface
    name: str

    @property
    def distribution(self) -> str:
        return f"sbt-{self.name}"

    @property
    def package(self) -> str:
        return "sbt_" + self.name.replace("-", "_")

    @property
    def class_name(self) -> str:
        return "".join(part.capitalize() for part in self.name.split("-")) + _SUFFIX[self.interface]


def _spec(hook: str) -> inspect.Signature:
    module = next(m for m in SPEC_MODULES if hasattr(m, hook))
    return inspect.signature(getattr(module, hook))


def _stub(hook: str, names: set[str]) -> str:
    signature = _spec(hook)
    params = ", ".join(["self", *(f"{p.name}: {p.annotation}" for p in signature.parameters.values())])
    for text in [str(p.annotation) for p in signature.parameters.values()] + [str(signature.return_annotation)]:
        names.update(n for n in _IDENT.findall(text) if n in models.__all__)
    row = CONTRACT[hook]
    return (f"    @hookimpl\n    def {hook}({params}) -> {signature.return_annotation}:\n"
            f'        """{row.sbt_property}: see docs/hooks/{row.interface}.md#{hook}."""\n'
            f'        raise NotImplementedError("{hook}: not written yet")\n')


def _provider_module(t: ProviderTemplate) -> str:
    names: set[str] = set()
    required = [row.name for row in hooks_of(t.interface) if row.required]
    optional = [row.name for row in hooks_of(t.interface) if not row.required]
    stubs = "\n".join(_stub(hook, names) for hook in required)
    imports = f"from sbt_core.models import {', '.join(sorted(names))}\n" if names else ""
    optional_text = "".join(f"    # - {hook}\n" for hook in optional) or "    # (none)\n"
    title = f"sbt provider '{t.name}': {SBT_INTERFACES[t.interface]}"
    return f'''"""{title} (``[providers.{t.interface}] type = "{t.name}"``).

Each hook's arguments, answer, errors and default trigger: sbt's docs/hooks/{t.interface}.md.
"""

from __future__ import annotations

from sbt_core import Provider, hookimpl
{imports}
from .settings import {t.class_name}Settings

__all__ = ["{t.class_name}", "{t.class_name}Settings"]


class {t.class_name}(Provider):
    """{SBT_INTERFACES[t.interface]} provider '{t.name}'."""

    # Constructed by sbt as {t.class_name}(settings, context): self.settings, self.context (data_dir,
    # logger, publish) are set by Provider.
    settings_class = {t.class_name}Settings

    # Required hooks: sbt serve refuses a provider without them; the conformance kit's failures name each
    # one still raising NotImplementedError.

{stubs}
    # Optional hooks, each with its default trigger once implemented:
{optional_text}'''


def _files(t: ProviderTemplate) -> dict[str, str]:
    iface = t.interface
    return {
        "pyproject.toml": f'''[build-system]
requires = ["hatchling>=1.21"]
build-backend = "hatchling.build"

[project]
name = "{t.distribution}"
version = "0.1.0"
description = "sbt provider '{t.name}': {SBT_INTERFACES[iface]}"
readme = "README.md"
requires-python = ">=3.11"
dependencies = ["sbt-core>=0.1,<0.2"]

[project.optional-dependencies]
test = ["sbt-core[test]", "pytest>=8"]

# The entry-point name is the type name in sbt.toml: [providers.{iface}] type = "{t.name}".
[project.entry-points.sbt]
{t.name} = "{t.package}:{t.class_name}"

[tool.hatch.build.targets.wheel]
packages = ["{t.package}"]

[tool.pytest.ini_options]
testpaths = ["tests"]
''',
        f"{t.package}/__init__.py": _provider_module(t),
        f"{t.package}/settings.py": f'''"""``[providers.{iface}]`` settings of '{t.name}', validated by sbt at start-up
(``sbt plugins info {t.name}`` lists them).

- ``api_base``: where the backend answers.
- ``api_key``: its credential; write ``api_key = {{ env = "NAME" }}`` or ``{{ file = "path" }}`` in sbt.toml.
"""

from __future__ import annotations

import attrs

from sbt_core.models import Secret


@attrs.frozen
class {t.class_name}Settings:
    api_base: str = "http://127.0.0.1:8000"
    api_key: Secret | None = None
''',
        f"{t.package}/py.typed": "",
        "tests/test_conformance.py": f'''"""sbt's conformance kit against '{t.name}': every promise of
{SBT_INTERFACES[iface]} as a test.

A failure quotes the promise broken; while a required hook still raises NotImplementedError, its tests
fail naming it.
"""

from __future__ import annotations

import pytest

from sbt_core.testing.conformance import ConformanceTarget, Test{_SUFFIX[iface]}Conformance  # noqa: F401
from {t.package} import {t.class_name}


@pytest.fixture
def sbt_conformance_{iface}() -> ConformanceTarget:
    # Settings as in sbt.toml's [providers.{iface}] table (without type).
    return ConformanceTarget("{iface}", "{t.name}", {t.class_name}, {{}})
''',
        "README.md": f'''# {t.distribution}

An sbt provider of {SBT_INTERFACES[iface]}, type name `{t.name}`.

```sh
python -m pip install -e '.[test]'   # or: sbt plugins install {t.distribution}
sbt plugins list                     # shows '{t.name}' with its hooks
python -m pytest                     # sbt's conformance kit: each failure names a hook still to write
```

Select it in `sbt.toml`:

```toml
[providers.{iface}]
type = "{t.name}"
api_key = {{ env = "{t.name.upper().replace("-", "_")}_API_KEY" }}
```

The hooks to write, their arguments, answers and errors: sbt's `docs/hooks/{iface}.md`; the walk from this
template to a published package: sbt's `docs/writing-a-provider.md`.
''',
    }


def write_template(interface: str, name: str, directory: Path) -> Path:
    """Write the skeleton of provider ``name`` for ``interface`` into ``directory/sbt-<name>``; returns it.

    :raises BadRequestError: an unknown interface, a name that is not lower-case words joined by ``-``
        (an entry-point and package name), or a folder that already exists.
    """
    if interface not in SBT_INTERFACES:
        raise BadRequestError(f"unknown interface {interface!r}; choose one of {', '.join(SBT_INTERFACES)}")
    if not _NAME.match(name) or keyword.iskeyword(name.replace("-", "_")):
        raise BadRequestError(f"provider name {name!r}: use lower-case letters and digits, words joined by '-' "
                              "(e.g. acme-ledger)")
    template = ProviderTemplate(interface, name)
    root = directory / template.distribution
    if root.exists():
        raise BadRequestError(f"{root} already exists")
    for relative, text in _files(template).items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root
