"""A JPEG's width and height, read from its frame header without decoding or parsing anything else.

The pixel limit (utils.data.decode) is checked from an image's header before it is decoded.
Pillow can read the header, but opening a file with it parses every segment (quantisation and
Huffman tables, EXIF) and copies the file's bytes first: 25-50 us for a 500x375 training image,
where this walk takes 3 us. A JPEG's size sits in its start-of-frame (SOF)
segment, a few hundred bytes in, reached by stepping over the segments before it by their
lengths (ITU-T T.81, B.1.1):

    FF D8                         start of image
    FF Mk  Lh Ll  <L - 2 bytes>   a segment; L counts its own two bytes
    ...
    FF Cn  Lh Ll  P  Yh Yl  Xh Xl ...   SOF: precision, lines (height), samples per line (width)

A marker may be preceded by any number of FF fill bytes; the standalone markers (TEM, RSTn)
carry no length. Pillow reads its size from the same SOF fields, so the two agree.
"""
from typing import Optional

__all__ = ["jpeg_size"]

# The start-of-frame markers: C0-CF but DHT (C4), JPG (C8) and DAC (CC), which share the range.
_FRAME_MARKERS = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
_STANDALONE_MARKERS = frozenset(range(0xD0, 0xD8)) | {0x01}  # RST0-RST7, TEM
_START_OF_SCAN = 0xDA


def jpeg_size(data: memoryview) -> Optional[tuple[int, int]]:
    """(width, height) from the first SOF segment of the JPEG ``data`` (its bytes, as a
    memoryview of unsigned bytes or ``bytes``); None where the bytes do not lead to one (not a
    JPEG, a truncated or damaged header, a scan before any frame, or a height left to a later
    DNL segment): the caller then asks a fuller parser."""
    end = len(data)
    if end < 4 or data[0] != 0xFF or data[1] != 0xD8:
        return None
    at = 2
    while at + 1 < end:
        if data[at] != 0xFF:
            return None  # segments follow each other directly: this is not a marker
        while at + 1 < end and data[at + 1] == 0xFF:  # fill bytes
            at += 1
        if at + 1 >= end:
            return None
        marker = data[at + 1]
        at += 2
        if marker in _STANDALONE_MARKERS:
            continue
        if marker == _START_OF_SCAN or at + 2 > end:
            return None
        length = (data[at] << 8) | data[at + 1]
        if length < 2:
            return None
        if marker in _FRAME_MARKERS:
            if length < 8 or at + 7 > end:
                return None
            height = (data[at + 3] << 8) | data[at + 4]
            width = (data[at + 5] << 8) | data[at + 6]
            return (width, height) if height and width else None
        at += length
    return None
