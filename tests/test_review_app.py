"""medtune review: the web app (FastAPI's TestClient, and a real uvicorn for concurrent posts), its database and
its command. Each test reviews its own copy of the session's finished tiny study (text_classification, 8 test
items, stages base/sft/dpo)."""

from __future__ import annotations

import csv
import http.client
import json
import re
import shutil
import socket
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import urlencode

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from medtune.cli import app as cli_app
from medtune.data import bundled_path
from medtune.io import read_json, read_jsonl, write_json, write_jsonl
from medtune.review import app as review_app
from medtune.review import store
from medtune.review.app import build_app
from medtune.review.queue import load_items
from medtune.tasks import get_task
from servers import running

TASK = "text_classification"
PAIR = ("sft", "dpo")
STAGE_WORDS = re.compile(r"\b(base|sft|dpo)\b", re.IGNORECASE)
runner = CliRunner()


@pytest.fixture()
def run(tiny_study, tmp_path) -> Path:
    """A copy of the tiny study: the review writes RUN/review/ into it."""
    return Path(shutil.copytree(tiny_study, tmp_path / "run", ignore=shutil.ignore_patterns("model")))


def make_app(run: Path, names=("alice", "bob"), stages=PAIR):
    db = store.init_db(run)
    tokens = store.ensure_reviewers(db, list(names))
    return TestClient(build_app(db, load_items(run, None, stages), stages)), tokens


def hidden(html: str) -> dict:
    return dict(re.findall(r'<input type="hidden" name="(\w+)" value="([^"]*)">', html))


def judge(client, token: str, html: str | None = None, **fields):
    """Post the judging form of the page ``html`` (default: the reviewer's next item) with ``fields``."""
    html = html if html is not None else client.get(f"/r/{token}").text
    return client.post(f"/r/{token}/judge", data={**hidden(html), "choice": "A", **fields}, follow_redirects=False)


def progress(html: str) -> str:
    return re.search(r'id="progress">([^<]*)<', html).group(1)


def cli(*args):
    result = runner.invoke(cli_app, [str(a) for a in args], catch_exceptions=False)
    return result.exit_code, " ".join(result.output.split())


def plant(run: Path, item: str, input_text: str | None = None, answers: dict[str, str] | None = None) -> None:
    """Give test item ``item`` another input (in a copy of the test file the run's data.json then names) and
    stages other answers."""
    info_file = run / TASK / "data.json"
    info = read_json(info_file)
    rows = read_jsonl(bundled_path(get_task(TASK), "test"))
    for row in rows:
        if row["id"] == item and input_text is not None:
            row["input"] = input_text
    write_jsonl(run / "test.jsonl", rows)
    write_json(info_file, {**info, "test_file": str(run / "test.jsonl"), "bundled": False})
    for stage, text in (answers or {}).items():
        path = run / TASK / stage / "predictions.jsonl"
        write_jsonl(path, [{**r, "output": text} if r["id"] == item else r for r in read_jsonl(path)])


def position(run: Path, token: str, item: str, stages=PAIR) -> int:
    with store.opened(store.db_path(run)) as conn:
        reviewer = store.reviewer_by_token(conn, token)
        rows = store.queue_rows(conn, reviewer["id"], stages)
    return next(n for n, r in enumerate(rows, 1) if r["item"] == item)


# ---------------------------------------------------------------- who sees what


def test_a_token_opens_only_its_own_queue(run):
    client, tokens = make_app(run)
    alice, bob = tokens["alice"], tokens["bob"]
    assert judge(client, alice).status_code == 303
    page_a, page_b = client.get(f"/r/{alice}").text, client.get(f"/r/{bob}").text
    assert progress(page_a).startswith("1 / 8") and progress(page_b).startswith("0 / 8")
    assert bob not in page_a and "bob" not in page_a.replace(alice, "")
    assert alice not in page_b and "alice" not in page_b.replace(bob, "")
    for url in (f"/r/{alice[:-1]}x", "/r/nobody", f"/r/{alice}x/item/1", "/r/", f"/r/{alice}/item/9",
                f"/r/{alice}/item/0", f"/r/{alice}/item/one", "/docs", "/openapi.json"):
        assert client.get(url).status_code == 404, url
    # bob's queue does not take alice's form: her CSRF token is hers, and bob's judgments stay empty
    assert judge(client, bob, page_a).status_code == 403
    assert client.post(f"/r/{alice}x/judge", data=hidden(page_a) | {"choice": "A"}).status_code == 404
    rows = store.load_judgments(run)
    assert [(r["reviewer"], r["item"]) for r in rows] == [("alice", rows[0]["item"])]
    assert client.get("/").status_code == 200 and alice not in client.get("/").text


