"""README.md, docs/*.md and benchmarks/RESULTS.md: every relative link reaches an existing file (and heading), and
the README stays short."""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import unquote

import pytest

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
README_MAX_BYTES = 15 * 1024
_LINK = re.compile(r"(?<!!)\[[^\]\n]*\]\(([^)\s]+)\)|!\[[^\]\n]*\]\(([^)\s]+)\)")


def _prose(text: str) -> str:
  """The page without fenced code blocks and inline code (links there are not links)."""
  text = re.sub(r"^```.*?^```", "", text, flags=re.MULTILINE | re.DOTALL)
  return re.sub(r"`[^`\n]*`", "", text)


def slug(heading: str) -> str:
  """GitHub's anchor of a heading: lower case, punctuation dropped (backticks too), spaces as hyphens."""
  return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def anchors(path: Path) -> set[str]:
  text = re.sub(r"^```.*?^```", "", path.read_text(encoding="utf-8"), flags=re.MULTILINE | re.DOTALL)
  return {slug(m.group(1)) for m in re.finditer(r"^#{1,6} (.+)$", text, flags=re.MULTILINE)}


def links(path: Path) -> list[str]:
  return [a or b for a, b in _LINK.findall(_prose(path.read_text(encoding="utf-8")))]


def test_the_pages_exist():
  names = {p.name for p in PAGES}
  assert {
    "README.md",
    "install.md",
    "tasks_and_t5x.md",
    "jobs_at_scale.md",
    "prox.md",
    "askllm_density.md",
    "rho1.md",
    "models.md",
    "main_job.md",
    "benchmarks.md",
  } <= names


def test_readme_is_at_most_15_kb():
  size = (ROOT / "README.md").stat().st_size
  assert size <= README_MAX_BYTES, f"README.md is {size} bytes, over {README_MAX_BYTES}: move text to docs/"


def broken_links(page: Path) -> list[str]:
  """Relative links of ``page`` whose file (or heading, for a ``.md`` file) does not exist."""
  broken = []
  for target in links(page):
    if re.match(r"[a-z][a-z0-9+.-]*:", target):  # https:, mailto: ...
      continue
    file_part, _, anchor = target.partition("#")
    dest = (page.parent / unquote(file_part)).resolve() if file_part else page
    if not dest.exists():
      broken.append(f"{target}: no file {dest}")
    elif anchor and dest.suffix == ".md" and anchor not in anchors(dest):
      broken.append(f"{target}: no heading '#{anchor}' in {dest.name}")
  return broken


@pytest.mark.parametrize(
  "page", [*PAGES, ROOT / "benchmarks" / "RESULTS.md"], ids=lambda p: p.relative_to(ROOT).as_posix()
)
def test_relative_links_reach_existing_files_and_headings(page):
  broken = broken_links(page)
  assert not broken, f"{page.name}: " + "; ".join(broken)


def test_broken_links_are_found(tmp_path):
  (tmp_path / "other.md").write_text("# Other page\n\n## A section (`code`)\n")
  page = tmp_path / "page.md"
  page.write_text(
    "# Page\n[ok](other.md) [ok](other.md#a-section-code) [self](#page) [web](https://x.org/a)\n"
    "[gone](missing.md) [bad anchor](other.md#nope) `[code](not-a-link.md)`\n"
    "```\n[in a block](block.md)\n```\n"
  )
  assert [b.split(":")[0] for b in broken_links(page)] == ["missing.md", "other.md#nope"]


def test_the_readme_links_every_docs_page():
  linked = {(ROOT / t.partition("#")[0]).resolve() for t in links(ROOT / "README.md")}
  missing = [p.name for p in PAGES[1:] if p.resolve() not in linked]
  assert not missing, f"README.md does not link {missing}"


def test_slug_follows_github():
  assert slug("Set-up (two commands, fresh machine)") == "set-up-two-commands-fresh-machine"
  assert slug("ProX refinement (`tokensift.refine`)") == "prox-refinement-tokensiftrefine"
  assert slug("t5x launches, eval, infer") == "t5x-launches-eval-infer"
