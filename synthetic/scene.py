"""The world of one sequence: stuff layout, camera path, and the things and people in it.

World coordinates are pixels of a background canvas larger than the frame; the camera maps
them to the screen by a zoom ``z`` about its centre ``c``: ``screen = z * (world - c) +
frame_centre``. Things and people live in world coordinates, so a panning camera moves
everything (non-trivial optical flow) and objects leave the view and come back (their track
ids stay). Everything is drawn from one ``numpy.random.Generator``, so a seed fixes the video.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from synthetic.assets import SPRITE_SIDE, Sprite, gray_texture, night_sky, sprites
from synthetic.canvas import Canvas
from synthetic.categories import BY_NAME, ID_DIVISOR, Category
from synthetic.figure import Figure

WORLD_SCALE = (2.4, 1.6)
"""World size as a multiple of the frame's (width, height)."""

ZOOM_RANGE = (1.0, 1.5)
"""Camera zoom: 1 shows a frame-sized window of the world, 1.5 a 1/1.5 window magnified."""

THING_NAMES = ("horse", "coin", "ball", "sign", "cat", "star")


@dataclass(frozen=True)
class World:
    """Static background.

    Attributes:
        image: uint8 [Hw, Ww, 3] BGR.
        stuff: uint8 [Hw, Ww] stuff category id per pixel.
        ground: world row below which people stand (the mean horizon).
    """

    image: np.ndarray
    stuff: np.ndarray
    ground: float


def _smooth_curve(rng: np.random.Generator, n: int, knots: int, amplitude: float) -> np.ndarray:
    """A smooth random curve float [n] in [-amplitude, amplitude]."""
    values = rng.uniform(-amplitude, amplitude, knots)
    return np.interp(np.linspace(0, knots - 1, n), np.arange(knots), values)


