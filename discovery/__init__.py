"""discovery: let an LLM discover preference-optimization losses (DiscoPOP), trained with TRL.

The Python API (docs/python-api.md), imported on first use so `import discovery` and the CLI stay fast:
`discovery.open_run(path)`, `discovery.run(config, on_event=...)`, `discovery.resume(run_dir)`,
`discovery.RunConfig`.
"""

__version__ = "0.1.0"

_API = {"open_run", "run", "resume", "Run", "RunResult", "Records"}


def __getattr__(name: str):
    if name in _API:
        from discovery import api

        return getattr(api, name)
    if name == "RunConfig":
        from discovery.config import RunConfig

        return RunConfig
    raise AttributeError(f"module 'discovery' has no attribute {name!r}")


def __dir__():
    return sorted([*globals(), *_API, "RunConfig"])


__all__ = ["RunConfig", "Records", "Run", "RunResult", "__version__", "open_run", "resume", "run"]
