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


def test_every_module_level_import_is_a_declared_dependency():
    """A plain `pip install .` must import every module: a third-party name imported at module level has to come
    from a base dependency (extras are imported inside the functions that need them). An undeclared import that
    happens to be installed here (httpx, pulled in by other packages) fails only on a user's clean install."""
    import ast
    import re
    import tomllib
    from importlib.metadata import packages_distributions

    root = REPO
    project = tomllib.loads((root / "pyproject.toml").read_text())["project"]
    declared = {re.split(r"[\s<>=!~;\[]", dep, maxsplit=1)[0].lower().replace("_", "-")
                for dep in project["dependencies"]}
    owners = packages_distributions()
    undeclared = []
    for path in sorted((root / "discovery").rglob("*.py")):
        for node in ast.parse(path.read_text()).body:  # module level only
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module] if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module
                     else [])
            for name in names:
                top = name.split(".")[0]
                if top in sys.stdlib_module_names or top == "discovery" or top == "__future__":
                    continue
                dists = {d.lower().replace("_", "-") for d in owners.get(top, [top])}
                if not dists & declared:
                    undeclared.append(f"{path.relative_to(root)}: {top} ({', '.join(sorted(dists))})")
    assert not undeclared, f"imported at module level but not a base dependency in pyproject.toml: {undeclared}"
