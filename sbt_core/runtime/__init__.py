"""The runtime: event bus, HTTP API, scheduler, assembled by the ControlPlane."""
