"""The README and docs/: every figure and file they point at exists in the
repository, they point at nothing outside it, and the figures can be drawn
again from the committed results."""

import re

import pytest

from conftest import ROOT

PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
LINK = re.compile(r"\]\(([^)\s]+)\)")


def _local_links(page):
  for target in LINK.findall(page.read_text()):
    if re.match(r"[a-z]+://|#|mailto:", target):
      continue
    yield target.split("#")[0]


def test_the_pages_exist():
  names = {p.name for p in PAGES}
  assert {"README.md", "method.md", "baselines.md", "fidelity.md", "audit.md", "usage.md",
          "tuning.md", "scaling.md", "data.md", "results.md"} <= names


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_every_local_link_resolves_inside_the_repository(page):
  for target in _local_links(page):
    path = (page.parent / target).resolve()
    assert path.exists(), f"{page.name} links to {target}, which does not exist"
    assert ROOT.resolve() in path.parents or path == ROOT.resolve(), \
        f"{page.name} links outside the repository: {target}"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_no_reference_to_files_outside_the_repository(page):
  text = page.read_text()
  assert "../shared" not in text and "METHOD.md" not in text, page.name


def test_every_figure_shown_exists_and_is_drawn_by_the_docs_command(tmp_path):
  from experiments import figures
  shown = set()
  for page in PAGES:
    for target in _local_links(page):
      if target.endswith(".png"):
        shown.add((page.parent / target).resolve())
  assert shown, "the docs show no figure"
  drawn = {(ROOT / "docs" / "figures" / n).resolve() for n in figures.DOCS_FIGURES}
  assert shown <= drawn, f"shown but not drawn by --docs: {sorted(shown - drawn)}"
  for f in shown:
    assert f.exists() and f.stat().st_size > 10_000, f
  # The command draws every one of them again from the committed files alone.
  written = figures.draw_docs(tmp_path)
  assert sorted(p.name for p in written) == sorted(figures.DOCS_FIGURES)
  assert all(p.stat().st_size > 10_000 for p in written)


def test_readme_is_short_and_names_its_two_commands():
  text = (ROOT / "README.md").read_text()
  assert len(text.splitlines()) <= 300
  assert "python -m experiments.cifar_random_forget" in text
  assert "python -m pytest" in text
