"""The chaos test runs the same pipeline as the end-to-end tests."""

from tests.e2e.conftest import model, pipeline_env, sample  # noqa: F401 - fixtures