def _tiled(texture: np.ndarray, shape: tuple[int, int], scale: float) -> np.ndarray:
    texture = cv2.resize(texture, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    reps = (shape[0] // texture.shape[0] + 1, shape[1] // texture.shape[1] + 1)
    return np.tile(texture, reps)[: shape[0], : shape[1]]


def _tinted(gray: np.ndarray, bgr: np.ndarray) -> np.ndarray:
    return np.clip(gray[..., None] * bgr[None, None, :] * 1.6, 0, 255).astype(np.uint8)


def make_world(rng: np.random.Generator, width: int, height: int) -> World:
    """Draws a background: sky, a row of brick walls, grass, and a winding road.

    Args:
        rng: source of randomness.
        width: frame width in pixels.
        height: frame height in pixels.
    """
    ww, hw = round(width * WORLD_SCALE[0]), round(height * WORLD_SCALE[1])
    cat = {name: BY_NAME[name].id for name in ("sky", "wall", "grass", "road")}
    rows = np.arange(hw)[:, None]
    horizon = hw * rng.uniform(0.38, 0.48) + _smooth_curve(rng, ww, 6, hw * 0.04)
    stuff = np.where(rows < horizon[None, :], cat["sky"], cat["grass"]).astype(np.uint8)

    x = 0
    while x < ww:  # buildings standing on the horizon
        w = int(rng.integers(width // 5, width // 2))
        if rng.random() < 0.7:
            top = int(horizon[x : x + w].min() - rng.uniform(0.08, 0.3) * hw)
            bottom = horizon[x : x + w].max()
            stuff[max(top, 0) : int(bottom), x : x + w] = np.where(
                rows[max(top, 0) : int(bottom)] < horizon[None, x : x + w],
                cat["wall"],
                stuff[max(top, 0) : int(bottom), x : x + w],
            )
        x += w + int(rng.integers(0, width // 6))

    centre = hw * rng.uniform(0.68, 0.8) + _smooth_curve(rng, ww, 5, hw * 0.06)
    half = hw * rng.uniform(0.05, 0.08)
    road = (np.abs(rows - centre[None, :]) < half) & (rows >= horizon[None, :])
    stuff[road] = cat["road"]

    layers = {}
    if rng.random() < 0.25:
        sky = cv2.resize(night_sky(), (ww, hw), interpolation=cv2.INTER_AREA)
    else:
        t = np.linspace(0, 1, hw, dtype=np.float32)[:, None, None]
        top, low = np.array([200, 120, 60], np.float32), np.array([250, 225, 200], np.float32)
        sky = (top * (1 - t) + low * t) * np.ones((1, ww, 1), np.float32)
        clouds = cv2.GaussianBlur(rng.random((hw // 8, ww // 8)).astype(np.float32), (0, 0), 3)
        clouds = cv2.resize(clouds, (ww, hw), interpolation=cv2.INTER_CUBIC)
        cover = np.clip((clouds - clouds.mean()) * 12, 0, 1)[..., None]
        sky = (sky * (1 - cover) + 250 * cover).astype(np.uint8)
    layers[cat["sky"]] = sky
    layers[cat["wall"]] = _tinted(
        _tiled(gray_texture("brick"), (hw, ww), rng.uniform(0.3, 0.6)),
        rng.uniform([60, 70, 110], [110, 120, 180]),
    )
    layers[cat["grass"]] = _tinted(
        _tiled(gray_texture("grass"), (hw, ww), rng.uniform(0.4, 0.8)),
        rng.uniform([30, 110, 40], [60, 160, 90]),
    )
    layers[cat["road"]] = _tinted(
        _tiled(gray_texture("gravel"), (hw, ww), rng.uniform(0.3, 0.6)),
        rng.uniform([95, 95, 95], [125, 125, 125]),
    )
    image = np.zeros((hw, ww, 3), np.uint8)
    for category, layer in layers.items():
        where = stuff == category
        image[where] = layer[where]
    return World(image=image, stuff=stuff, ground=float(horizon.mean()))


@dataclass(frozen=True)
class Camera:
    """A camera path: per frame centre (world x, y) and zoom.

    Attributes:
        centre: float64 [T, 2].
        zoom: float64 [T].
        size: frame ``(width, height)``.
    """

    centre: np.ndarray
    zoom: np.ndarray
    size: tuple[int, int]

    @classmethod
    def random(
        cls, rng: np.random.Generator, world: World, size: tuple[int, int], frames: int
    ) -> Camera:
        """A smooth pan and zoom that keeps the view inside the world."""
        width, height = size
        hw, ww = world.stuff.shape
        t = np.arange(frames, dtype=np.float64)
        zoom = np.clip(
            1.2 + 0.2 * np.sin(t * rng.uniform(0.01, 0.04) + rng.uniform(0, 2 * np.pi)),
            *ZOOM_RANGE,
        )
        speed = rng.uniform(0.6, 2.0) * rng.choice([-1, 1])
        x = ww / 2 + rng.uniform(-0.2, 0.2) * ww + speed * t
        x += 0.05 * ww * np.sin(t * rng.uniform(0.02, 0.05))
        y = world.ground + 0.06 * hw * np.sin(t * rng.uniform(0.02, 0.06) + rng.uniform(0, 6))
        half_w, half_h = width / (2 * zoom), height / (2 * zoom)
        x = np.clip(x, half_w, ww - half_w)
        y = np.clip(y, half_h, hw - half_h)
        return cls(centre=np.stack([x, y], 1), zoom=zoom, size=size)

    def affine(self, t: int) -> np.ndarray:
        """float64 [2, 3] world -> screen transform at frame ``t``."""
        z = self.zoom[t]
        cx, cy = self.centre[t]
        width, height = self.size
        return np.array([[z, 0, width / 2 - z * cx], [0, z, height / 2 - z * cy]])

    def view(self, t: int) -> tuple[float, float, float, float]:
        """World rectangle ``(x0, y0, x1, y1)`` seen at frame ``t``."""
        z = self.zoom[t]
        (cx, cy), (width, height) = self.centre[t], self.size
        half_w, half_h = width / (2 * z), height / (2 * z)
        return cx - half_w, cy - half_h, cx + half_w, cy + half_h


@dataclass(frozen=True)
class Thing:
    """A rigid object moving through the world.

    Attributes:
        category: its class.
        track_id: persistent id (1..999).
        sprite: appearance and silhouette.
        tint: float32 [3] per-channel colour factor.
        start: first frame it exists.
        position: float64 [2] world position of its centre at ``start``.
        velocity: float64 [2] world pixels per frame.
        size: longest side in world pixels.
        angle: rotation at ``start``, radians.
        spin: rotation per frame, radians.
        pulse: relative size oscillation amplitude (moving toward / away from the camera).
        pulse_rate: radians per frame of that oscillation.
        depth: drawing order (larger = nearer).
    """

    category: Category
    track_id: int
    sprite: Sprite
    tint: np.ndarray
    start: int
    position: np.ndarray
    velocity: np.ndarray
    size: float
    angle: float
    spin: float
    pulse: float
    pulse_rate: float
    depth: float

    def paint(self, canvas: Canvas, t: int, camera: np.ndarray, owner: int) -> None:
        """Paints the thing at frame ``t`` through the world->screen affine ``camera``."""
        dt = t - self.start
        centre = self.position + dt * self.velocity
        scale = camera[0, 0] * self.size * (1 + self.pulse * np.sin(self.pulse_rate * dt))
        scale /= SPRITE_SIDE
        angle = self.angle + self.spin * dt
        c, s = np.cos(angle) * scale, np.sin(angle) * scale
        h, w = self.sprite.mask.shape
        screen = camera[:, :2] @ centre + camera[:, 2]
        m = np.array([[c, -s, 0.0], [s, c, 0.0]])
        m[:, 2] = screen - m[:, :2] @ np.array([w / 2, h / 2])
        corners = np.array([[0, 0], [w, 0], [0, h], [w, h]], np.float64) @ m[:, :2].T + m[:, 2]
        left, top = np.maximum(np.floor(corners.min(0)).astype(int), 0)
        right = min(int(np.ceil(corners[:, 0].max())), canvas.shape[1])
        bottom = min(int(np.ceil(corners[:, 1].max())), canvas.shape[0])
        if right <= left or bottom <= top:
            return
        m[:, 2] -= (left, top)
        size = (right - left, bottom - top)
        mask = cv2.warpAffine(self.sprite.mask.astype(np.uint8) * 255, m, size) >= 128
        if not mask.any():
            return
        image = cv2.warpAffine(self.sprite.image, m, size, flags=cv2.INTER_LINEAR)
        image = np.clip(image * self.tint, 0, 255).astype(np.uint8)
        canvas.paint(int(top), int(left), mask, image, owner)


@dataclass(frozen=True)
class Person:
    """An articulated person walking or posing on the ground.

    Attributes:
        track_id: persistent id (1..999).
        figure: body, clothes and motion.
        start: first frame they exist.
        position: float64 [2] world position of the pelvis at ``start``.
        velocity: float64 [2] world pixels per frame.
        height: body height in world pixels.
        depth: drawing order (larger = nearer).
    """

    track_id: int
    figure: Figure
    start: int
    position: np.ndarray
    velocity: np.ndarray
    height: float
    depth: float

    category = BY_NAME["person"]

    def paint(self, canvas: Canvas, t: int, camera: np.ndarray, owner: int) -> None:
        """Paints the person at frame ``t`` through the world->screen affine ``camera``."""
        pelvis = self.position + (t - self.start) * self.velocity

        def to_screen(local: np.ndarray) -> np.ndarray:
            return (pelvis + local * self.height) @ camera[:, :2].T + camera[:, 2]

        self.figure.paint(canvas, float(t), to_screen, camera[0, 0] * self.height, owner)


Entity = Thing | Person


@dataclass(frozen=True)
class Scene:
    """Everything needed to render one sequence.

    Attributes:
        world: the static background.
        camera: the camera path.
        entities: things and people, in order of appearance (their track ids).
    """

    world: World
    camera: Camera
    entities: tuple[Entity, ...]

    @classmethod
    def random(
        cls,
        rng: np.random.Generator,
        size: tuple[int, int],
        frames: int,
        things: int = 4,
        people: int = 2,
        arrivals_per_100: float = 4.0,
    ) -> Scene:
        """Draws a scene.

        Args:
            rng: source of randomness.
            size: frame ``(width, height)``.
            frames: sequence length.
            things: things in view at frame 0.
            people: people in view at frame 0.
            arrivals_per_100: things or people entering the view per 100 frames.
        """
        world = make_world(rng, *size)
        camera = Camera.random(rng, world, size, frames)
        entities: list[Entity] = []
        arrivals = [(0, "inside")] * (things + people)
        kinds = ["thing"] * things + ["person"] * people
        n_more = int(rng.poisson(arrivals_per_100 * frames / 100))
        for start in sorted(int(s) for s in rng.integers(1, max(frames, 2), n_more)):
            arrivals.append((start, "edge"))
            kinds.append("person" if rng.random() < 0.35 else "thing")
        for (start, where), kind in zip(arrivals, kinds, strict=True):
            track_id = len(entities) + 1
            if track_id >= ID_DIVISOR:
                break
            make = _person if kind == "person" else _thing
            entities.append(make(rng, track_id, start, where, camera, world))
        return cls(world=world, camera=camera, entities=tuple(entities))

    def render(self, t: int) -> tuple[Canvas, list[Entity]]:
        """Renders frame ``t``.

        Returns:
            The canvas, and the entities indexed by ``canvas.owner - 1``.
        """
        affine = self.camera.affine(t)
        width, height = self.camera.size
        image = cv2.warpAffine(
            self.world.image, affine, (width, height), flags=cv2.INTER_LINEAR,
            borderMode=cv2.BORDER_REPLICATE,
        )  # fmt: skip
        stuff = cv2.warpAffine(
            self.world.stuff, affine, (width, height), flags=cv2.INTER_NEAREST,
            borderMode=cv2.BORDER_REPLICATE,
        )  # fmt: skip
        canvas = Canvas(image, stuff.astype(np.int32))
        alive = sorted((e for e in self.entities if e.start <= t), key=lambda e: e.depth)
        for owner, entity in enumerate(alive, start=1):
            entity.paint(canvas, t, affine, owner)
        return canvas, alive


def _entry(
    rng: np.random.Generator, start: int, where: str, camera: Camera, speed: float
) -> tuple[np.ndarray, np.ndarray]:
    """Start position and velocity: inside the view, or just outside an edge heading in."""
    x0, y0, x1, y1 = camera.view(min(start, len(camera.zoom) - 1))
    if where == "inside":
        position = rng.uniform([x0 + 0.1 * (x1 - x0), y0 + 0.1 * (y1 - y0)],
                               [x1 - 0.1 * (x1 - x0), y1 - 0.1 * (y1 - y0)])  # fmt: skip
        heading = rng.uniform(0, 2 * np.pi)
        return position, speed * np.array([np.cos(heading), np.sin(heading)])
    side = int(rng.integers(4))
    margin = 0.15 * (x1 - x0)
    position = np.array([rng.uniform(x0, x1), rng.uniform(y0, y1)])
    position[side % 2] = (x0 - margin, y0 - margin, x1 + margin, y1 + margin)[side]
    target = np.array([rng.uniform(x0, x1), rng.uniform(y0, y1)])
    direction = (target - position) / np.linalg.norm(target - position)
    return position, speed * direction


def _thing(
    rng: np.random.Generator, track_id: int, start: int, where: str, camera: Camera, world: World
) -> Thing:
    name = THING_NAMES[int(rng.integers(len(THING_NAMES)))]
    variants = sprites(name)
    height = camera.size[1]
    position, velocity = _entry(rng, start, where, camera, rng.uniform(0.5, 3.0))
    upright = name in ("horse", "cat", "sign")
    if name == "horse":
        sprite = variants[int(velocity[0] < 0)]  # face the way it moves
    else:
        sprite = variants[int(rng.integers(len(variants)))]
    return Thing(
        category=BY_NAME[name],
        track_id=track_id,
        sprite=sprite,
        tint=rng.uniform(0.75, 1.2, 3).astype(np.float32),
        start=start,
        position=position,
        velocity=velocity,
        size=float(rng.uniform(0.15, 0.35) * height),
        angle=float(rng.uniform(-0.2, 0.2) if upright else rng.uniform(0, 2 * np.pi)),
        spin=float(rng.uniform(-0.01, 0.01) if upright else rng.uniform(-0.06, 0.06)),
        pulse=float(rng.uniform(0.0, 0.3)),
        pulse_rate=float(rng.uniform(0.02, 0.08)),
        depth=float(rng.random()),
    )


def _person(
    rng: np.random.Generator, track_id: int, start: int, where: str, camera: Camera, world: World
) -> Person:
    figure = Figure.random(rng)
    height = float(rng.uniform(0.3, 0.55) * camera.size[1])
    speed = rng.uniform(0.8, 2.0) if figure.style == "walk" else rng.uniform(0.0, 0.5)
    position, _ = _entry(rng, start, where, camera, speed)
    x0, _, x1, _ = camera.view(min(start, len(camera.zoom) - 1))
    position[1] = world.ground + rng.uniform(0.0, 0.25) * height  # standing on the ground
    if where == "edge":
        position[0] = x0 - 0.3 * height if rng.random() < 0.5 else x1 + 0.3 * height
        heading = 1.0 if position[0] < x0 else -1.0
    else:
        heading = float(rng.choice([-1.0, 1.0]))
    return Person(
        track_id=track_id,
        figure=figure,
        start=start,
        position=position,
        velocity=np.array([heading * speed, 0.0]),
        height=height,
        depth=float(rng.random()),
    )
