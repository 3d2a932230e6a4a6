"""gzip inflate for the trade archives: ISA-L (``isal``), with zlib's interface and checks.

Inflating is the largest single cost of importing a Bybit trade archive
(about 150 MB of text per million rows), and it is paid twice on
``pbdtui data download --import``: once to verify the download, once to
import it. Measured on one such file (41 MB gz) on this project's 2-core
machine: zlib 0.85 CPU s, zlib-ng 0.34 s, ISA-L 0.24 s (bench/README.md,
"Import at 1 M rows/s"). ISA-L checks each member's CRC and length like
zlib; its errors are not ``zlib.error``, so callers catch ``ERRORS``.
"""

from __future__ import annotations

import zlib
from typing import Any

from isal import isal_zlib

ERRORS: tuple[type[Exception], ...] = (zlib.error, isal_zlib.error)  # a damaged or non-gzip stream


def inflater() -> Any:
    """A decompressor of one gzip member (``decompress``, ``eof``, ``unused_data``, ``unconsumed_tail``)."""
    return isal_zlib.decompressobj(16 + zlib.MAX_WBITS)
