"""`discovery mtbench MODEL_PATH`: score any saved model on MT-Bench with an OpenAI-compatible judge."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn
from rich.table import Table

from discovery.commands.common import add_config_args, config_from_args, print_json


def register(subparsers) -> None:
    p = subparsers.add_parser("mtbench", help="score a saved model on MT-Bench with an LLM judge")
    p.add_argument("model_path", metavar="MODEL_PATH", help="a saved HF model folder or hub name")
    p.add_argument("--judge-model", help="judge model name (eval.judge.model, default gpt-4)")
    p.add_argument("--judge-base-url", help="OpenAI-compatible endpoint of the judge (eval.judge.base_url)")
    p.add_argument("--questions", type=int, help="only the first N questions (eval.mtbench_questions)")
    p.add_argument("--out", help="folder for answers, judgments and score.json (default MODEL_PATH/mtbench)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", action="store_true", help="print the score as JSON")
    add_config_args(p)
    p.set_defaults(func=run)


def run(args) -> int:
    from discovery.mtbench import answers
    from discovery.mtbench import score as mtbench

    config = config_from_args(args, {"judge_model": "eval.judge.model", "judge_base_url": "eval.judge.base_url",
                                     "questions": "eval.mtbench_questions"})
    console = Console(stderr=True)
    out = Path(args.out) if args.out else Path(args.model_path) / "mtbench"
    mtbench.load_data(config)  # a missing or unreachable question source fails before the model loads
    model = tokenizer = None
    if answers.backend(config.eval.mtbench_backend, args.model_path) == "hf":  # vLLM loads the model itself
        model, tokenizer = _load(args.model_path, config)
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), console=console,
                  transient=True) as bar:
        tasks: dict[str, int] = {}

        def progress(stage: str, done: int, total: int) -> None:
            if stage not in tasks:
                tasks[stage] = bar.add_task(stage, total=total)
            bar.update(tasks[stage], completed=done, total=total)

        result = mtbench.score(config, model, tokenizer, out, model_path=args.model_path, seed=args.seed,
                               progress=progress)
    if args.json:
        print_json(result.to_dict())
        return 0
    table = Table(title=f"MT-Bench: {args.model_path} (judge {result.judge_model})")
    for col in ("turn 1", "turn 2", "overall", "rated", "missing", "judge tokens", "cost USD"):
        table.add_column(col)
    fmt = lambda v: "-" if v is None else f"{v:.2f}"  # noqa: E731
    table.add_row(fmt(result.turn1), fmt(result.turn2), fmt(result.overall), str(result.rated),
                  str(result.missing), f"{result.prompt_tokens + result.completion_tokens}",
                  f"{result.cost_usd:.4f}")
    Console().print(table)
    console.print(f"answers, judgments and score.json in {out}")
    return 0


def _load(model_path: str, config):
    """The model for HF generate, on the GPU when there is one, in bf16 when train.bf16 is on."""
    from discovery.inner_loop import recipe
    from discovery.inner_loop.hf_data import load_policy

    model, tokenizer = load_policy(model_path, config.task.revision,
                                   recipe.weights_dtype(config.train, for_training=False))
    return model.to(recipe.device()), tokenizer
