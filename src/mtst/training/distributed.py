"""DDP under Hydra without duplicated run folders, and rank-consistent decisions.

Lightning starts ranks > 0 by re-running the command line. Its Hydra variant replays `sys.argv`,
so a multirun (`-m`, or `hparams_search=optuna` which sets `hydra.mode=MULTIRUN`) would start a
whole sweep in every child. `HydraDDPStrategy` starts each child as a single run of *this job*:
the job's own overrides, `hydra.mode=RUN`, rank 0's output folder as `hydra.run.dir`, no
`.hydra/` output and console-only logging, so only rank 0 writes files.
"""

from __future__ import annotations

import inspect
import logging
import os
import sys
import warnings
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from typing import Any

import torch
import torch.distributed as dist
from lightning.pytorch.strategies import DDPStrategy
from lightning.pytorch.strategies.launchers import _SubprocessScriptLauncher
from torch.nn.parallel import DistributedDataParallel

log = logging.getLogger("mtst")

DDP_ENV = ("MASTER_ADDR", "MASTER_PORT", "NODE_RANK", "LOCAL_RANK", "WORLD_SIZE")
CHILD_OVERRIDES = ("hydra.mode=RUN", "hydra.output_subdir=null", "hydra/job_logging=stdout")


def child_command(local_rank: int) -> tuple[list[str], str]:
    """The command line that starts rank `local_rank` of the current Hydra job."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.utils import get_original_cwd, to_absolute_path

    import __main__

    hydra_cfg = HydraConfig.get()
    if getattr(__main__, "__spec__", None) is None:
        command = [sys.executable, to_absolute_path(sys.argv[0])]
    else:
        command = [sys.executable, "-m", __main__.__spec__.name]
    output_dir = hydra_cfg.runtime.output_dir
    overrides = [o for o in hydra_cfg.overrides.task if not o.startswith("ckpt_path=")]
    ckpt = _resolved_ckpt_override(hydra_cfg.overrides.task, output_dir)
    command += overrides + ckpt + list(CHILD_OVERRIDES)
    command += [f"hydra.run.dir={_quote(output_dir)}", f"hydra.job.name=ddp_rank_{local_rank}"]
    return command, get_original_cwd()


def _resolved_ckpt_override(task: Any, output_dir: str) -> list[str]:
    """`ckpt_path=last` means rank 0's run folder (already chosen); children must not re-resolve."""
    for override in task:
        if override.startswith("ckpt_path="):
            value = override.split("=", 1)[1]
            if value == "last":
                value = os.path.join(output_dir, "checkpoints", "last.ckpt")
            return [f"ckpt_path={_quote(value)}"]
    return []


def _quote(value: str) -> str:
    escaped = value.replace("\\", "\\\\").replace("'", "\\'")
    return f"'{escaped}'"


# private: Lightning's script launcher, subclassed for its command line only: it is what the
# Trainer starts, stops (SIGTERM, Ctrl-C) and watches ranks with, and has no public equivalent
class _HydraJobLauncher(_SubprocessScriptLauncher):
    """Lightning's script launcher with `child_command` for Hydra jobs."""

    # private: the launcher's one step that builds the children's command lines; `launch` (public)
    # calls it between checking the cluster settings and starting the process observer
    def _call_children_scripts(self) -> None:
        from hydra.core.hydra_config import HydraConfig

        if not HydraConfig.initialized():
            super()._call_children_scripts()
            return
        import subprocess

        env = self.cluster_environment
        if self.procs or env.local_rank() != 0:  # as Lightning's: once, and from rank 0 only
            raise RuntimeError(f"the launcher starts the other ranks once, from local rank 0 "
                               f"(local rank {env.local_rank()}, {len(self.procs)} started)")
        os.environ["MASTER_ADDR"] = env.main_address
        os.environ["MASTER_PORT"] = str(env.main_port)
        os.environ["NODE_RANK"] = str(env.node_rank())
        os.environ["LOCAL_RANK"] = str(env.local_rank())
        os.environ["WORLD_SIZE"] = f"{self.num_processes * self.num_nodes}"
        for local_rank in range(1, self.num_processes):
            child_env = os.environ.copy()
            child_env["LOCAL_RANK"] = str(local_rank)
            if os.environ.get("PL_GLOBAL_SEED") is None:
                child_env.pop("PL_GLOBAL_SEED", None)
            command, cwd = child_command(local_rank)
            self.procs.append(subprocess.Popen(command, env=child_env, cwd=cwd))


