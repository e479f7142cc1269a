"""The dashboard at ``GET /`` in headless Chromium, over a real gateway (and, for the runs, a
real relay, worker, Docker, git and Aider with the scripted model on the sample project)."""

from __future__ import annotations

import asyncio
import json
import re
import signal
import uuid

import httpx
from playwright.async_api import expect
from sqlalchemy import text
from tests.e2e.conftest import wait_status
from tests.support.detail import SECRET, finish_two_rounds
from tests.support.procs import ROOT, wait_http
from tests.support.streams import new_execution, write

from pipeline import stream

ARTIFACTS = ROOT / "tests" / "artifacts"
PROJECT = "demo/calc"
ROW = f'tr[data-project-id="{PROJECT}"]'


async def _initialize(gateway_url: str, token: str, repository_url: str) -> uuid.UUID:
    async with httpx.AsyncClient(timeout=30) as client:
        response = await client.post(
            f"{gateway_url}/api/devteam/automation/initialize",
            json={"projectId": PROJECT, "repositoryUrl": repository_url},
            headers={"Authorization": f"Bearer {token}", "Idempotency-Key": uuid.uuid4().hex},
        )
    assert response.status_code == 202, response.text
    return uuid.UUID(response.json()["executionId"])


async def _watch_until(page, condition, timeout: float = 600) -> tuple[list[int], list[str]]:
    """Sample the row's progress and stage until ``condition(progress, stage)`` holds."""
    progress_seen: list[int] = []
    stages_seen: list[str] = []
    async with asyncio.timeout(timeout):
        while True:
            value = await page.eval_on_selector(f"{ROW} progress", "p => p.value")
            stage = await page.locator(f'{ROW} [data-field="stage"]').text_content()
            if not progress_seen or progress_seen[-1] != value:
                progress_seen.append(int(value))
            if not stages_seen or stages_seen[-1] != stage:
                stages_seen.append(stage or "")
            if condition(int(value), stage):
                return progress_seen, stages_seen
            await asyncio.sleep(0.1)


def _assert_token_stays_out_of_urls(recorded, token: str, first_url: str) -> None:
    for request in recorded.requests:
        if request["url"] == first_url:
            continue  # the address typed in by the person (the page removes it at once)
        assert token not in request["url"], request["url"]
        assert token not in request["headers"].get("referer", "")
    assert recorded.sockets and all(token in url for url in recorded.sockets)


