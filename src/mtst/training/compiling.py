"""`trainer.compile=true`: torch.compile the encoder before fitting, or refuse in one line.

Only the encoder is compiled (the backbone's forward and pooling: nearly all the compute); the
heads are a few small matmuls. `nn.Module.compile` compiles in place, so parameter names, the
state dict and every checkpoint stay exactly as without it. A frozen backbone served from the
feature cache never runs the encoder, so it costs no compilation either.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from mtst.errors import MtstError, first_line

# inductor generates kernels (what `true` means); cudagraphs replays CUDA graphs; aot_eager and
# eager only capture graphs, which checks in seconds that the model compiles at all
BACKENDS = ("inductor", "cudagraphs", "aot_eager", "eager")


def compile_encoder(module: Any, setting: Any) -> bool:
    """Compile ``module.net.encoder`` in place; whether it did. ``setting``: false, true (inductor)
    or one of BACKENDS."""
    if setting is False or setting is None:
        return False
    import torch._dynamo

    if setting is not True and setting not in BACKENDS:
        raise MtstError(f"trainer.compile={setting!r}: expected true, false or a torch.compile "
                        f"backend ({', '.join(BACKENDS)})")
    if not torch._dynamo.is_dynamo_supported():
        raise MtstError("trainer.compile: torch.compile is not supported by this Python / "
                        f"PyTorch build (torch {torch.__version__}); set trainer.compile=false")
    module.net.encoder.compile(backend="inductor" if setting is True else setting)
    return True


@contextmanager
def compile_errors(compiling: bool) -> Iterator[None]:
    """A compiler that fails on the first batch (no C++ compiler for the CPU backend, an
    unsupported operation) ends the run with one line instead of the compiler's traceback."""
    if not compiling:
        yield
        return
    from torch._dynamo.exc import BackendCompilerFailed, TorchRuntimeError, Unsupported

    try:
        yield
    except (BackendCompilerFailed, Unsupported, TorchRuntimeError) as err:
        raise MtstError(f"trainer.compile: torch.compile failed ({first_line(err)}); set "
                        "trainer.compile=false") from err
