"""Data layer: approved sources, checksummed ingestion, validated preprocessing, calibration.

Public API (see ``docs/data-layer.md``): :func:`add_source`, :func:`ingest`, :func:`preprocess`,
:func:`calibrate` and their specs, the committed calibration selections (one per dataset
version; :func:`verify_calibration_set`, :func:`selection_path`, :func:`diff_selections`),
:func:`load_split` and :func:`dataset_labels` (processed records, verified, for training),
:func:`read_text_records` (a labelled file at hand), the source registry, the typed errors, and
the demo dataset generators.
"""

from ordinal.data.add_source import AddedSource, add_source, target_registry_path
from ordinal.data.calibration import (
    CalibrationResult,
    VerifiedCalibrationSet,
    calibrate,
    select_calibration,
    verify_calibration_set,
)
from ordinal.data.columns import Columns
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
    SelectionMismatchError,
    SelectionMissingError,
    SourceChecksumError,
    SourceExistsError,
    SourceFetchError,
    SourceNotApprovedError,
)
from ordinal.data.ingest import IngestResult, ingest
from ordinal.data.labels import LabelMatcher, LabelValues, label_declaration_problems
from ordinal.data.loading import dataset_labels, load_split
from ordinal.data.preprocess import (
    PREPROCESS_OPTIONS,
    REASON_CODES,
    PreprocessReport,
    PreprocessResult,
    PreprocessSpec,
    normalise_text,
    preprocess,
    preprocess_image_folder,
    preprocess_text_file,
)
from ordinal.data.selection import (
    SELECTION_DIR_ENV,
    CalibrationSelection,
    CalibrationSpec,
    SelectionDiff,
    default_selection_dir,
    diff_selections,
    load_committed_selection,
    load_selection,
    proposal_path,
    selection_path,
    verify_selection,
    write_selection,
)
from ordinal.data.sources import (
    SourceRegistry,
    SourceSpec,
    default_registry_path,
    fetch_source,
    load_registry,
    packaged_registry_path,
)
from ordinal.data.splits import SplitSpec, assign_split
from ordinal.data.text_files import read_text_records

__all__ = [
    "PREPROCESS_OPTIONS",
    "REASON_CODES",
    "REVIEW_LABELS",
    "SELECTION_DIR_ENV",
    "SHAPE_LABELS",
    "AddedSource",
    "CalibrationError",
    "CalibrationResult",
    "CalibrationSelection",
    "CalibrationSpec",
    "Columns",
    "DataError",
    "DataFormatError",
    "EmptyDatasetError",
    "IngestResult",
    "LabelMatcher",
    "LabelValues",
    "MissingColumnError",
    "PreprocessReport",
    "PreprocessResult",
    "PreprocessSpec",
    "RawDataConflictError",
    "RegistryError",
    "RejectionThresholdError",
    "SelectionDiff",
    "SelectionMismatchError",
    "SelectionMissingError",
    "SourceChecksumError",
    "SourceExistsError",
    "SourceFetchError",
    "SourceNotApprovedError",
    "SourceRegistry",
    "SourceSpec",
    "SplitSpec",
    "VerifiedCalibrationSet",
    "add_source",
    "assign_split",
    "calibrate",
    "dataset_labels",
    "default_registry_path",
    "default_selection_dir",
    "diff_selections",
    "fetch_source",
    "ingest",
    "label_declaration_problems",
    "load_committed_selection",
    "load_registry",
    "load_selection",
    "load_split",
    "make_review_records",
    "make_shape_records",
    "normalise_text",
    "packaged_registry_path",
    "preprocess",
    "preprocess_image_folder",
    "preprocess_text_file",
    "proposal_path",
    "read_text_records",
    "select_calibration",
    "selection_path",
    "target_registry_path",
    "verify_calibration_set",
    "verify_selection",
    "write_reviews",
    "write_selection",
    "write_shapes",
]
