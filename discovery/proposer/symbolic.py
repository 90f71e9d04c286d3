"""The LLM-free control: mutate and recombine archive members and base functions into contract code.

Operators (all on Python ASTs, so they apply to any archive member, LLM-written or not):
perturb a parent's numeric constants, mix a parent with a base function (fixed weight or a sigmoid gate
on the logits), cross two parents, or build a fresh mix of base functions.
"""

from __future__ import annotations

import ast
import hashlib
import math
import random
import threading

from discovery import contract
from discovery.candidate import Candidate, Origin, Status, code_hash
from discovery.proposer.base import Attempt, Proposal, ProposalContext, Proposer, Validator, candidate_from
from discovery.proposer.context import one_line

# Base functions of the logits x = beta * margin, as loss terms (lower is better as x grows).
BASES: dict[str, str] = {
    "logistic": "-F.logsigmoid({x})",  # log(1 + e^-x)
    "exponential": "torch.exp(-{x})",  # e^-x
    "hinge": "torch.relu(1 - {x})",  # max(0, 1 - x)
    "squared": "({x} - 0.5) ** 2",  # IPO-like regression of the logits
    "sigmoid": "torch.sigmoid(-{x})",  # a bounded, saturating loss
}
_IMPORTS = "import math\nimport torch\nimport torch.nn.functional as F\n"
_MARGIN = ("    margin = (policy_chosen_logps - reference_chosen_logps) - "
           "(policy_rejected_logps - reference_rejected_logps)\n    logits = beta * margin\n")


class NotInlinable(ValueError):
    pass


def _round(value: float) -> float:
    return float(f"{value:.4g}")


def inline(code: str, prefix: str) -> tuple[list[str], list[str]]:
    """The function body as statements assigning `<prefix>out`, locals renamed; plus the module's imports."""
    tree = ast.parse(code)
    funcs = [n for n in tree.body if isinstance(n, ast.FunctionDef)]
    if len(funcs) != 1:
        raise NotInlinable("not exactly one function")
    func = funcs[0]
    body = [s for s in func.body if not (isinstance(s, ast.Expr) and isinstance(s.value, ast.Constant))]
    returns = [n for n in ast.walk(func) if isinstance(n, ast.Return)]
    if not body or not isinstance(body[-1], ast.Return) or len(returns) != 1 or body[-1].value is None:
        raise NotInlinable("needs a single final return")
    params = {a.arg for a in func.args.args}
    local = {n.id for n in ast.walk(func) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store)} - params
    for node in ast.walk(func):
        if isinstance(node, ast.Name) and node.id in local:
            node.id = prefix + node.id
    body[-1] = ast.Assign(targets=[ast.Name(prefix + "out", ast.Store())], value=body[-1].value)
    imports = [ast.unparse(n) for n in tree.body if isinstance(n, ast.Import | ast.ImportFrom)]
    return ["    " + line for s in body for line in ast.unparse(ast.fix_missing_locations(s)).splitlines()], imports


def assemble(name: str, body: list[str], result: str, imports: list[str]) -> str:
    head = "\n".join(dict.fromkeys([*_IMPORTS.splitlines(), *imports]))
    source = f"{head}\n\n\ndef {name}({', '.join(contract.PARAMS)}):\n{_MARGIN}" + "\n".join(body)
    source += f"\n    return {result}\n"
    return ast.unparse(ast.parse(source)) + "\n"


