"""The typed run config: frozen dataclasses, loadable from YAML, overridable with KEY=VALUE.

Field names follow TRL's `DPOConfig` where the concept is the same (beta, learning_rate, max_length, ...).
Defaults make `discovery run` work with no file at all. A config is never changed after it is built: its
sections are frozen, its lists are tuples and its mappings `FrozenDict`s; a changed config is a new one,
from `with_values(config, {"task.name": "imdb"})` (checked like any other) or `dataclasses.replace`.

Checking (keys with the nearest valid one, types, `Literal` choices, the one range pass) is in
`discovery.config_validate`; reading files and KEY=VALUE overrides in `discovery.config_overrides`; the
names others import (`build_dataclass`, `validate`, `read_yaml`, `parse_override`) are re-exported here.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from discovery.config_overrides import merge, parse_override, read_yaml, set_path
from discovery.config_validate import build_dataclass, validate

__all__ = ["BudgetConfig", "EvalConfig", "ExecutorConfig", "FrozenDict", "JudgeConfig", "ModelConfig",
           "ProposerConfig", "RunConfig", "SandboxConfig", "TaskConfig", "TrainConfig", "build_dataclass",
           "from_dict", "load_config", "parse_override", "read_yaml", "to_yaml", "validate", "with_values"]


class FrozenDict(dict):
    """A read-only dict (task.options, prices): JSON-serialisable as a dict, picklable, hashable."""

    def _read_only(self, *args, **kwargs):
        raise TypeError("a config mapping is read-only; derive a new config with discovery.config.with_values")

    __setitem__ = __delitem__ = __ior__ = clear = pop = popitem = setdefault = update = _read_only

    def __reduce__(self):
        return FrozenDict, (dict(self),)

    def __hash__(self) -> int:
        return hash(frozenset(self.items()))


def _freeze(value: Any) -> Any:
    if isinstance(value, Mapping):
        return FrozenDict({k: _freeze(v) for k, v in value.items()})
    if isinstance(value, list | tuple):
        return tuple(_freeze(v) for v in value)
    return value


def _plain(value: Any) -> Any:
    """Plain dicts and lists (for YAML, JSON and `from_dict`)."""
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


@dataclass(frozen=True)
class _Section:
    """Frozen, and its lists and mappings made read-only as it is built."""

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if isinstance(value, Mapping | list | tuple):
                object.__setattr__(self, f.name, _freeze(value))


@dataclass(frozen=True)
class TaskConfig(_Section):
    name: str = "synthetic"  # synthetic | hf_dpo | imdb
    model: str | None = None  # hf_dpo/imdb: hub name or local path of the policy
    revision: str | None = None
    dataset: str | None = None  # hf_dpo/imdb: hub name or local path of the preference data
    dataset_split: str = "train"
    eval_split: str | None = None
    max_samples: int | None = None
    cache_dir: str | None = None  # shared, per-task caches (SFT model, reference log-probs); default ~/.cache
    sft_dataset: str | None = None  # run an SFT stage first when set
    sft_split: str = "train"
    sft_eval_split: str | None = None  # held-out SFT loss and mean_token_accuracy when set
    sft_learning_rate: float = 2e-5
    sft_max_steps: int = -1  # -1 = sft_num_train_epochs
    sft_num_train_epochs: float = 1.0
    options: dict[str, Any] = field(default_factory=FrozenDict)  # task-specific extras (read-only)


@dataclass(frozen=True)
class ModelConfig(_Section):
    """One model of `proposer.models`: an LLM the bandit may give a proposal to (unset fields: the proposer's)."""

    model: str
    backend: Literal["llamacpp", "openai"] = "openai"
    base_url: str | None = None
    api_key_env: str = "OPENAI_API_KEY"
    prices: tuple[float, ...] = ()  # usd per 1M [prompt, completion] tokens; empty: proposer.prices / the built-in table
    temperature: float | None = None
    max_tokens: int | None = None
    n_threads: int | None = None  # llamacpp


@dataclass(frozen=True)
class ProposerConfig(_Section):
    backend: Literal["llamacpp", "openai", "replay", "symbolic"] = "llamacpp"
    model: str = "Qwen/Qwen2.5-Coder-1.5B-Instruct-GGUF:qwen2.5-coder-1.5b-instruct-q4_k_m.gguf"
    base_url: str | None = None
    api_key_env: str = "OPENAI_API_KEY"
    temperature: float = 0.8
    max_tokens: int = 1024
    timeout: float = 120.0
    max_retries: int = 3
    max_fix_attempts: int = 2
    retry_duplicates: bool = True  # an answer that trains like a stored loss uses a fix-up attempt to ask again
    context_window: int = 8192
    top_k: int = 5
    recent: int = 3
    failures: int = 3
    replay_dir: str | None = None
    # structured output where the endpoint supports it
    response_format: Literal["auto", "json_schema", "json_object", "text"] = "auto"
    n_threads: int | None = None  # llamacpp: threads of the embedded server (None: half the usable cores)
    cpu_repack: bool = False  # llamacpp: llama.cpp's weight repacking (AMX/AVX-512 buffers); crashes some VMs
    draft_tokens: int = 0  # llamacpp: prompt-lookup decoding, tokens guessed from the prompt per step (0: off)
    server_command: str | None = None  # llamacpp: what starts the server (default: python llamacpp_main.py)
    # the search (docs/proposers.md#the-search): diversity, the hybrid, several LLMs
    selection: Literal["topk_recent", "islands"] = "topk_recent"
    islands: int = 4  # selection=islands: sub-populations; proposal g belongs to island (g - 1) mod islands
    migrate_every: int = 4  # selection=islands: rounds between migrations of the run's best proposal (0: never)
    tune_constants: int = 0  # LLM backends: constant-tuned variants of each evaluated LLM proposal (0: off)
    models: tuple[ModelConfig, ...] = ()  # several LLMs in one run; replaces backend/model/base_url
    bandit: Literal["ucb1", "thompson"] = "ucb1"  # proposer.models: who writes the next proposal
    prices: dict[str, tuple[float, ...]] = field(default_factory=FrozenDict)  # model -> [usd per 1M prompt, completion]
    seed: int = 0
    # LLM proposals: the seeded mix of diff (edit one parent) / full (a fresh loss) / crossover (two parents)
    operators: dict[str, float] = field(default_factory=lambda: {"diff": 0.5, "full": 0.3, "crossover": 0.2})
    # sampling temperature per operator and for fix-ups ("fix"); an operator not named uses `temperature`
    temperatures: dict[str, float] = field(default_factory=lambda: {"fix": 0.4})


@dataclass(frozen=True)
class SandboxConfig(_Section):
    timeout: float = 20.0  # wall-clock seconds for one validation
    memory_mb: int = 2048
    cpu_seconds: int = 60
    max_file_mb: int = 16
    max_open_files: int = 64
    train_timeout: float | None = None  # wall-clock seconds for one training run; None = the task's (synthetic 600)
    train_memory_mb: int | None = None  # training address space; None = the task's (hf_dpo: no cap), 0 = no cap
    train_file_mb: int | None = None  # largest file a training run may write; None = the task's (hf_dpo: 1 TB)
    train_open_files: int | None = None  # None = the task's (hf_dpo: 4096)
    max_call_seconds: float = 0.25  # one forward+backward of the candidate at B=64
    # without bubblewrap, on a kernel without Landlock, where children stay uid 0: run untrusted code anyway
    allow_weak_isolation: bool = False

    def __post_init__(self):
        getattr(super(), "__post_init__", lambda: None)()
        if self.allow_weak_isolation:  # the sandbox runners this process starts accept it (docs/sandbox.md)
            from discovery.sandbox.isolation import allow_weak_isolation

            allow_weak_isolation(True)


@dataclass(frozen=True)
class TrainConfig(_Section):
    beta: float = 0.1
    learning_rate: float = 5e-4  # synthetic: measured with the 2-epoch regime (docs/tasks.md)
    max_steps: int = 128  # synthetic: 2 epochs over its 1024 pairs at batch 16, as DiscoPOP's inner loop; -1 = epochs
    num_train_epochs: float = 1.0
    per_device_train_batch_size: int = 16
    gradient_accumulation_steps: int = 1
    max_length: int = 64
    max_prompt_length: int | None = None  # prompt cut to this when a pair exceeds max_length; None = half
    truncation_mode: Literal["keep_end", "keep_start"] = "keep_end"  # keep_end: the prompt's end (TRL 0.8)
    lr_scheduler_type: str = "constant"
    warmup_ratio: float = 0.0
    weight_decay: float = 0.0
    bf16: bool = False
    gradient_checkpointing: bool = False
    peft: bool = False
    lora_r: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.05
    threads: int | None = None


@dataclass(frozen=True)
class JudgeConfig(_Section):
    model: str = "gpt-4"
    base_url: str | None = None
    api_key_env: str = "OPENAI_API_KEY"
    concurrency: int = 4
    max_retries: int = 3
    timeout: float = 120.0
    max_tokens: int = 2048  # FastChat's judge limit
    prices: dict[str, tuple[float, ...]] = field(default_factory=FrozenDict)  # model -> [usd per 1M prompt, completion]
    cache_dir: str | None = None  # judgment cache; default ~/.cache/discovery/mtbench


@dataclass(frozen=True)
class EvalConfig(_Section):
    # up to 9 seeds raced in rungs of 3, 6, 9 at each of 3 betas, scored at the best one: 96.7% agreement with the
    # 10-seed verdict vs 74.9% for one beta and 3 seeds (bench/fitness_defaults.py, docs/tasks.md "Evidence")
    seeds: int = 9
    betas: tuple[float, ...] = (0.05, 0.1, 0.2)  # beta sweep; empty = the train beta only
    # one fitness from the sweep: best_beta | matched_kl | pooled (discovery/inner_loop/sweep.py)
    fitness: Literal["best_beta", "matched_kl", "pooled"] = "best_beta"
    # comparisons with DPO by seed: t (paired, n-1 df) | permutation (sign-flip)
    paired_test: Literal["t", "permutation"] = "t"
    screen: bool = True  # screen new candidates at low fidelity first
    screen_seeds: int = 1
    screen_steps_fraction: float = 0.5
    promote_fraction: float = 0.34
    reeval_seeds: int = 5  # fresh seeds before a candidate may be called best
    # racing over seeds (discovery/racing.py): a proposal's full evaluation runs in rungs of
    # racing_first_seeds, 2x, ... up to eval.seeds seeds and stops once clearly worse than DPO or the incumbent
    racing: Literal["off", "paired_t"] = "paired_t"
    racing_first_seeds: int = 3
    # task instances (task.options.seed) the re-evaluated winner must also beat or tie DPO on (synthetic task)
    heldout_instances: tuple[int, ...] = ()
    duplicate_distance: float = 1e-3  # gradient-probe distance under which a proposal duplicates a stored loss
    # library losses evaluated in the same harness at the start of every run (cached per task config)
    baselines: tuple[str, ...] = ("dpo", "slic", "ipo", "lrml")
    judge: JudgeConfig = field(default_factory=JudgeConfig)
    mtbench_source: str | None = None  # URL prefix or local directory of the MT-Bench files
    mtbench_questions: int | None = None
    mtbench_max_new_tokens: int = 1024  # FastChat's answer limit
    mtbench_backend: Literal["auto", "hf", "vllm"] = "auto"  # auto: vLLM when installed, else HF generate
    vllm_gpu_memory_utilization: float = 0.9  # fraction of the GPU vLLM may take for MT-Bench answers


@dataclass(frozen=True)
class ExecutorConfig(_Section):
    name: Literal["local", "ray"] = "local"
    workers: int | None = None  # None = best layout for this machine
    threads_per_worker: int | None = None
    address: str | None = None  # ray: cluster address; None = local Ray
    gpus_per_worker: float = 0.0
    processes_per_candidate: int = 1  # training ranks per candidate (DDP over loopback; one GPU each on GPUs)
    accelerate_config: str | None = None  # your accelerate config file (FSDP/DeepSpeed) for the training ranks
    checkpoint_dir: str | None = None  # where trained checkpoints wait for scoring; None = <run_dir>/checkpoints
    keep_checkpoints: int = 0  # keep the checkpoints of the N best-scoring evaluations; the rest are deleted


@dataclass(frozen=True)
class BudgetConfig(_Section):
    proposals: int = 20
    wall_time: float | None = 900.0  # seconds
    max_cost_usd: float | None = None
    max_tokens: int | None = None


@dataclass(frozen=True)
class RunConfig(_Section):
    task: TaskConfig = field(default_factory=TaskConfig)
    proposer: ProposerConfig = field(default_factory=ProposerConfig)
    sandbox: SandboxConfig = field(default_factory=SandboxConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    executor: ExecutorConfig = field(default_factory=ExecutorConfig)
    budget: BudgetConfig = field(default_factory=BudgetConfig)
    run_dir: str | None = None  # None = runs/<timestamp>
    seed: int = 0
    # trackers, as TRL's report_to: none | all | tensorboard | wandb (discovery.tracking)
    report_to: tuple[str, ...] = ()

    def training_betas(self) -> tuple[float, ...]:
        """The betas a candidate trains at: the sweep (`eval.betas`), else `train.beta` alone."""
        return tuple(self.eval.betas) or (self.train.beta,)

    def to_dict(self) -> dict[str, Any]:
        """Plain data (dicts, lists): YAML, JSON, the archive, the workers; `from_dict` reads it back."""
        return _plain(dataclasses.asdict(self))


# ---------------------------------------------------------------- building from plain data


def from_dict(data: dict[str, Any] | None) -> RunConfig:
    """The config from plain data (YAML, overrides, a stored run): keys and types checked, then `validate`."""
    return validate(build_dataclass(RunConfig, data or {}))


# ---------------------------------------------------------------- files and overrides


def load_config(path: str | Path | None = None, overrides: list[str] | None = None,
                base: RunConfig | None = None) -> RunConfig:
    """THE override path: `base` (default: the defaults), then the YAML file merged on top, then each
    KEY=VALUE override, built and validated together (`from_dict`)."""
    data = base.to_dict() if base is not None else {}
    if path:
        merge(data, read_yaml(path))
    for text in overrides or []:
        set_path(data, *parse_override(text))
    return from_dict(data)


def with_values(config: RunConfig, values: Mapping[str, Any]) -> RunConfig:
    """A new config: `config` with each dotted key set, e.g. {"task.name": "imdb"}; checked as `from_dict`."""
    data = config.to_dict()
    for key, value in values.items():
        set_path(data, key.split("."), _plain(value))
    return from_dict(data)


def to_yaml(config: RunConfig) -> str:
    return yaml.safe_dump(config.to_dict(), sort_keys=False)
