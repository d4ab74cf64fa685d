"""Curvature as a linear operator."""

from .base import SymmetricOperator, as_operator, assemble_dense
from .hessian import HessianOperator
from .params import select_parameters
from .state import preserved_state

__all__ = ["HessianOperator", "SymmetricOperator", "as_operator", "assemble_dense", "preserved_state", "select_parameters"]
