"""medtune review in a real browser: headless Chromium driven by Selenium against the app under uvicorn.

Two reviewers judge a copy of the tiny study, one by mouse and keyboard (a grade, an unsafe flag with its
reason, the reference toggled), the other closing the browser half-way and resuming in a new one; a script in
the clinical text stays text; a reviewer's page cannot post into another's queue. The judgments stored are then
checked against what was clicked. With MEDTUNE_SCREENSHOTS=1 the judging and done screens are saved as
docs/review-judging.png and docs/review-done.png.
"""

from __future__ import annotations

import os
import re
import shutil
import time
from pathlib import Path

import pytest

from medtune.cli import app as cli_app
from medtune.data import bundled_path
from medtune.io import read_json, read_jsonl, write_json, write_jsonl
from medtune.review import store
from medtune.review.app import build_app
from medtune.review.queue import load_items
from medtune.tasks import get_task
from servers import running

CHROMIUM, CHROMEDRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")
DOCS = Path(__file__).resolve().parent.parent / "docs"
TASK = "text_classification"
PAIR = ("sft", "dpo")
PAYLOAD = "<script>window.__pwned=1</script>"
PAYLOAD_ITEM = "tc-test-0016"
STAGE_WORDS = re.compile(r"\b(base|sft|dpo)\b", re.IGNORECASE)

webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed (pip install -e '.[test]')")
# in CI the browser is part of the set-up (make install): there a missing one fails the test instead
pytestmark = pytest.mark.skipif(not (CHROMIUM.is_file() and CHROMEDRIVER.is_file()) and os.environ.get("CI") != "true",
                                reason="needs Debian's chromium and chromium-driver (/usr/bin/chromium, "
                                       "/usr/bin/chromedriver); `make install` installs them")

from selenium.webdriver import ActionChains, Keys  # noqa: E402
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.common.exceptions import StaleElementReferenceException  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402


def browser():
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1280,900",
                "--disable-gpu", "--no-first-run", "--disable-extensions", "--force-device-scale-factor=1"):
        options.add_argument(arg)
    driver = webdriver.Chrome(options=options, service=Service(str(CHROMEDRIVER)))
    driver.set_window_size(1280, 900)
    return driver




def prepare(run: Path) -> None:
    """Readable answers (the tiny model's are noise), and the payload in one item's note and one answer."""
    info_file = run / TASK / "data.json"
    rows = read_jsonl(bundled_path(get_task(TASK), "test"))
    for row in rows:
        if row["id"] == PAYLOAD_ITEM:
            row["input"] = f"Encounter 3/2/2024\n{PAYLOAD}\nSocial history: never smoked."
    write_jsonl(run / "test.jsonl", rows)
    write_json(info_file, {**read_json(info_file), "test_file": str(run / "test.jsonl"), "bundled": False})
    others = {"current smoker": "former smoker", "former smoker": "never smoker", "never smoker": "current smoker"}
    for stage in PAIR:
        path = run / TASK / stage / "predictions.jsonl"
        preds = read_jsonl(path)
        for n, r in enumerate(preds):
            if stage == "sft":
                r["output"] = r["gold"] if n % 2 else others[r["gold"]]
            else:
                r["output"] = f"{r['gold'].capitalize()}. The note dates the patient's last tobacco use; the rule " \
                              "decides by the time since quitting."
            if r["id"] == PAYLOAD_ITEM and stage == "sft":
                r["output"] = f"never smoker {PAYLOAD}"
        write_jsonl(path, preds)


class Page:
    """One reviewer's browser on the judging screen."""

    def __init__(self, driver, url: str):
        self.driver, self.url = driver, url
        # generous, for shared and slow CI machines; an element read while the next page replaces it is read again
        self.wait = WebDriverWait(driver, 60, ignored_exceptions=[StaleElementReferenceException])
        self.seen_payload = False

    def open(self, url: str | None = None) -> None:
        self.driver.get(url or self.url)
        self.check()

    def check(self) -> None:
        """What every page must hold: no injected script ran, no stage name is shown."""
        assert self.driver.execute_script("return typeof window.__pwned") == "undefined"
        body = self.driver.find_element(By.TAG_NAME, "body").text
        # the page but the texts judged (which may say anything): its words, and every attribute of every element
        rest = self.driver.execute_script(
            "const page = document.documentElement.cloneNode(true);"
            "page.querySelectorAll('.text').forEach(e => e.remove());"
            "return page.textContent + ' ' + [...page.querySelectorAll('*')]"
            ".map(e => [...e.attributes].map(a => a.name + '=' + a.value).join(' ')).join(' ');")
        assert not STAGE_WORDS.search(rest)
        if PAYLOAD in body:
            self.seen_payload = True
            assert self.driver.find_elements(By.TAG_NAME, "script")[0].get_attribute("src").endswith("/review.js")
            assert len(self.driver.find_elements(By.TAG_NAME, "script")) == 1

    def item(self) -> str:
        return self.driver.find_element(By.CSS_SELECTOR, "input[name=item]").get_attribute("value")

    def progress(self) -> str:
        return self.driver.find_element(By.ID, "progress").text

    def keys(self, *keys: str) -> None:
        chain = ActionChains(self.driver)
        for key in keys:
            if key.startswith("shift+"):
                chain.key_down(Keys.SHIFT).send_keys(key[6:]).key_up(Keys.SHIFT)
            else:
                chain.send_keys(key)
        chain.perform()

    def click(self, css: str) -> None:
        self.driver.find_element(By.CSS_SELECTOR, css).click()

    def submitted(self, before: str) -> None:
        """Wait for the next page after a submit from the item ``before``."""
        self.wait.until(lambda d: d.find_elements(By.ID, "progress") and (
            not d.find_elements(By.CSS_SELECTOR, "input[name=item]") or self.item() != before))
        self.check()


