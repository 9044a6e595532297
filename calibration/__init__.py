"""Field calibration of reference images (``differad-calibrate``).

capture (folder, video, ROS 2 bag, live topic) -> quality gates -> build a candidate (aligned
center image, per-pixel spread, care mask) -> validate on held-out frames (false alarms, detections,
tuned golden thresholds, HTML report) -> promote / rollback in the reference store.
Heavy pieces (rosbags, rclpy) are imported only by the source that needs them.
"""

from .build import BuiltReference, build_candidate, build_reference
from .commands import latest_candidate, list_products, promote, rollback, run_validation, show
from .config import AutoMaskConfig, BuildConfig, CalibrationConfig, GateConfig, ValidateConfig, load_config
from .gates import GATES, FrameVerdict, GateReport, evaluate_gates
from .masks import load_care_mask, unstable_mask
from .report import write_report
from .session import Session, capture, load_session
from .sources import Frame, collect_frames, iter_frames, ros_image_to_rgb
from .validate import Sample, ValidationResult, load_defects, validate_reference

__all__ = [
    "GATES",
    "AutoMaskConfig",
    "BuildConfig",
    "BuiltReference",
    "CalibrationConfig",
    "Frame",
    "FrameVerdict",
    "GateConfig",
    "GateReport",
    "Sample",
    "Session",
    "ValidateConfig",
    "ValidationResult",
    "build_candidate",
    "build_reference",
    "capture",
    "collect_frames",
    "evaluate_gates",
    "iter_frames",
    "latest_candidate",
    "list_products",
    "load_care_mask",
    "load_config",
    "load_defects",
    "load_session",
    "promote",
    "rollback",
    "ros_image_to_rgb",
    "run_validation",
    "show",
    "unstable_mask",
    "validate_reference",
    "write_report",
]