def test_csrf_missing_or_wrong_is_refused_and_nothing_is_stored(run):
    client, tokens = make_app(run)
    token = tokens["alice"]
    form = hidden(client.get(f"/r/{token}").text)
    for csrf in (None, "", "0" * 64, form["csrf"][:-1] + ("0" if form["csrf"][-1] != "0" else "1")):
        data = {k: v for k, v in form.items() if k != "csrf"} | {"choice": "A"}
        if csrf is not None:
            data["csrf"] = csrf
        assert client.post(f"/r/{token}/judge", data=data, follow_redirects=False).status_code == 403
    assert client.post(f"/r/{token}/judge", content=json.dumps({**form, "choice": "A"}),
                       headers={"content-type": "application/json"}).status_code == 415
    assert client.post(f"/r/{token}/judge", content=b"x" * 70_000,
                       headers={"content-type": "application/x-www-form-urlencoded"}).status_code == 413
    assert store.load_judgments(run) == []
    assert judge(client, token).status_code == 303 and len(store.load_judgments(run)) == 1


def test_a_post_from_another_origin_is_refused(run):
    client, tokens = make_app(run)
    token = tokens["alice"]
    data = hidden(client.get(f"/r/{token}").text) | {"choice": "A"}
    for headers in ({"origin": "http://evil.example"}, {"origin": "null"}, {"origin": "http://testserver:9999"},
                    {"referer": "http://evil.example/page"}, {"origin": "http://evil.example",
                                                              "referer": "http://testserver/r/x"}):
        response = client.post(f"/r/{token}/judge", data=data, headers=headers, follow_redirects=False)
        assert response.status_code == 403, headers
        assert "default-src 'self'" in response.headers["content-security-policy"]
    assert store.load_judgments(run) == []
    same = client.post(f"/r/{token}/judge", data=data, follow_redirects=False,
                       headers={"origin": "http://testserver", "referer": f"http://testserver/r/{token}"})
    assert same.status_code == 303 and same.headers["location"] == f"/r/{token}"


# ---------------------------------------------------------------- what is stored


def test_judging_again_replaces_the_judgment(run):
    client, tokens = make_app(run)
    token = tokens["alice"]
    first = client.get(f"/r/{token}/item/1").text
    item = hidden(first)["item"]
    assert judge(client, token, first, choice="A", grade_a="2").status_code == 303
    [row] = store.load_judgments(run)
    a = row["shown_as_a"]
    b = PAIR[1] if a == PAIR[0] else PAIR[0]
    assert (row["item"], row["preference"], row["grades"], row["unsafe"]) == \
        (item, a, {a: 2, b: None}, {a: False, b: False})
    again = client.get(f"/r/{token}/item/1").text  # going back shows the judgment made
    assert re.search(r'value="A" id="choice-a" required checked', again)
    assert re.search(r'name="grade_a" value="2" id="grade-a-2" checked', again)
    assert judge(client, token, again, choice="B", grade_a="", grade_b="5", unsafe_a="1",
                 reason="dose ten times too high").status_code == 303
    assert judge(client, token, again, choice="tie").status_code == 303
    assert judge(client, token, again, choice="B", grade_b="5", unsafe_a="1", reason="dose").status_code == 303
    [row] = store.load_judgments(run)
    assert (row["item"], row["preference"], row["grades"], row["unsafe"], row["unsafe_reason"]) == \
        (item, b, {a: None, b: 5}, {a: True, b: False}, "dose")
    # what a judgment needs: a choice, grades 1-5, a reason for an unsafe flag (and a flag for a reason)
    for fields in ({"choice": ""}, {"choice": "C"}, {"grade_a": "6"}, {"grade_b": "0"}, {"unsafe_b": "1"},
                   {"reason": "because"}, {"unsafe_a": "1", "reason": "x" * 5000}):
        response = judge(client, token, again, **fields)
        assert response.status_code == 400, fields
        assert 'class="error"' in response.text and hidden(response.text)["item"] == item
    assert [r["preference"] for r in store.load_judgments(run)] == [b]


