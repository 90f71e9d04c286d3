"""`discovery export`: the winner as a standalone module (self-test, TRL adapter) and as JSON.

The exported module is run in a fresh virtualenv without our package. The CI variant builds that venv in
seconds from the installed torch/trl (their site-packages on a .pth path, `discovery` blocked by an import
hook); the slow variant (`pytest -m slow tests/test_export.py`) pip-installs torch==2.13.0 and trl==1.16.0
into a bare venv (82 s with a warm pip cache, 9 min with a cold one on a loaded 2-core machine).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from conftest import run_cli
from test_inspect_fixtures import build_archive

from discovery.archive import Archive

BLOCKER = textwrap.dedent("""
    import sys

    class _BlockDiscovery:
        def find_spec(self, name, path=None, target=None):
            if name == "discovery" or name.startswith("discovery."):
                raise ModuleNotFoundError(f"No module named {name!r} (blocked in this venv)", name=name)
            return None

    sys.meta_path.insert(0, _BlockDiscovery())
""")

TRAIN_ONE_STEP = textwrap.dedent("""
    import copy, sys
    import torch
    import my_loss

    assert "trl" not in sys.modules, "trl is imported only inside make_dpo_trainer_class()"
    assert not [m for m in sys.modules if m == "discovery" or m.startswith("discovery.")]
    from datasets import Dataset
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast
    from trl import DPOConfig, DPOTrainer

    words = [f"w{i}" for i in range(24)]
    vocab = {"<pad>": 0, "<bos>": 1, "<eos>": 2, "<unk>": 3, **{w: i + 4 for i, w in enumerate(words)}}
    core = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok = PreTrainedTokenizerFast(tokenizer_object=core, pad_token="<pad>", bos_token="<bos>", eos_token="<eos>",
                                  unk_token="<unk>")
    config = LlamaConfig(vocab_size=len(vocab), hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                         num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=64, pad_token_id=0,
                         bos_token_id=1, eos_token_id=2, attn_implementation="eager")
    data = Dataset.from_dict({
        "prompt": [" ".join(words[i:i + 3]) for i in range(8)],
        "chosen": [" " + " ".join(words[i + 3:i + 6]) for i in range(8)],
        "rejected": [" " + " ".join(words[i + 10:i + 12]) for i in range(8)],
    })
    Trainer = my_loss.make_dpo_trainer_class()
    assert issubclass(Trainer, DPOTrainer) and Trainer.__name__.endswith("DPOTrainer")
    zero = torch.zeros(4, dtype=torch.float64)
    expected = my_loss.LOSS(zero, zero, zero, zero, 0.1).mean().item()  # policy == reference: margin 0
    for precompute in (False, True):
        torch.manual_seed(0)
        model = LlamaForCausalLM(config)
        before = [p.detach().clone() for p in model.parameters()]
        args = DPOConfig(output_dir=sys.argv[1], max_steps=1, per_device_train_batch_size=4, learning_rate=1e-2,
                         use_cpu=True, report_to=[], logging_steps=1, save_strategy="no", beta=0.1, max_length=32,
                         precompute_ref_log_probs=precompute, dataloader_num_workers=0)
        ref = None if precompute else copy.deepcopy(model)
        trainer = Trainer(model=model, ref_model=ref, args=args, train_dataset=data, processing_class=tok)
        result = trainer.train()
        changed = any(not torch.equal(a, b) for a, b in zip(before, model.parameters()))
        logged = trainer.state.log_history[0]
        assert result.global_step == 1 and changed, (result, changed)
        assert abs(logged["loss"] - expected) < 1e-4, (logged["loss"], expected)
        assert "rewards/margins" in logged
        print("TRAINED", precompute, logged["loss"], expected)