def shot(driver, name: str) -> None:
    """The page at a 1280x900 viewport, from its top, into docs/ (with MEDTUNE_SCREENSHOTS=1 only)."""
    if os.environ.get("MEDTUNE_SCREENSHOTS") == "1":
        chrome = driver.execute_script("return [window.outerWidth - window.innerWidth, "
                                       "window.outerHeight - window.innerHeight]")
        driver.set_window_size(1280 + chrome[0], 900 + chrome[1])
        driver.execute_script("window.scrollTo(0, 0)")
        assert driver.save_screenshot(str(DOCS / name))


def test_two_reviewers_judge_in_a_real_browser(tiny_study, tmp_path):
    run = Path(shutil.copytree(tiny_study, tmp_path / "run", ignore=shutil.ignore_patterns("model")))
    prepare(run)
    db = store.init_db(run)
    tokens = store.ensure_reviewers(db, ["alice", "bob"])
    app = build_app(db, load_items(run, None, PAIR), PAIR)
    expected = {}  # item -> (choice, grades by side, unsafe by side, reason): what alice clicked and typed
    with running(app) as base_url:
        alice = Page(browser(), f"{base_url}/r/{tokens['alice']}")
        try:
            alice.open()
            assert alice.progress() == "0 / 8 judged" and alice.driver.title.startswith("Item 1 of 8")
            csp = alice.driver.execute_script(
                "return fetch(location.href).then(r => r.headers.get('content-security-policy'))")
            assert csp.startswith("default-src 'self'")

            # 1, by mouse: A better, grade A 4, reference opened with a click
            item = alice.item()
            reference = alice.driver.find_element(By.ID, "reference")
            assert not reference.get_attribute("open")
            alice.click("#reference summary")
            assert alice.driver.find_element(By.ID, "reference-text").is_displayed()
            alice.click("label[for=choice-a]")
            alice.click("#grade-a-4")
            shot(alice.driver, "review-judging.png")
            alice.click("#submit")
            expected[item] = ("A", {"a": 4, "b": None}, {"a": False, "b": False}, "")
            alice.submitted(item)
            assert alice.progress() == "1 / 8 judged"

            # 2, by keyboard: b, grade A 3, grade B 5 (shift+5), r hides the reference (open from item 1), Enter
            item = alice.item()
            assert alice.driver.find_element(By.ID, "reference").get_attribute("open")  # remembered
            alice.keys("b", "3", "shift+5", "r")
            assert not alice.driver.find_element(By.ID, "reference").get_attribute("open")
            assert alice.driver.find_element(By.ID, "choice-b").is_selected()
            alice.keys(Keys.ENTER)
            expected[item] = ("B", {"a": 3, "b": 5}, {"a": False, "b": False}, "")
            alice.submitted(item)

            # 3, by mouse: tie, B flagged unsafe (the reason box takes the focus), a reason typed
            item = alice.item()
            alice.click("label[for=choice-tie]")
            alice.click("#unsafe-b")
            assert alice.driver.switch_to.active_element.get_attribute("id") == "reason"
            alice.driver.find_element(By.ID, "reason").send_keys("recommends restarting a drug that was stopped")
            alice.click("#submit")
            expected[item] = ("tie", {"a": None, "b": None}, {"a": False, "b": True},
                              "recommends restarting a drug that was stopped")
            alice.submitted(item)

            # 4, by keyboard: Enter with nothing chosen is refused by the form itself; u flags A, the reason is
            # typed, Esc leaves the box, a chooses, shift+0 after shift+2 clears B's grade, Enter submits
            item = alice.item()
            alice.keys(Keys.ENTER)
            time.sleep(0.3)
            assert alice.item() == item and alice.progress() == "3 / 8 judged"
            alice.keys("u")
            assert alice.driver.find_element(By.ID, "unsafe-a").is_selected()
            alice.keys("wrong dose", Keys.ESCAPE, "a", "shift+2", "shift+0", "1", Keys.ENTER)
            expected[item] = ("A", {"a": 1, "b": None}, {"a": True, "b": False}, "wrong dose")
            alice.submitted(item)

            # 5-8: alternately keys and clicks
            for n in range(4):
                item = alice.item()
                if n % 2:
                    alice.click("label[for=choice-b]")
                    alice.click("#grade-b-2")
                    alice.click("#submit")
                    expected[item] = ("B", {"a": None, "b": 2}, {"a": False, "b": False}, "")
                else:
                    alice.keys("t", Keys.ENTER)
                    expected[item] = ("tie", {"a": None, "b": None}, {"a": False, "b": False}, "")
                alice.submitted(item)
            assert alice.progress() == "8 / 8 judged" and "All 8 items judged" in alice.driver.page_source
            shot(alice.driver, "review-done.png")
            assert alice.seen_payload  # the note with the script was shown, as text

            # going back shows the judgment made, and changing it keeps one row
            alice.open(f"{alice.url}/item/8")
            assert alice.driver.find_elements(By.ID, "previous") and not alice.driver.find_elements(By.ID, "next")
            alice.open(f"{alice.url}/item/2")
            assert alice.driver.find_element(By.ID, "choice-b").is_selected()
            assert alice.driver.find_element(By.ID, "grade-b-5").is_selected()
        finally:
            alice.driver.quit()

        # bob judges three items, closes the browser, and a new one resumes at his fourth
        bob = Page(browser(), f"{base_url}/r/{tokens['bob']}")
        try:
            bob.open()
            for _ in range(3):
                item = bob.item()
                bob.keys("a", Keys.ENTER)
                bob.submitted(item)
            fourth = bob.item()
        finally:
            bob.driver.quit()
        bob = Page(browser(), bob.url)
        try:
            bob.open()
            assert bob.item() == fourth and bob.progress() == "3 / 8 judged"
            # his link is his queue only: a wrong token finds nothing, and his form posted into alice's queue
            # is refused
            bob.open(f"{base_url}/r/{tokens['bob'][:-2]}xx")
            assert "Not found" in bob.driver.title
            bob.open()
            bob.driver.execute_script(f"document.getElementById('judge').action = '/r/{tokens['alice']}/judge'")
            bob.keys("b", Keys.ENTER)
            bob.wait.until(lambda d: "Refused" in d.title)
            bob.open()
            assert bob.item() == fourth
        finally:
            bob.driver.quit()

    rows = store.load_judgments(run)
    assert sorted(r["reviewer"] for r in rows) == ["alice"] * 8 + ["bob"] * 3
    mine = {r["item"]: r for r in rows if r["reviewer"] == "alice"}
    assert set(mine) == set(expected)
    for item, (choice, grades, unsafe, reason) in expected.items():
        r = mine[item]
        a = r["shown_as_a"]
        b = PAIR[1] if a == PAIR[0] else PAIR[0]
        assert r["stages"] == list(PAIR)
        assert r["preference"] == {"A": a, "B": b, "tie": "tie"}[choice], item
        assert r["grades"] == {a: grades["a"], b: grades["b"]}, item
        assert r["unsafe"] == {a: unsafe["a"], b: unsafe["b"]}, item
        assert r["unsafe_reason"] == reason
    assert all(r["preference"] == r["shown_as_a"] for r in rows if r["reviewer"] == "bob")
    assert fourth not in {r["item"] for r in rows if r["reviewer"] == "bob"}

    # the report rebuilt from the stored judgments shows the counts and the sign test they imply
    from scipy.stats import binomtest
    from typer.testing import CliRunner

    from medtune.report.markdown import cell
    from medtune.report.tables import fmt_p

    result = CliRunner().invoke(cli_app, ["report", str(run)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    wins, ties, losses = pooled_counts(rows)
    p = binomtest(wins, wins + losses).pvalue if wins + losses else 1.0
    text = (run / "report.md").read_text()
    section = text[text.index("### Clinician review"):]
    assert f"| DPO vs SFT | all (per-item majority) | {wins} | {ties} | {losses} | 8 | {cell(fmt_p(p))}" in section
    report = browser()
    try:
        report.get((run / "report.html").as_uri())
        heading = report.find_element(By.XPATH, "//h3[text()='Clinician review']")
        assert str(wins) in heading.find_element(By.XPATH, "following-sibling::table[1]").text
        if os.environ.get("MEDTUNE_SCREENSHOTS") == "1":
            report.set_window_size(1280, 900)
            report.execute_script("arguments[0].scrollIntoView()", heading)
            assert report.save_screenshot(str(DOCS / "review-report.png"))
    finally:
        report.quit()


def pooled_counts(rows: list[dict]) -> tuple[int, int, int]:
    """DPO vs SFT per item by majority of its reviewers (a tie counts for neither side): win, tie, loss."""
    votes: dict[str, list[str]] = {}
    for r in rows:
        votes.setdefault(r["item"], []).append(r["preference"])
    outcomes = [(v.count("dpo") > v.count("sft")) - (v.count("dpo") < v.count("sft")) for v in votes.values()]
    return outcomes.count(1), outcomes.count(0), outcomes.count(-1)
