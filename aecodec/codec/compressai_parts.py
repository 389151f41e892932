"""The CompressAI pieces the codec uses (entropy models, their rANS coder, GDN), imported without
the rest of CompressAI.

`import compressai` runs compressai/__init__.py, which imports every subpackage: datasets pull in
torch_geometric (and with it torch._dynamo), models and zoo the whole model family, and
entropy_models imports scipy.stats: ~1.1 s on this machine before a file is coded. The codec
needs two modules. When CompressAI has not been imported yet, this registers a bare `compressai`
package (rans.py), and keeps entropy_models' `import scipy.stats` from running: scipy.stats is only used when
CDF tables are rebuilt (training, export), and scipy loads it on that first use. A later
`import compressai.zoo` (benchmarks, tests) still works: its submodules import from the same
directory.
"""
from __future__ import annotations

import contextlib
import sys
import types
import warnings

from .rans import bare_compressai_package


@contextlib.contextmanager
def _not_imported(name: str):
    """`import name` succeeds without running the module while this lasts; afterwards the name is
    unbound again, so the first real use (scipy.stats via scipy's lazy submodules) imports it."""
    if name in sys.modules:
        yield
        return
    placeholder = types.ModuleType(name)
    sys.modules[name] = placeholder
    try:
        yield
    finally:
        if sys.modules.get(name) is placeholder:
            del sys.modules[name]
        parent, _, child = name.rpartition(".")
        namespace = vars(sys.modules[parent]) if parent in sys.modules else {}
        if namespace.get(child) is placeholder:  # not getattr: scipy's __getattr__ would import it
            del namespace[child]


bare_compressai_package()
with warnings.catch_warnings(), _not_imported("scipy.stats"):
    warnings.simplefilter("ignore", FutureWarning)  # compressai calls the deprecated torch.jit.script
    from compressai.entropy_models.entropy_models import EntropyBottleneck, GaussianConditional
    from compressai.layers.gdn import GDN

__all__ = ["EntropyBottleneck", "GaussianConditional", "GDN"]
