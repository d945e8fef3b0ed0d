"""The served page in a real browser: Debian's chromium, driven by Playwright.

    python serve_page.py BASE_URL PHOTO SCREENSHOT

Opens BASE_URL, uploads PHOTO through the file input and waits for its class and the top-5
chart, turns the heatmap on, then uploads a text file named .jpg and waits for the error.
Prints one JSON line (what the page showed) and saves SCREENSHOT of the answer at phone width
and desktop width. Exits 3 when no chromium is installed (the caller reports a skip).
"""
import json, os, shutil, sys, tempfile

from playwright.sync_api import sync_playwright

base, photo, shot = sys.argv[1], sys.argv[2], sys.argv[3]
chromium = os.environ.get("FASTVISION_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
if not os.path.exists(chromium):
    print(f"no chromium at {chromium}", file=sys.stderr)
    sys.exit(3)

out = {}
with sync_playwright() as p, tempfile.TemporaryDirectory() as profile:
    # The flags keep chromium off the network it would otherwise call at start-up.
    browser = p.chromium.launch_persistent_context(
        profile,
        executable_path=chromium,
        headless=True,
        args=["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
              "--disable-background-networking", "--disable-component-update", "--disable-sync"],
        viewport={"width": 1000, "height": 760},
    )
    page = browser.new_page()
    errors = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(base + "/")
    page.wait_for_selector("#model:has-text('classes')")
    out["model_line"] = page.inner_text("#model")

    # Keyboard: the picker is reachable with Tab.
    page.keyboard.press("Tab")
    out["focused"] = page.evaluate("document.activeElement.id")

    page.set_input_files("#file", photo)
    # The bars are drawn together, with the class.
    page.wait_for_selector("#bars .bar")
    out["class"] = page.inner_text("#cls")
    out["prob"] = page.inner_text("#prob")
    out["bars"] = page.eval_on_selector_all("#bars .name", "els => els.map(e => e.textContent)")
    out["timing"] = page.inner_text("#timing")

    page.click("#why")
    page.wait_for_function("document.getElementById('preview').src.startsWith('data:image/png')")
    out["heatmap_pressed"] = page.get_attribute("#why", "aria-pressed")
    page.wait_for_function("document.getElementById('preview').naturalWidth > 0")
    out["heatmap_size"] = page.evaluate("[document.getElementById('preview').naturalWidth, document.getElementById('preview').naturalHeight]")
    page.screenshot(path=shot, full_page=True)

    page.set_viewport_size({"width": 390, "height": 844})
    out["phone_overflow"] = page.evaluate("document.documentElement.scrollWidth > window.innerWidth")
    page.screenshot(path=shot.replace(".png", "-phone.png"), full_page=True)
    page.set_viewport_size({"width": 1000, "height": 760})

    with tempfile.NamedTemporaryFile(suffix=".jpg", delete=False) as f:
        f.write(b"this is a text file, not a photo\n")
        fake = f.name
    page.set_input_files("#file", fake)
    page.wait_for_selector("#error:not([hidden])")
    out["error"] = page.inner_text("#error")
    out["result_hidden"] = page.get_attribute("#result", "hidden") is not None
    os.unlink(fake)
    out["page_errors"] = errors
    browser.close()
print("PAGE_JSON " + json.dumps(out))
