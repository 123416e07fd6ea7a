"""FarmHash Fingerprint64 and FingerprintCat64, vectorised over numpy arrays.

These are the hashes TensorFlow uses for ``tf.strings.to_hash_bucket_fast``
(``categorical_column_with_hash_bucket``, OOV buckets of vocabulary columns) and
for ``crossed_column`` (``SparseCross`` with ``hashed_output``), so ids computed
here equal TensorFlow's ids for the same inputs and bucket counts.

Sources: ``farmhashna::Hash64`` of google/farmhash (MIT; the function TensorFlow's
``tensorflow/core/platform/fingerprint.h`` calls ``Fingerprint64``), and
``FingerprintCat64`` of that same header. Verified against TensorFlow's
``fingerprint_test.cc`` ("Hello" -> 15404698994557526151) and the reference
vectors of tecnickcom/farmhash64 (tests/estimator/feature_column/test_feature_column.py).
All arithmetic is uint64 with wrap-around, as in C.
"""

from __future__ import annotations

import numpy as np

_K0 = np.uint64(0xC3A5C85C97CB3127)
_K1 = np.uint64(0xB492B66FBE98F273)
_K2 = np.uint64(0x9AE16A3B2F90404F)
_KMUL_CAT = np.uint64(0xC6A4A7935BD1E995)
_U = np.uint64


def _rot(v: np.ndarray, shift: int) -> np.ndarray:
    """Rotates right by ``shift`` (1..63) bits."""
    return (v >> _U(shift)) | (v << _U(64 - shift))


def _smix(v: np.ndarray) -> np.ndarray:
    return v ^ (v >> _U(47))


def _len16(u: np.ndarray, v: np.ndarray, mul: np.ndarray) -> np.ndarray:
    a = _smix((u ^ v) * mul)
    b = _smix((v ^ a) * mul)
    return b * mul


def _fetch(buf: np.ndarray, offsets: np.ndarray, width: int) -> np.ndarray:
    """Little-endian unsigned ``width``-byte words of each row of ``buf`` at per-row offsets."""
    idx = np.asarray(offsets, np.int64)[:, None] + np.arange(width)
    raw = np.ascontiguousarray(np.take_along_axis(buf, idx, axis=1))
    return raw.view("<u8" if width == 8 else "<u4")[:, 0].astype(np.uint64)