class SymbolicProposer(Proposer):
    name = "symbolic"

    def __init__(self, validator: Validator, seed: int = 0, max_tries: int = 3):
        self.validator = validator
        self.max_tries = max(1, max_tries)
        self._rng = random.Random(seed)
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ operators

    def _combine(self, rng: random.Random, a: str, b: str) -> tuple[str, str]:
        if rng.random() < 0.5:
            w = _round(rng.uniform(0.2, 0.8))
            return f"{w} * {a} + {_round(1 - w)} * {b}", f"weight {w}"
        tau = _round(math.exp(rng.uniform(math.log(0.05), math.log(2.0))))
        return f"(1 - torch.sigmoid(logits / {tau})) * {a} + torch.sigmoid(logits / {tau}) * {b}", f"gate tau={tau}"

    def _base(self, rng: random.Random, x: str = "logits") -> tuple[str, str]:
        kind = rng.choice(sorted(BASES))
        scale = _round(math.exp(rng.uniform(math.log(0.5), math.log(2.0))))
        arg = x if rng.random() < 0.5 else f"{scale} * {x}"
        return BASES[kind].format(x=arg), kind if arg == x else f"{kind}({scale}x)"

    def fresh(self, rng: random.Random) -> tuple[list[str], str, list[str], str]:
        (a, na), (b, nb) = self._base(rng), self._base(rng)
        result, how = self._combine(rng, a, b)
        return [], result, [], f"a fresh mix of base functions {na} and {nb} ({how})"

    def mix(self, rng: random.Random, parent: Candidate) -> tuple[list[str], str, list[str], str]:
        body, imports = inline(parent.code, "a_")
        b, nb = self._base(rng)
        result, how = self._combine(rng, "a_out", b)
        return body, result, imports, f"{parent.name} mixed with the base function {nb} ({how})"

    def cross(self, rng: random.Random, p: Candidate, q: Candidate) -> tuple[list[str], str, list[str], str]:
        body_a, imp_a = inline(p.code, "a_")
        body_b, imp_b = inline(q.code, "b_")
        result, how = self._combine(rng, "a_out", "b_out")
        return body_a + body_b, result, imp_a + imp_b, f"a crossover of {p.name} and {q.name} ({how})"

    def perturb(self, rng: random.Random, parent: Candidate) -> tuple[list[str], str, list[str], str]:
        tree = ast.parse(parent.code)
        consts = [n for n in ast.walk(tree) if isinstance(n, ast.Constant) and type(n.value) in (int, float)
                  and n.value not in (0, 1, 2)]
        if not consts:
            raise NotInlinable("no constants to perturb")
        changed = []
        for node in rng.sample(consts, k=min(len(consts), rng.choice((1, 2)))):
            old = node.value
            node.value = _round(old * math.exp(rng.gauss(0.0, 0.4)))
            changed.append(f"{old}->{node.value}")
        body, imports = inline(ast.unparse(tree), "a_")
        return body, "a_out", imports, f"{parent.name} with perturbed constants ({', '.join(changed)})"

    def _draw(self, rng: random.Random, pool: list[Candidate]):
        ops = ["fresh"] + (["mix", "perturb"] if pool else []) + (["cross"] if len(pool) > 1 else [])
        op = rng.choice(ops)
        if op == "fresh":
            return self.fresh(rng)
        if op == "cross":
            p, q = rng.sample(pool, 2)
            return self.cross(rng, p, q)
        return getattr(self, op)(rng, rng.choice(pool))

    # ------------------------------------------------------------------ proposing

    def propose(self, context: ProposalContext) -> Proposal:
        pool = [c for c in (context.parents or [*context.top, *context.baselines, *context.recent]) if c.code]
        return self._propose(context, lambda rng: self._draw(rng, pool), context.parents)

    def tune(self, context: ProposalContext, parent: Candidate, label: str = "tune") -> Proposal:
        """One variant of `parent` with perturbed constants (its child; INVALID when it has none to perturb)."""
        return self._propose(context, lambda rng: self.perturb(rng, parent), [parent], label)

    def _propose(self, context: ProposalContext, draw, parents: list[Candidate], label: str = "symbolic") -> Proposal:
        known = {c.code_hash for c in context.known()}
        with self._lock:
            seed = self._rng.randrange(2**31)
        rng = random.Random(seed)
        attempts: list[Attempt] = []
        report, code, thought, name = None, "", "", label
        for index in range(self.max_tries * 3):
            try:
                body, result, imports, thought = draw(rng)
            except (NotInlinable, SyntaxError):
                continue
            name = f"{label}_" + hashlib.sha1(f"{seed}:{index}:{thought}".encode()).hexdigest()[:6]
            code = assemble(name, body, result, imports)
            if code_hash(code) in known:
                continue
            report = self.validator(code)
            reason = "" if report.valid else one_line(report.summary(), 500)
            attempts.append(Attempt(index=len(attempts), kind="symbolic", prompt_hash="", reply="",
                                    verdict="valid" if report.valid else "invalid", reason=reason, name=name,
                                    code=code, thought=thought, fingerprint=report.fingerprint))
            if report.valid or len(attempts) >= self.max_tries:
                break
        valid = bool(report is not None and report.valid)
        reason = "" if valid else (attempts[-1].reason if attempts else "no operator applied to the archive")
        candidate = candidate_from(
            report, name=name, code=code, thought=f"{label}: {thought} (seed {seed})", origin=Origin.SYMBOLIC,
            parent_ids=tuple(c.id for c in parents if c.id is not None), generation=context.generation,
            proposer=self.name if label == "symbolic" else label, status=Status.PROPOSED if valid else Status.INVALID,
            reason=reason)
        return Proposal(candidate=candidate, attempts=attempts, report=report)
