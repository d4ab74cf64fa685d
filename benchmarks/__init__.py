"""hesslens benchmarks: the zoo of models and side-by-side runs against the peer libraries.

Run ``python -m benchmarks.run --help``. The environment variable ``HESSLENS_BENCH_HIDE`` (a
comma-separated list of module names) makes those modules unimportable in the benchmark
processes, to check that everything works on a machine without the optional ``bench`` extra.
"""

import os
import sys

for _name in filter(None, os.environ.get("HESSLENS_BENCH_HIDE", "").split(",")):
    sys.modules[_name.strip()] = None  # type: ignore[assignment]  # import now raises ImportError
