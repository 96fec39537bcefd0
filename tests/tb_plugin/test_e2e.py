"""The tab in headless Chromium against real TensorBoard processes: grid, charts, slider,
opacity, detail view, failed methods, URL state, keyboard, live runs, dark mode, small
screens, hostile strings. Screenshots go to test-artifacts/."""

from __future__ import annotations

import os
import shutil
import struct
from pathlib import Path

import numpy as np
import pytest
from playwright.sync_api import sync_playwright
from tensorboard.compat.proto import event_pb2

from . import logs
from .conftest import SERVER_PATH
from .server import tensorboard

CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
TIMEOUT_MS = 30_000
DIGITS = "digits/explanations"
HOSTILE = "hostile/explanations"
SERIES = "series/explanations"
LOGGED_ORDER = ["saliency", "integrated_gradients", "gradcam", "lime_image"]  # as logs.digits lists them
HASH = "p.tf_explain_kit."


@pytest.fixture(scope="module")
def browser():
    assert os.path.exists(CHROMIUM), f"{CHROMIUM} is missing: install Debian's chromium (apt-get install -y chromium), as .ci/run does."
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update"])
        yield browser
        browser.close()


@pytest.fixture
def open_tab(browser, servers):
    """``open_tab(hash="", width=1400, url=None)``: a page on the Explanations tab, its plugin
    frame, and the console errors seen; every page is closed at the end."""
    pages = []

    def open_(hash: str = "", width: int = 1400, url: str | None = None, wait: str = "#grid table"):
        page = browser.new_page(viewport={"width": width, "height": 1000})
        problems = []
        page.on("console", lambda message: message.type == "error" and problems.append(message.text))
        page.on("pageerror", lambda error: problems.append(str(error)))
        page.on("dialog", lambda dialog: (problems.append(f"dialog: {dialog.message}"), dialog.dismiss()))
        page.goto((url or servers["true"].url) + "#tf_explain_kit" + hash)
        frame = page.frame_locator('iframe[src*="plugin_entry"]')
        frame.locator(wait).first.wait_for(timeout=TIMEOUT_MS)
        pages.append(page)
        return page, frame, problems

    yield open_
    for page in pages:
        page.close()


def run_hash(run: str, **state) -> str:
    return "".join(f"&{HASH}{key}={value.replace('/', '%2F') if isinstance(value, str) else value}" for key, value in {"run": run, **state}.items())


def grid(frame, run: str, epoch: int):
    table = frame.locator(f'#grid table[data-run="{run}"][data-epoch="{epoch}"]')
    table.wait_for(timeout=TIMEOUT_MS)
    return table


def pixels(canvas) -> str:
    return canvas.evaluate("c => c.toDataURL()")


def set_range(locator, value) -> None:
    locator.evaluate("(input, value) => { input.value = value; input.dispatchEvent(new Event('input')); }", str(value))


