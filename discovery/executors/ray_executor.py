"""The Ray executor: the same pool of isolated workers, as Ray actors on a cluster (or a local Ray).

Each actor reserves its threads as CPUs (and `executor.gpus_per_worker` GPUs) and runs jobs in its own
warm isolated worker, exactly as the local executor does. Needs the `ray` extra.
"""

from __future__ import annotations

from typing import Any

from discovery.candidate import EvalResult
from discovery.config import RunConfig
from discovery.errors import DiscoveryError
from discovery.executors.base import PooledExecutor, Slot
from discovery.executors.layout import Layout


def _ray():
    try:
        import ray
    except ImportError:
        raise DiscoveryError("executor.name=ray needs Ray: pip install 'objective-discovery[ray]'") from None
    return ray


class _Worker:
    """The actor body: one warm isolated worker inside a Ray worker process."""

    def __init__(self, config: dict[str, Any], threads: int):
        import os

        from discovery.config import from_dict
        from discovery.executors.local import RunnerSlot

        # Ray has set CUDA_VISIBLE_DEVICES for this actor from its num_gpus reservation.
        self.slot = RunnerSlot(from_dict(config), threads, gpu=os.environ.get("CUDA_VISIBLE_DEVICES") or None)

    def evaluate(self, payload: dict[str, Any]) -> dict[str, Any]:
        import dataclasses

        return dataclasses.asdict(self.slot.evaluate(payload))

    def close(self) -> None:
        self.slot.close()


class ActorSlot(Slot):
    def __init__(self, actor):
        self.actor = actor

    def evaluate(self, payload: dict[str, Any]) -> EvalResult:
        ray = _ray()
        try:
            value = ray.get(self.actor.evaluate.remote(payload))
        except ray.exceptions.RayError as exc:
            return EvalResult.failure(payload["seed"], payload["fidelity"]["name"], payload["fidelity"].get("beta"),
                                      f"ray: {type(exc).__name__}: {str(exc)[:500]}")
        return EvalResult.from_dict(value)

    def close(self) -> None:
        ray = _ray()
        try:
            ray.get(self.actor.close.remote(), timeout=30)
        except Exception:
            pass
        ray.kill(self.actor)


class RayExecutor(PooledExecutor):
    """`executor.name = ray`: one actor per worker on `executor.address` (or a local Ray for the run)."""

    def __init__(self, config: RunConfig, layout: Layout):
        ray = _ray()
        self._own_ray = not ray.is_initialized()
        if self._own_ray:
            ray.init(address=config.executor.address, num_cpus=None if config.executor.address else
                     layout.workers * layout.threads_per_worker, include_dashboard=False,
                     log_to_driver=False, configure_logging=False)
        # Ray sets CUDA_VISIBLE_DEVICES in each actor from its num_gpus reservation.
        remote = ray.remote(num_cpus=layout.threads_per_worker, num_gpus=config.executor.gpus_per_worker)(_Worker)
        actors = [remote.remote(config.to_dict(), layout.threads_per_worker) for _ in range(layout.workers)]
        super().__init__(config, layout, [ActorSlot(a) for a in actors])

    def close(self) -> None:
        super().close()
        if self._own_ray:
            _ray().shutdown()
