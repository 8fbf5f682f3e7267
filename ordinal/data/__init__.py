"""Data layer: approved sources, checksummed ingestion, validated preprocessing, calibration.

Public API (see ``docs/data-layer.md``): :func:`ingest`, :func:`preprocess`,
:func:`calibrate` and their specs, :func:`load_split` and :func:`dataset_labels` (processed
records, verified, for training), the source registry, the typed errors, and the demo
dataset generators.
"""

from ordinal.data.calibration import (
    CalibrationSelection,
    CalibrationSpec,
    calibrate,
    load_selection,
    select_calibration,
    verify_selection,
    write_selection,
)
from ordinal.data.demo_images import SHAPE_LABELS, make_shape_records, write_shapes
from ordinal.data.demo_text import REVIEW_LABELS, make_review_records, write_reviews
from ordinal.data.errors import (
    CalibrationError,
    DataError,
    DataFormatError,
    EmptyDatasetError,
    MissingColumnError,
    RawDataConflictError,
    RegistryError,
    RejectionThresholdError,
    SourceChecksumError,
    SourceFetchError,
    SourceNotApprovedError,
)
from ordinal.data.ingest import IngestResult, ingest
from ordinal.data.loading import dataset_labels, load_split
from ordinal.data.preprocess import (
    REASON_CODES,
    PreprocessReport,
    PreprocessResult,
    PreprocessSpec,
    normalise_text,
    preprocess,
    preprocess_image_folder,
    preprocess_text_file,
)
from ordinal.data.sources import SourceRegistry, SourceSpec, fetch_source, load_registry
from ordinal.data.splits import SplitSpec, assign_split

__all__ = [
    "REASON_CODES",
    "REVIEW_LABELS",
    "SHAPE_LABELS",
    "CalibrationError",
    "CalibrationSelection",
    "CalibrationSpec",
    "DataError",
    "DataFormatError",
    "EmptyDatasetError",
    "IngestResult",
    "MissingColumnError",
    "PreprocessReport",
    "PreprocessResult",
    "PreprocessSpec",
    "RawDataConflictError",
    "RegistryError",
    "RejectionThresholdError",
    "SourceChecksumError",
    "SourceFetchError",
    "SourceNotApprovedError",
    "SourceRegistry",
    "SourceSpec",
    "SplitSpec",
    "assign_split",
    "calibrate",
    "dataset_labels",
    "fetch_source",
    "ingest",
    "load_registry",
    "load_selection",
    "load_split",
    "make_review_records",
    "make_shape_records",
    "normalise_text",
    "preprocess",
    "preprocess_image_folder",
    "preprocess_text_file",
    "select_calibration",
    "verify_selection",
    "write_reviews",
    "write_selection",
    "write_shapes",
]