def test_queue_order_and_sides_are_seeded_reproducible_and_balanced(run, tmp_path):
    items = [i.key for i in load_items(run, None, PAIR)]

    def queues(folder: Path, names: list[str]) -> dict[str, list[tuple[str, str]]]:
        db = store.init_db(folder)
        store.ensure_reviewers(db, names)
        out = {}
        with store.opened(db) as conn:
            for reviewer in store.all_reviewers(conn):
                store.ensure_queue(db, reviewer, PAIR, list(reversed(items)) if reviewer["id"] % 2 else items)
                out[reviewer["name"]] = [(r["item"], r["shown_as_a"])
                                         for r in store.queue_rows(conn, reviewer["id"], PAIR)]
        return out

    names = [f"reviewer-{i}" for i in range(1, 7)]
    once, twice = queues(run, names), queues(tmp_path / "elsewhere", list(reversed(names)))
    assert once == twice  # seeded by the reviewer: the same queue and sides in another database too
    orders = {tuple(item for item, _ in q) for q in once.values()}
    assert len(orders) == len(names)  # each reviewer's own order
    assert all(sorted(item for item, _ in q) == sorted(i for _, i in items) for q in once.values())
    for q in once.values():  # half the items show each stage as A
        assert [side for _, side in q].count("sft") == 4
    sides = {item: {q[n][1] for q in once.values() for n in range(8) if q[n][0] == item} for _, item in items}
    assert any(len(s) == 2 for s in sides.values())  # drawn per reviewer and item, not fixed per item
    # an item already queued keeps its side when the queue is made again with more (or fewer) items
    db = store.db_path(run)
    with store.opened(db) as conn:
        reviewer = store.all_reviewers(conn)[0]
        store.ensure_queue(db, reviewer, PAIR, items[:3])
        assert [(r["item"], r["shown_as_a"]) for r in store.queue_rows(conn, reviewer["id"], PAIR)] == \
            once[reviewer["name"]]


def test_no_stage_name_in_any_page(run):
    for stages in (PAIR, ("base", "sft"), ("dpo", "base")):
        client, tokens = make_app(run, stages=stages)
        token = tokens["alice"]
        pages = [client.get(f"/r/{token}").text]
        for _ in range(8):
            assert judge(client, token, pages[-1], choice="B", grade_a="3", unsafe_b="1",
                         reason="wrong").status_code == 303
            pages.append(client.get(f"/r/{token}").text)
        pages += [client.get(f"/r/{token}/item/{n}").text for n in (1, 8)]
        pages += [client.get(f"/static/{name}").text for name in ("review.js", "review.css", "favicon.svg")]
        pages.append(judge(client, token, pages[-4], choice="").text)  # the page again, with its error
        assert "All 8 items judged" in pages[8]
        for html in pages:
            # the texts judged may say anything; everything else must not name a stage
            assert not STAGE_WORDS.search(re.sub(r'<div class="text"[^>]*>.*?</div>', "", html, flags=re.S))
        assert "shown_as_a" not in "".join(pages)
        shutil.rmtree(run / "review")


def test_a_script_in_the_clinical_text_shows_as_text(run):
    payload = "<script>alert(1)</script>"
    item = "tc-test-0016"
    plant(run, item, f"Pt note. {payload} Social history: never smoked.", {"sft": '"><img src=x onerror=alert(2)>',
                                                                           "dpo": "ok \x15 \x00 </div>"})
    client, tokens = make_app(run)
    html = client.get(f"/r/{tokens['alice']}/item/{position(run, tokens['alice'], item)}").text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html and payload not in html
    assert "&#34;&gt;&lt;img src=x onerror=alert(2)&gt;" in html and "<img" not in html
    assert "ok \u2415 \u2400 &lt;/div&gt;" in html  # control characters shown as their pictures
    assert "<script" not in html.replace('<script src="/static/review.js" defer></script>', "")
    assert not re.search(r"<[^>]*\son[a-z]+\s*=", html, re.I)  # no inline event handler in any tag