""")


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """A validated archive (probe values from the real sandbox) and its `--best` export, module and JSON."""
    root = tmp_path_factory.mktemp("export")
    ids = build_archive(root / "run", validated=True)
    module = root / "out" / "my_loss.py"
    out = run_cli("export", str(root / "run"), "--best", "-o", str(module))
    assert out.returncode == 0, out.stderr
    out_json = run_cli("export", str(root / "run"), "--best", "-o", str(root / "out" / "my_loss.json"),
                       "--format", "json")
    assert out_json.returncode == 0, out_json.stderr
    return root, ids, module, out.stderr


def _site_packages_of(*modules: str) -> list[str]:
    import importlib

    dirs = []
    for name in modules:
        origin = Path(importlib.import_module(name).__file__).resolve()
        dirs.append(str(origin.parents[1]))
    return list(dict.fromkeys(dirs))


@pytest.fixture(scope="module")
def fresh_venv(tmp_path_factory) -> Path:
    """A new venv that sees torch/trl/transformers/datasets but cannot import `discovery`."""
    venv = tmp_path_factory.mktemp("fresh") / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=300)
    python = venv / "bin" / "python"
    purelib = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                             capture_output=True, text=True, check=True).stdout.strip()
    deps = _site_packages_of("torch", "trl", "transformers", "datasets", "tokenizers", "accelerate")
    (Path(purelib) / "deps.pth").write_text("\n".join(deps) + "\n")
    (Path(purelib) / "_block_discovery.py").write_text(BLOCKER)
    (Path(purelib) / "zz_block_discovery.pth").write_text("import _block_discovery\n")
    return python


def _run(python: Path, args: list[str], cwd: Path, timeout: float = 600) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    return subprocess.run([str(python), *args], capture_output=True, text=True, cwd=cwd, env=env, timeout=timeout)


def test_best_is_the_lower_confidence_bound_winner_after_reevaluation_and_says_so(exported):
    root, ids, module, message = exported
    text = module.read_text()
    assert "re-evaluation" in message and "lower 95% confidence bound" in message
    with Archive.open(root / "run", readonly=True) as archive:
        winner = archive.summary(ids["smooth_hinge"])
        child = archive.summary(ids["log_cosh"])  # higher mean, wider interval, never re-evaluated
    assert child.fitness.mean > winner.fitness.mean and child.lcb < winner.lcb
    assert f"Candidate #{ids['smooth_hinge']} \"smooth_hinge\"" in text
    assert "def smooth_hinge_loss(" in text and "Selection: best by the lower 95% confidence bound" in text
    assert f"{winner.fitness.mean:.4f} ± {winner.fitness.half_width:.4f}" in text
    assert "Thought (the proposer's rationale):\n    Add a hinge" in text
    assert winner.candidate.latex and winner.candidate.latex in text and winner.candidate.sympy in text
    for needle in ("Versions when trained:", '"trl": "', "Task config:", "Training config:", str(root / "run")):
        assert needle in text, needle
    imports = [line for line in text.splitlines() if line.startswith(("import ", "from "))]
    assert all(line.split()[1].split(".")[0] in ("torch", "math") for line in imports), imports


def test_json_export_has_the_same_metadata_and_matching_probes(exported):
    root, ids, module, _ = exported
    doc = json.loads((module.parent / "my_loss.json").read_text())
    assert doc["candidate"]["id"] == ids["smooth_hinge"] and doc["function"] == "smooth_hinge_loss"
    with Archive.open(root / "run", readonly=True) as archive:
        s = archive.summary(ids["smooth_hinge"])
    assert doc["fitness"]["mean"] == pytest.approx(s.fitness.mean) and doc["fitness"]["n"] == s.fitness.n
    assert doc["fitness"]["seeds"] == sorted({e.result.seed for e in archive_evals(root, ids["smooth_hinge"])})
    assert doc["selftest"]["probe_values_match_archive"] is True  # sandbox now == sandbox at validation
    assert len(doc["selftest"]["cases"]) == 3 and "re-evaluation" in doc["selection"]
    assert doc["versions"]["run"]["trl"] and doc["task"]["name"] == "synthetic"


def archive_evals(root: Path, cid: int):
    with Archive.open(root / "run", readonly=True) as archive:
        return [e for e in archive.evaluations(cid, fidelity="full") if e.result.ok]


def test_exported_module_runs_in_a_fresh_venv_without_our_package(exported, fresh_venv, tmp_path):
    root, _, module, _ = exported
    work = tmp_path / "work"
    work.mkdir()
    (work / "my_loss.py").write_text(module.read_text())
    blocked = _run(fresh_venv, ["-c", "import discovery"], work)
    assert blocked.returncode != 0 and "No module named 'discovery'" in blocked.stderr
    selftest = _run(fresh_venv, ["my_loss.py"], work)
    assert selftest.returncode == 0, selftest.stdout + selftest.stderr
    assert "9/9 probe checks passed" in selftest.stdout
    (work / "train.py").write_text(TRAIN_ONE_STEP)
    trained = _run(fresh_venv, ["train.py", str(work / "out")], work)
    assert trained.returncode == 0, trained.stdout[-2000:] + trained.stderr[-4000:]
    assert trained.stdout.count("TRAINED") == 2


def test_self_test_fails_when_the_function_changes(exported, fresh_venv, tmp_path):
    _, _, module, _ = exported
    tampered = module.read_text().replace("0.1 * F.relu(1 - beta * margin)", "0.2 * F.relu(1 - beta * margin)")
    assert tampered != module.read_text()
    (tmp_path / "my_loss.py").write_text(tampered)
    out = _run(fresh_venv, ["my_loss.py"], tmp_path)
    assert out.returncode == 1 and "FAILED" in out.stdout and "loss differs" in out.stdout


def test_export_refuses_what_cannot_be_exported(exported, tmp_path):
    root, ids, _, _ = exported

    def one_line(*args: str) -> str:
        out = run_cli("export", str(root / "run"), *args, "-o", str(tmp_path / "x.py"))
        lines = [line for line in out.stderr.splitlines() if line.strip()]
        assert out.returncode == 2 and len(lines) == 1 and "Traceback" not in out.stderr, out.stderr
        return lines[0]

    assert "invalid" in one_line(str(ids["uses_os"]))
    assert f"duplicate of #{ids['smooth_hinge']}" in one_line(str(ids["copy"]))
    assert "no candidate with id 999" in one_line("999")
    assert not (tmp_path / "x.py").exists()


def test_best_needs_a_reevaluated_proposal(tmp_path):
    run_dir = tmp_path / "run"
    ids = build_archive(run_dir)
    from discovery.candidate import Status

    with Archive.open(run_dir) as archive:  # the only re-evaluated proposal fails after all
        archive.transition(ids["smooth_hinge"], Status.FAILED, "lost")
    out = run_cli("export", str(run_dir), "--best", "-o", str(tmp_path / "x.py"))
    assert out.returncode == 2 and "nothing to call best yet" in out.stderr


@pytest.mark.slow
def test_exported_module_in_a_pip_installed_venv(exported, tmp_path):
    """The real thing: a bare venv with torch==2.13.0 and trl==1.16.0 from pip (cache / local wheels)."""
    _, _, module, _ = exported
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    python = venv / "bin" / "python"
    install = _run(python, ["-m", "pip", "install", "-q", "torch==2.13.0", "trl==1.16.0"], tmp_path, timeout=3600)
    assert install.returncode == 0, install.stderr[-3000:]
    (tmp_path / "my_loss.py").write_text(module.read_text())
    assert _run(python, ["-c", "import discovery"], tmp_path).returncode != 0
    assert _run(python, ["my_loss.py"], tmp_path).returncode == 0
    (tmp_path / "train.py").write_text(TRAIN_ONE_STEP)
    trained = _run(python, ["train.py", str(tmp_path / "out")], tmp_path)
    assert trained.returncode == 0, trained.stderr[-4000:]


def test_exported_import_block_is_grouped_and_sorted_like_isort():
    from discovery.export.module import split_imports

    code = ("import torch.nn.functional as F\nimport math\nimport torch\n\n\n"
            "def f(policy_chosen_logps, policy_rejected_logps, reference_chosen_logps, reference_rejected_logps, beta):\n"
            "    return -F.logsigmoid(beta * (policy_chosen_logps - policy_rejected_logps)) * math.pi\n")
    block, body = split_imports(code)
    assert block == "import math\n\nimport torch\nimport torch.nn.functional as F"
    assert body.startswith("def f(") and "import" not in body
