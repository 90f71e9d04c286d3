"""The Python API: read a run (`open_run`) and start or resume one (`run`, `resume`) from a notebook.

    import discovery
    run = discovery.open_run("runs/20250101-120000")
    run.candidates.to_pandas()
"""

from discovery.api.reading import Records, Run, open_run
from discovery.api.running import RunResult, resume, run

__all__ = ["Records", "Run", "RunResult", "open_run", "resume", "run"]
