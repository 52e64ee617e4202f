"""The notebooks under pytest (nbval, ``--nbval-lax``): fast, on the embedded demo model.

Notebook 04 uses gemma-3-270m where it is installed (a few minutes on 2 CPU cores); ``make test``
keeps it on crane-tiny, and ``make test-real`` runs it on gemma-3-270m by setting
``CRANE_LENS_NOTEBOOK_MODEL`` itself. The kernels nbval starts inherit this environment.
"""

import os

os.environ.setdefault("CRANE_LENS_NOTEBOOK_MODEL", "crane-tiny")
