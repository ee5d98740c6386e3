"""How objects and backgrounds look: named colours, object textures, background fields.

Colour is drawn independently of the category, with per-instance jitter and a texture in
object coordinates (so it moves and turns with the object), so a model cannot use colour as a
shortcut for the class. Backgrounds are muted and low-contrast so objects stay salient.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# Caption colour names and their nominal RGB. Saturated or bright, so they read as the named
# colour against the muted backgrounds even after jitter and texture.
COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (215, 35, 35),
    "green": (40, 175, 55),
    "blue": (35, 75, 220),
    "yellow": (235, 215, 35),
    "purple": (140, 45, 190),
    "orange": (245, 135, 25),
    "white": (240, 240, 240),
    "cyan": (35, 210, 220),
}
COLOUR_NAMES: tuple[str, ...] = tuple(COLOURS)
TEXTURES: tuple[str, ...] = ("plain", "stripes", "checks", "noise")

_COLOUR_JITTER = 22.0  # largest per-channel offset of an instance from its nominal colour
_NOISE_GRID = 6  # side of the random grid behind the "noise" texture
_NOISE_CONTRAST = 2.5  # stretch of the blended "noise" texture around its mid value


@dataclass(frozen=True, eq=False)
class Appearance:
    """An object's look: a jittered named colour blended with a second tone by a texture.

    ``colour`` is the caption name; ``rgb`` and ``tone`` are float RGB in 0..255; ``texture``
    is one of :data:`TEXTURES`, with ``frequency`` (cycles per object radius), ``direction``
    (radians, in object coordinates), ``strength`` (blend weight of ``tone``, 0..1) and, for
    "noise", a small random ``grid`` that is smoothly interpolated over the object.
    """

    colour: str
    rgb: np.ndarray
    tone: np.ndarray
    texture: str
    frequency: float
    direction: float
    strength: float
    grid: np.ndarray


def sample_appearance(rng: np.random.Generator) -> Appearance:
    """Draw a random colour (name + jitter) and texture for one object instance."""
    colour = COLOUR_NAMES[rng.integers(len(COLOUR_NAMES))]
    rgb = np.clip(np.array(COLOURS[colour], float) + rng.uniform(-1, 1, 3) * _COLOUR_JITTER, 0, 255)
    # The second tone is a darker or a lighter shade of the same colour, so the name still fits.
    shade = rng.uniform(0.45, 0.7) if rng.random() < 0.5 else rng.uniform(1.25, 1.5)
    tone = np.clip(rgb * shade + (30.0 if shade > 1 else 0.0), 0, 255)
    return Appearance(
        colour=colour,
        rgb=rgb,
        tone=tone,
        texture=TEXTURES[rng.integers(len(TEXTURES))],
        frequency=float(rng.uniform(1.2, 2.5)),
        direction=float(rng.uniform(0, np.pi)),
        strength=float(rng.uniform(0.3, 0.55)),
        grid=rng.random((_NOISE_GRID, _NOISE_GRID)),
    )


def texture_weight(appearance: Appearance, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Blend weight (0..1) of the second tone at object coordinates ``(u, v)``."""
    kind = appearance.texture
    if kind == "plain":
        return np.zeros(u.shape)
    if kind == "stripes":
        along = u * np.cos(appearance.direction) + v * np.sin(appearance.direction)
        return 0.5 + 0.5 * np.sin(2 * np.pi * appearance.frequency * along)
    if kind == "checks":
        return (
            (np.floor(appearance.frequency * u) + np.floor(appearance.frequency * v)) % 2
        ).astype(float)
    # "noise": the grid's blobs span the square [-1, 1]^2; a weighted mean of their amplitudes.
    wu = _blob_weights(u.reshape(-1), _NOISE_GRID - 1, (-1.0, 1.0))
    wv = _blob_weights(v.reshape(-1), _NOISE_GRID - 1, (-1.0, 1.0))
    value = np.einsum("ni,ij,nj->n", wv, appearance.grid, wu) / (wv.sum(1) * wu.sum(1))
    # Blending flattens the amplitudes towards 0.5; stretch them back into a visible mottle.
    return np.clip(0.5 + _NOISE_CONTRAST * (value - 0.5), 0.0, 1.0).reshape(u.shape)


def object_colours(appearance: Appearance, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Float RGB ``(..., 3)`` of the object at object coordinates ``(u, v)``."""
    w = appearance.strength * texture_weight(appearance, u, v)[..., None]
    return (1.0 - w) * appearance.rgb + w * appearance.tone


def _blob_weights(pos: np.ndarray, cells: int, span: tuple[float, float]) -> np.ndarray:
    """``(len(pos), cells + 1)`` Gaussian weights of ``cells + 1`` blobs spread evenly on ``span``.

    The blob width is 2/3 of their spacing, so a field blended from them is smooth but varied.
    """
    centres = np.linspace(span[0], span[1], cells + 1)
    sigma = (span[1] - span[0]) / cells / 1.5
    return np.exp(-0.5 * ((pos[:, None] - centres[None, :]) / sigma) ** 2)


def smooth_noise(rng: np.random.Generator, height: int, width: int, cells: int) -> np.ndarray:
    """A smooth random field ``(height, width)`` in [-1, 1], about ``cells`` blobs across.

    A random grid of blob amplitudes blended by separable Gaussian weights (two small matrix
    products, so cheap), rescaled to a peak magnitude of 1.
    """
    grid = rng.uniform(-1, 1, (cells + 1, cells + 1))
    rows = _blob_weights(np.arange(height, dtype=float), cells, (0.0, height - 1.0))
    cols = _blob_weights(np.arange(width, dtype=float), cells, (0.0, width - 1.0))
    field = rows @ grid @ cols.T
    return field / max(float(np.abs(field).max()), 1e-12)


def sample_background(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """A muted, low-contrast textured background, float RGB ``(height, width, 3)``.

    Sum of a smooth noise field, a linear gradient and faint stripes, each tinted per channel,
    around a greyish base colour: textured enough that "not an object" must be learnt, but
    with less contrast and saturation than the objects.
    """
    base = rng.uniform(70, 165) + rng.uniform(-18, 18, 3)
    rows = np.arange(height, dtype=float)[:, None]
    cols = np.arange(width, dtype=float)[None, :]
    side = float(max(height, width))
    a = rng.uniform(0, 2 * np.pi)
    gradient = ((rows - height / 2) * np.sin(a) + (cols - width / 2) * np.cos(a)) / side
    b = rng.uniform(0, np.pi)
    period = rng.uniform(0.06, 0.2) * side
    stripes = np.sin(2 * np.pi * (rows * np.sin(b) + cols * np.cos(b)) / period)
    fields = (
        smooth_noise(rng, height, width, int(rng.integers(3, 8))) * rng.uniform(12, 28),
        gradient * rng.uniform(0, 40),
        stripes * rng.uniform(0, 7),
    )
    image = np.broadcast_to(base, (height, width, 3)).copy()
    for field in fields:
        tint = 1.0 + rng.uniform(-0.3, 0.3, 3)
        image += field[..., None] * tint
    return np.clip(image, 0, 255)
