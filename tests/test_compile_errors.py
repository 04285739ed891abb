"""`trainer.compile`'s errors: where torch.compile cannot work the run is refused in one line
before fitting; a compiler failure during fitting is one line; an error of the inputs themselves
stays the error an uncompiled run raises, never "torch.compile failed"."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from mtst.cli._hydra import report_user_errors
from mtst.cli.train import train_task
from mtst.errors import MtstError
from mtst.training import compiling
from tests.conftest import TINY_TRAIN, compose_config

RUN = TINY_TRAIN + ["trainer.limit_train_batches=2", "trainer.limit_val_batches=1", "run_test=false",
                    "~callbacks.lr_monitor"]
NO_CXX = "cannot find a working C++ compiler"


def broken(graph, example_inputs):
    """A backend that fails the way inductor does without a C++ compiler."""
    raise RuntimeError(f"{NO_CXX}\nsecond line of the compiler's explanation")


class Offset(nn.Module):
    """A linear layer plus a learned (3, 4) offset: a batch of other than 3 rows cannot fit."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(4, 4)
        self.offset = nn.Parameter(torch.zeros(3, 4))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x) + self.offset


def refuse(*args, **kwargs):
    raise RuntimeError("Python 3.15+ not yet supported for torch.compile")


def fails_when_called(*args, **kwargs):
    return refuse


@pytest.mark.parametrize("compile_", [refuse, fails_when_called], ids=["compile", "call"])
def test_where_torch_compile_cannot_work_the_run_is_refused_in_one_line(tmp_path, capsys, monkeypatch,
                                                                        compile_) -> None:
    monkeypatch.setattr(torch, "compile", compile_)
    with pytest.raises(SystemExit) as caught:
        report_user_errors(train_task)(compose_config(tmp_path, RUN + ["trainer.compile=eager"]))
    assert caught.value.code == 2
    assert capsys.readouterr().err.strip() == (
        "error: trainer.compile: torch.compile is not supported by this Python / PyTorch build "
        f"(torch {torch.__version__}: Python 3.15+ not yet supported for torch.compile); set "
        "trainer.compile=false")
    assert not (tmp_path / "checkpoints").exists()  # refused before fitting


def test_the_up_front_check_passes_where_torch_compile_works() -> None:
    compiling.check_compile_works()


def test_a_compiler_failure_is_one_line_caused_by_the_compilers_error() -> None:
    module = Offset()
    compiling.compile_in_place(module, broken)
    with pytest.raises(MtstError) as caught:
        module(torch.zeros(3, 4))
    assert str(caught.value) == ("trainer.compile: torch.compile failed (backend='broken' raised:); "
                                 "set trainer.compile=false")
    assert NO_CXX in str(caught.value.__cause__)


def test_an_error_of_the_inputs_is_raised_as_without_compiling() -> None:
    # traced with fake tensors, the misfit batch fails as a compiler error type whose first line
    # names no size; the rule re-raises what the uncompiled forward says
    module = Offset()
    with pytest.raises(RuntimeError) as eager:
        module(torch.zeros(5, 4))
    compiling.compile_in_place(module, "eager")
    with pytest.raises(RuntimeError) as caught:
        module(torch.zeros(5, 4))
    assert not isinstance(caught.value, MtstError)
    assert type(caught.value) is type(eager.value) and str(caught.value) == str(eager.value)
    assert "must match the size of tensor b (3)" in str(caught.value)
    assert caught.value.__context__ is None  # not shown as "during handling of" the compiler's
    assert module(torch.ones(3, 4)).shape == (3, 4)  # the compiled forward still works


def test_compiling_keeps_the_module_and_its_parameter_names() -> None:
    module = Offset()
    names = list(module.state_dict())
    compiling.compile_in_place(module, "eager")
    assert list(module.state_dict()) == names and isinstance(module.forward, compiling.CheckedForward)
    assert torch.equal(module(torch.ones(3, 4)), module.forward.eager(torch.ones(3, 4)))


def test_a_compiler_failure_on_the_first_batch_ends_the_run_in_one_line(tmp_path, capsys,
                                                                       monkeypatch) -> None:
    real = torch.compile

    def with_broken_backend(fn, *args, backend="inductor", **kwargs):
        return real(fn, *args, backend=broken if backend == "aot_eager" else backend, **kwargs)

    monkeypatch.setattr(torch, "compile", with_broken_backend)  # the up-front check uses eager
    with pytest.raises(SystemExit) as caught:
        report_user_errors(train_task)(compose_config(tmp_path, RUN + ["trainer.compile=aot_eager"]))
    assert caught.value.code == 2
    assert capsys.readouterr().err.strip() == (
        "error: trainer.compile: torch.compile failed (backend='broken' raised:); set "
        "trainer.compile=false")
