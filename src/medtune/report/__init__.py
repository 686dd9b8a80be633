"""Reports rendered from results.json and the saved predictions: report.md and report.html."""

from __future__ import annotations

from pathlib import Path


def write_reports(run_dir: Path, results: dict) -> None:
    """RUN/report.md and RUN/report.html (no model is loaded)."""
    from ..io import write_text
    from .examples import all_examples
    from .html import render_html
    from .markdown import render_markdown

    examples = all_examples(Path(run_dir), results)
    write_text(Path(run_dir) / "report.md", render_markdown(results, examples))
    write_text(Path(run_dir) / "report.html", render_html(results, examples))
