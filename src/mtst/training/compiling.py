"""`trainer.compile=true`: torch.compile the encoder before fitting, or refuse in one line.

Only the encoder is compiled (the backbone's forward and pooling: nearly all the compute); the
heads are a few small matmuls. The encoder's `forward` is replaced, on the instance, by its
compiled version, so the module, its parameter names, the state dict and every checkpoint stay
exactly as without it. A frozen backbone served from the feature cache never runs the encoder,
so it costs no compilation either.

Everything here goes through the public `torch.compile`: torch has no public support check and
no public compiler error types, so both the check up front (`check_compile_works`) and the
one-line error for a compiler failure (`CheckedForward`) are built from what `torch.compile`
does, not from the names of its private exceptions.
"""

from __future__ import annotations

from collections.abc import Callable
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
    if setting is not True and setting not in BACKENDS:
        raise MtstError(f"trainer.compile={setting!r}: expected true, false or a torch.compile "
                        f"backend ({', '.join(BACKENDS)})")
    check_compile_works()
    compile_in_place(module.net.encoder, "inductor" if setting is True else setting)
    return True


def _probe(x: Any) -> Any:
    return x * 2 + 1


def check_compile_works() -> None:
    """Refuse in one line, before fitting starts, where torch.compile cannot work at all.

    A trivial function is compiled with the graph-capturing `eager` backend (no code generated:
    a few hundredths of a second once torch.compile is loaded) and called. That runs what every
    backend needs: `torch.compile` itself, which refuses an unsupported Python (3.15+, or a
    free-threaded build before 3.13.3), and Dynamo capturing a graph. A backend's own failure
    (no C++ compiler for inductor, no GPU for cudagraphs) shows on the first batch instead, as
    one line too (`CheckedForward`)."""
    import torch

    try:
        torch.compile(_probe, backend="eager", fullgraph=True)(torch.zeros(2))
    except Exception as err:
        raise MtstError("trainer.compile: torch.compile is not supported by this Python / "
                        f"PyTorch build (torch {torch.__version__}: {first_line(err)}); set "
                        "trainer.compile=false") from err


def compile_in_place(encoder: Any, backend: str | Callable[..., Any]) -> None:
    """Replace ``encoder.forward`` on the instance by its compiled version (`CheckedForward`).
    `nn.Module.__call__` runs the instance's `forward`, so callers are unchanged, and nothing is
    added to the module (no wrapper module, no `_orig_mod.` in the parameter names)."""
    encoder.forward = CheckedForward(encoder.forward, backend)


class CheckedForward:
    """A compiled forward whose compiler failure ends the run with one line.

    The rule: when the compiled forward raises, the same call is made once more without
    compiling. If that raises too, its error is raised, as a run without `trainer.compile`
    would have raised it; if it returns, the compiled call's failure is the compiler's, and it
    becomes one `MtstError` line (the compiler's own error is its cause, shown with
    MTST_TRACEBACK=1).

    Why this is safe:

    - It never turns an error of the user's data or model into "torch.compile failed": such an
      error belongs to the forward itself, so the uncompiled forward raises it again on the same
      inputs. Telling errors apart by their type could not do that: a batch whose shape does
      not fit the model fails while Dynamo traces it with fake tensors, as a compiler error
      type (`TorchRuntimeError`) whose first line names no shape; here the user sees the plain
      `RuntimeError` that names the sizes.
    - A real compiler failure (Dynamo cannot trace, the backend fails, the generated code
      fails) does not happen without the compiler, so the uncompiled call returns and the
      failure is one line. That holds on the first batch and on any later one that compiles
      again (a new sequence length, eval mode).
    - Only `Exception` is caught: Ctrl-C and Lightning's SIGTERM exit (`SystemExit`) pass
      through untouched, and so do mtst's own one-line errors (`MtstError`).
    - Nothing is retried on success, so a working compile costs one Python call per forward. The
      second call happens only on the way to ending the run: the random numbers it draws and the
      autograd graph it builds are never used.

    What it does not see: a failure in the compiled backward (raised in `loss.backward()`,
    after the forward returned) keeps torch's own traceback. A failure that happens with the
    compiler only by chance (out of memory) is reported as the compiler's when the second,
    uncompiled call fits. Under FSDP the second call gathers the encoder's shards again, so it
    completes only where every rank makes it, as ranks that compiled the same graph and failed
    alike do.
    """

    def __init__(self, forward: Callable[..., Any], backend: str | Callable[..., Any]) -> None:
        import torch

        self.eager = forward
        self.compiled = torch.compile(forward, backend=backend)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return self.compiled(*args, **kwargs)
        except MtstError:
            raise
        except Exception as err:
            failure = err
        # outside the handler: an error of the uncompiled call is raised on its own, not as
        # "during handling of" the compiler's
        self.eager(*args, **kwargs)
        raise MtstError(f"trainer.compile: torch.compile failed ({first_line(failure)}); set "
                        "trainer.compile=false") from failure
