"""Blind, paired human review of two stages' answers (``medtune review``, docs/review.md).

    store.py    the SQLite database RUN/review/review.sqlite: reviewers, queues, judgments; load and export
    queue.py    the items to judge, read from the run directory (test examples and both stages' predictions)
    app.py      the web app (FastAPI + Jinja2 templates/, assets in static/) and its server

Importing this package loads neither FastAPI nor the models: ``load_judgments`` is all a reader of the
judgments needs.
"""

from .store import export_judgments, load_judgments

__all__ = ["export_judgments", "load_judgments"]
