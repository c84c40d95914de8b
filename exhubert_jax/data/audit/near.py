"""Near-duplicates from landmark hashes without comparing files pairwise: an inverted index (every file's hashes,
sorted: O(H log H) for H hashes); each hash's postings give the file pairs that share it with the time offset
between them, one vote per (pair, offset); a pair is a near-duplicate when enough of its hashes agree on one offset
(+-1 frame), relative to the smaller file's indexed hashes (those not stop-listed). Hashes held more than
MAX_POSTINGS times are common to many sounds and skipped (a stop list), so a posting gives fewer than MAX_POSTINGS
votes: the votes are O(H), not O(files^2). They are counted a part at a time (consecutive first files of the pairs
with about PART_VOTES votes in all, so that every vote of a pair is in one part): a count-min sketch drops the pairs
of a few random collisions before the part's votes are sorted, and only the pairs with MIN_MATCHES votes at one
offset are kept. Memory: O(H) for the index plus O(PART_VOTES), whatever the number of files."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from exhubert_jax.data.audit.fingerprints import Fingerprint

MAX_POSTINGS = 64  # a hash held more often than this is skipped
MIN_MATCHES = 10  # a near-duplicate shares at least this many hashes at one offset ...
MIN_FRACTION = 0.15  # ... and at least this fraction of the smaller file's indexed hashes
PART_VOTES = 1 << 20  # (pair, offset) votes counted at a time (1 M: tens of MB while counting)
_FILE_BITS, _OFFSET_BITS = 22, 18  # up to 4M files, offsets of +-2**17 frames (35 min)
_POSITION_BITS = 40  # the index sorts hash << 40 | landmark number (hashes have 22 bits)


@dataclass(frozen=True)
class Match:
    """Two files (indices into the fingerprints), the hashes that agree at their best offset, the fraction of the
    smaller file's indexed hashes that is, and that offset (b's frame minus a's frame of one landmark)."""

    a: int
    b: int
    matches: int
    fraction: float
    offset_frames: int


@dataclass(frozen=True)
class Index:
    """The postings of the hashes held 2..MAX_POSTINGS times, sorted by hash, then file and frame: each one's file,
    anchor frame and the postings of its hash after it (the votes it gives); and per file its landmarks whose hash
    is not stop-listed (the denominator of a pair's fraction)."""

    files: np.ndarray
    times: np.ndarray
    following: np.ndarray
    indexed: np.ndarray


@dataclass(frozen=True)
class Candidates:
    """The file pairs with at least min_matches votes at one offset (packed a << 22 | b), those votes (with the next
    offset's) and the offset; the votes counted in all, and in how many parts."""

    pairs: np.ndarray
    votes: np.ndarray
    offsets: np.ndarray
    counted: int
    parts: int


def groups(sorted_keys: np.ndarray) -> np.ndarray:
    """Start of each run of equal values in a sorted array."""
    return np.flatnonzero(np.r_[True, sorted_keys[1:] != sorted_keys[:-1]]) if sorted_keys.shape[0] else \
        np.zeros(0, np.int64)


def spans(n: int, size: int = 1 << 22) -> list[slice]:
    """Slices covering range(n), `size` at a time: an elementwise step over the whole index done in these keeps its
    temporaries small."""
    return [slice(start, min(n, start + size)) for start in range(0, n, size)]


def sized_int(n: int) -> type:
    """The smaller signed integer type that holds 0..n."""
    return np.int32 if n < 1 << 31 else np.int64