async def test_the_dashboard_follows_a_run_and_its_buttons_pause_and_resume_it(
    store, sample, pipeline_env, procs, token_for, browser_page
) -> None:
    # Given the service running and the dashboard open, signed in through its form
    gateway = procs.gateway()
    procs.relay()
    procs.worker(threads=4)
    page = browser_page.page
    token = token_for("dana", ["demo/*"])
    response = await page.goto(f"{gateway.url}/")
    csp = response.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "style-src 'self'" in csp
    await page.get_by_label("Access token (JWT)").fill(token)
    await page.get_by_role("button", name="Open dashboard").click()
    await expect(page.locator("#connection")).to_have_text("Live")
    await expect(page.get_by_text("No executions yet")).to_be_visible()

    # When a run of the sample project starts
    execution = await _initialize(gateway.url, token, sample.url)
    row = page.locator(ROW)
    await expect(row).to_be_visible()

    # Then its row shows the progress moving and the stage changing as it advances
    progress, stages = await _watch_until(page, lambda value, _stage: value > 0)
    assert progress[0] == 0 and progress[-1] > 0
    assert len(set(stages) - {"—"}) >= 3, stages
    await expect(row.locator('[data-field="branch"]')).to_have_text(re.compile(r"^task/"))
    await expect(page.locator("#log li").first).to_be_attached()

    # When Pause is clicked, the row says paused and so does the database
    pause = page.get_by_role("button", name=f"Pause {PROJECT}")
    await pause.click()
    await expect(row.locator('[data-field="status"]')).to_have_text("paused (user)")
    assert (await wait_status(store, execution, {"paused"}, timeout=5))["status"] == "paused"
    await expect(pause).to_be_disabled()
    # and Resume (used from the keyboard) sets it running again
    resume = page.get_by_role("button", name=f"Resume {PROJECT}")
    await expect(resume).to_be_enabled()
    await resume.focus()
    await page.keyboard.press("Enter")
    await expect(row.locator('[data-field="status"]')).to_have_text(
        re.compile(r"^(running|completed)$"))
    row_now = await wait_status(store, execution, {"running", "completed"}, timeout=10)
    assert row_now["status"] in ("running", "completed")

    # Finally the run completes: 100 %, every button disabled, the log filled
    await expect(row.locator('[data-field="status"]')).to_have_text("completed", timeout=600_000)
    assert await page.eval_on_selector(f"{ROW} progress", "p => p.value") == 100
    for action in ("Pause", "Resume", "Stop"):
        await expect(page.get_by_role("button", name=f"{action} {PROJECT}")).to_be_disabled()
    assert await page.locator("#log li").count() > 10
    assert (await wait_status(store, execution, {"completed"}, timeout=5))["status"] == "completed"
    await expect(page.locator("#history-rows tr")).to_have_count(1)

    # A page opened afresh on the finished run replays its whole log from history and
    # shows every task done, with the criteria the verification checked
    await page.reload()
    await expect(page.locator("#log-state")).to_contain_text("ended: completed")
    assert await page.locator("#log li").count() > 10
    tasks = page.locator("#task-rows tr")
    await expect(tasks).to_have_count(6)
    assert set(await tasks.locator('[data-field="status"]').all_text_contents()) == {"done"}
    first = page.locator('#task-rows tr[data-task-id="1.1"]')
    await expect(first.locator('[data-criterion="test.coverage"]')).to_have_class("passed")
    attempts = await tasks.locator('[data-field="attempts"]').all_text_contents()
    assert "2" in attempts, attempts  # the sample's task that fails its first round
    for action in ("Pause", "Resume", "Stop"):
        await expect(page.get_by_role("button", name=f"{action} {PROJECT}")).to_be_disabled()

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    await page.screenshot(path=str(ARTIFACTS / "dashboard.png"), full_page=True)
    assert browser_page.console_errors == []
    assert all(r["url"].startswith(gateway.url) for r in browser_page.requests)
    _assert_token_stays_out_of_urls(browser_page, token, first_url=f"{gateway.url}/")
    assert all(token not in proc.output() for proc in procs.procs)  # no process logged it


async def test_the_stop_button_stops_a_run(
    store, sample, pipeline_env, procs, token_for, browser_page
) -> None:
    # Given a run in progress and the dashboard opened with ?token=
    gateway = procs.gateway()
    procs.relay()
    procs.worker(threads=4)
    page = browser_page.page
    token = token_for("erin", ["demo/calc"])
    execution = await _initialize(gateway.url, token, sample.url)
    first_url = f"{gateway.url}/?token={token}"
    await page.goto(first_url)
    assert token not in page.url  # taken from the address bar at once
    row = page.locator(ROW)
    await expect(row.locator('[data-field="status"]')).to_have_text("running", timeout=120_000)
    # When Stop is clicked
    await page.get_by_role("button", name=f"Stop {PROJECT}").click()
    # Then the run winds down to stopped, on the page and in the database
    await expect(row.locator('[data-field="status"]')).to_have_text("stopped", timeout=120_000)
    assert (await wait_status(store, execution, {"stopped"}, timeout=10))["status"] == "stopped"
    for action in ("Pause", "Resume", "Stop"):
        await expect(page.get_by_role("button", name=f"{action} {PROJECT}")).to_be_disabled()
    assert browser_page.console_errors == []
    _assert_token_stays_out_of_urls(browser_page, token, first_url=first_url)


