"""Dependency setup: what a repository needs installed, the per-project cache of installed
environments, and egress through an allowlisting proxy while installing.

- ``detect``: the :class:`SetupPlan` of a working copy (lockfiles, manifests, ``.devteam.toml``).
- ``cache``: installed environments as Docker volumes, keyed by manifests, commands and image.
- ``egress``: the per-run forward proxy (tinyproxy) reached through a unix socket.
- ``installer``: :class:`Installer`, which runs a plan or finds it cached.
- ``toolchain``: the project's Node.js line and Python, chosen from what the image offers.
"""

from runner.setup.cache import CacheEntry, DepsCache, cache_key
from runner.setup.detect import NO_SETUP, SetupPlan, detect, plan_setup
from runner.setup.egress import EgressProxy, Refusal, parse_refusals
from runner.setup.installer import NOTHING, Installer, SetupResult, nothing_to_install
from runner.setup.toolchain import Choice, Offered, Toolchain, choose

__all__ = [
    "NOTHING",
    "NO_SETUP",
    "CacheEntry",
    "Choice",
    "DepsCache",
    "EgressProxy",
    "Installer",
    "Offered",
    "Refusal",
    "SetupPlan",
    "SetupResult",
    "Toolchain",
    "cache_key",
    "choose",
    "detect",
    "nothing_to_install",
    "parse_refusals",
    "plan_setup",
]
