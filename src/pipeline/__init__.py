"""Pipeline: the command API, the outbox relay and the stage actors (Dramatiq)."""