# ---------------------------------------------------------------- concurrency, on a real server




def request(port: int, method: str, path: str, body: dict | None = None) -> tuple[int, str]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        data = urlencode(body).encode() if body is not None else None
        headers = {"content-type": "application/x-www-form-urlencoded", "origin": f"http://127.0.0.1:{port}"} \
            if body is not None else {}
        conn.request(method, path, body=data, headers=headers)
        response = conn.getresponse()
        return response.status, response.read().decode()
    finally:
        conn.close()


def test_concurrent_posts_lose_no_judgment(run):
    db = store.init_db(run)
    tokens = store.ensure_reviewers(db, ["alice", "bob"])
    items = load_items(run, None, PAIR)
    with running(build_app(db, items, PAIR)) as base:
        port = int(base.rsplit(":", 1)[1])
        csrf = {name: hidden(request(port, "GET", f"/r/{token}")[1])["csrf"] for name, token in tokens.items()}
        choices = ["A", "B", "tie", "B"]
        posts = [(name, item.item, choices[n % 4]) for name in tokens for n, item in enumerate(items)]
        posts = posts + posts  # each judgment twice, at the same time: still one row each
        barrier = threading.Barrier(16)

        def post(job):
            name, item, choice = job
            barrier.wait(timeout=30)
            return request(port, "POST", f"/r/{tokens[name]}/judge",
                           {"csrf": csrf[name], "task": TASK, "item": item, "choice": choice, "grade_b": "4"})[0]

        with ThreadPoolExecutor(16) as pool:
            statuses = list(pool.map(post, posts))
        assert statuses == [303] * len(posts)
        for token in tokens.values():
            assert progress(request(port, "GET", f"/r/{token}")[1]) == "8 / 8 judged"
    rows = store.load_judgments(run)
    assert len(rows) == 16
    assert sorted((r["reviewer"], r["item"]) for r in rows) == sorted({(n, i) for n, i, _ in posts})
    wanted = {(n, i): c for n, i, c in posts}
    for r in rows:
        a, choice = r["shown_as_a"], wanted[(r["reviewer"], r["item"])]
        b = PAIR[1] if a == PAIR[0] else PAIR[0]
        assert r["preference"] == {"A": a, "B": b, "tie": "tie"}[choice]
        assert r["grades"] == {a: None, b: 4}
    assert [r["time"] for r in rows] == sorted(r["time"] for r in rows)


# ---------------------------------------------------------------- the command


def test_export_writes_csv_and_jsonl(run, tmp_path):
    code, out = cli("review", run, "--export", tmp_path / "none.csv")
    assert code == 2 and "no review database" in out
    client, tokens = make_app(run)
    assert judge(client, tokens["alice"], choice="B", grade_a="1", unsafe_a="1",
                 reason='=HYPERLINK("x"), then\na "quote"').status_code == 303
    assert judge(client, tokens["bob"], choice="tie", grade_b="3").status_code == 303
    rows = store.load_judgments(run)
    code, out = cli("review", run, "--export", tmp_path / "j.jsonl")
    assert code == 0 and "2 judgment(s)" in out
    assert read_jsonl(tmp_path / "j.jsonl") == rows
    code, _ = cli("review", run, "--export", tmp_path / "j.csv")
    assert code == 0
    with open(tmp_path / "j.csv", newline="", encoding="utf-8") as f:
        table = list(csv.DictReader(f))
    assert list(table[0]) == store.CSV_COLUMNS and len(table) == 2
    alice = next(r for r in table if r["reviewer"] == "alice")
    first = next(r for r in rows if r["reviewer"] == "alice")
    s1, s2 = first["stages"]
    a = first["shown_as_a"]
    assert (alice["stage_1"], alice["stage_2"], alice["shown_as_a"], alice["item"]) == (s1, s2, a, first["item"])
    assert alice["preference"] == (s2 if a == s1 else s1)
    assert (alice["grade_stage_1"], alice["grade_stage_2"]) == (("1", "") if a == s1 else ("", "1"))
    assert (alice["unsafe_stage_1"], alice["unsafe_stage_2"]) == (("1", "0") if a == s1 else ("0", "1"))
    assert alice["unsafe_reason"] == "'" + '=HYPERLINK("x"), then\na "quote"'  # no formula in a spreadsheet
    code, out = cli("review", run, "--export", tmp_path / "j.xlsx")
    assert code == 2 and "j.xlsx: export to a .csv or .jsonl file" in out


