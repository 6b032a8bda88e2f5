"""Items as Ray tasks (``--executor ray [--address ADDR]``; ``pip install 'thead[ray]'``).

Each item is one task given ``threads`` CPUs (torch/OpenMP/OpenCV limited to that many threads inside it, as
``--threads`` does) and one GPU when the stage's device is CUDA. Tasks get the item (its path) and the stage
function; they read inputs from and write caches/outputs to the shared filesystem and return only the small
``ItemResult``, so no frames travel through the object store. Without an address a local Ray instance is started
on this machine's usable CPUs (``thead.runtime.usable_cpus``); with one (``auto`` or ``ray://host:10001``) the
tasks run on that cluster, whose nodes must see the same paths.
"""

from __future__ import annotations

import os
from typing import Any, Sequence

from thead.jobs.items import InputItem, ItemResult, run_item
from thead.run.local import ItemStage, ResultFn, StartFn

__all__ = ["RayExecutor", "ray_available"]


def ray_available() -> str | None:
    """None when Ray can be imported, else the reason (to print, or to skip a test with)."""
    try:
        import ray  # noqa: F401
    except ImportError as exc:
        return f"ray is not installed (pip install 'thead[ray]'): {exc}"
    return None


def _noop(done: int, total: int) -> None:
    pass


def _run_task(item: InputItem, stage: ItemStage, threads: int) -> ItemResult:
    """Body of one Ray task: set the thread counts, then run the item like the local executor does."""
    from thead import runtime

    runtime.configure_threads(threads)
    return run_item(item, lambda it: stage(it, _noop))


class RayExecutor:
    """Runs items as Ray tasks; results are handed on as they finish, in completion order."""

    name = "ray"

    def __init__(self, address: str | None = None, threads: int = 1, gpus: float = 0.0,
                 num_cpus: int | None = None) -> None:
        """
        Parameters
        ----------
        address : a running cluster (``auto``, ``ray://host:10001``); None starts a local instance.
        threads : CPUs per task (and torch/OpenCV threads inside it).
        gpus : GPUs per task (1 when the command runs on CUDA).
        num_cpus : CPUs of a local instance (default: the usable CPUs of this process).
        """
        reason = ray_available()
        if reason is not None:
            raise RuntimeError(reason)
        self.address = address
        self.threads = max(1, int(threads))
        self.gpus = gpus
        self.num_cpus = num_cpus

    def _init(self) -> Any:
        import ray

        if not ray.is_initialized():
            env = {"THEAD_THREADS": str(self.threads), "OMP_NUM_THREADS": str(self.threads)}
            if not self.address and "PYTHONPATH" in os.environ:  # a local instance imports this same thead
                env["PYTHONPATH"] = os.environ["PYTHONPATH"]
            kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False,
                                      "runtime_env": {"env_vars": env}}
            if self.address:
                kwargs["address"] = self.address
            else:
                from thead.runtime import usable_cpus

                kwargs["num_cpus"] = self.num_cpus or usable_cpus()
            ray.init(**kwargs)
        return ray

    def run(self, items: Sequence[InputItem], stage: ItemStage, on_start: StartFn, on_result: ResultFn) -> None:
        if not items:
            return
        ray = self._init()
        task = ray.remote(num_cpus=self.threads, num_gpus=self.gpus, max_retries=0)(_run_task)
        stage_ref = ray.put(stage)  # the closure (parameters, paths) once, not once per task
        pending = {task.remote(item, stage_ref, self.threads): item for item in items}
        while pending:
            done, _ = ray.wait(list(pending), num_returns=1)
            for ref in done:
                item = pending.pop(ref)
                try:
                    result = ray.get(ref)
                except Exception as exc:  # the worker died (killed, out of memory): the item failed
                    msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
                    result = ItemResult(str(item.path), item.item_id, "failed",
                                        message=f"{item.path}: ray task failed: {msg}")
                on_result(item, result)

    def shutdown(self) -> None:
        import ray

        if ray.is_initialized():
            ray.shutdown()
