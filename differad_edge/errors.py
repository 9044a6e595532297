"""One small error tree. CLIs turn any ``DifferadError`` into one line on stderr and exit code 2.

What a frame's inspection concludes is never an error: a frame that cannot be aligned or a model
answer without a box is a NOT_INSPECTED result with a reason (``outcome.Reason``), so no frame ends
a stream; the errors here are for bad inputs, configs and files.
"""

from __future__ import annotations


class DifferadError(Exception):
    """Base of every error the SDK raises on purpose (bad input, bad config, bad files)."""


class ImageError(DifferadError):
    """An image is missing, corrupt, empty, of an unsupported format/encoding, or absurdly large."""


class BoxError(DifferadError):
    """A box is malformed (wrong length, non-finite coordinates)."""


class ReferenceError(DifferadError):  # shadows the builtin on purpose: the domain word for a golden image
    """Unknown product/version, invalid id, or a reference whose files fail their checksum."""


class ConfigError(DifferadError):
    """A configuration value is invalid (names the value, what was expected, and the fix)."""


class EngineError(DifferadError):
    """Unknown engine name, or an engine that cannot run with what it was given."""


class ModelLoadError(DifferadError):
    """A model directory is missing, not a supported checkpoint, or unsafe to load."""


class BundleError(DifferadError):
    """An export bundle is missing files, altered (checksum), or of an unknown format version."""


class DatasetError(DifferadError):
    """A dataset or predictions file is missing or malformed."""


class CalibrationError(DifferadError):
    """A calibration step cannot go on (empty source, no accepted frames, failed validation)."""


class BudgetError(DifferadError):
    """An export would not fit the memory budget."""


def missing_extra(package: str, extra: str) -> ImportError:
    """The error to raise when an optional dependency is absent: names the extra to install."""
    return ImportError(f"{package} is required for this feature: pip install 'differad-edge[{extra}]'")
