"""Views: one product inspected from several poses, each pose with its own reference.

A robot cell moves the camera (or the part) to several poses per part; each pose sees a different
image, so each needs its own reference. Rather than a second key in the store, a view is a
reference id of its own: ``reference_id("housing", "top")`` is ``"housing.top"``, registered,
validated and promoted like any product. This is the one place that mapping lives: the ROS node,
calibration and the CLIs all call :func:`reference_id`.
"""

from __future__ import annotations

import re

from .errors import ConfigError

#: The store's id rule (``store.ID_PATTERN``): what a reference id must match.
REFERENCE_ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
#: A view id: letters, digits, '_' and '-' (no '.', which separates it from the product id).
VIEW_ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,31}$")
SEPARATOR = "."


def reference_id(product_id: str, view_id: str | None = None) -> str:
    """The store id of ``product_id`` seen from ``view_id``: ``product`` (no view) or ``product.view``.

    Raises :class:`ConfigError` naming the bad id when either part, or the combination, is not a
    valid store id.
    """
    if not isinstance(product_id, str) or not REFERENCE_ID_PATTERN.match(product_id):
        raise ConfigError(
            f"product id {product_id!r} is not valid; expected letters, digits, '.', '_' or '-' "
            "(starting with a letter or digit, at most 64)"
        )
    if not view_id:
        return product_id
    if not isinstance(view_id, str) or not VIEW_ID_PATTERN.match(view_id):
        raise ConfigError(
            f"view id {view_id!r} is not valid; expected letters, digits, '_' or '-' "
            "(starting with a letter or digit, at most 32, no '.')"
        )
    combined = f"{product_id}{SEPARATOR}{view_id}"
    if len(combined) > 64:
        raise ConfigError(
            f"reference id {combined!r} of product {product_id!r}, view {view_id!r} is longer than 64 characters; "
            "use shorter product or view ids"
        )
    return combined


__all__ = ["REFERENCE_ID_PATTERN", "VIEW_ID_PATTERN", "reference_id"]
