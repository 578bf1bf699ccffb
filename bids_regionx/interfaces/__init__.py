"""Nipype interfaces: thin wrappers that read files, call :mod:`bids_regionx.core`, write files."""