def shot(page, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def test_grid_chart_slider_opacity_and_detail(open_tab):
    page, frame, problems = open_tab(run_hash(DIGITS))
    grid(frame, DIGITS, logs.EPOCHS - 1)
    assert frame.locator("tr.row").count() == 6
    assert frame.locator("th[data-method] .name").all_inner_texts() == LOGGED_ORDER, "columns must keep the callback's order"
    assert frame.locator("svg.chart[data-metric=loss] polyline").count() == 2
    assert frame.locator("svg.chart[data-metric=accuracy] polyline").count() == 2

    cell = frame.locator('tr.row td.method-cell[data-method="saliency"] canvas.heat').first
    last = pixels(cell)
    set_range(frame.locator("#epoch"), 0)
    grid(frame, DIGITS, 0)
    cell = frame.locator('tr.row td.method-cell[data-method="saliency"] canvas.heat').first
    first = pixels(cell)
    assert first != last, "the heatmap did not change with the epoch"

    set_range(frame.locator("#opacity"), 0.2)
    assert pixels(frame.locator('tr.row td.method-cell[data-method="saliency"] canvas.heat').first) != first, "opacity did not change the heatmap"

    set_range(frame.locator("#opacity"), 0.75)
    frame.locator("svg.chart[data-metric=loss]").click(position={"x": 330, "y": 80})  # near the last epoch
    grid(frame, DIGITS, logs.EPOCHS - 1)

    frame.locator("tr.row").first.click()
    detail = frame.locator("#detail")
    detail.locator(".strip figure").first.wait_for(timeout=TIMEOUT_MS)
    assert detail.locator("section.method-detail").count() == 4
    assert detail.locator("section.method-detail > .colourbar-box canvas.colourbar").count() == 4
    integrated = detail.locator('section[data-method="integrated_gradients"]').inner_text()
    assert "convergence_delta" in integrated and "{" not in integrated, "extras are shown formatted, not as JSON"
    assert frame.locator("tr.row.selected").count() == 1 and frame.locator("tr.row").first.get_attribute("aria-selected") == "true"
    shot(page, "plugin")
    frame.locator("#close-detail").click()
    assert frame.locator("#detail").is_hidden() and frame.locator("tr.row.selected").count() == 0
    shot(page, "plugin-grid")
    assert problems == []


def test_chart_legend_colours_and_ticks_fit(open_tab):
    page, frame, problems = open_tab(run_hash(DIGITS))
    chart = frame.locator("svg.chart[data-metric=loss]")
    chart.wait_for(timeout=TIMEOUT_MS)
    legend = chart.locator("text.legend")
    fills = legend.evaluate_all("texts => texts.map(t => getComputedStyle(t).fill)")
    strokes = chart.locator("polyline").evaluate_all("lines => lines.map(l => l.getAttribute('stroke'))")
    assert fills == ["rgb(232, 113, 10)", "rgb(25, 118, 210)"] and strokes == ["#e8710a", "#1976d2"], (fills, strokes)
    frame_box = chart.locator("rect.frame").bounding_box()
    for box in [legend.nth(k).bounding_box() for k in range(2)]:
        assert box["y"] + box["height"] <= frame_box["y"] + 1, "the legend overlaps the plotting area"
    chart_box = chart.bounding_box()
    for box in [t.bounding_box() for t in chart.locator("text.tick").all()]:
        assert box["x"] >= chart_box["x"] - 0.5, "a y-tick label is clipped on the left"
    assert problems == []


def test_columns_keep_their_width_while_playing(open_tab):
    """LIME runs every 5 epochs: its "not run" cells must not change any column's width."""
    page, frame, problems = open_tab(run_hash(DIGITS, epoch=0))
    widths = []
    for epoch in (0, 1, 5, 6):
        set_range(frame.locator("#epoch"), epoch)
        grid(frame, DIGITS, epoch)
        widths.append(frame.locator("#grid th").evaluate_all("ths => ths.map(th => Math.round(th.getBoundingClientRect().width))"))
    assert frame.locator('td.method-cell[data-method="lime_image"] .placeholder').count() == 6, "epoch 6 has no LIME"
    assert all(w == widths[0] for w in widths), widths
    assert problems == []


def test_scales_fixed_across_epochs_and_one_per_sample(open_tab):
    """"fixed": a method's colour bar limit is the same at every epoch (and no smaller than
    any epoch's shared limit); "one per sample": every method of the open sample on one limit."""
    page, frame, problems = open_tab(run_hash(DIGITS, epoch=0))

    def limit(scale: str, epoch: int) -> float:
        set_range(frame.locator("#epoch"), epoch)
        frame.locator(f'#grid table[data-epoch="{epoch}"][data-scale="{scale}"]').wait_for(timeout=TIMEOUT_MS)
        return float(frame.locator('th[data-method="saliency"] .colourbar-labels span').last.inner_text())

    shared = [limit("shared", 0), limit("shared", logs.EPOCHS - 1)]
    assert shared[0] != shared[1]
    frame.locator("#scale").select_option("fixed")
    fixed = [limit("fixed", logs.EPOCHS - 1), limit("fixed", 0)]
    assert fixed[0] == fixed[1] >= max(shared)

    frame.locator("#scale").select_option("sample")
    grid(frame, DIGITS, 0)
    frame.locator("tr.row").first.click()
    frame.locator("#detail section.method-detail").nth(3).wait_for(timeout=TIMEOUT_MS)
    limits = frame.locator("#detail section.method-detail > .colourbar-box .colourbar-labels span:last-child").all_inner_texts()
    assert len(limits) == 4 and len(set(limits)) == 1, limits
    assert problems == []


def test_failed_method_is_a_column_with_its_error(open_tab):
    page, frame, problems = open_tab(run_hash(HOSTILE))
    grid(frame, HOSTILE, 1)
    assert "refusing" in frame.locator("th[data-method] .name").all_inner_texts()
    cells = frame.locator('td.method-cell[data-method="refusing"] .error-cell')
    assert cells.count() == 4
    assert all(logs.REFUSAL in text for text in cells.all_inner_texts())
    frame.locator("tr.row").first.click()
    assert logs.REFUSAL in frame.locator('#detail section[data-method="refusing"] pre').inner_text()
    assert problems == []


def test_words_on_dark_tokens_stay_readable(open_tab):
    """Every token's text has a WCAG contrast of at least 4.5 against its own background."""
    page, frame, problems = open_tab(run_hash(HOSTILE))
    grid(frame, HOSTILE, 1)
    ratios = frame.locator(".token").evaluate_all("""tokens => tokens.map(t => {
        const rgb = (css) => css.match(/\\d+/g).slice(0, 3).map(Number);
        const lum = ([r, g, b]) => [r, g, b].map(c => (c /= 255) <= 0.03928 ? c / 12.92 : ((c + 0.055) / 1.055) ** 2.4).reduce((s, c, k) => s + c * [0.2126, 0.7152, 0.0722][k], 0);
        const [a, b] = [lum(rgb(getComputedStyle(t).color)), lum(rgb(getComputedStyle(t).backgroundColor))];
        return (Math.max(a, b) + 0.05) / (Math.min(a, b) + 0.05);
    })""")
    assert len(ratios) > 10 and min(ratios) >= 4.5, sorted(ratios)[:5]
    assert problems == []


def test_url_keeps_the_view_across_a_reload(open_tab):
    page, frame, problems = open_tab(run_hash(DIGITS))
    grid(frame, DIGITS, logs.EPOCHS - 1)
    set_range(frame.locator("#epoch"), 3)
    grid(frame, DIGITS, 3)
    frame.locator("#scale").select_option("cell")
    frame.locator("tr.row").nth(2).click()
    sample = frame.locator("tr.row").nth(2).get_attribute("data-sample")
    frame.locator("#detail section.method-detail").first.wait_for(timeout=TIMEOUT_MS)
    assert f"{HASH}epoch=3" in page.url and f"{HASH}sample={sample}" in page.url and f"{HASH}scale=cell" in page.url

    page.reload()
    frame = page.frame_locator('iframe[src*="plugin_entry"]')
    grid(frame, DIGITS, 3)
    frame.locator("#detail section.method-detail").first.wait_for(timeout=TIMEOUT_MS)
    assert frame.locator("#detail h3").inner_text() == f"Sample #{sample}"
    assert frame.locator("#scale").input_value() == "cell" and frame.locator("#run").input_value() == DIGITS
    assert frame.locator(f'tr.row.selected[data-sample="{sample}"]').count() == 1

    frame.locator("#close-detail").click()
    frame.locator("#filter").select_option("wrong")
    labels = frame.locator("#klass option").evaluate_all("options => options.map(o => o.value)")
    for klass in labels[1:]:  # some class has no misclassified sample at epoch 3
        frame.locator("#klass").select_option(klass)
        if frame.locator("tr.row").count() == 0:
            break
    assert frame.locator("tr.empty").inner_text().startswith("No sample matches the filters (misclassified, class")
    frame.locator("#show-all").click()
    assert frame.locator("tr.row").count() == 6
    assert problems == []


def test_keyboard_moves_through_samples_and_epochs(open_tab):
    page, frame, problems = open_tab(run_hash(DIGITS, epoch=4))
    grid(frame, DIGITS, 4)
    rows = frame.locator("tr.row")
    rows.first.focus()
    page.keyboard.press("ArrowDown")
    assert rows.nth(1).evaluate("r => r === document.activeElement") and rows.nth(1).get_attribute("aria-selected") == "true"
    page.keyboard.press("Enter")
    detail = frame.locator("#detail h3")
    detail.wait_for(timeout=TIMEOUT_MS)
    second, third = rows.nth(1).get_attribute("data-sample"), rows.nth(2).get_attribute("data-sample")
    assert detail.inner_text() == f"Sample #{second}"
    page.keyboard.press("ArrowDown")
    frame.locator("#detail h3", has_text=f"Sample #{third}").wait_for(timeout=TIMEOUT_MS)
    page.keyboard.press("ArrowRight")
    grid(frame, DIGITS, 5)
    assert frame.locator("#epoch-label").inner_text() == "epoch 5"
    page.keyboard.press("ArrowLeft")
    page.keyboard.press("ArrowLeft")
    grid(frame, DIGITS, 3)
    page.keyboard.press("Escape")
    assert frame.locator("#detail").is_hidden()
    assert rows.nth(2).evaluate("r => r === document.activeElement"), "focus returns to the row after Escape"
    assert problems == []


def test_pinned_epoch_and_difference(open_tab):
    page, frame, problems = open_tab(run_hash(DIGITS, epoch=2))
    grid(frame, DIGITS, 2)
    frame.locator("tr.row").first.click()
    frame.locator("#pin").click()
    set_range(frame.locator("#epoch"), 10)
    grid(frame, DIGITS, 10)
    section = frame.locator('#detail section[data-method="saliency"]')
    section.locator("figure.difference").wait_for(timeout=TIMEOUT_MS)
    captions = section.locator(".views figcaption").all_inner_texts()
    assert captions[0] == "pinned epoch 2" and captions[1] == "epoch 10" and captions[2].startswith("difference (epoch 10 − 2)")
    assert f"{HASH}pin=2" in page.url
    assert problems == []


def test_small_and_dark_screens(open_tab, browser):
    """390 px wide: no sideways scrolling for the image grid; TensorBoard's dark mode followed."""
    page, frame, problems = open_tab(run_hash(DIGITS), width=390)
    grid(frame, DIGITS, logs.EPOCHS - 1)
    overflow = frame.locator("#grid").evaluate("g => g.scrollWidth - g.clientWidth")
    assert overflow <= 0, f"the grid scrolls sideways by {overflow} px at 390 px"
    shot(page, "plugin-390")
    frame.locator("tr.row").first.click()
    frame.locator("#detail .strip figure").first.wait_for(timeout=TIMEOUT_MS)
    shot(page, "plugin-390-detail")
    frame.locator("#close-detail").click()

    page.evaluate("document.body.classList.add('dark-mode')")  # what TensorBoard's dark-mode toggle does
    frame.locator(":root.tek-dark").wait_for(state="attached", timeout=TIMEOUT_MS)
    background = frame.locator(".tek").evaluate("t => getComputedStyle(t).backgroundColor")
    assert background == "rgb(48, 48, 48)", background
    page.set_viewport_size({"width": 1280, "height": 1000})
    shot(page, "plugin-dark-1280")
    assert problems == []


def test_series_maps_and_hover_values(open_tab):
    """Series are drawn with time across: (N, T) maps as one row of T steps, (N, T, F) maps
    and inputs as one row per feature. Hovering reads out the step, the feature's name and
    the value (the planted peak at step 9, epoch 1: 2.05 for Grad-CAM, 2 + 0.1·|x| for saliency)."""
    page, frame, problems = open_tab(run_hash(SERIES))
    grid(frame, SERIES, 1)
    steps = frame.locator('td.method-cell[data-method="gradcam"] canvas.heat.steps').first
    assert steps.evaluate("c => [c.width, c.height]") == [24, 1]
    features = frame.locator('td.method-cell[data-method="saliency"] canvas.heat').first
    assert features.evaluate("c => [c.width, c.height]") == [24, 3]
    assert frame.locator("canvas.input").first.evaluate("c => [c.width, c.height]") == [24, 3]
    for canvas, (x, y), shown in ((steps, (9.5 / 24, 0.5), "step 9: 2.05"), (features, (9.5 / 24, 1.5 / 3), "step 9, pressure: 2.")):
        box = canvas.bounding_box()
        page.mouse.move(box["x"] + box["width"] * x, box["y"] + box["height"] * y)
        assert frame.locator("#tip").inner_text().startswith(shown)
    shot(page, "plugin-series")
    assert problems == []


def test_hostile_names_and_tokens_render_as_text(open_tab):
    page, frame, problems = open_tab(run_hash(HOSTILE))
    frame.locator(f'#grid table[data-run="{HOSTILE}"] tr.row').first.wait_for(timeout=TIMEOUT_MS)
    frame.locator("tr.row").first.click()
    frame.locator("#detail .strip figure").first.wait_for(timeout=TIMEOUT_MS)
    text = frame.locator("body").inner_text()
    assert logs.XSS in text and logs.SCRIPT in text
    assert frame.locator(".tek img").count() == 0 and frame.locator(".tek script").count() == 0
    page.wait_for_timeout(500)
    assert problems == []


def _records(path: Path) -> list[bytes]:
    """The raw TFRecords (length, CRCs and data) of an event file."""
    data, records, at = path.read_bytes(), [], 0
    while at < len(data):
        (length,) = struct.unpack("<Q", data[at : at + 8])
        records.append(data[at : at + 12 + length + 4])
        at += 12 + length + 4
    return records


def _step(record: bytes) -> int:
    return event_pb2.Event.FromString(record[12:-4]).step


def test_live_run_appears_and_grows_without_reload(open_tab, logdir, tmp_path):
    """A run written after the page loaded shows up, and its new epochs reach the grid and
    the open evolution strip, without reloading the page; TensorBoard's reload button
    notifies the plugin."""
    (source,) = (logdir / "cancer" / "explanations").glob("events.out.tfevents.*")
    records = _records(source)
    live = tmp_path / "live"
    live.mkdir()
    with tensorboard(str(live), "true", env={"PYTHONPATH": SERVER_PATH, "TEK_TF_IMPORTS": "/dev/null"}) as server:
        page, frame, problems = open_tab(url=server.url, wait="#status")
        frame.locator("#status", has_text="No tf-explain-kit explanations found yet").wait_for(timeout=TIMEOUT_MS)
        target = live / "late" / "explanations" / source.name
        target.parent.mkdir(parents=True)
        target.write_bytes(b"".join(r for r in records if _step(r) == 0))
        grid(frame, "late/explanations", 0)
        frame.locator("tr.row").first.click()
        strip = frame.locator('#detail .strip[data-method="saliency"] figure')
        strip.first.wait_for(timeout=TIMEOUT_MS)
        assert strip.count() == 1
        with target.open("ab") as handle:
            handle.write(b"".join(r for r in records if _step(r) > 0))
        grid(frame, "late/explanations", 2)  # the last epoch is followed while it was shown
        frame.locator('#detail .strip[data-method="saliency"] figure[data-epoch="2"]').wait_for(timeout=TIMEOUT_MS)
        assert strip.count() == 3
        before = int(frame.locator(".tek").get_attribute("data-reloads") or 0)
        page.locator("button.reload-button").click()
        frame.locator(f'.tek:not([data-reloads="{before}"])').wait_for(timeout=TIMEOUT_MS)
        assert problems == []


def test_readme_screenshot_is_current():
    """The README's screenshot is a whole, non-blank PNG of a browser window that the README
    shows; with TEK_UPDATE_DOCS=1 it is replaced by the first test's screenshot (run after it,
    same module). Whether it still matches the UI is checked by eye when updating it."""
    from PIL import Image

    root = Path(__file__).resolve().parents[2]
    docs = root / "docs" / "plugin.png"
    if os.environ.get("TEK_UPDATE_DOCS"):
        shot = ARTIFACTS / "plugin.png"
        assert shot.exists(), "the e2e test did not save its screenshot"
        shutil.copyfile(shot, docs)
    assert "](docs/plugin.png)" in (root / "README.md").read_text(), "README.md does not show docs/plugin.png"
    with Image.open(docs) as image:
        assert image.format == "PNG", image.format
        image.load()  # every chunk decodes (a truncated file fails here)
        width, height = image.size
        pixels = np.asarray(image.convert("L"), np.float32)
    assert 800 <= width <= 4000 and 400 <= height <= 8000, (width, height)  # a browser window, not an icon
    assert pixels.std() > 10 and len(np.unique(pixels)) > 50, "docs/plugin.png is (nearly) blank"


def test_the_tab_decodes_every_float16_exactly(open_tab):
    """The array route's float16 (see the plugin's notes): every bit pattern decodes in the
    browser to numpy's value times its sample's scale, NaN, infinities and subnormals included."""
    page, _, problems = open_tab()
    frame = next(frame for frame in page.frames if "plugin_entry" in frame.url)
    scale = [1.0, float(np.float32(0.3))]
    decoded = frame.evaluate(
        """async (scale) => {
          const { decode } = await import("/data/plugin/tf_explain_kit/static/api.js");
          const bits = new Uint16Array(2 << 16).map((_, i) => i & 0xffff);
          return Array.from(decode({ dtype: "float16", shape: [2, 1 << 16], scale }, bits.buffer));
        }""",
        scale,
    )
    halves = np.arange(1 << 16, dtype=np.uint16).view(np.float16).astype(np.float32)
    with np.errstate(invalid="ignore"):  # NaN times the scale
        expected = np.concatenate([halves, halves * np.float32(scale[1])])
    np.testing.assert_array_equal(np.asarray(decoded, np.float32), expected)
    assert problems == []
