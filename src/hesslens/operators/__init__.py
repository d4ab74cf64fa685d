"""Curvature as a linear operator."""

from .base import SymmetricOperator, as_operator, assemble_dense
from .blocks import BlockView
from .hessian import HessianOperator
from .params import select_parameters
from .state import preserved_state

__all__ = ["BlockView", "HessianOperator", "SymmetricOperator", "as_operator", "assemble_dense", "preserved_state", "select_parameters"]
