"""Generated task lists in the hierarchical format, for benchmarks and property tests."""

from __future__ import annotations

import random

_CRITERIA = (
    "test.coverage: \u226580%",
    "type.strict: 0 errors",
    "<criterion 1: The service answers within 1s [source: PRD]>",
    "files: src/app.py, tests/test_app.py",
    "keep the public API stable",
)


def generate_task_list(n_leaves: int, *, seed: int = 0, done_fraction: float = 0.0) -> str:
    """A valid list with exactly ``n_leaves`` atomic tasks, in phases of groups of steps.

    Phases depend on the one before; groups on up to two earlier groups; some groups have
    no steps (they are leaves themselves); some steps carry criterion bullets. The first
    ``round(n_leaves * done_fraction)`` leaves in file order are marked ``[x]``.
    Deterministic for a given ``seed``.
    """
    rng = random.Random(seed)  # noqa: S311 - test data, not secrets
    n_done = min(n_leaves, max(0, round(n_leaves * done_fraction)))
    lines = ["# Generated task list", "", "Phases are sequential.", ""]
    made = 0
    phase = 0
    earlier_groups: list[str] = []

    def mark() -> str:
        return "[x] " if made < n_done else ""

    while made < n_leaves:
        phase += 1
        phase_deps = f"[{phase - 1}]" if phase > 1 else "[]"
        lines += [f"Phase {phase}: Generated phase {phase} (Dependencies: {phase_deps})", ""]
        for group in range(1, rng.randint(3, 10) + 1):
            if made >= n_leaves:
                break
            group_id = f"{phase}.{group}"
            candidates = earlier_groups[-4:]
            deps = rng.sample(candidates, rng.randint(0, min(2, len(candidates))))
            sep = rng.choice([", ", ","])
            steps = min(rng.choice([0, 1, 2, 3, 4, 5, 6]), n_leaves - made)
            title = f"Group {group_id} builds part {rng.randint(1, 999)}"
            lines.append(f"- {mark() if steps == 0 else ''}{group_id} {title} "
                         f"(Dependencies: [{sep.join(deps)}])")
            if steps == 0:
                made += 1
            for step in range(1, steps + 1):
                lines.append(f"  - {mark()}{group_id}.{step} Step {step} of {group_id}: "
                             f"implement item {rng.randint(1, 9999)}")
                made += 1
                if rng.random() < 0.15:
                    lines.append(f"    \u2022 {rng.choice(_CRITERIA)}")
            earlier_groups.append(group_id)
            lines.append("")
    return "\n".join(lines)