async def test_after_a_gateway_restart_the_log_resumes_with_nothing_lost_or_repeated(
    store, procs, token_for, browser_page
) -> None:
    # Given the dashboard showing an execution's live log
    gateway = procs.gateway()
    execution = await new_execution(store, "acme/web", user="alice")
    page = browser_page.page
    await page.goto(f"{gateway.url}/?token={token_for('alice', ['acme/*'])}")
    await expect(page.locator('tr[data-project-id="acme/web"]')).to_be_visible()
    await expect(page.locator("#connection")).to_have_text("Live")
    log = page.locator("#log li")
    await write(store, execution, 2)
    await expect(log).to_have_count(2)
    # When the gateway dies, lines are written meanwhile, and a new gateway starts
    gateway.kill(signal.SIGKILL)
    gateway.popen.wait(10)
    await expect(page.locator("#connection")).to_contain_text("reconnecting")
    await write(store, execution, 2)
    revived = procs.devteam("gateway", "serve", "--port", str(gateway.port), port=gateway.port)
    await asyncio.to_thread(wait_http, revived, "/health", 30)
    await expect(page.locator("#connection")).to_have_text("Live", timeout=60_000)
    await write(store, execution, 1)
    # Then the page resumed from its cursor: every line once, in order
    await expect(log).to_have_count(5)
    texts = [t.split(" | ", 1)[1] for t in await log.all_text_contents()]
    assert texts == ["line 0", "line 1", "line 0", "line 1", "line 0"]
    # (the main socket: the log's own socket always starts from since=0)
    resumed = [url for url in browser_page.sockets if "since=" in url and "projectId" not in url]
    assert resumed, browser_page.sockets


async def test_the_page_is_locked_down_and_its_backoff_is_capped(procs, browser_page) -> None:
    gateway = procs.gateway()
    async with httpx.AsyncClient(timeout=10) as client:
        page_response = await client.get(f"{gateway.url}/")
        missing = await client.get(f"{gateway.url}/static/../../app.py")
        script = await client.get(f"{gateway.url}/static/dashboard.js")
    csp = page_response.headers["content-security-policy"]
    assert "default-src 'none'" in csp and "script-src 'self'" in csp
    assert "style-src 'self'" in csp and "frame-ancestors 'none'" in csp
    assert page_response.headers["referrer-policy"] == "no-referrer"
    assert missing.status_code == 404
    assert script.headers["content-type"].startswith("text/javascript")
    assert not re.search(r"\.(innerHTML|outerHTML)\b|insertAdjacentHTML|console\.", script.text)

    page = browser_page.page
    await page.goto(f"{gateway.url}/")
    delays = await page.evaluate(
        "() => Array.from({length: 40}, (_, n) => [0, 0.5, 1].map("
        "r => window.DevteamDashboard.backoffMs(n, () => r)))"
    )
    floors = [d[0] for d in delays]
    assert all(0 < d <= 30_000 for row in delays for d in row)
    assert floors[:4] == [250, 500, 1000, 2000] and floors[-1] == 15_000
    assert all(lo < mid < hi for lo, mid, hi in delays)  # jittered within [ceiling/2, ceiling]
    # A bad token is refused with a message, and the form comes back
    await page.get_by_label("Access token (JWT)").fill("eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0.eA")
    await page.get_by_role("button", name="Open dashboard").click()
    await expect(page.get_by_role("alert")).to_contain_text("rejected")
    await expect(page.get_by_label("Access token (JWT)")).to_be_visible()


async def _sign_in(page, token: str) -> None:
    await page.get_by_label("Access token (JWT)").fill(token)
    await page.get_by_role("button", name="Open dashboard").click()
    await expect(page.locator("#connection")).to_have_text("Live")


