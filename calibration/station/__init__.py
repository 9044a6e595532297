"""The field station web app (``differad-station``): capture, session, care mask, build, validate,
promote / rollback, history and spot check in a browser, through the calibration functions."""

from .app import LiveCapture, StationSettings, create_app

__all__ = ["LiveCapture", "StationSettings", "create_app"]