class HydraJobLaunch:
    """Mixed into a Lightning strategy (ahead of it): its script launcher becomes
    `_HydraJobLauncher`. The Trainer reaches the launcher through the public `launcher`
    property only, so that is where the swap happens (one per launcher Lightning configures)."""

    _job_launcher: tuple[Any, _HydraJobLauncher] | None = None  # (Lightning's, its replacement)

    @property
    def launcher(self) -> Any:
        launcher = super().launcher  # type: ignore[misc]
        if not isinstance(launcher, _SubprocessScriptLauncher) or isinstance(launcher, _HydraJobLauncher):
            return launcher
        if self._job_launcher is None or self._job_launcher[0] is not launcher:
            self._job_launcher = (launcher, _HydraJobLauncher(
                launcher.cluster_environment, launcher.num_processes, launcher.num_nodes))
        return self._job_launcher[1]


class HydraDDPStrategy(HydraJobLaunch, DDPStrategy):
    """DDP with Hydra-aware child processes.

    `find_unused_parameters` is switched on when a freeze strategy is active: frozen or cached
    encoder parameters get no gradient, which plain DDP reports as an error. With every
    parameter training, the masked losses keep both heads in the graph on every batch, so the
    cheaper `find_unused_parameters=False` is safe.

    The freeze strategy is known only once the module is attached, after the strategy is built
    from the trainer config, so `configure_ddp` (public, the step Lightning calls to wrap the
    module) wraps it itself: Lightning keeps the constructor's `DistributedDataParallel`
    arguments on a private attribute, and this strategy keeps its own record of them
    (`ddp_kwargs`). The wrap is Lightning's, from public parts: the devices from
    `determine_ddp_device_ids`, a side CUDA stream, then the communication hook if one is given
    (on CUDA only, as Lightning registers it).
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("broadcast_buffers", False)  # see conf/trainer/ddp.yaml
        super().__init__(*args, **kwargs)
        given = inspect.signature(DDPStrategy.__init__).bind(self, *args, **kwargs).arguments
        # what Lightning hands DistributedDataParallel: the arguments it does not name itself
        self.ddp_kwargs: dict[str, Any] = dict(given.get("kwargs", {}))
        self.comm_hook = (given.get("ddp_comm_state"), given.get("ddp_comm_hook"),
                          given.get("ddp_comm_wrapper"))
        # epoch metrics are torchmetrics states gathered across ranks before compute(); the
        # per-step train/* values are informative only: Lightning's advice does not apply
        warnings.filterwarnings("ignore", message=r".*sync_dist=True.*when logging on epoch level")

    def configure_ddp(self) -> None:
        """Wraps the attached module in `DistributedDataParallel` (see the class doc)."""
        kwargs = dict(self.ddp_kwargs)
        freezer = getattr(self.lightning_module, "freezer", None)
        if freezer is not None and freezer.name != "none" and not kwargs.get("find_unused_parameters"):
            log.info("freeze=%s under DDP: using find_unused_parameters=True", freezer.name)
            kwargs["find_unused_parameters"] = True
        device_ids = self.determine_ddp_device_ids()
        # https://pytorch.org/docs/stable/notes/cuda.html#id5, as Lightning's wrap
        side = torch.cuda.stream(torch.cuda.Stream()) if device_ids is not None else nullcontext()
        with side:
            model = DistributedDataParallel(module=self.model, device_ids=device_ids, **kwargs)
        state, hook, wrapper = self.comm_hook
        if hook is not None and self.root_device.type == "cuda":  # NCCL only, as Lightning's
            model.register_comm_hook(state=state, hook=hook if wrapper is None else wrapper(hook))
        self.model = model


def any_rank(flags: list[bool], device: torch.device | None = None) -> list[bool]:
    """Element-wise OR of `flags` over all ranks (the flags themselves without DDP).

    Decisions that lead to collectives (computing a synced metric, stopping training) must be
    the same on every rank, or the ranks wait on each other forever.
    """
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return list(flags)
    tensor = torch.tensor([1 if f else 0 for f in flags], dtype=torch.int32, device=device)
    dist.all_reduce(tensor, op=dist.ReduceOp.MAX)
    return [bool(v) for v in tensor.tolist()]


@contextmanager
def ddp_job_scope() -> Iterator[None]:
    """Undo what a DDP launch leaves in this process, so the next job of a multirun starts
    its own process group instead of believing it is a child rank."""
    saved = {key: os.environ.get(key) for key in DDP_ENV}
    launched_here = saved["LOCAL_RANK"] is None
    try:
        yield
    finally:
        if launched_here:
            for key, value in saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value
            if dist.is_available() and dist.is_initialized():
                dist.destroy_process_group()
