"""Region extraction workflow: computed once per maps image and shared by every run."""

from __future__ import annotations

from nipype.interfaces import utility as niu
from nipype.pipeline import engine as pe

from bids_regionx.interfaces.bids import WriteAtlas
from bids_regionx.interfaces.regions import PrepareMaps, SplitRegions, ThresholdMaps


def init_regions_wf(maps_spec, settings, *, name: str = "regions_wf") -> pe.Workflow:
    """Maps masking, thresholding and region splitting for one maps image.

    Parameters
    ----------
    maps_spec : bids_regionx.io.maps.MapsSpec
        The maps image, its label, space and map names.
    settings : bids_regionx.config.Settings
    name : str
        Workflow name.

    Outputs
    -------
    regions_file
        4D float32 regions on the maps' grid.
    table_file
        Region look-up table (TSV).
    names
        Region names, in volume order.
    """
    workflow = pe.Workflow(name=name)
    workflow.__desc__ = None
    opts = settings.regions
    outputnode = pe.Node(
        niu.IdentityInterface(fields=["regions_file", "table_file", "names"]), name="outputnode"
    )
    prepare = pe.Node(PrepareMaps(maps_file=str(maps_spec.path)), name="prepare_maps")
    if settings.maps.mask is not None:
        prepare.inputs.mask_file = str(settings.maps.mask)
    threshold = pe.Node(
        ThresholdMaps(
            strategy=opts.thresholding_strategy,
            threshold=opts.threshold,
            two_sided=opts.two_sided,
        ),
        name="threshold_maps",
    )
    n_threads = settings.execution.omp_nthreads or 1
    split = pe.Node(
        SplitRegions(
            extractor=opts.extractor,
            smoothing_fwhm=opts.smoothing_fwhm or None,
            min_region_size=opts.min_region_size,
            map_names=list(maps_spec.map_names),
            n_threads=n_threads,
        ),
        name="split_regions",
        n_procs=n_threads,
        mem_gb=2.0,
    )
    write = pe.Node(
        WriteAtlas(
            output_dir=str(settings.output_dir),
            atlas=maps_spec.label,
            space=maps_spec.space,
            res=maps_spec.res or "",
            source_file=maps_spec.uri,
            description_file=str(maps_spec.description_file or ""),
            map_names=list(maps_spec.map_names),
        ),
        name="write_atlas",
        run_without_submitting=True,
    )
    workflow.connect([
        (prepare, threshold, [("maps_file", "maps_file"), ("mask_file", "mask_file")]),
        (threshold, split, [("thresholded_file", "thresholded_file")]),
        (prepare, split, [("mask_file", "mask_file")]),
        (prepare, write, [("masked_maps_file", "maps_used_file")]),
        (split, write, [("regions_file", "regions_file"), ("table_file", "table_file")]),
        (split, outputnode, [("regions_file", "regions_file"), ("table_file", "table_file"),
                             ("names", "names")]),
    ])  # fmt: skip
    return workflow