async def test_a_finished_execution_shows_its_tasks_criteria_log_and_errors(
    store, procs, token_for, browser_page
) -> None:
    # Given a finished execution of acme/web: two rounds of task 1.1, an error, its log
    gateway = procs.gateway()
    execution = await new_execution(store, "acme/web", user="alice")
    await finish_two_rounds(store, execution, log=True)
    page = browser_page.page
    await page.goto(f"{gateway.url}/")
    # When its developer opens the dashboard and picks it from the history
    await _sign_in(page, token_for("alice", ["acme/*"]))
    await page.get_by_role(
        "button", name=f"Show execution {str(execution)[:8]} of acme/web").click()
    # Then its task shows status, branch, attempts, the last round's criteria, stage
    # durations, tokens and cost
    task = page.locator('#task-rows tr[data-task-id="1.1"]')
    await expect(task.locator('[data-field="task"]')).to_have_text("1.1 Add and subtract")
    await expect(task.locator('[data-field="status"]')).to_have_text("done")
    await expect(task.locator('[data-field="branch"]')).to_have_text(
        "task/1-1-add-and-subtract")
    await expect(task.locator('[data-field="attempts"]')).to_have_text("2")
    await expect(task.locator('[data-criterion="tests"]')).to_have_text("✓ tests: pass / pass")
    await expect(task.locator('[data-criterion="coverage"]')).to_have_text(
        "✓ coverage: 92 / 80")
    await expect(task.locator('[data-stage="IMPLEMENT"]')).to_have_text("IMPLEMENT ×2 5.0 s")
    await expect(task.locator('[data-stage="VERIFY"]')).to_have_text("VERIFY ×2 9.0 s")
    await expect(task.locator('[data-field="tokens"]')).to_have_text("2,100 / 140")
    await expect(task.locator('[data-field="cost"]')).to_have_text("$0.0300")
    # its error record, redacted
    error = page.locator("#error-rows tr")
    await expect(error).to_have_count(1)
    await expect(error).to_contain_text("verification")
    assert SECRET not in (await error.text_content() or "")
    # its whole log, replayed from history, ending with the completion
    log = page.locator("#log li")
    await expect(log).to_have_count(4)
    texts = [t.split(" | ", 1)[1] for t in await log.all_text_contents()]
    assert texts[0].startswith("branch task/1-1") and texts[-1] == "task 1.1 done (1 of 1)"
    await expect(page.locator("#log-state")).to_contain_text("ended: completed")
    # and no action: a completed execution can be neither paused, resumed nor stopped
    for action in ("Pause", "Resume", "Stop"):
        await expect(page.get_by_role("button", name=f"{action} acme/web")).to_be_disabled()
    # usage is for managers: a developer is told so
    await expect(page.locator("#usage-state")).to_contain_text("managers and admins")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    await page.screenshot(path=str(ARTIFACTS / "execution-view.png"), full_page=True)
    assert browser_page.console_errors == []


async def test_actions_are_enabled_only_where_the_lifecycle_allows(
    store, procs, token_for, browser_page
) -> None:
    # Given a running execution of acme/web and a paused one of acme/api
    gateway = procs.gateway()
    running = await new_execution(store, "acme/web", user="alice")
    paused = await new_execution(store, "acme/api", user="alice")
    async with store.transaction() as session:
        await session.execute(text("UPDATE executions SET status = 'running' WHERE id = :e"),
                              {"e": running})
        await session.execute(text("UPDATE executions SET status = 'paused', "
                                   "pause_reason = 'user' WHERE id = :e"), {"e": paused})
    page = browser_page.page
    await page.goto(f"{gateway.url}/?token={token_for('alice', ['acme/*'])}")
    expected = {"acme/web": {"Pause": True, "Resume": False, "Stop": True},
                "acme/api": {"Pause": False, "Resume": True, "Stop": True}}
    for project, enabled in expected.items():
        # When the project is picked, Then its execution's buttons follow its status
        await page.get_by_role("button", name=f"Show the execution of {project}").click()
        for action, on in enabled.items():
            b = page.get_by_role("button", name=f"{action} {project}")
            await (expect(b).to_be_enabled() if on else expect(b).to_be_disabled())
    # and a click acts on it: Pause pauses acme/web, after which only Resume and Stop are
    await page.get_by_role("button", name="Show the execution of acme/web").click()
    await page.get_by_role("button", name="Pause acme/web").click()
    await expect(page.get_by_role("button", name="Resume acme/web")).to_be_enabled()
    await expect(page.get_by_role("button", name="Pause acme/web")).to_be_disabled()
    await expect(page.get_by_role("button", name="Stop acme/web")).to_be_enabled()
    assert (await wait_status(store, running, {"paused"}, timeout=5))["status"] == "paused"
    assert browser_page.console_errors == []


