"""Exceptions raised by the numerical core (mirroring nilearn's where callers rely on them)."""

from __future__ import annotations


class DimensionError(TypeError):
    """An image has the wrong number of dimensions.

    Subclasses :class:`TypeError` like nilearn's ``DimensionError`` so that code catching either
    behaves the same.
    """

    def __init__(self, file_dimension: int, required_dimension: int, name: str = "Input data"):
        self.file_dimension = file_dimension
        self.required_dimension = required_dimension
        super().__init__(
            f"{name} has incompatible dimensionality: Expected dimension is "
            f"{required_dimension}D and you provided a {file_dimension}D image."
        )


class AllVolumesRemovedError(Exception):
    """Every volume of a run was censored."""

    def __init__(self):
        super().__init__(
            "The size of the sample mask is 0. All volumes were marked as motion outliers "
            "can not proceed. "
        )
