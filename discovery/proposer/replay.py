"""Replay: propose the .py files of a directory in name order (user lists, deterministic tests)."""

from __future__ import annotations

import threading
from pathlib import Path

from discovery.candidate import Candidate, Origin, Status, code_hash
from discovery.proposer.base import (
    Attempt,
    Proposal,
    ProposalContext,
    Proposer,
    ProposerError,
    Validator,
    candidate_from,
)
from discovery.proposer.context import one_line


class ReplayProposer(Proposer):
    name = "replay"

    def __init__(self, directory: str | None, validator: Validator):
        if not directory:
            raise ProposerError("the replay backend needs proposer.replay_dir=DIR (a folder of .py loss files)")
        path = Path(directory).expanduser()
        if not path.is_dir():
            raise ProposerError(f"proposer.replay_dir '{directory}' is not a directory")
        self.files = sorted(path.glob("*.py"))
        if not self.files:
            raise ProposerError(f"proposer.replay_dir '{directory}' holds no .py files")
        self.total = len(self.files)
        self.validator = validator
        self._next = 0
        self._lock = threading.Lock()

    def resume(self, stored: list[Candidate]) -> None:
        """Skip the files already stored (same name and code): the replay continues where it stopped."""
        done = {(c.name, c.code_hash) for c in stored if c.origin == Origin.REPLAY}
        with self._lock:
            self.files = [f for f in self.files if (f.stem, code_hash(f.read_text())) not in done]
            self._next = 0

    def stop_reason(self) -> str | None:
        with self._lock:
            done = self._next >= len(self.files)
        return f"replayed all {self.total} files" if done else None

    def propose(self, context: ProposalContext) -> Proposal:
        with self._lock:
            if self._next >= len(self.files):
                raise ProposerError(f"replay list exhausted after {self.total} files")
            path = self.files[self._next]
            self._next += 1
        code = path.read_text()
        report = self.validator(code)
        verdict = "valid" if report.valid else "invalid"
        reason = "" if report.valid else one_line(report.summary(), 500)
        attempt = Attempt(index=0, kind="replay", prompt_hash="", reply="", verdict=verdict, reason=reason,
                          name=path.stem, code=code, thought=f"replayed from {path.name}",
                          fingerprint=report.fingerprint)
        candidate = candidate_from(
            report, name=path.stem, code=code, thought=attempt.thought, origin=Origin.REPLAY,
            generation=context.generation, proposer=self.name,
            status=Status.PROPOSED if report.valid else Status.INVALID, reason=reason)
        return Proposal(candidate=candidate, attempts=[attempt], report=report)
