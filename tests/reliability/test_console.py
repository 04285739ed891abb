"""A user's mistake is one line on the terminal, whatever a dependency's logger says.

Each entry point runs offline on a mistake made after the model is built, where transformers'
`kernels` dependency (in the locked install) logs its offline-mode warnings: they go to the run's
log file, not the terminal.
"""

from __future__ import annotations

import io
import logging
import os
import re
import shutil
import subprocess
import sys

from mtst.console import ConsoleFilter, quiet_console
from tests.reliability.helpers import CLI_TINY, ROOT, SAMPLE

# a Hydra console line of a logger other than mtst's, Lightning's or Hydra's, at WARNING
THIRD_PARTY_WARNING = re.compile(r"\]\[(?!mtst|lightning|hydra)[\w.]+\]\[WARNING\]")


def _mistakes(run_folder, tmp_path) -> dict[str, list[str]]:
    from mtst.inference.export import export

    export(run_folder / "checkpoints" / "last.ckpt", tmp_path / "export")
    truncated = tmp_path / "truncated"
    shutil.copytree(tmp_path / "export", truncated)
    weights = truncated / "mtst" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    bad_jsonl = tmp_path / "bad.jsonl"
    bad_jsonl.write_text('{"text": "A ferry.", "topic": "travel"}\n{"text": \n', "utf-8")
    texts = tmp_path / "texts.txt"
    texts.write_text("A ferry to the islands.\nA new phone.\n", "utf-8")
    (tmp_path / "no_jobs").mkdir()
    mtst = ["-m", "mtst.cli.main"]
    run = [f"hydra.run.dir={tmp_path / 'run'}"]
    return {
        "train.py": [str(ROOT / "train.py"), *CLI_TINY, "freeze=lora", "freeze.lora.r=0", *run],
        "evaluate.py": [
            str(ROOT / "evaluate.py"),
            *CLI_TINY,
            f"ckpt_path={run_folder / 'checkpoints' / 'last.ckpt'}",
            f"tasks.topic.test_files=[{bad_jsonl}]",
            f"tasks.ner.test_files=[{SAMPLE / 'test.jsonl'}]",
            f"hydra.run.dir={tmp_path / 'eval'}",
        ],
        "predict": [*mtst, "predict", "--checkpoint", str(truncated), "A ferry."],
        "export": [*mtst, "export", "--checkpoint", str(truncated), "--out", str(tmp_path / "e2")],
        "serve": [*mtst, "serve", str(truncated), "--port", "0"],
        "report": [*mtst, "report", str(tmp_path / "no_jobs")],
        "plot-embeddings": [
            *mtst,
            "plot-embeddings",
            "--model",
            str(truncated),
            "--input",
            str(texts),
            "--out",
            str(tmp_path / "plots"),
        ],
    }


def test_each_entry_point_prints_one_line_on_a_mistake(reference_run, tmp_path) -> None:
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "TOKENIZERS_PARALLELISM": "false",
    }
    env.pop("MTST_TRACEBACK", None)
    commands = _mistakes(reference_run[0], tmp_path)
    # all at once: each is mostly start-up, and two cores overlap them
    running = {
        name: subprocess.Popen(
            [sys.executable, *args],
            cwd=ROOT,
            env=env,
            text=True,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        for name, args in commands.items()
    }
    wrong = []
    for name, process in running.items():
        stdout, stderr = process.communicate(timeout=300)
        lines = [line for line in stderr.splitlines() if line.strip()]
        if process.returncode != 2 or len(lines) != 1 or not lines[0].startswith("error: "):
            wrong.append(f"{name}: exit {process.returncode}, stderr:\n{stderr}")
        elif THIRD_PARTY_WARNING.search(stdout):
            wrong.append(f"{name}: a library's warning on stdout:\n{stdout}")
    assert not wrong, "\n\n".join(wrong)


def test_the_console_drops_library_warnings_and_the_log_file_keeps_them(tmp_path) -> None:
    console = io.StringIO()
    root = logging.getLogger()
    saved = root.handlers[:]
    log_file = logging.FileHandler(tmp_path / "train.log", encoding="utf-8")
    root.handlers[:] = [logging.StreamHandler(console), log_file]
    try:
        quiet_console()
        quiet_console()  # idempotent: one filter per handler
        logging.getLogger("some_library.hub").warning("offline: skipping a check")
        logging.getLogger("some_library.hub").error("the library failed")
        logging.getLogger("mtst").warning("mtst speaks")
        logging.getLogger("lightning.pytorch").warning("Lightning speaks")
        assert sum(isinstance(f, ConsoleFilter) for f in root.handlers[0].filters) == 1
        assert not log_file.filters
    finally:
        root.handlers[:] = saved
        log_file.close()
    assert console.getvalue().splitlines() == [
        "the library failed",
        "mtst speaks",
        "Lightning speaks",
    ]
    kept = (tmp_path / "train.log").read_text("utf-8")
    assert "offline: skipping a check" in kept and "mtst speaks" in kept
