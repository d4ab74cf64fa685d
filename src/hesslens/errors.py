"""Exceptions raised by hesslens.

Every error names the problem and, where one exists, the argument or batch at fault, so that a bad
input never turns into a wrong number.
"""


class HesslensError(Exception):
    """Base class of all hesslens errors."""


class InvalidInputError(HesslensError, ValueError):
    """An argument, a batch or a loss value is unusable (empty data, non-finite loss, bad shape)."""


class NonDeterministicLossError(HesslensError, RuntimeError):
    """Two evaluations of the same loss differed: the operator would not be a fixed matrix."""


class MemoryBudgetError(HesslensError, MemoryError):
    """A dense request would exceed the memory budget; the message carries the estimate."""


class EngineRefusedError(HesslensError, RuntimeError):
    """No product engine (or not the requested one) gives products that agree with double backward."""


class DistributedMismatchError(HesslensError, RuntimeError):
    """The ranks of a distributed operator asked for different products: they are not running the same
    analysis (a different ``seed=``, setting or order of estimators on some rank)."""
