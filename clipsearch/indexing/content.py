"""What a file's bytes are: a cheap fingerprint to find candidates, a full hash to prove it.

Moved and copied files reuse the vectors of the file they equal. The fingerprint (size +
hash of the first and last 64 KiB) is read in two small reads and finds the catalogued
files a new one may equal; only the hash of every byte decides, because files of one size
that differ in the middle (uncompressed scans, video frames) share a fingerprint.
"""

from __future__ import annotations

import hashlib
import os

from ..core.files import open_regular

FINGERPRINT_CHUNK = 64 * 1024


def fingerprint(head: bytes, tail: bytes, size: int) -> str:
    """size + blake2b of the first and last 64 KiB."""
    h = hashlib.blake2b(digest_size=16)
    h.update(str(size).encode())
    h.update(head)
    h.update(tail)
    return h.hexdigest()


def fingerprint_of(data: bytes) -> str:
    """The fingerprint of a file whose bytes are in memory."""
    tail = data[-FINGERPRINT_CHUNK:] if len(data) > 2 * FINGERPRINT_CHUNK else b""
    return fingerprint(data[:FINGERPRINT_CHUNK], tail, len(data))


def file_fingerprint(path: str, size: int) -> str:
    with open_regular(path) as f:
        head = f.read(FINGERPRINT_CHUNK)
        tail = b""
        if size > 2 * FINGERPRINT_CHUNK:
            f.seek(-FINGERPRINT_CHUNK, os.SEEK_END)
            tail = f.read(FINGERPRINT_CHUNK)
    return fingerprint(head, tail, size)


def content_hash(data: bytes) -> str:
    """blake2b of every byte."""
    return hashlib.blake2b(data, digest_size=16).hexdigest()


def file_content_hash(path: str) -> str:
    h = hashlib.blake2b(digest_size=16)
    with open_regular(path) as f:
        while block := f.read(1 << 20):
            h.update(block)
    return h.hexdigest()
