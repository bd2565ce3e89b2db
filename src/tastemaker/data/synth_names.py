"""Names and ids of the synthetic world (``synth``): word lists, seeded hashing, vectorised
strings (MBIDs, titles, artist names) and the spellings people submit.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from tastemaker.data.names import fold_many

# Kinds of hashed value: each its own stream of the seed.
(
    MSID_KIND,
    RECORDING_KIND,
    RELEASE_KIND,
    ARTIST_KIND,
    COLLAB_KIND,
    RELEASE_TITLE_KIND,
    RECORDING_TITLE_KIND,
    MAPPING_KIND,
    SPELLING_KIND,
    VARIANT_KIND,
) = range(1, 11)


def _wordlist(text: str) -> tuple[str, ...]:
    return tuple(text.split())


_ADJECTIVES = _wordlist(
    "Silver Electric Golden Velvet Hollow Crimson Paper Neon Quiet Wild Broken Frozen Burning "
    "Lunar Solar Purple Black White Scarlet Distant Midnight Northern Southern Western Eastern "
    "Hidden Lost Secret Sacred Savage Gentle Lonely Happy Strange Royal Cosmic Atomic Digital "
    "Analog Crystal Iron Copper Glass Stone Amber Blue Green Red Yellow Grey Pale Dark Bright "
    "Sleepy Restless Sonic Static Magnetic Tropical Arctic Desert Ocean Mountain Urban Rural "
    "Little Big Young Old New Modern Ancient Future Final First Last Second Endless Infinite"
)
_NOUNS = _wordlist(
    "Wolf Tiger Raven Fox Bear Owl Hawk Whale Shark Snake Horse Lion Falcon Crow Swan Moth "
    "River Mountain Valley Forest Ocean Desert Island Garden City Harbor Bridge Tower Castle "
    "Engine Machine Signal Radio Rocket Satellite Planet Comet Star Moon Sun Cloud Storm "
    "Thunder Rain Snow Fire Flame Smoke Shadow Ghost Dream Echo Mirror Crown Heart Rose Lily "
    "Orchid Pine Oak Willow Cedar Arrow Sword Shield Anchor Compass Lantern Candle Circle "
    "Square Spiral Wave Pulse Drum Bell Choir Parade Carnival Circus Temple Palace Kingdom"
)
_FIRST = _wordlist(
    "Anna Ben Clara David Emma Felix Grace Hugo Iris Jonas Kira Leo Maya Nina Oscar Paula "
    "Quinn Rosa Sam Tara Uma Victor Wanda Xavier Yara Zoe Aiko Bruno Chloe Dmitri Elena Farah "
    "Goran Hana Ivan Julia Kofi Lena Marco Noor Olga Pedro Rita Sven Tomas Ulla Vera Wim Yusuf"
)
_LAST = _wordlist(
    "Adams Berg Costa Diaz Eriksen Fischer Garcia Hansen Ito Jensen Kowalski Larsen Meyer "
    "Novak Okafor Petrov Quist Rossi Sato Tanaka Ullman Vargas Weber Xu Yilmaz Zeller Abbott "
    "Bauer Chen Dubois Evans Ferreira Gruber Horvat Ivanova Jovanovic Kim Lindqvist Moreau "
    "Nielsen Olsen Park Quintero Richter Schmidt Torres Ueda Vogel Wagner Young"
)
_WORDS = _wordlist(
    "Love Night Day Time Life Heart Dream Light Fire Rain Home Road Sky Sea Blue Gold Run "
    "Dance Fall Rise Hold Stay Go Back Down Up Away Again Alone Together Forever Never Always "
    "Tonight Tomorrow Yesterday Morning Evening Summer Winter Spring Autumn City Street Train "
    "Car Radio Song Voice Silence Noise Echo Shadow Ghost Angel Devil Money Gold Diamond Glass "
    "Paper Stone Water Wind Storm Thunder Sun Moon Star Planet Ocean River Mountain Desert "
    "Island Garden Window Door Wall Bridge Tower Kingdom Empire Revolution Machine Signal Wave"
)


# -- hashing and vectorised strings ---------------------------------------------------------


def _splitmix64(x: np.ndarray) -> np.ndarray:
    """A good 64-bit mixer (vectorised); wraps modulo 2**64 by design."""
    with np.errstate(over="ignore"):
        z = x.astype(np.uint64) + np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return z ^ (z >> np.uint64(31))


def hash_keys(keys: np.ndarray, seed: int, kind: int) -> np.ndarray:
    salt = _splitmix64(np.array([seed * 1_000_003 + kind], dtype=np.uint64))[0]
    return _splitmix64(keys.astype(np.uint64) ^ salt)


# Two hex digits per byte value, as little-endian uint16 (first digit in the low byte).
_HEX_PAIRS = np.array(
    [ord(f"{i:02x}"[0]) | ord(f"{i:02x}"[1]) << 8 for i in range(256)], dtype="<u2"
)


def _fixed_width_strings(chars: np.ndarray) -> pa.StringArray:
    """An arrow string array from an (n, width) uint8 matrix of ASCII characters."""
    n, width = chars.shape
    offsets = np.arange(0, (n + 1) * width, width, dtype=np.int32)
    buffers = [None, pa.py_buffer(offsets), pa.py_buffer(np.ascontiguousarray(chars))]
    return pa.Array.from_buffers(pa.string(), n, buffers)


def uuids(keys: np.ndarray, seed: int, kind: int) -> pa.StringArray:
    """Deterministic version-4-looking UUID strings, one per integer key (no Python loop)."""
    n = len(keys)
    words = np.empty((n, 2), dtype=np.uint64)
    words[:, 0] = hash_keys(keys, seed, kind)
    words[:, 1] = _splitmix64(words[:, 0] ^ np.uint64(0xD1B54A32D192ED03))
    raw = words.view(np.uint8).reshape(n, 16)
    raw[:, 6] = (raw[:, 6] & 0x0F) | 0x40  # version 4
    raw[:, 8] = (raw[:, 8] & 0x3F) | 0x80  # RFC 4122 variant
    digits = _HEX_PAIRS[raw].view(np.uint8).reshape(n, 32)
    chars = np.empty((n, 36), dtype=np.uint8)
    chars[:, [8, 13, 18, 23]] = ord("-")
    chars[:, 0:8] = digits[:, 0:8]
    chars[:, 9:13] = digits[:, 8:12]
    chars[:, 14:18] = digits[:, 12:16]
    chars[:, 19:23] = digits[:, 16:20]
    chars[:, 24:36] = digits[:, 20:32]
    return _fixed_width_strings(chars)


def titles(keys: np.ndarray, seed: int, kind: int) -> pa.Array:
    """One to three capitalised words per key, e.g. 'Midnight Train' (vectorised)."""
    words = pa.array(_WORDS)
    h = hash_keys(keys, seed, kind)
    n_words = (h % np.uint64(7)).astype(np.int64)  # 0-1: one word, 2-4: two, 5-6: three
    parts = []
    for position in range(3):
        index = ((h >> np.uint64(8 + 12 * position)) % np.uint64(len(_WORDS))).astype(np.int64)
        word = words.take(pa.array(index))
        if position:
            present = n_words >= (2 if position == 1 else 5)
            word = pc.if_else(pa.array(present), word, pa.scalar(None, pa.string()))
        parts.append(word)
    return pc.binary_join_element_wise(*parts, " ", null_handling="skip")


def artist_names(n: int, seed: int) -> list[str]:
    """Distinct, plausible artist names of several shapes, a deterministic function of the seed.

    A per-catalogue loop (not per listen): 200 k artists take a fraction of a second.
    """
    adjectives, nouns, first, last = _ADJECTIVES, _NOUNS, _FIRST, _LAST
    na, nf, nl = len(adjectives), len(first), len(last)
    shapes = (  # (share, size of the name space, name of code c)
        (
            0.2,
            len(adjectives) * len(nouns),
            lambda c: f"The {adjectives[c % na]} {nouns[c // na]}s",
        ),
        (0.2, len(adjectives) * len(nouns), lambda c: f"{adjectives[c % na]} {nouns[c // na]}"),
        (0.25, len(first) * len(last), lambda c: f"{first[c % nf]} {last[c // nf]}"),
        (
            0.1,
            len(adjectives) * len(nouns),
            lambda c: f"{adjectives[c % na]}{nouns[c // na].lower()}",
        ),
        (0.05, len(first) * len(adjectives), lambda c: f"DJ {first[c % nf]} {adjectives[c // nf]}"),
        (
            0.2,
            len(first) * len(last) * len(nouns),
            lambda c: f"{first[c % nf]} {last[(c // nf) % nl]} & the {nouns[c // (nf * nl)]}s",
        ),
    )
    shares = np.array([share for share, _, _ in shapes])
    rng = np.random.default_rng([seed, 2])
    shape_of = rng.choice(len(shapes), size=n, p=shares / shares.sum())
    names = [""] * n
    for k, (_, size, make) in enumerate(shapes):
        members = np.flatnonzero(shape_of == k)
        # An odd multiplier coprime with the space permutes it: distinct names, shuffled.
        mult = 2_654_435_761
        while np.gcd(mult, size) != 1:
            mult += 2
        start = int(rng.integers(0, size))
        for rank, artist in enumerate(members.tolist()):
            name = make((start + rank * mult) % size)
            names[artist] = name if rank < size else f"{name} {rank // size + 1}"
    return names


# Accented letters of some artists' names ("Wölf", "Émma"), and what the ASCII typing gives.
_ACCENTS = str.maketrans({"o": "ö", "e": "é", "a": "á", "u": "ü", "E": "É", "O": "Ö"})
ACCENTED_SHARE = 0.10
HOMONYM_SHARE = 0.005  # of popular mapped artists: a name another mapped artist also has
# Unmapped listens: credits with a guest ("A feat. B", "A & B", ...), the ASCII spelling of an
# accented name, "and" typed for "&".
CREDIT_SHARE = 0.08
PLAIN_SHARE = 0.5
AND_SHARE = 0.10
CREDIT_JOINERS = (" feat. ", " ft. ", " & ", ", ", " x ")


def spellings(names: list[str], mapped: np.ndarray, rank: np.ndarray, seed: int) -> dict:
    """Canonical and ASCII names per artist: a share gets accents, and a few popular mapped
    artists take the name of another mapped artist (homonyms, as MusicBrainz has: the identity
    rule must leave such names apart). Hash-chosen: the seeded listens stay as they were."""
    n = len(names)
    keys = np.arange(n)
    h = hash_keys(keys, seed, SPELLING_KIND)
    accented = (h % np.uint64(1000)) < np.uint64(ACCENTED_SHARE * 1000)
    popular = mapped & (rank < 0.3 * n)
    taker = popular & (((h >> np.uint64(16)) % np.uint64(100_000)) < HOMONYM_SHARE * 100_000)
    givers = np.flatnonzero(popular & ~taker)
    plain = list(names)
    if len(givers):
        for artist in np.flatnonzero(taker).tolist():  # a handful: a loop is fine
            giver = int(
                givers[int(hash_keys(np.array([artist]), seed, SPELLING_KIND)[0] % len(givers))]
            )
            plain[artist] = names[giver]
    else:
        taker[:] = False
    canonical = [
        name.translate(_ACCENTS) if accent else name
        for name, accent in zip(plain, accented.tolist(), strict=True)
    ]
    # Shared as the identity rule sees names: folded ("Royal Whale" and "Róyal Whálé" are one).
    shared = np.array(fold_many(canonical), dtype=object)
    _, inverse, counts = np.unique(shared, return_inverse=True, return_counts=True)
    return {
        "artist_names": pa.array(canonical, pa.string()),
        "artist_plain_names": pa.array(plain, pa.string()),
        "artist_accented": accented & (np.array(canonical, dtype=object) != np.array(plain)),
        "homonyms": int((counts[inverse] > 1).sum()),
    }