async def test_a_manager_sees_the_customers_usage_as_tables_and_a_chart_per_day(
    store, procs, token_for, browser_page
) -> None:
    # Given a finished execution of acme/web whose stage runs reported usage
    gateway = procs.gateway()
    execution = await new_execution(store, "acme/web", user="alice")
    await finish_two_rounds(store, execution, log=True)
    page = browser_page.page
    await page.goto(f"{gateway.url}/")
    # When a manager of acme signs in
    await _sign_in(page, token_for("maria", ["acme/*"], role="manager"))
    # Then the usage panel shows acme's projects, its total and a bar per day of the range
    usage_row = page.locator('#usage-rows tr[data-project-id="acme/web"]')
    await expect(usage_row.locator('[data-field="tokensSent"]')).to_have_text("2,100")
    await expect(usage_row.locator('[data-field="tokensReceived"]')).to_have_text("140")
    await expect(usage_row.locator('[data-field="cost"]')).to_have_text("$0.0300")
    await expect(usage_row.locator('[data-field="cpuSeconds"]')).to_have_text("2.5 s")
    await expect(page.locator('#usage-total [data-field="peakMemoryBytes"]')).to_have_text(
        "66.8 MiB")  # the largest, 70,000,000 bytes, not a sum
    await expect(page.locator("#usage-range")).to_have_text(re.compile(r"^From \S+ to \S+$"))
    first, last = (await page.locator("#usage-range").text_content() or "").split()[1::2]
    bars = page.locator("#usage-chart rect.bar")
    await expect(bars).to_have_count(30)  # the default range: the last 30 UTC days
    assert await bars.first.get_attribute("data-date") == first
    assert await bars.last.get_attribute("data-date") == last  # today: the runs finished now
    values = [await b.get_attribute("data-value") for b in await bars.all()]
    assert values == ["0"] * 29 + ["2240"]  # 2100 sent + 140 received
    # and another measure redraws the chart from the same report
    await page.get_by_label("Chart").select_option("wallSeconds")
    await expect(page.locator("#usage-chart-title")).to_have_text("Wall seconds per day")
    assert await bars.last.get_attribute("data-value") == "12"
    # the manager sees the execution read-only: its tasks, no action
    await expect(page.locator("#task-rows tr")).to_have_count(1)
    for action in ("Pause", "Resume", "Stop"):
        await expect(page.get_by_role("button", name=f"{action} acme/web")).to_be_disabled()
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    await page.screenshot(path=str(ARTIFACTS / "usage.png"), full_page=True)
    assert browser_page.console_errors == []


async def test_text_from_a_run_is_shown_as_text_never_as_markup(
    store, procs, token_for, browser_page
) -> None:
    # Given a run whose task title, criterion, error message and log line carry markup
    gateway = procs.gateway()
    execution = await new_execution(store, "acme/web", user="alice")
    markup = '<img src="/x" onerror="document.title=\'owned\'">'
    async with store.transaction() as session:
        await session.execute(
            text("UPDATE events SET task_context = CAST(:c AS jsonb) WHERE id = "
                 "(SELECT event_id FROM executions WHERE id = :e)"),
            {"e": execution, "c": json.dumps({"tasks": {"1.1": {
                "title": markup, "status": "in_progress", "branch": "task/1-1-x"}}})})
        await session.execute(
            text("INSERT INTO stage_runs (execution_id, task_id, stage, attempt, status, "
                 "result) VALUES (:e, '1.1', 'VERIFY', 1, 'failed', CAST(:r AS jsonb))"),
            {"e": execution, "r": json.dumps({"results": {markup: {
                "passed": False, "actual": markup, "required": "pass"}}})})
        await session.execute(
            text("INSERT INTO errors (id, execution_id, task_id, stage, classification, "
                 "message) VALUES (:id, :e, '1.1', 'VERIFY', 'verification', :m)"),
            {"id": uuid.uuid4(), "e": execution, "m": markup})
    async with store.tx() as tx:
        await stream.append(tx, execution, [("execution-log", {
            "level": "info", "stage": "VERIFY", "taskId": "1.1", "lines": [markup]})])
    page = browser_page.page
    # When its developer opens the dashboard
    await page.goto(f"{gateway.url}/?token={token_for('alice', ['acme/*'])}")
    # Then each shows the markup as its text, and nothing of it became an element
    task = page.locator('#task-rows tr[data-task-id="1.1"]')
    await expect(task.locator('[data-field="task"]')).to_have_text(f"1.1 {markup}")
    await expect(task.locator("[data-criterion]")).to_have_text(f"✗ {markup}: {markup} / pass")
    await expect(page.locator("#error-rows tr")).to_contain_text(markup)
    await expect(page.locator("#log li")).to_have_text([f"VERIFY 1.1 | {markup}"])
    assert await page.locator("main img").count() == 0
    assert await page.title() == "DevTeam Runner"
    assert browser_page.console_errors == []
    assert not [r for r in browser_page.requests if r["url"].endswith("/x")]
