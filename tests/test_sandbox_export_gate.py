"""`discovery export` re-runs the sandbox checks (at every batch size of `SWEEP_BATCH_SIZES`) before writing a module:
the exported module checks nothing at run time, so code an older policy stored as valid, or an edited archive,
must not reach users. (tests/hostile/e2e.py runs the same through the CLI and the module's self-test.)"""

from __future__ import annotations

import pytest
from hostile.archives import archive_with
from hostile.candidates import make

from discovery.errors import DiscoveryError
from discovery.export.build import export_candidate

COUNT = "    n = torch.ones_like(margin).sum()\n"
DPO, ANTI = "-F.logsigmoid(beta * margin)", "-F.logsigmoid(-beta * margin)"
STORED_AS_VALID = {
    "python_branch_on_the_batch_count": (make(COUNT + f"    if n == 32:\n        return {ANTI}\n    return {DPO}\n"),
                                         "python-value"),
    # tensor-level: passes validate() at its own batch sizes; the export's sizes include 32
    "switch_at_batch_size_32": (make(COUNT + f"    return torch.where(n == 32, {ANTI}, {DPO})\n"), "batch-size"),
}


@pytest.mark.parametrize("name", sorted(STORED_AS_VALID))
def test_export_refuses_code_that_fails_todays_checks(tmp_path, name):
    code, rule = STORED_AS_VALID[name]
    cid = archive_with(tmp_path / "run", code)
    with pytest.raises(DiscoveryError, match=rf"\[{rule}\].*not exported"):
        export_candidate(tmp_path / "run", cid)