def _weak32(buf: np.ndarray, off: np.ndarray, a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    w, x, y, z = (_fetch(buf, off + k, 8) for k in (0, 8, 16, 24))
    a = a + w
    b = _rot(b + a + z, 21)
    c = a
    a = a + x + y
    b = b + _rot(a, 44)
    return a + z, b + c


def _hash_0_to_16(buf: np.ndarray, n: np.ndarray) -> np.ndarray:
    out = np.full(n.shape, _K2, np.uint64)
    mul = _K2 + n.astype(np.uint64) * _U(2)
    big = n >= 8
    if big.any():
        b8, nb, mb = buf[big], n[big], mul[big]
        a = _fetch(b8, np.zeros_like(nb), 8) + _K2
        b = _fetch(b8, nb - 8, 8)
        c = _rot(b, 37) * mb + a
        d = (_rot(a, 25) + b) * mb
        out[big] = _len16(c, d, mb)
    mid = (n >= 4) & ~big
    if mid.any():
        b4, nm, mm = buf[mid], n[mid], mul[mid]
        a = _fetch(b4, np.zeros_like(nm), 4)
        out[mid] = _len16(nm.astype(np.uint64) + (a << _U(3)), _fetch(b4, nm - 4, 4), mm)
    small = (n > 0) & (n < 4)
    if small.any():
        bs, ns = buf[small], n[small]
        rows = np.arange(len(ns))
        a = bs[rows, 0].astype(np.uint64)
        b = bs[rows, ns >> 1].astype(np.uint64)
        c = bs[rows, ns - 1].astype(np.uint64)
        y = a + (b << _U(8))
        z = ns.astype(np.uint64) + (c << _U(2))
        out[small] = _smix(y * _K2 ^ z * _K0) * _K2
    return out


def _hash_17_to_32(buf: np.ndarray, n: np.ndarray) -> np.ndarray:
    mul = _K2 + n.astype(np.uint64) * _U(2)
    zero = np.zeros_like(n)
    a = _fetch(buf, zero, 8) * _K1
    b = _fetch(buf, zero + 8, 8)
    c = _fetch(buf, n - 8, 8) * mul
    d = _fetch(buf, n - 16, 8) * _K2
    return _len16(_rot(a + b, 43) + _rot(c, 30) + d, a + _rot(b + _K2, 18) + c, mul)


def _hash_33_to_64(buf: np.ndarray, n: np.ndarray) -> np.ndarray:
    mul = _K2 + n.astype(np.uint64) * _U(2)
    zero = np.zeros_like(n)
    a = _fetch(buf, zero, 8) * _K2
    b = _fetch(buf, zero + 8, 8)
    c = _fetch(buf, n - 8, 8) * mul
    d = _fetch(buf, n - 16, 8) * _K2
    y = _rot(a + b, 43) + _rot(c, 30) + d
    z = _len16(y, a + _rot(b + _K2, 18) + c, mul)
    e = _fetch(buf, zero + 16, 8) * mul
    f = _fetch(buf, zero + 24, 8)
    g = (y + _fetch(buf, n - 32, 8)) * mul
    h = (z + _fetch(buf, n - 24, 8)) * mul
    return _len16(_rot(e + f, 43) + _rot(g, 30) + h, e + _rot(f + a, 18) + g, mul)


def _hash_over_64(buf: np.ndarray, n: np.ndarray) -> np.ndarray:
    seed = _U(81)
    m = len(n)
    x = np.full(m, seed, np.uint64)
    y = np.full(m, seed * _K1 + _U(113), np.uint64)
    z = _smix(y * _K2 + _U(113)) * _K2
    v0 = v1 = w0 = w1 = np.zeros(m, np.uint64)
    x = x * _K2 + _fetch(buf, np.zeros_like(n), 8)
    chunks = (n - 1) // 64  # full 64-byte blocks processed in the loop
    for i in range(int(chunks.max())):
        act = chunks > i
        s = np.full(m, 64 * i, np.int64)
        nx = _rot(x + y + v0 + _fetch(buf, s + 8, 8), 37) * _K1
        ny = _rot(y + v1 + _fetch(buf, s + 48, 8), 42) * _K1
        nx = nx ^ w1
        ny = ny + v0 + _fetch(buf, s + 40, 8)
        nz = _rot(z + w0, 33) * _K1
        nv0, nv1 = _weak32(buf, s, v1 * _K1, nx + w0)
        nw0, nw1 = _weak32(buf, s + 32, nz + w1, ny + _fetch(buf, s + 16, 8))
        nx, nz = nz, nx
        x, y, z = (np.where(act, new, old) for new, old in ((nx, x), (ny, y), (nz, z)))
        v0, v1, w0, w1 = (
            np.where(act, new, old) for new, old in ((nv0, v0), (nv1, v1), (nw0, w0), (nw1, w1))
        )
    mul = _K1 + ((z & _U(0xFF)) << _U(1))
    s = n - 64
    w0 = w0 + ((n - 1) & 63).astype(np.uint64)
    v0 = v0 + w0
    w0 = w0 + v0
    x = _rot(x + y + v0 + _fetch(buf, s + 8, 8), 37) * mul
    y = _rot(y + v1 + _fetch(buf, s + 48, 8), 42) * mul
    x = x ^ (w1 * _U(9))
    y = y + v0 * _U(9) + _fetch(buf, s + 40, 8)
    z = _rot(z + w0, 33) * mul
    v0, v1 = _weak32(buf, s, v1 * mul, x + w0)
    w0, w1 = _weak32(buf, s + 32, z + w1, y + _fetch(buf, s + 16, 8))
    x, z = z, x
    return _len16(_len16(v0, w0, mul) + _smix(y) * _K0 + z, _len16(v1, w1, mul) + x, mul)


def _as_bytes_array(values: np.ndarray) -> np.ndarray:
    """Flat numpy ``S`` array of the UTF-8 bytes of each element (str, bytes or object)."""
    values = np.asarray(values).reshape(-1)
    if values.dtype.kind == "S":
        return values
    if values.dtype.kind == "U":
        return np.char.encode(values, "utf-8")
    return np.array([v if isinstance(v, bytes) else str(v).encode("utf-8") for v in values], dtype="S")


def fingerprint64(values: np.ndarray) -> np.ndarray:
    """TensorFlow's ``Fingerprint64`` (FarmHash ``farmhashna::Hash64``) of each string.

    Args:
      values: array of str / bytes (any shape); str is hashed as its UTF-8 bytes.
        Note numpy ``S`` arrays drop trailing NUL bytes.
    Returns:
      uint64 array of ``values``' shape.
    """
    arr = np.asarray(values)
    shape = arr.shape
    flat = _as_bytes_array(arr)
    if flat.size == 0:
        return np.zeros(shape, np.uint64)
    uniq, inverse = np.unique(flat, return_inverse=True)
    lengths = np.char.str_len(uniq).astype(np.int64)
    width = max(int(uniq.dtype.itemsize), 1)
    buf = np.zeros((len(uniq), width + 8), np.uint8)  # zero padding keeps every fetch in bounds
    buf[:, :width] = uniq.view(np.uint8).reshape(len(uniq), width)
    out = np.empty(len(uniq), np.uint64)
    with np.errstate(over="ignore"):
        for lo, hi, fn in ((0, 16, _hash_0_to_16), (17, 32, _hash_17_to_32), (33, 64, _hash_33_to_64),
                           (65, None, _hash_over_64)):
            sel = (lengths >= lo) & (True if hi is None else lengths <= hi)
            if np.any(sel):
                out[sel] = fn(buf[sel], lengths[sel])
    return out[inverse.reshape(-1)].reshape(shape)


def fingerprint_cat64(fp1: np.ndarray, fp2: np.ndarray) -> np.ndarray:
    """TensorFlow's ``FingerprintCat64``: combines two 64-bit fingerprints (not commutative)."""
    with np.errstate(over="ignore"):
        result = np.asarray(fp1, np.uint64) ^ _KMUL_CAT
        result = result ^ (_smix(np.asarray(fp2).astype(np.uint64) * _KMUL_CAT) * _KMUL_CAT)
        result = result * _KMUL_CAT
        result = _smix(result) * _KMUL_CAT
        return _smix(result)
