"""The wheel ships the prompt templates and the library sources; the installed CLI works."""

import subprocess
import sys
import zipfile

import pytest
from conftest import REPO


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", str(out), str(REPO)],
        check=True, capture_output=True, text=True, timeout=300,
    )
    (path,) = out.glob("objective_discovery-*.whl")
    return path


def test_wheel_contains_prompts_and_library(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    prompt_files = {n for n in names if n.startswith("discovery/prompts/") and n.endswith(".j2")}
    shipped = {f"discovery/prompts/{p.name}" for p in (REPO / "prompts").glob("*.j2")}
    assert shipped and shipped <= prompt_files
    assert "discovery/library/losses/dpo.py" in names
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    assert "discovery = discovery.cli:main" in zipfile.ZipFile(wheel).read(entry_points).decode()


def test_templates_render_from_checkout():
    from discovery import contract
    from discovery.proposer import templates

    text = templates.render("system", contract=contract.DESCRIPTION, task_description="t", beta=0.1, betas=(),
                            fitness_description="f", params=contract.PARAMS)
    assert contract.SIGNATURE in text
    assert set(templates.names()) >= {"system", "propose", "fix"}
