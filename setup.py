"""Build of the compiled random-walker kernels; everything else is in pyproject.toml."""

from Cython.Build import cythonize
from setuptools import Extension, setup

setup(
    ext_modules=cythonize(
        [
            Extension(
                "bids_regionx.core._stencil",
                ["bids_regionx/core/_stencil.pyx"],
                include_dirs=["bids_regionx/core"],
                depends=["bids_regionx/core/_stencil_kernels.h"],
                # Bit-identical to scipy/numpy needs every product rounded before it is
                # added: never contract a*b+c into one fused multiply-add.
                extra_compile_args=["-O3", "-ffp-contract=off"],
            )
        ],
        compiler_directives={"language_level": "3"},
    )
)
