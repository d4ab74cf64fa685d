"""Hypothesis settings shared by the linear-algebra property tests.

Derandomised so that a CI run is reproducible; ``HESSLENS_HYPOTHESIS_EXAMPLES=N`` multiplies nothing but
replaces every count (and draws at random) for a longer local search. Modest default counts keep
tests/linalg well under two minutes on two cores.
"""

import os

from hypothesis import HealthCheck, settings


def prop(max_examples: int = 30) -> settings:
    search = os.environ.get("HESSLENS_HYPOTHESIS_EXAMPLES")
    return settings(max_examples=int(search) if search else max_examples, deadline=None,
                    derandomize=not search, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
