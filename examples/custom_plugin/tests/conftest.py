"""Nothing to set up: the ``sbt_control_plane`` and ``sbt_events`` fixtures come from sbt-core's pytest plugin."""
