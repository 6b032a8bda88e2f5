"""How a batch's items are executed: which items this task owns (``shard``), where they run (``local``,
``ray``), and the work folder's failure log (``failures``) and per-stage state (``status``)."""

from thead.run.failures import FAILURE_LOG, failed_inputs, read_failures, record_failure
from thead.run.local import Executor, LocalExecutor
from thead.run.shard import Shard, parse_shard, select_shard, shard_index

__all__ = ["FAILURE_LOG", "Executor", "LocalExecutor", "Shard", "failed_inputs", "make_executor", "parse_shard",
           "read_failures", "record_failure", "select_shard", "shard_index"]


def make_executor(name: str, address: str | None = None, threads: int = 1, gpus: float = 0.0) -> Executor:
    """The executor called ``name`` ("local" or "ray")."""
    if name == "local":
        return LocalExecutor()
    if name == "ray":
        from thead.run.ray import RayExecutor

        return RayExecutor(address=address, threads=threads, gpus=gpus)
    raise ValueError(f"unknown executor '{name}' (choose local or ray)")