def test_the_command_prints_each_link_once_and_keeps_them(run, monkeypatch):
    served = []
    monkeypatch.setattr(review_app, "serve", lambda app, host, port: served.append((app, host, port)))
    code, out = cli("review", run, "--reviewers", "alice,bob", "--port", 8123)
    assert code == 0, out
    links = dict(re.findall(r"(alice|bob): http://127\.0\.0\.1:8123/r/([A-Za-z0-9_-]+)", out))
    assert set(links) == {"alice", "bob"} and served[-1][1:] == ("127.0.0.1", 8123)
    assert "8 item(s)" in out and "warning" not in out
    client = TestClient(served[-1][0])
    assert all(client.get(f"/r/{t}").status_code == 200 for t in links.values())
    with store.opened(store.db_path(run)) as conn:  # stored hashed, never as given
        hashes = {r["token_hash"] for r in store.all_reviewers(conn)}
    assert hashes == {store.hash_token(t) for t in links.values()} and not set(links.values()) & hashes

    code, out = cli("review", run, "--host", "0.0.0.0")  # again: the same reviewers, their links unchanged
    assert code == 0 and "/r/" not in out and "alice: the link given before still works" in out
    assert "warning: binding to 0.0.0.0" in out
    client = TestClient(served[-1][0])
    assert all(client.get(f"/r/{t}").status_code == 200 for t in links.values())

    code, out = cli("review", run, "--reviewers", "bob,carol", "--new-links", "--stages", "base,dpo")
    assert code == 0
    new = dict(re.findall(r"(alice|bob|carol): http://127\.0\.0\.1:8001/r/([A-Za-z0-9_-]+)", out))
    assert set(new) == {"bob", "carol"} and new["bob"] != links["bob"]
    client = TestClient(served[-1][0])
    assert client.get(f"/r/{links['bob']}").status_code == 404  # the lost link no longer works
    assert all(client.get(f"/r/{t}").status_code == 200 for t in (links["alice"], new["bob"], new["carol"]))


def test_the_command_errors(run, tmp_path, monkeypatch):
    monkeypatch.setattr(review_app, "serve", lambda *a: pytest.fail("served despite an error"))
    (tmp_path / "empty").mkdir()
    for args, message in (
            ((tmp_path / "empty",), "not a medtune run directory (no config.yaml)"),
            ((run, "--stages", "sft,sft"), "--stages 'sft,sft': give two different stages"),
            ((run, "--stages", "sft,rlhf"), "give two different stages of base, sft, dpo"),
            ((run, "--task", "triage"), "--task triage: not a task of this run (its tasks: text_classification)"),
            ((run, "--reviewers", "0"), "--reviewers 0: give between 1 and 100 reviewers"),
            ((run, "--reviewers", "al ice"), "'al ice' is not a usable name"),
            ((run, "--reviewers", "bo,bo"), "a name appears twice")):
        code, out = cli("review", *args)
        assert code == 2 and message in out and "Traceback" not in out, (args, out)
    (run / TASK / "dpo" / "predictions.jsonl").unlink()
    code, out = cli("review", run)
    assert code == 2 and f"{run / TASK / 'dpo' / 'predictions.jsonl'}: no predictions of the dpo stage" in out
    info = read_json(run / TASK / "data.json")
    write_json(run / TASK / "data.json", {**info, "test_file": str(tmp_path / "gone.jsonl"), "bundled": False})
    code, out = cli("review", run, "--stages", "base,sft")
    assert code == 2 and f"{tmp_path / 'gone.jsonl'}: the test file" in out


def test_a_port_in_use_is_one_line(run):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        code, out = cli("review", run, "--port", port)
    assert code == 2 and f"127.0.0.1:{port}: cannot listen there" in out and "Traceback" not in out
