"""No progress-bar noise where nobody asked for it: model loading and notebook imports."""

from __future__ import annotations

import subprocess
import sys

import pytest

import crane_lens as cl
from crane_lens.model.loader import builtin_model_dir

# A notebook kernel without ipywidgets, as tqdm.autonotebook detects one.
FAKE_KERNEL = """
import sys, types, warnings
class ZMQInteractiveShell:
    config = {"IPKernelApp": {}}
fake = types.ModuleType("IPython")
fake.get_ipython = ZMQInteractiveShell
sys.modules.update({"IPython": fake, "ipykernel.zmqshell": types.ModuleType("zmqshell"),
                    "ipywidgets": None})
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    import {module}
    from tqdm.auto import tqdm
print(tqdm.__module__, [str(w.message) for w in caught])
"""


@pytest.mark.parametrize(("module", "warns"), [("tqdm.auto", True),
                                               ("crane_lens.utils.progress", False)])  # fmt: skip
def test_no_iprogress_warning_in_a_kernel_without_ipywidgets(module: str, warns: bool) -> None:
    code = FAKE_KERNEL.replace("{module}", module)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert ("IProgress not found" in out.stdout) is warns, out.stdout  # tqdm.auto alone: it warns
    assert out.stdout.startswith("tqdm.")  # the text bars it falls back to


def test_loading_a_model_prints_no_weight_bar(capfd: pytest.CaptureFixture[str]) -> None:
    from transformer_lens import TransformerBridge
    from transformers.utils import logging as hf_logging

    hf_logging.enable_progress_bar()
    TransformerBridge.boot_transformers(str(builtin_model_dir("crane-tiny")), device="cpu")
    assert "Loading weights" in capfd.readouterr().err  # what load_model is to keep quiet
    cl.load_model("crane-tiny", device="cpu")
    assert "Loading weights" not in capfd.readouterr().err
    assert hf_logging.is_progress_bar_enabled()  # the user's setting is back


def test_no_iprogress_warning_when_a_library_imports_tqdm_first() -> None:
    """A notebook's `import crane_lens as cl` then `cl.load_model(...)`: crane_lens loads its API
    lazily, so TransformerLens (through transformers) imports tqdm.auto before crane_lens does."""
    code = FAKE_KERNEL.split("with warnings")[0] + (
        "import crane_lens\nimport transformer_lens\nfrom tqdm.auto import tqdm\nprint(tqdm.__module__)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "IProgress not found" not in out.stderr, out.stderr
    assert out.stdout.startswith("tqdm.")
