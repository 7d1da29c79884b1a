"""The manual: the generated config reference is current, every relative link resolves, and the
README's quick start is the two commands. Fast: no training, no Hydra, no subprocess."""

from __future__ import annotations

import importlib.util
import re
import sys
from functools import cache
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
PAGES = [README, *sorted((REPO / "docs").glob("*.md"))]
LINK = re.compile(r"(?<!!)\[[^\]]*\]\(([^)\s]+)\)|!\[[^\]]*\]\(([^)\s]+)\)")
"""Markdown links and images: ``[text](target)``, ``![alt](target)``."""


@cache
def _config_reference():
    """scripts/config_reference.py as a module (scripts/ is not a package)."""
    path = REPO / "scripts" / "config_reference.py"
    spec = importlib.util.spec_from_file_location("config_reference", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_config_reference_is_current(capsys):
    assert _config_reference().main(["--check"]) == 0, capsys.readouterr().err


def test_config_reference_check_fails_on_a_stale_file(tmp_path, monkeypatch, capsys):
    reference = _config_reference()
    stale = tmp_path / "config-reference.md"
    stale.write_text(reference.render().replace("| `seed` |", "| `sed` |"))
    monkeypatch.setattr(reference, "OUTPUT", stale)
    monkeypatch.setattr(reference, "ROOT", tmp_path)
    assert reference.main(["--check"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "stale" in err and "make docs" in err


def test_config_reference_covers_every_schema_section():
    reference = _config_reference()
    text = reference.render()
    classes = reference.read_schema(reference.SCHEMA.read_text())
    for field in classes[reference.ROOT_CLASS].fields:
        if field.name in reference.SKIP_SECTIONS:
            continue
        assert f"`{field.name}" in text, field.name
    assert "| `train.max_steps` | `int \\| None` | `null` | Train exactly" in text


def _anchors(page: Path) -> set[str]:
    """GitHub's heading anchors of a Markdown page."""
    anchors = set()
    in_code = False
    for line in page.read_text().splitlines():
        if line.startswith("```"):
            in_code = not in_code
        elif not in_code and line.startswith("#"):
            title = line.lstrip("#").strip().lower()
            anchors.add(re.sub(r"[^\w\- ]", "", title).replace(" ", "-"))
    return anchors


def _links(page: Path) -> list[str]:
    text = re.sub(r"```.*?```", "", page.read_text(), flags=re.S)  # not inside code blocks
    text = re.sub(r"`[^`\n]*`", "", text)  # nor code spans
    return [a or b for a, b in LINK.findall(text)]


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(REPO)))
def test_relative_links_resolve(page):
    broken = []
    for target in _links(page):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target):  # http:, https:, mailto:
            continue
        path, _, anchor = target.partition("#")
        file = (page.parent / path).resolve() if path else page
        if not file.exists():
            broken.append(f"{target} (no such file)")
        elif anchor and file.suffix == ".md" and anchor not in _anchors(file):
            broken.append(f"{target} (no such heading)")
    assert not broken, f"{page.name}: {broken}"


def test_link_check_can_fail(tmp_path):
    page = tmp_path / "page.md"
    page.write_text("# Title\n[ok](#title) [gone](missing.md) [bad](#nowhere)\n")
    assert _links(page) == ["#title", "missing.md", "#nowhere"]
    assert "title" in _anchors(page) and "nowhere" not in _anchors(page)


def test_readme_quick_start_is_the_two_commands():
    sections = re.split(r"^## ", README.read_text(), flags=re.M)
    first = sections[1]
    assert first.lower().startswith("quick start"), first.splitlines()[0]
    assert set(re.findall(r"\bmake [\w-]+", first)) == {"make train", "make test"}


def test_every_schema_field_has_a_docstring():
    reference = _config_reference()
    classes = reference.read_schema(reference.SCHEMA.read_text())
    missing = [
        f"{cls.name}.{f.name}"
        for cls in classes.values()
        for f in cls.fields
        if not f.doc and reference._schema_class(classes, f.annotation) is None
    ]
    assert not missing, f"fields without a docstring (the config reference's meaning): {missing}"