def inverted_index(prints: Sequence[Fingerprint]) -> Index:
    """Every landmark of the prints whose hash is held 2..MAX_POSTINGS times, sorted by hash, then file and frame."""
    sizes = np.asarray([len(p) for p in prints], np.int64)
    total = int(sizes.sum())
    packed = np.concatenate([p.hashes for p in prints]).astype(np.uint64) if total else np.zeros(0, np.uint64)
    for span in spans(total):  # hash << 40 | landmark number: one sort orders by hash, then file and frame
        packed[span] = (packed[span] << np.uint64(_POSITION_BITS)) | np.arange(span.start, span.stop,
                                                                              dtype=np.uint64)
    packed.sort()
    hashes = np.empty(total, np.uint32)
    for span in spans(total):
        hashes[span] = packed[span] >> np.uint64(_POSITION_BITS)
    packed &= np.uint64((1 << _POSITION_BITS) - 1)
    landmarks = packed.view(np.int64)  # now each posting's landmark number, in place
    del packed
    starts = groups(hashes)
    del hashes
    counts = np.diff(np.r_[starts, total])
    files = np.repeat(np.arange(len(prints), dtype=np.int32), sizes)
    indexed = sizes - np.bincount(files[landmarks[np.repeat(counts > MAX_POSTINGS, counts)]], minlength=len(prints))
    keep = (counts >= 2) & (counts <= MAX_POSTINGS)
    landmarks = landmarks[np.repeat(keep, counts)]
    counts = counts[keep]
    following = np.repeat(np.cumsum(counts).astype(sized_int(landmarks.shape[0])), counts)  # each one's hash's end
    following -= np.arange(1, landmarks.shape[0] + 1, dtype=following.dtype)
    following = following.astype(np.uint8)
    files = files[landmarks]
    times = np.concatenate([p.times for p in prints]).astype(np.int32) if total else np.zeros(0, np.int32)
    return Index(files, times[landmarks], following, indexed)


def vote_parts(index: Index, limit: int = PART_VOTES) -> Iterator[np.ndarray]:
    """The postings whose votes each part counts (those of consecutive first files, about `limit` votes in all),
    each part's sorted by the votes they give, most first."""
    rows = index.files.shape[0]
    votes = sum((np.bincount(index.files[s], weights=index.following[s], minlength=index.indexed.shape[0])
                 for s in spans(rows)), np.zeros(index.indexed.shape[0]))
    part = (np.cumsum(votes) - votes) // max(1, limit)
    n_parts = int(part[-1]) + 1 if part.shape[0] else 0
    of = part.astype(np.int16 if n_parts < 1 << 15 else np.int32)[index.files]
    by_part = np.argsort(of, kind="stable")  # a radix sort: linear in the postings
    for span in np.split(by_part, np.cumsum(np.bincount(of, minlength=n_parts))[:-1]):
        span = span[index.following[span] > 0]
        if span.shape[0]:
            yield span[np.argsort(-index.following[span].astype(np.int16), kind="stable")]


def part_keys(index: Index, rows: np.ndarray) -> np.ndarray:
    """Every (file a < file b, offset) vote that one part's postings give with the later postings of their hash
    (rows sorted by the votes they give, most first), packed as one int64 each."""
    fewer = -index.following[rows].astype(np.int16)  # ascending
    keys = np.empty(-int(fewer.sum(dtype=np.int64)), np.int64)
    filled = 0
    for shift in range(1, MAX_POSTINGS):
        i = rows[:np.searchsorted(fewer, -shift, side="right")]
        if not i.shape[0]:
            break
        a, b = index.files[i].astype(np.int64), index.files[i + shift].astype(np.int64)
        other = a != b
        dt = (index.times[i + shift] - index.times[i])[other].astype(np.int64)
        n = int(other.sum())
        keys[filled:filled + n] = (a[other] << (_FILE_BITS + _OFFSET_BITS)) | (b[other] << _OFFSET_BITS) | \
            (dt + (1 << (_OFFSET_BITS - 1)))
        filled += n
    return keys[:filled]


