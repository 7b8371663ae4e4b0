"""dtmon: a terminal dashboard for Datatrail's multi-site Docker Swarm."""

__version__ = "0.1.0"
