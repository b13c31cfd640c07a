"""Fixtures shared by the core's tests come from sbt's pytest plugin (:mod:`sbt_core.testing.pytest_plugin`):
``pg_database`` (the run's throwaway PostgreSQL database), ``sbt_control_plane``, ``sbt_events``."""
