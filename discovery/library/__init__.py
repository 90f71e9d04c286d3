"""The reference library: known preference-optimization losses as contract-conforming source code.

Baselines seed every discovery run and are re-run in the same harness; no fitness is ever copied
from a paper. The DiscoPOP paper's discoveries are given in the corrected "apply beta first" form
(tau = 0.05), following the authors' final code (luchris429/DiscoPOP, src/alignment/gpo.py).
"""

from __future__ import annotations

from dataclasses import dataclass

from discovery.library._sources import SOURCES


@dataclass(frozen=True)
class LibraryLoss:
    name: str
    kind: str  # "baseline" | "discovered"
    description: str
    citation: str
    latex: str
    code: str
    trl_loss_type: str | None = None  # the TRL 1.16 `loss_type` that computes the same loss, if any
    trl_args: tuple[tuple[str, float], ...] = ()  # DPOConfig extras for that loss_type
    note: str = ""

    @property
    def function_name(self) -> str:
        return self.name


_MARGIN = r"\rho = (\log\pi_\theta(y_w|x) - \log\pi_{ref}(y_w|x)) - (\log\pi_\theta(y_l|x) - \log\pi_{ref}(y_l|x))"

_META = [
    ("dpo", "baseline", "Direct Preference Optimization: logistic loss on the beta-scaled margin.",
     "Rafailov et al. 2023, arXiv:2305.18290", r"-\log\sigma(\beta\rho)", "sigmoid", ()),
    ("slic", "baseline", "SLiC / hinge: hinge loss on the beta-scaled margin.",
     "Zhao et al. 2023, arXiv:2305.10425", r"\max(0, 1 - \beta\rho)", "hinge", ()),
    ("ipo", "baseline", "IPO: squared regression of the margin onto 1/(2 beta) (summed log-probs).",
     "Azar et al. 2023, arXiv:2310.12036", r"(\rho - \tfrac{1}{2\beta})^2", "ipo", ()),
    ("cdpo", "baseline", "Conservative DPO: DPO with label smoothing eps = 0.1.",
     "Mitchell 2023, 'A note on DPO with noisy preferences'",
     r"-(1-\epsilon)\log\sigma(\beta\rho) - \epsilon\log\sigma(-\beta\rho),\ \epsilon=0.1", None, ()),
    ("robust", "baseline", "Robust DPO (rDPO): unbiased loss under label-flip rate eps = 0.1.",
     "Chowdhury et al. 2024, arXiv:2403.00409",
     r"\frac{-(1-\epsilon)\log\sigma(\beta\rho) + \epsilon\log\sigma(-\beta\rho)}{1-2\epsilon},\ \epsilon=0.1",
     "robust", (("label_smoothing", 0.1),)),
    ("bco_pair", "baseline", "BCO, paired form: binary classification of chosen vs rejected log-ratios.",
     "Jung et al. 2024, arXiv:2404.04656",
     r"-\log\sigma(\beta r_w) - \log\sigma(-\beta r_l)", "bco_pair", ()),
    ("sppo_hard", "baseline", "SPPO with hard win probabilities: squared log-ratio targets +-1/(2 beta).",
     "Wu et al. 2024, arXiv:2405.00675",
     r"(r_w - \tfrac{1}{2\beta})^2 + (r_l + \tfrac{1}{2\beta})^2", "sppo_hard", ()),
    ("nca_pair", "baseline", "NCA, paired form: noise-contrastive alignment.",
     "Chen et al. 2024, arXiv:2402.05369",
     r"-\log\sigma(\beta r_w) - \tfrac12\log\sigma(-\beta r_w) - \tfrac12\log\sigma(-\beta r_l)", "nca_pair", ()),
    ("apo_zero", "baseline", "APO-zero: raise chosen, lower rejected likelihood.",
     "D'Oosterlinck et al. 2024, arXiv:2408.06266",
     r"1 - \sigma(\beta r_w) + \sigma(\beta r_l)", "apo_zero", ()),
    ("apo_down", "baseline", "APO-down: lower both likelihoods, the rejected more.",
     "D'Oosterlinck et al. 2024, arXiv:2408.06266",
     r"\sigma(\beta r_w) + 1 - \sigma(\beta\rho)", "apo_down", ()),
    ("kto_pair", "baseline", "KTO, paired form with batch-mean KL reference points (the paper's form); "
     "per pair the mean of the chosen and rejected halves.",
     "Ethayarajh et al. 2024, arXiv:2402.01306",
     r"\tfrac12[(1-\sigma(\beta(r_w - \overline{KL}_l))) + (1-\sigma(\beta(\overline{KL}_w - r_l)))]", None, ()),
    ("lrml", "discovered", "LRML / DiscoPOP: logistic and exponential losses mixed by sigmoid(beta*rho/tau), "
     "tau = 0.05.", "Lu et al. 2024, arXiv:2406.08414",
     r"(1-\sigma(\beta\rho/\tau))(-\log\sigma(\beta\rho)) + \sigma(\beta\rho/\tau)e^{-\beta\rho},\ \tau=0.05",
     "discopop", (("discopop_tau", 0.05),)),
    ("padll", "discovered", "Performance Adaptive Decay Logistic Loss: DPO down-weighted (0.9) and "
     "halved on mismatched pairs.", "Lu et al. 2024, arXiv:2406.08414",
     r"0.9(1 - 0.5\,[\rho<0])(-\log\sigma(\beta\rho))", None, ()),
    ("cell", "discovered", "Combined Exponential + Logistic Loss: equal mix of exp(-beta rho) and DPO.",
     "Lu et al. 2024, arXiv:2406.08414", r"\tfrac12 e^{-\beta\rho} + \tfrac12(-\log\sigma(\beta\rho))", None, ()),
    ("aql", "discovered", "Adaptive Quantile Loss: logistic and hinge losses mixed by a batch-adaptive "
     "quantile weight.", "Lu et al. 2024, arXiv:2406.08414",
     r"w\,(-\log\sigma(\beta\rho)) + (1-w)\max(0,1-\beta\rho),\ w=\sigma(-(\beta\rho/\tau - q))", None, ()),
    ("aqfl", "discovered", "Adaptive Quantile Feedback Loss: logistic/hinge mix by distance from a "
     "batch-adaptive quantile.", "Lu et al. 2024, arXiv:2406.08414",
     r"b\,(-\log\sigma(\beta\rho)) + (1-b)\max(0,1-\beta\rho),\ b=\sigma(0.1|\beta\rho/\tau - q|)", None, ()),
    ("dbaql", "discovered", "Dynamic Blended Adaptive Quantile Loss: logistic/exponential mix by the "
     "batch variance of the margins.", "Lu et al. 2024, arXiv:2406.08414",
     r"c\,(-\log\sigma(\beta\rho/0.9)) + (1-c)e^{-0.9\beta\rho},\ c=\sigma(\mathrm{Var}(\beta\rho/\tau))", None, ()),
    ("pfl", "discovered", "Policy Focused Loss: halved DPO where the policy already prefers the chosen "
     "answer, doubled hinge elsewhere.", "Lu et al. 2024, arXiv:2406.08414",
     r"[\pi_w>\pi_l]\,\tfrac12(-\log\sigma(\beta\rho)) + [\pi_w\le\pi_l]\,2\max(0,1-\beta\rho)", None, ()),
]

LOSSES: tuple[LibraryLoss, ...] = tuple(
    LibraryLoss(name=n, kind=k, description=d, citation=c, latex=tex, code=SOURCES[n],
                trl_loss_type=t, trl_args=a)
    for n, k, d, c, tex, t, a in _META
)
MARGIN_LATEX = _MARGIN
_BY_NAME = {loss.name: loss for loss in LOSSES}


def get(name: str) -> LibraryLoss:
    try:
        return _BY_NAME[name]
    except KeyError:
        raise KeyError(f"no library loss named '{name}'; known: {', '.join(_BY_NAME)}") from None


def names() -> list[str]:
    return list(_BY_NAME)


def baselines() -> list[LibraryLoss]:
    return [loss for loss in LOSSES if loss.kind == "baseline"]
