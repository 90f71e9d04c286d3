"""The loss contract: the one place that says what a candidate loss is.

The sandbox enforces it, the proposer's prompts render it, the exporter documents it.
"""

from __future__ import annotations

PARAMS: tuple[str, ...] = (
    "policy_chosen_logps",
    "policy_rejected_logps",
    "reference_chosen_logps",
    "reference_rejected_logps",
    "beta",
)
TENSOR_PARAMS: tuple[str, ...] = PARAMS[:4]
GRAD_PARAMS: tuple[str, ...] = PARAMS[:2]

# module name as imported -> the alias the code may use for it
ALLOWED_IMPORTS: dict[str, tuple[str, ...]] = {
    "torch": ("torch",),
    "torch.nn.functional": ("F",),
    "math": ("math",),
}

MAX_LINES = 80
MAX_BYTES = 6000

SIGNATURE = "def NAME(" + ", ".join(PARAMS) + "):"

DESCRIPTION = f"""\
A candidate loss is Python source that defines exactly one function:

    {SIGNATURE}

- policy_chosen_logps, policy_rejected_logps, reference_chosen_logps, reference_rejected_logps:
  1-D float tensors of shape (B,), the summed log-probabilities of each completion under the
  policy being trained and under the frozen reference model.
- beta: a Python float, the strength of the KL regularisation (the task fixes it).
- Return an unreduced per-pair loss tensor of shape (B,); lower is better, the trainer takes its mean.
- Only `torch`, `torch.nn.functional as F` and `math` may be imported; constants live inside the function.
- The function is pure: no state, no `self`, no I/O, no in-place edits of its inputs.
- The inputs are values only: no `.shape`, `.size()`, `len()`, `.dtype`, `.device`, `.requires_grad`,
  `.item()` or other introspection; a pair gets the same loss at any batch size and with or without
  gradients (batch statistics such as `.mean()` over the batch are fine). No nested functions,
  lambdas, comprehensions, `match`, `try` or `with`; never reuse the names torch, F or math.
- At most {MAX_LINES} lines and {MAX_BYTES} bytes.
"""

EXAMPLE = '''\
import torch.nn.functional as F


def dpo(policy_chosen_logps, policy_rejected_logps, reference_chosen_logps, reference_rejected_logps, beta):
    margin = (policy_chosen_logps - reference_chosen_logps) - (policy_rejected_logps - reference_rejected_logps)
    return -F.logsigmoid(beta * margin)
'''
