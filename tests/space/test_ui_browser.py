"""The Space's page in a real browser (Playwright + the machine's Chromium).

The real app.py runs on loopback with the tiny model, pushing to a localhub; the tests
click what a person clicks and wait for what a person waits for (conditions with
timeouts, never sleeps). With ``SPACETRAIN_SCREENSHOTS=docs`` the screenshots the README
shows are rewritten in ``docs/`` (``make screenshots``); otherwise they go to tmp.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from huggingface_hub import HfApi

from spacetrain.localhub import LocalHub

from .browser import FLAGS, find_chromium, why_no_browser
from .support import REPO, AppServer, call, start_app, wait_for

pytestmark = pytest.mark.e2e
playwright_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
expect = playwright_api.expect

TOKEN = "hf_spacetrainBrowserTestToken"
ACTIVE = ("queued", "running")
DONE = ("succeeded", "failed", "cancelled")
SECOND = 1000  # Playwright counts milliseconds


@pytest.fixture(scope="module")
def chromium() -> str:
    found = find_chromium()
    if found is None:
        pytest.skip(why_no_browser())
    return found


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalHub]:
    with LocalHub(root=tmp_path_factory.mktemp("hub"), tokens={TOKEN: "me"}) as running:
        yield running


@pytest.fixture(scope="module")
def server(
    tmp_path_factory: pytest.TempPathFactory, hub: LocalHub, tiny_model: Path, qa_jsonl: Path
) -> Iterator[AppServer]:
    root = tmp_path_factory.mktemp("ui")
    env = {
        # The Space variables the form shows as defaults.
        "BASE_MODEL": str(tiny_model),
        "DATASET": str(qa_jsonl),
        "OUTPUT_REPO": "me/adapter",
        "SPACETRAIN_OUTPUT_REPOS": "me/never",
        "EPOCHS": "2",
        "BATCH_SIZE": "4",
        "GRAD_ACCUM": "1",
        "LEARNING_RATE": "0.005",
        "SPACETRAIN_ALLOW_LOCAL_PATHS": "1",  # the tiny model and data are local files
        "HF_ENDPOINT": hub.url,
        "HF_TOKEN": TOKEN,
        "HF_HUB_DISABLE_IMPLICIT_TOKEN": "",
        "SPACETRAIN_HUB_DEADLINE": "3",  # a push that cannot get through fails in seconds
    }
    app = start_app(root / "runs", root / "app.log", env)
    try:
        yield app
    finally:
        app.stop()


@pytest.fixture(scope="module")
def browser(chromium: str) -> Iterator[Any]:
    with playwright_api.sync_playwright() as pw:
        args = [f for f in FLAGS if f != "--headless"]  # headless=True adds it
        launched = pw.chromium.launch(executable_path=chromium, headless=True, args=args)
        try:
            yield launched
        finally:
            launched.close()


@pytest.fixture
def idle(server: AppServer) -> Iterator[Any]:
    """A gradio_client, once no run is active (one run at a time)."""
    client = server.client()
    status = call(client, "/training_status", "")
    if status["state"] in ACTIVE:
        call(client, "/stop_training", status["run_id"])
        wait_for(client, status["run_id"], DONE, timeout=60)
    yield client
    client.close()


@pytest.fixture
def page(browser: Any, server: AppServer, idle: Any) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1200, "height": 900})
    tab = context.new_page()
    tab.set_default_timeout(30 * SECOND)
    tab.goto(server.url)
    expect(tab.locator("#progress .st-progress")).to_be_visible()
    try:
        yield tab
    finally:
        context.close()


def shot(page: Any, name: str, tmp_path: Path, at: str | None = None, full: bool = False) -> Path:
    """A PNG of the viewport (at the top, or scrolled to ``at``): into docs/ when asked
    (the README's pictures), else tmp."""
    folder = REPO / "docs" if os.environ.get("SPACETRAIN_SCREENSHOTS") == "docs" else tmp_path
    path = folder / name
    if at is None:
        page.evaluate("() => window.scrollTo(0, 0)")
    else:
        page.locator(at).evaluate("el => el.scrollIntoView({block: 'center'})")
    page.screenshot(path=str(path), full_page=full)
    return path


def progress(page: Any) -> dict[str, Any]:
    """The progress header's state and numbers, and the plot's point count."""
    return page.evaluate(
        """() => {
            const p = document.querySelector('#progress .st-progress');
            const plot = document.querySelector('#loss-plot .st-plot');
            return {state: p.dataset.state, step: +(p.dataset.step || 0),
                    total: +(p.dataset.total || 0), points: +(plot.dataset.points || 0),
                    pct: +(p.querySelector('[role=progressbar]').getAttribute('aria-valuenow')),
                    text: p.innerText};
        }"""
    )


def wait_progress(page: Any, condition: str, timeout_s: float = 120) -> dict[str, Any]:
    """Wait until ``condition`` (JS over ``p``: state, step, points, pct) holds."""
    page.wait_for_function(
        f"""() => {{
            const el = document.querySelector('#progress .st-progress');
            const plot = document.querySelector('#loss-plot .st-plot');
            if (!el || !plot) return false;
            const bar = el.querySelector('[role=progressbar]');
            const p = {{state: el.dataset.state, step: +(el.dataset.step || 0),
                       points: +(plot.dataset.points || 0),
                       pct: +(bar ? bar.getAttribute('aria-valuenow') : 0)}};
            return {condition};
        }}""",
        timeout=timeout_s * SECOND,
    )
    return progress(page)


def log_view(page: Any) -> dict[str, Any]:
    """Where the log's last line is: inside the box's visible area, or not."""
    return page.evaluate(
        """() => {
            const box = document.querySelector('#log .st-log');
            const pre = box.querySelector('pre');
            const b = box.getBoundingClientRect(), p = pre.getBoundingClientRect();
            const lines = pre.textContent.trimEnd().split('\\n');
            return {overflows: box.scrollHeight > box.clientHeight + 1,
                    gap: b.bottom - p.bottom, last: lines[lines.length - 1],
                    top: p.top - b.top, length: pre.textContent.length,
                    font: getComputedStyle(pre).fontFamily, color: getComputedStyle(pre).color,
                    background: getComputedStyle(box).backgroundColor};
        }"""
    )


def start(page: Any, **fields: str) -> None:
    for label, value in fields.items():
        page.locator(f"#f-{label} input, #f-{label} textarea").first.fill(value)
    page.locator("#start").click()


def test_form_defaults_banner_and_a_bad_parameter(
    page: Any, server: AppServer, tiny_model: Path, tmp_path: Path
) -> None:
    """Typed fields show the Space variables; no GPU is said; a bad value is named."""
    expect(page.locator("#f-base_model input, #f-base_model textarea").first).to_have_value(
        str(tiny_model)
    )
    expect(page.locator("#f-epochs input").first).to_have_value("2")
    expect(page.locator("#f-epochs")).to_contain_text("from the Space variable EPOCHS")
    expect(page.locator("#f-lora_r input").first).to_have_value("16")  # train.py's default
    expect(page.locator("#f-lora_r")).to_contain_text("train.py's default (LORA_R not set)")
    # The start-up diagnostics find no GPU here: the banner says what that means.
    expect(page.locator("#st-banner .st-banner")).to_contain_text(
        "runs will train on the CPU", timeout=120 * SECOND
    )
    runs_before = sorted(p.name for p in server.runs.iterdir())
    start(page, epochs="0")
    expect(page.locator("#start-message")).to_contain_text("params.epochs must be a number > 0")
    start(page, epochs="2", lora_r="0")
    expect(page.locator("#start-message")).to_contain_text("params.lora_r must be an integer >= 1")
    # The other parameters go as JSON under Advanced, and win over the form.
    page.locator("#advanced").get_by_text("Advanced").first.click()
    page.locator("#f-advanced .cm-content").fill('{"lora_r": 8, "batch_size": 0}')
    start(page, lora_r="16")
    expect(page.locator("#start-message")).to_contain_text("params.batch_size must be an integer")
    assert sorted(p.name for p in server.runs.iterdir()) == runs_before  # nothing started
    shot(page, "space-ui-bad-parameter.png", tmp_path, at="#start-message")


def test_a_run_from_start_to_result_card(
    page: Any, browser: Any, server: AppServer, hub: LocalHub, idle: Any, tmp_path: Path
) -> None:
    """Progress moves, the plot gains points, the log follows its end, a reload and a
    second tab rejoin the run, Start is refused meanwhile, the card links the adapter."""
    start(page, epochs="60")
    expect(page.locator("#start-message")).to_contain_text("Started run")
    first = wait_progress(page, "p.state === 'running' && p.step > 0 && p.points > 0")
    later = wait_progress(page, f"p.step > {first['step']} && p.points > {first['points']}")
    assert later["pct"] >= first["pct"] and later["total"] == 300
    assert "elapsed" in later["text"] and "ETA" in later["text"] and "tok/s" in later["text"]
    # Start is disabled while the run is active, and says why; Stop is offered.
    expect(page.locator("#start")).to_be_disabled()
    expect(page.locator("#start-reason")).to_contain_text("is active: Start is disabled")
    expect(page.locator("#stop")).to_be_enabled()
    run_id = page.locator("#progress b").first.inner_text()
    shot(page, "space-ui-running.png", tmp_path, full=True)  # with the log at its end

    page.reload()  # mid-run: the page comes back to the same run
    rejoined = wait_progress(page, f"p.state === 'running' && p.step >= {later['step']}")
    assert page.locator("#progress b").first.inner_text() == run_id
    other = page.context.new_page()  # a second tab shows the same run, Start disabled
    other.goto(server.url)
    expect(other.locator("#progress b").first).to_have_text(run_id)
    expect(other.locator("#start")).to_be_disabled()
    other.close()
    assert rejoined["step"] <= 300

    card = page.locator("#result .st-card")
    expect(card).to_have_attribute("data-state", "succeeded", timeout=180 * SECOND)
    status = call(idle, "/training_status", run_id)
    assert status["state"] == "succeeded" and status["step"] == status["total"] == 300
    revision = status["adapter"]["revision"]
    expect(card.locator("a.st-repo")).to_have_attribute("href", f"{hub.url}/me/adapter")
    expect(card.locator("a.st-commit")).to_contain_text(revision[:12])
    expect(card).to_contain_text(f'"me/adapter", revision="{revision}"')  # how to load it
    expect(card).to_contain_text("over 300 steps")
    commits = HfApi(endpoint=hub.url, token=TOKEN).list_repo_commits("me/adapter")
    assert commits[0].commit_id == revision
    done = wait_progress(page, "p.state === 'succeeded' && p.pct === 100")
    assert done["step"] == 300 and done["points"] >= 30  # every 10 steps, and the first

    # The log box stays at its end: the "done" line is visible without scrolling.
    expect(page.locator("#log pre")).to_contain_text("[train] done: run " + run_id)
    view = log_view(page)
    assert view["overflows"], view
    assert -1 <= view["gap"] <= 3, view
    assert "monospace" in view["font"]
    assert (view["color"], view["background"]) == ("rgb(226, 232, 240)", "rgb(15, 23, 42)")
    assert view["last"].startswith("[train] done: run"), view
    href = page.locator("#log a").first.get_attribute("href")
    full = page.request.get(server.url + href)
    assert full.ok and full.text() == (server.runs / run_id / "train.log").read_text()
    expect(page.locator("#start")).to_be_enabled()
    expect(page.locator(f'#history tr[data-run="{run_id}"]')).to_contain_text("succeeded")
    shot(page, "space-ui-result.png", tmp_path)


def test_stop_ends_the_run_as_cancelled(
    page: Any, server: AppServer, idle: Any, tmp_path: Path
) -> None:
    start(page, epochs="400")
    wait_progress(page, "p.state === 'running' && p.step > 0")
    run_id = page.locator("#progress b").first.inner_text()

    # Someone reading older lines keeps them in place while new ones arrive below.
    page.wait_for_function(  # enough lines to scroll 120 px up
        "() => { const b = document.querySelector('#log .st-log');"
        " return b.scrollHeight - b.clientHeight > 200; }"
    )
    page.locator("#log .st-log").evaluate("box => { box.scrollTop = -120; }")
    before = log_view(page)
    before_step = progress(page)["step"]
    assert before["overflows"] and before["gap"] < -100, before  # the end is out of view
    wait_progress(page, f"p.step > {before_step + 10}")
    page.wait_for_function(
        f"() => document.querySelector('#log pre').textContent.length > {before['length']}"
    )
    after = log_view(page)
    assert abs(after["top"] - before["top"]) <= 2, (before, after)
    page.locator("#log .st-log").evaluate("box => { box.scrollTop = 0; }")  # back to the end
    page.wait_for_function(
        f"() => document.querySelector('#log pre').textContent.length > {after['length']}"
    )
    assert -1 <= log_view(page)["gap"] <= 3  # following the end again
    page.locator("#stop").click()
    card = page.locator("#result .st-card")
    expect(card).to_have_attribute("data-state", "cancelled", timeout=60 * SECOND)
    expect(card).to_contain_text("was cancelled")
    status = call(idle, "/training_status", run_id)
    assert status["state"] == "cancelled", status
    assert status["step"] < status["total"] == 2000
    assert "stopped on request" in status["error"]
    expect(page.locator("#stop")).to_be_disabled()
    expect(page.locator("#start")).to_be_enabled()
    expect(page.locator(f'#history tr[data-run="{run_id}"]')).to_contain_text("cancelled")
    log = (server.runs / run_id / "train.log").read_text()
    assert json.loads(log.strip().splitlines()[-1].split(" ", 1)[1])["state"] == "cancelled"


def test_a_failed_push_keeps_the_adapter_and_retry_push_works(
    page: Any, server: AppServer, hub: LocalHub, idle: Any, tmp_path: Path
) -> None:
    hub.add_faults(
        {"paths": "/api/models/me/never/commit/*", "methods": ["POST"], "error_rate": 1.0,
         "status_codes": [503]}
    )  # fmt: skip
    try:
        start(page, output_repo="me/never", epochs="2")
        card = page.locator("#result .st-card")
        expect(card).to_have_attribute("data-state", "failed", timeout=120 * SECOND)
        expect(card).to_contain_text("Hub unreachable")
        expect(card.locator(".st-files a").first).to_have_text("adapter_config.json")
        retry = page.locator("#retry-push")
        expect(retry).to_be_visible()
        href = card.locator(".st-files a").nth(1).get_attribute("href")
        assert page.request.get(server.url + href).ok  # the adapter itself downloads
    finally:
        hub.faults.clear()
    retry.click()
    expect(card).to_have_attribute("data-state", "succeeded", timeout=60 * SECOND)
    expect(card.locator("a.st-repo")).to_have_attribute("href", f"{hub.url}/me/never")
    expect(retry).to_be_hidden()
    assert HfApi(endpoint=hub.url, token=TOKEN).list_repo_commits("me/never")


def test_phone_width_is_one_column_and_nothing_is_cut_off(
    browser: Any, server: AppServer, idle: Any, tmp_path: Path
) -> None:
    context = browser.new_context(viewport={"width": 390, "height": 844}, is_mobile=True)
    try:
        tab = context.new_page()
        tab.goto(server.url)
        expect(tab.locator("#progress .st-progress")).to_be_visible(timeout=30 * SECOND)
        expect(tab.locator("#history table")).to_be_visible()
        width = tab.evaluate("() => document.documentElement.scrollWidth")
        assert width <= 390, width
        form, panel = (
            tab.locator("#form-col").bounding_box(),
            tab.locator("#status-col").bounding_box(),
        )
        assert form is not None and panel is not None
        assert form["y"] >= panel["y"] + panel["height"], (
            form,
            panel,
        )  # the run first, then the form
        for element in ("#progress", "#loss-plot", "#log", "#result", "#start"):
            box = tab.locator(element).bounding_box()
            assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= 390, element
        shot(tab, "space-ui-phone.png", tmp_path)
    finally:
        context.close()
