"""pluggy markers of the ``sbt`` project (private, as pluggy and tox keep theirs)."""

import pluggy

PROJECT_NAME = "sbt"

hookspec = pluggy.HookspecMarker(PROJECT_NAME)
#: Mark a provider method (or an extension function) as the implementation of an sbt hook.
hookimpl = pluggy.HookimplMarker(PROJECT_NAME)