def frequent_pairs(keys: np.ndarray, min_matches: int) -> np.ndarray:
    """A mask of the votes whose pair may have min_matches votes in all: pairs hashed into more than 4 buckets per
    vote (a count-min sketch: a bucket's count is at least each of its pairs' votes) drop the pairs of a few random
    collisions before the votes are sorted, and never a pair that has min_matches."""
    bits = max(10, int(keys.shape[0] * 4).bit_length())
    bucket = ((keys >> _OFFSET_BITS).astype(np.uint64) * np.uint64(0x9E3779B97F4A7C15)) >> np.uint64(64 - bits)
    bucket = bucket.astype(np.int64)
    return np.bincount(bucket, minlength=1 << bits)[bucket] >= min_matches


def tally(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(keys, votes): each distinct key and how many times it occurs."""
    keys = np.sort(keys)
    starts = groups(keys)
    return keys[starts], np.diff(np.r_[starts, keys.shape[0]])


def best_offsets(keys: np.ndarray, votes: np.ndarray, min_matches: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(pairs, votes, offsets) per file pair with at least min_matches votes in all: its best offset's votes with
    those one frame later (a trimmed start falls between frames), packed pair keys."""
    pairs = keys >> _OFFSET_BITS
    starts = groups(pairs)
    total = np.add.reduceat(votes, starts) if starts.shape[0] else np.zeros(0, np.int64)
    keep = np.repeat(total >= min_matches, np.diff(np.r_[starts, pairs.shape[0]]))
    keys, votes = keys[keep], votes[keep]
    uniq, inverse = np.unique(np.concatenate([keys, keys - 1]), return_inverse=True)
    summed = np.bincount(inverse.reshape(-1), weights=np.concatenate([votes, votes])).astype(np.int64)
    pairs = uniq >> _OFFSET_BITS
    order = np.lexsort((summed, pairs))  # each pair's best offset last
    last = order[np.r_[groups(pairs[order])[1:] - 1, order.shape[0] - 1]] if order.shape[0] else order
    offsets = (uniq[last] & ((1 << _OFFSET_BITS) - 1)) - (1 << (_OFFSET_BITS - 1))
    return pairs[last], summed[last], offsets


def candidates(index: Index, min_matches: int = MIN_MATCHES, limit: int = PART_VOTES) -> Candidates:
    """The pairs with at least min_matches votes at one offset, counted part by part (at most about `limit` votes
    in memory at a time)."""
    found, counted, parts = [], 0, 0
    for rows in vote_parts(index, limit):
        keys = part_keys(index, rows)
        counted, parts = counted + keys.shape[0], parts + 1
        pairs, best, offsets = best_offsets(*tally(keys[frequent_pairs(keys, min_matches)]), min_matches)
        hit = best >= min_matches
        found.append((pairs[hit], best[hit], offsets[hit]))
    if not found:
        return Candidates(np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.int64), 0, 0)
    return Candidates(*(np.concatenate(c) for c in zip(*found)), counted, parts)


def matches(index: Index, found: Candidates, min_fraction: float = MIN_FRACTION,
            min_matches: int = MIN_MATCHES) -> list[Match]:
    """The candidates whose best offset has at least min_matches votes and min_fraction of the smaller file's
    indexed hashes."""
    a, b = found.pairs >> _FILE_BITS, found.pairs & ((1 << _FILE_BITS) - 1)
    smaller = np.maximum(np.minimum(index.indexed[a], index.indexed[b]), 1)
    fraction = found.votes / smaller
    hit = np.flatnonzero((found.votes >= min_matches) & (fraction >= min_fraction))
    return [Match(int(a[i]), int(b[i]), int(found.votes[i]), round(float(min(1.0, fraction[i])), 3),
                  int(found.offsets[i])) for i in hit]


def near_duplicates(prints: Sequence[Fingerprint], min_fraction: float = MIN_FRACTION,
                    min_matches: int = MIN_MATCHES, limit: int = PART_VOTES) -> list[Match]:
    """The file pairs whose hashes agree on one offset: at least min_matches of them and min_fraction of the smaller
    file's indexed hashes (votes counted at most about `limit` at a time)."""
    index = inverted_index(prints)
    return matches(index, candidates(index, min_matches, limit), min_fraction, min_matches)
