#!/usr/bin/env bash
# Register the ament_python package differad_edge in a venv's ament index, as colcon would install it.
#
# usage: bash scripts/register_ros_package.sh VENV
#
# `pip install -e ros2_ws/src/differad_edge` installs the Python module and console scripts but no
# ament index marker, share/ files or lib/<package>/ executables, so `ros2 run differad_edge
# inspector` and `ros2 launch differad_edge inspect.launch.py` (where a ROS 2 CLI is present) could
# not find the package. This writes what colcon's install would: the marker, package.xml, launch/
# and config/ under VENV/share, and small executables under VENV/lib/differad_edge that run the
# venv's interpreter. Idempotent (files are replaced).
set -euo pipefail

VENV=${1:?usage: register_ros_package.sh VENV}
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VENV=$(cd "$VENV" && pwd)
PKG=differad_edge
SRC="$ROOT/ros2_ws/src/$PKG"
[ -x "$VENV/bin/python" ] || { echo "register_ros_package: no interpreter at $VENV/bin/python" >&2; exit 2; }

install -d "$VENV/share/ament_index/resource_index/packages" "$VENV/share/$PKG/launch" "$VENV/share/$PKG/config" \
  "$VENV/lib/$PKG"
install -m 644 "$SRC/resource/$PKG" "$VENV/share/ament_index/resource_index/packages/$PKG"
install -m 644 "$SRC/package.xml" "$VENV/share/$PKG/package.xml"
install -m 644 "$SRC"/launch/*.launch.py "$VENV/share/$PKG/launch/"
install -m 644 "$SRC"/config/*.yaml "$SRC"/config/*.xml "$VENV/share/$PKG/config/"
# executable name -> module (same as setup.py's console_scripts)
for pair in inspector:node differad-inspector:node differad-camera-sim:camera_sim \
            differad-cell-monitor:monitor differad-cell-demo:cell_demo; do
  exe=${pair%%:*} module=${pair#*:}
  tmp="$VENV/lib/$PKG/.$exe.tmp"
  printf '#!/bin/sh\nexec "%s" -m differad_edge_ros.%s "$@"\n' "$VENV/bin/python" "$module" >"$tmp"
  chmod 755 "$tmp"
  mv -f "$tmp" "$VENV/lib/$PKG/$exe"
done
echo "register_ros_package: $PKG registered in the ament index of $VENV"
