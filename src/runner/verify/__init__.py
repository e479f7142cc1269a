"""Verification criteria: requirements (``≥80%``, ``0 errors``, a path), the per-project
``.devteam.toml``, evaluation of real tool output, and the Verifier that runs a project's
checks in a task container.
"""

from runner.verify.config import ProjectConfig, load_project_config, parse_project_file
from runner.verify.evaluate import KNOWN, coverage_percent, type_error_count
from runner.verify.requirements import Requirement, check, parse_requirement
from runner.verify.verifier import Verifier

__all__ = [
    "KNOWN",
    "ProjectConfig",
    "Requirement",
    "Verifier",
    "check",
    "coverage_percent",
    "load_project_config",
    "parse_project_file",
    "parse_requirement",
    "type_error_count",
]
