"""How this crane_lens was installed, for hints that say how to add an optional extra.

A user who installed from a package registry adds an extra with ``pip install
'crane_lens[figures]'``; one who runs a source checkout needs ``pip install -e '.[figures]'``:
the registry's name would fetch a second copy instead of adding the extra to the checkout.
"""

from __future__ import annotations

import json
import re
import shlex
from collections.abc import Iterable
from pathlib import Path
from typing import Any


def _package_root() -> Path:
    """The folder holding the ``crane_lens`` package this code runs from."""
    return Path(__file__).resolve().parents[2]


def install_source(dists: Iterable[Any] | None = None) -> tuple[Path, bool] | None:
    """Where the running crane_lens was installed from, when not from a package registry.

    Args:
        dists: The installed ``crane_lens`` distributions (default: ``importlib.metadata``'s).

    Returns:
        ``(folder, editable)``: a source folder the package was installed from (its
        ``direct_url.json``, PEP 610: ``pip install -e .`` or ``pip install .``), or the source
        checkout the package runs from (a ``pyproject.toml`` naming crane_lens beside it, e.g.
        on ``PYTHONPATH``: editable); ``None`` for an install from a registry or a wheel.
    """
    from importlib.metadata import distributions
    from urllib.parse import unquote, urlparse

    root = _package_root()
    for dist in distributions(name="crane_lens") if dists is None else dists:
        try:
            info = json.loads(dist.read_text("direct_url.json") or "null")
        except ValueError:
            continue
        url = urlparse(info.get("url", "")) if isinstance(info, dict) else None
        if url is None or url.scheme != "file" or "dir_info" not in info:
            continue  # a wheel or archive file, a VCS URL: no folder to install from
        folder, editable = Path(unquote(url.path)), bool(info["dir_info"].get("editable"))
        if not editable or folder.resolve() == root:  # editable: the checkout we run from
            return folder, editable
    pyproject = root / "pyproject.toml"
    if pyproject.is_file() and re.search(r'^name\s*=\s*"crane_lens"\s*$',
                                         pyproject.read_text(encoding="utf-8"), re.M):  # fmt: skip
        return root, True
    return None


def install_command(extra: str = "figures") -> str:
    """The ``pip install`` command that adds an optional extra to *this* installation.

    From a package registry: ``pip install 'crane_lens[figures]'``. From a source checkout
    (an editable install, or the tree on ``PYTHONPATH``): ``pip install -e '.[figures]'`` (the
    checkout's path instead of ``.`` when the working folder is elsewhere); the registry name
    would fetch another copy instead of adding the extra to the checkout.

    Example:
        >>> install_command("figures")  # doctest: +SKIP
        "pip install -e '.[figures]'"
    """
    source = install_source()
    if source is None:
        return f"pip install {shlex.quote(f'crane_lens[{extra}]')}"
    folder, editable = source
    try:
        where = "." if folder.resolve() == Path.cwd().resolve() else str(folder)
    except OSError:  # the working folder was removed
        where = str(folder)
    return f"pip install {'-e ' if editable else ''}{shlex.quote(f'{where}[{extra}]')}"
