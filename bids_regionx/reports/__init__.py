"""Reports and methods text: matplotlib figures, jinja2 pages (autoescaped), boilerplate.

- :mod:`.participant`: ``sub-<label>.html`` and its figures, from the files on disk;
- :mod:`.group_report`: ``group.html`` (the group level), on the same templates and figures;
- :mod:`.estimator`: ``RegionExtractor.generate_report``;
- :mod:`.boilerplate`: ``logs/CITATION.{md,html,bib}`` from ``boilerplate/``;
- :mod:`.figures`: the plots (arrays in, figures out), deterministic SVG/PNG bytes.

Nothing here is imported by ``import bids_regionx``.
"""
