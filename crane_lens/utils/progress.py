"""Progress bars: ``tqdm.auto``, without its warning in a notebook that lacks ipywidgets.

``tqdm.auto`` draws widget bars in a notebook when ipywidgets is installed, text bars
otherwise. Without ipywidgets it also warns, once, when it is first imported ("IProgress not
found. Please update jupyter and ipywidgets"), although the text bars it falls back to work:
every crane_lens module imports ``tqdm`` from here, so that import (normally the first in a
process, before transformers imports it too) is made with that one warning silenced.

Example:
    >>> from crane_lens.utils.progress import tqdm
    >>> sum(tqdm(range(3), disable=True))
    3
"""

from __future__ import annotations

import warnings

from tqdm import TqdmWarning

with warnings.catch_warnings():
    warnings.filterwarnings("ignore", "IProgress not found", TqdmWarning)
    from tqdm.auto import tqdm

__all__ = ["tqdm"]
