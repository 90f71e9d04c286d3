"""Executors: layout planning, and real isolated evaluations on the synthetic task (local and Ray)."""

from __future__ import annotations

from dataclasses import replace

import pytest

from discovery import library
from discovery.config import ExecutorConfig, load_config, with_values
from discovery.errors import ConfigError
from discovery.executors import make_executor, plan_layout
from discovery.executors.layout import Layout
from discovery.inner_loop.task import Fidelity

DIVERGING = '''import torch


def explode(policy_chosen_logps, policy_rejected_logps, reference_chosen_logps, reference_rejected_logps, beta):
    margin = (policy_chosen_logps - reference_chosen_logps) - (policy_rejected_logps - reference_rejected_logps)
    return torch.sqrt(-1.0 - margin.abs())  # NaN from the first step
'''


def test_default_layout_is_one_single_thread_worker_per_core_on_cpu():
    assert plan_layout(ExecutorConfig(), cpus=2, gpus=()) == Layout(2, 1)
    assert plan_layout(ExecutorConfig(), cpus=64, gpus=()).workers == 8


def test_configured_layouts_split_the_threads():
    assert plan_layout(ExecutorConfig(workers=1), cpus=2, gpus=()) == Layout(1, 2)
    assert plan_layout(ExecutorConfig(threads_per_worker=2), cpus=4, gpus=()) == Layout(2, 2)


def test_one_worker_per_gpu_with_cuda_visible_devices():
    layout = plan_layout(ExecutorConfig(), cpus=16, gpus=("0", "3"))
    assert layout.workers == 2 and layout.gpu_of(0) == "0" and layout.gpu_of(1) == "3"
    assert layout.threads_per_worker == 8


def test_bad_layouts_are_config_errors():
    with pytest.raises(ConfigError, match="executor.workers"):
        plan_layout(ExecutorConfig(workers=0), cpus=2, gpus=())


def test_unknown_executor_is_a_config_error():
    # refused when the config is built, before any worker starts, with the choices and the nearest one
    with pytest.raises(ConfigError, match="executor.name must be one of local, ray, got 'slurm'"):
        load_config(None, ["executor.name=slurm"])
    with pytest.raises(ConfigError, match="did you mean 'local'"):
        load_config(None, ["executor.name=loca"])


def test_make_executor_refuses_an_unregistered_name():
    config = load_config(None, [])
    config = replace(config, executor=replace(config.executor, name="slurm"))  # past the config's own check:
    # the factory still names what exists
    with pytest.raises(ConfigError, match="unknown executor 'slurm'"):
        make_executor(config, Layout(1, 1))


@pytest.fixture(scope="module")
def small_config(tmp_path_factory):
    from test_loop_e2e import TINY_TASK

    from discovery.inner_loop.task import get_task

    config = load_config(None, ["train.max_steps=3", f"task.cache_dir={tmp_path_factory.getbasetemp() / 'cache'}",
                                TINY_TASK])
    get_task(config).prepare(None)
    return config


def test_local_executor_evaluates_in_parallel_and_reports_failures(small_config):
    with make_executor(small_config, Layout(2, 1)) as executor:
        good = executor.submit(1, library.get("dpo").code, 0, Fidelity(name="screen", steps_fraction=0.5))
        bad = executor.submit(2, DIVERGING, 0, Fidelity())
        good, bad = good.result(timeout=600), bad.result(timeout=600)
    assert good.ok and good.fitness is not None and good.fidelity == "screen" and good.seed == 0
    assert not bad.ok and bad.fitness is None and bad.reason


def test_ray_executor_has_the_same_interface(small_config):
    pytest.importorskip("ray")
    config = with_values(small_config, {"executor.name": "ray"})
    with make_executor(config, Layout(1, 1)) as executor:
        result = executor.submit(1, library.get("dpo").code, 0, Fidelity()).result(timeout=600)
    assert result.ok and result.fitness is not None


def visible_devices_job(payload: dict) -> dict:
    """Runs inside a sandboxed worker child: what GPU mask does it see?"""
    import os

    return {"CUDA_VISIBLE_DEVICES": os.environ.get("CUDA_VISIBLE_DEVICES")}


def test_each_worker_sees_the_gpu_assigned_to_it(small_config, monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,3")  # the host's mask; each worker gets one of them
    layout = plan_layout(small_config.executor, cpus=2)
    assert layout.gpus == ("0", "3")
    with make_executor(small_config, layout) as executor:
        seen = [slot.runner.run(f"{__name__}:visible_devices_job", {}) for slot in executor._all]
    assert [job.ok for job in seen] == [True, True], [job.error for job in seen]
    assert [job.value["CUDA_VISIBLE_DEVICES"] for job in seen] == ["0", "3"]
    import os

    assert os.environ["CUDA_VISIBLE_DEVICES"] == "0,3"  # the host's own mask is left as it was
