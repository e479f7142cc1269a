"""Stage handlers: ``async (StageContext) -> Outcome``, one per stage, in pipeline order."""

from __future__ import annotations

from pipeline.engine import Handler
from pipeline.lifecycle import Stage
from pipeline.stages import finish, integrate, setup, start, work

HANDLERS: dict[Stage, Handler] = {
    Stage.INIT: start.init,
    Stage.SELECT: start.select,
    Stage.PREP: work.prep,
    Stage.SETUP: setup.setup,
    Stage.IMPLEMENT: work.implement,
    Stage.VERIFY: work.verify,
    Stage.MERGE: integrate.merge,
    Stage.PUSH: integrate.push,
    Stage.UPDATE_TASKLIST: integrate.update_tasklist,
    Stage.DONE: finish.done,
    Stage.FINALIZE: finish.finalize,
}
