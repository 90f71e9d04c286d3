"""The environment a sandboxed process may see: an allowlist, minus anything that looks like a secret."""

from __future__ import annotations

import fnmatch
from collections.abc import Mapping

KEEP = ("PATH", "LANG", "LANGUAGE", "LC_*", "TZ", "TERM", "VIRTUAL_ENV", "PYTHONHASHSEED",
        "OMP_*", "MKL_*", "OPENBLAS_*", "KMP_*", "TOKENIZERS_PARALLELISM", "TQDM_DISABLE",
        "HF_HOME", "HF_HUB_CACHE", "HF_DATASETS_CACHE", "HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE",
        "TRANSFORMERS_OFFLINE", "TRANSFORMERS_CACHE", "XDG_CACHE_HOME", "TORCH_HOME",
        "DISCOVERY_CACHE", "DISCOVERY_CACHE_DIR", "DISCOVERY_SANDBOX_NO_BWRAP",
        "DISCOVERY_SANDBOX_TEST_*",  # tests only: simulate a kernel without Landlock or namespaces
        # the GPU mask: the executor pins each worker to its GPU with it; without it a worker would see all GPUs
        "CUDA_VISIBLE_DEVICES", "CUDA_DEVICE_ORDER", "CUDA_MODULE_LOADING",
        "NVIDIA_VISIBLE_DEVICES", "NVIDIA_DRIVER_CAPABILITIES")  # the container runtime's GPU selection
SECRET = ("*_API_KEY", "*_KEY", "*KEY_*", "*TOKEN*", "*SECRET*", "*PASSWORD*", "*PASSWD*", "*CREDENTIAL*",
          "OPENAI_*", "ANTHROPIC_*", "AWS_*", "GOOGLE_*", "AZURE_*", "GITHUB_*", "WANDB_*")
# Offline flags are forced: the sandbox has no network, a hub lookup would only hang.
FORCED = {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
          "TOKENIZERS_PARALLELISM": "false", "PYTHONDONTWRITEBYTECODE": "1"}


def is_secret(name: str) -> bool:
    upper = name.upper()
    return any(fnmatch.fnmatchcase(upper, pattern) for pattern in SECRET) or (
        upper.startswith("HF_") and upper not in {k for k in KEEP if k.startswith("HF_")})


def scrubbed(environ: Mapping[str, str]) -> dict[str, str]:
    """Only allowlisted, non-secret variables, plus the forced offline flags."""
    kept = {k: v for k, v in environ.items()
            if any(fnmatch.fnmatchcase(k, pattern) for pattern in KEEP) and not is_secret(k)}
    kept.update(FORCED)
    return kept
