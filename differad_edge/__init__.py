"""DifferAD Edge: difference-guided anomaly localization (DifferAD-R1) for robot inspection cells.

The core (this package) is pure: no ROS, no CLI, and no torch at import time.
"""

__version__ = "0.2.0"
