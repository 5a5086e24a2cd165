#!/usr/bin/env python3
# Copyright: contributors to the fleet_telemetry.dr collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

"""Fill the example fleet-telemetry database with realistic data, including encrypted photos.

Telemetry and audit rows are generated inside PostgreSQL with generate_series; photos (real JPEG and
PNG images, about 60% showing faces) are rendered with Pillow, encrypted with ENCRYPTION_KEY and streamed
with COPY. Everything goes through psql's standard input, so the same command works through
``docker exec -i``, ``docker-compose exec -T`` or a direct libpq connection.

The key never travels in argv: it comes from the environment or --env-file. With --verify the script
seeds nothing: it reads every photo back, decrypts it and checks it against its row.

FACE RULE (the test Rekognition endpoint detects faces exactly this way, see find_faces()):
open the image, convert it to RGB, downscale it with ``Image.thumbnail((64, 64), Image.Resampling.BOX)``;
a pixel is skin when each of its channels is within 32 of (224, 172, 105); a face is a 4-connected
component of at least 24 skin pixels, and its bounding box is the component's bounding box.
"""

import argparse
import collections
import dataclasses
import datetime
import hashlib
import importlib.util
import io
import json
import math
import multiprocessing
import os
import pathlib
import random
import shlex
import subprocess
import sys
import time
import uuid

from PIL import Image, ImageChops, ImageDraw

HERE = pathlib.Path(__file__).resolve().parent
CIPHER_PATH = HERE.parent.parent / 'plugins' / 'module_utils' / '_photo_crypto.py'
SCHEMA_PATH = HERE / 'schema' / '01_schema.sql'


def _load_cipher_module(path=CIPHER_PATH):
    spec = importlib.util.spec_from_file_location('fleet_telemetry_dr_photo_crypto', path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


photo_crypto = _load_cipher_module()

APP_TABLES = ('vehicle', 'gps_telemetry', 'gyroscope_telemetry', 'photo', 'recognition_result', 'audit_log')
DEFAULT_PSQL = 'docker exec -i challenge_db_postgres psql -X -v ON_ERROR_STOP=1 -q -U {user} -d {db}'
DEFAULT_END_TIME = '2025-06-01T12:00:00+00:00'
DEFAULT_COLLECTION_ID = 'fleet-drivers'

# ---------------------------------------------------------------------------------------------------
# The face rule
# ---------------------------------------------------------------------------------------------------

SKIN_RGB = (224, 172, 105)
SKIN_TOLERANCE = 32
THUMBNAIL_SIZE = (64, 64)
MIN_FACE_PIXELS = 24


def skin_mask(rgb_image):
    """Return a flat bytes grid, non-zero where every channel is within SKIN_TOLERANCE of SKIN_RGB."""
    masks = [
        channel.point([255 if abs(value - skin) <= SKIN_TOLERANCE else 0 for value in range(256)])
        for channel, skin in zip(rgb_image.split(), SKIN_RGB)
    ]
    return ImageChops.darker(ImageChops.darker(masks[0], masks[1]), masks[2]).tobytes()


def face_thumbnail(image_bytes):
    """Decode ``image_bytes`` and downscale it exactly as the face rule says; return an RGB image."""
    with Image.open(io.BytesIO(image_bytes)) as opened:
        image = opened.convert('RGB')
    image.thumbnail(THUMBNAIL_SIZE, Image.Resampling.BOX)
    return image


def skin_components(width, height, skin):
    """Return the 4-connected components of the flat boolean grid ``skin`` (row-major) as pixel-index lists."""
    seen = bytearray(width * height)
    components = []
    for start in range(width * height):
        if not skin[start] or seen[start]:
            continue
        seen[start] = 1
        component = []
        queue = collections.deque([start])
        while queue:
            index = queue.popleft()
            component.append(index)
            x, y = index % width, index // width
            for nx, ny in ((x - 1, y), (x + 1, y), (x, y - 1), (x, y + 1)):
                neighbour = ny * width + nx
                if 0 <= nx < width and 0 <= ny < height and skin[neighbour] and not seen[neighbour]:
                    seen[neighbour] = 1
                    queue.append(neighbour)
        components.append(component)
    return components


class Face(collections.namedtuple('Face', 'left top width height pixels')):
    """One face: its box as ratios of the thumbnail (Rekognition's BoundingBox) and its pixel count."""

    __slots__ = ()

    @property
    def confidence(self):
        """The Confidence the test Rekognition endpoint reports for this face."""
        return round(99.0 + 0.99 * min(self.pixels, 1024) / 1024, 4)


def find_faces(image_bytes):
    """Apply the face rule; return the faces largest first, then by top, then by left (the endpoint's order)."""
    thumb = face_thumbnail(image_bytes)
    width, height = thumb.size
    faces = []
    for component in skin_components(width, height, skin_mask(thumb)):
        if len(component) < MIN_FACE_PIXELS:
            continue
        xs = [index % width for index in component]
        ys = [index // width for index in component]
        left, top = min(xs), min(ys)
        faces.append(Face(round(left / width, 6), round(top / height, 6), round((max(xs) - left + 1) / width, 6),
                          round((max(ys) - top + 1) / height, 6), len(component)))
    faces.sort(key=lambda face: (-face.pixels, face.top, face.left))
    return faces


def count_faces(image_bytes):
    """Return how many faces the face rule finds in ``image_bytes`` (JPEG or PNG)."""
    return len(find_faces(image_bytes))


# ---------------------------------------------------------------------------------------------------
# Sizing
# ---------------------------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Plan:
    """How much to generate. Telemetry rows are split 1/3 GPS, 2/3 gyroscope (the gyroscope samples faster)."""

    vehicles: int
    telemetry_rows: int
    photos: int
    photo_kb: int
    audit_rows: int
    window_days: int

    @property
    def gps_rows(self):
        return self.telemetry_rows // 3

    @property
    def gyroscope_rows(self):
        return self.telemetry_rows - self.gps_rows


PRESETS = {
    'tiny': Plan(vehicles=3, telemetry_rows=2_000, photos=24, photo_kb=20, audit_rows=300, window_days=1),
    'small': Plan(vehicles=10, telemetry_rows=120_000, photos=300, photo_kb=40, audit_rows=5_000, window_days=7),
    'medium': Plan(vehicles=40, telemetry_rows=1_200_000, photos=1_500, photo_kb=80, audit_rows=40_000, window_days=30),
    'bench': Plan(vehicles=200, telemetry_rows=6_000_000, photos=5_000, photo_kb=100, audit_rows=150_000, window_days=90),
}

# On-disk bytes per row including indexes, measured on PostgreSQL 15 with this schema.
GPS_ROW_BYTES = 168
GYROSCOPE_ROW_BYTES = 151
AUDIT_ROW_BYTES = 341
PHOTO_OVERHEAD_BYTES = 150


def estimate_mb(plan):
    """Estimated database size of ``plan`` in MiB (photo ciphertext stored as is)."""
    photo_bytes = plan.photos * (plan.photo_kb * 1024 + PHOTO_OVERHEAD_BYTES)
    row_bytes = plan.gps_rows * GPS_ROW_BYTES + plan.gyroscope_rows * GYROSCOPE_ROW_BYTES + plan.audit_rows * AUDIT_ROW_BYTES
    return (photo_bytes + row_bytes) / 2 ** 20


def scale_plan(plan, target_mb):
    """Scale every row count of ``plan`` so that it comes to about ``target_mb`` MiB; photo size is kept."""
    factor = target_mb / estimate_mb(plan)
    return dataclasses.replace(
        plan,
        vehicles=max(1, round(plan.vehicles * math.sqrt(factor))),
        telemetry_rows=max(3, round(plan.telemetry_rows * factor)),
        photos=max(1, round(plan.photos * factor)),
        audit_rows=max(1, round(plan.audit_rows * factor)),
    )


def make_plan(size, target_mb=None, **overrides):
    """Return the Plan of preset ``size``, scaled to ``target_mb`` when given, then with explicit overrides."""
    plan = PRESETS[size]
    if target_mb is not None:
        plan = scale_plan(plan, target_mb)
    return dataclasses.replace(plan, **{name: value for name, value in overrides.items() if value is not None})


# ---------------------------------------------------------------------------------------------------
# Photos
# ---------------------------------------------------------------------------------------------------

FACE_RATIO = 0.6
TWO_FACES_RATIO = 0.25
INDEXED_RATIO = 0.7
JPEG_RATIO = 0.7
# Bytes per pixel of the rendered scenes, measured at the noise amplitudes below; used to pick image
# dimensions that give the requested file size.
JPEG_BYTES_PER_PIXEL = 0.35
PNG_BYTES_PER_PIXEL = 0.9
JPEG_NOISE = 26
PNG_NOISE = 5
# Every colour outside a face keeps red at or below this (noise included), far below the 192 a skin
# pixel needs, so no blend, blur or compression artefact outside a face can look like skin.
MAX_BACKGROUND_RED = 150


@dataclasses.dataclass(frozen=True)
class PhotoSpec:
    """Everything needed to render, encrypt and store one photo; a pure function of the seed and the id."""

    photo_id: int
    vehicle_id: int
    taken_at: datetime.datetime
    image_format: str
    width: int
    height: int
    quality: int
    faces: tuple
    seed: int

    @property
    def content_type(self):
        return 'image/jpeg' if self.image_format == 'JPEG' else 'image/png'

    @property
    def external_image_id(self):
        return 'veh-%04d.photo-%08d' % (self.vehicle_id, self.photo_id)


def plan_photo(seed, photo_id, plan, end_time):
    """Return the PhotoSpec of photo ``photo_id`` (1-based); independent of every other photo."""
    rng = random.Random('%s:photo:%d' % (seed, photo_id))
    image_format = 'JPEG' if rng.random() < JPEG_RATIO else 'PNG'
    bytes_per_pixel = JPEG_BYTES_PER_PIXEL if image_format == 'JPEG' else PNG_BYTES_PER_PIXEL
    target = plan.photo_kb * 1024 * rng.uniform(0.75, 1.25)
    aspect = rng.choice((4 / 3, 16 / 9, 3 / 2))
    height = int(math.sqrt(target / bytes_per_pixel / aspect))
    height = min(max(height, 120), 3000)
    width = int(height * aspect)
    face_count = 0
    if rng.random() < FACE_RATIO:
        face_count = 2 if rng.random() < TWO_FACES_RATIO else 1
    window = datetime.timedelta(days=plan.window_days)
    offset = window * (plan.photos - photo_id) / max(plan.photos, 1)
    return PhotoSpec(
        photo_id=photo_id,
        vehicle_id=1 + rng.randrange(plan.vehicles),
        taken_at=end_time - offset - datetime.timedelta(seconds=rng.uniform(0, 60)),
        image_format=image_format,
        width=width,
        height=height,
        quality=rng.randint(78, 92),
        faces=place_faces(rng, width, height, face_count),
        seed=rng.getrandbits(64),
    )


def place_faces(rng, width, height, count):
    """Return ``count`` face ellipses (cx, cy, rx, ry) that fit the image and lie far apart."""
    short = min(width, height)
    faces = []
    for slot in range(count):
        diameter = short * (rng.uniform(0.26, 0.36) if count == 1 else rng.uniform(0.24, 0.30))
        rx, ry = diameter / 2, diameter * 0.6
        if count == 1:
            cx = rng.uniform(width * 0.3, width * 0.7)
        else:
            cx = width * (0.27 + 0.46 * slot) + rng.uniform(-0.03, 0.03) * width
        cy = rng.uniform(ry + short * 0.08, height - ry - short * 0.08)
        faces.append((round(cx), round(cy), round(rx), round(ry)))
    return tuple(faces)


def _safe_colour(rng, red_max=MAX_BACKGROUND_RED - 30):
    return (rng.randint(10, red_max), rng.randint(30, 230), rng.randint(40, 240))


def _background(rng, width, height):
    """A sky-to-street gradient scene with buildings, a road and trees; red stays low everywhere."""
    sky, street = _safe_colour(rng), _safe_colour(rng)
    gradient = Image.linear_gradient('L').resize((width, height))
    image = Image.merge('RGB', [
        gradient.point([round(top + (bottom - top) * v / 255) for v in range(256)]) for top, bottom in zip(sky, street)
    ])
    draw = ImageDraw.Draw(image)
    horizon = int(height * rng.uniform(0.45, 0.65))
    for dummy in range(rng.randint(3, 9)):
        left = rng.randint(-width // 10, width)
        top = rng.randint(int(horizon * 0.2), horizon)
        draw.rectangle((left, top, left + rng.randint(width // 12, width // 4), horizon), fill=_safe_colour(rng))
    road = _safe_colour(rng, red_max=90)
    draw.polygon([(width * 0.35, horizon), (width * 0.65, horizon), (width * 1.1, height), (-width * 0.1, height)], fill=road)
    lane = (rng.randint(90, MAX_BACKGROUND_RED - 30), rng.randint(180, 230), rng.randint(180, 240))
    for step in range(6):
        y0 = horizon + (height - horizon) * step / 6
        draw.line([(width / 2, y0), (width / 2, y0 + (height - horizon) / 12)], fill=lane, width=max(1, width // 160))
    for dummy in range(rng.randint(2, 6)):
        x, y, r = rng.randint(0, width), rng.randint(horizon // 2, horizon), rng.randint(width // 40 + 1, width // 10 + 2)
        draw.ellipse((x - r, y - r, x + r, y + r), fill=(rng.randint(10, 70), rng.randint(90, 170), rng.randint(30, 90)))
    return image


def _add_noise(rng, image, amplitude):
    """Add the same uniform luminance noise of +/- ``amplitude`` to every channel (sensor grain)."""
    width, height = image.size
    lut = [128 - amplitude + (v * (2 * amplitude + 1)) // 256 for v in range(256)]
    noise = Image.frombytes('L', (width, height), rng.randbytes(width * height)).point(lut)
    return Image.merge('RGB', [ImageChops.add(channel, noise, 1.0, -128) for channel in image.split()])


def _draw_person(draw, rng, face):
    """Hair and shoulders in non-skin colours, then the face: one connected ellipse of exactly SKIN_RGB."""
    cx, cy, rx, ry = face
    hair = (rng.randint(20, 70), rng.randint(15, 50), rng.randint(10, 40))
    draw.ellipse((cx - rx * 1.15, cy - ry * 1.15, cx + rx * 1.15, cy + ry * 0.6), fill=hair)
    shirt = _safe_colour(rng)
    draw.ellipse((cx - rx * 2.2, cy + ry * 0.85, cx + rx * 2.2, cy + ry * 3.5), fill=shirt)
    draw.ellipse((cx - rx, cy - ry, cx + rx, cy + ry), fill=SKIN_RGB)
    eye_r = max(1, rx * 0.12)
    for side in (-1, 1):
        ex, ey = cx + side * rx * 0.38, cy - ry * 0.18
        draw.ellipse((ex - eye_r, ey - eye_r * 0.7, ex + eye_r, ey + eye_r * 0.7), fill=(30, 25, 20))
    draw.ellipse((cx - rx * 0.35, cy + ry * 0.38, cx + rx * 0.35, cy + ry * 0.5), fill=(110, 40, 40))


def render_photo(spec):
    """Render ``spec`` and return the encoded image bytes (JPEG or PNG)."""
    rng = random.Random(spec.seed)
    image = _background(rng, spec.width, spec.height)
    image = _add_noise(rng, image, JPEG_NOISE if spec.image_format == 'JPEG' else PNG_NOISE)
    draw = ImageDraw.Draw(image)
    for face in spec.faces:
        _draw_person(draw, rng, face)
    buffer = io.BytesIO()
    if spec.image_format == 'JPEG':
        image.save(buffer, format='JPEG', quality=spec.quality)
    else:
        image.save(buffer, format='PNG', compress_level=6)
    return buffer.getvalue()


# ---------------------------------------------------------------------------------------------------
# Worker side: render, check the faces, encrypt, format one COPY line
# ---------------------------------------------------------------------------------------------------

_WORKER = {}


def _init_worker(key, cipher):
    _WORKER['key'] = key
    _WORKER['cipher'] = cipher


@dataclasses.dataclass(frozen=True)
class PhotoRow:
    photo_id: int
    copy_line: bytes
    faces: tuple
    plaintext_bytes: int
    stored_bytes: int


def build_photo_row(spec):
    """Render, verify with the face rule, encrypt and format ``spec`` as one line of COPY photo text."""
    image = render_photo(spec)
    faces = tuple(find_faces(image))
    if len(faces) != len(spec.faces):
        raise RuntimeError('photo %d: rendered %d faces but the face rule finds %d' % (spec.photo_id, len(spec.faces), len(faces)))
    stored = photo_crypto.encrypt(_WORKER['key'], image, _WORKER['cipher'])
    created_at = spec.taken_at + datetime.timedelta(seconds=2 + spec.seed % 40)
    fields = [
        str(spec.photo_id), str(spec.vehicle_id), spec.taken_at.isoformat(), spec.content_type,
        '\\\\x' + stored.hex(), spec.external_image_id, str(len(image)), str(spec.width), str(spec.height),
        '\\\\x' + hashlib.sha256(image).hexdigest(), created_at.isoformat(),
    ]
    return PhotoRow(spec.photo_id, ('\t'.join(fields) + '\n').encode('ascii'), faces, len(image), len(stored))


PHOTO_COPY = (
    'COPY photo (id, vehicle_id, taken_at, content_type, data, external_image_id, size_bytes, width, height, sha256, created_at)'
    ' FROM STDIN;\n'
)
RECOGNITION_COPY = (
    'COPY recognition_result (photo_id, collection_id, face_id, image_id, confidence,'
    ' bbox_left, bbox_top, bbox_width, bbox_height, created_at) FROM STDIN;\n'
)


def recognition_lines(seed, row, spec, collection_id):
    """COPY lines of recognition_result for the faces of one photo, or none when it was never indexed."""
    rng = random.Random('%s:recognition:%d' % (seed, row.photo_id))
    if not row.faces or rng.random() >= INDEXED_RATIO:
        return []
    image_id = uuid.UUID(int=rng.getrandbits(128), version=4)
    created_at = spec.taken_at + datetime.timedelta(seconds=rng.uniform(5, 600))
    lines = []
    for face in row.faces:
        face_id = uuid.UUID(int=rng.getrandbits(128), version=4)
        fields = [row.photo_id, collection_id, face_id, image_id, face.confidence,
                  face.left, face.top, face.width, face.height, created_at.isoformat()]
        lines.append('\t'.join(str(field) for field in fields) + '\n')
    return lines


# ---------------------------------------------------------------------------------------------------
# SQL generated in the database
# ---------------------------------------------------------------------------------------------------

MAKES = (
    ('Volkswagen', 'Delivery 11.180'), ('Mercedes-Benz', 'Accelo 1016'), ('Fiat', 'Fiorino'), ('Renault', 'Master'),
    ('Iveco', 'Daily 35-150'), ('Ford', 'Cargo 816'), ('Volvo', 'VM 270'), ('Scania', 'P 320'),
)
VIN_CHARS = 'ABCDEFGHJKLMNPRSTUVWXYZ0123456789'
LETTERS = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ'


def sql_literal(value):
    return "'%s'" % str(value).replace("'", "''")


def sql_vehicles(seed, plan, end_time):
    """INSERT of the vehicles with ids 1..N (plates in the Mercosul format, valid-looking VINs)."""
    rng = random.Random('%s:vehicles' % seed)
    rows = []
    plates = set()
    for vehicle_id in range(1, plan.vehicles + 1):
        plate = None
        while plate is None or plate in plates:
            plate = '%s%d%s%02d' % (''.join(rng.choices(LETTERS, k=3)), rng.randrange(10), rng.choice(LETTERS), rng.randrange(100))
        plates.add(plate)
        vin = '9' + ''.join(rng.choices(VIN_CHARS, k=16))
        make, model = rng.choice(MAKES)
        status = rng.choices(('active', 'maintenance', 'retired'), weights=(90, 7, 3))[0]
        created = end_time - datetime.timedelta(days=plan.window_days + rng.uniform(30, 900))
        rows.append('(%d, %s, %s, %s, %s, %d, %s, %s, %s)' % (
            vehicle_id, sql_literal(plate), sql_literal(vin), sql_literal(make),
            sql_literal(model), rng.randint(2015, 2025), sql_literal(status), sql_literal(created.isoformat()), sql_literal(end_time.isoformat())))
    return (
        'INSERT INTO vehicle (id, plate, vin, make, model, model_year, status, created_at, updated_at) VALUES\n'
        + ',\n'.join(rows) + ';\n'
    )


def _setseed(seed, salt):
    digest = hashlib.sha256(('%s:%s' % (seed, salt)).encode()).digest()
    return int.from_bytes(digest[:4], 'big') / 2 ** 32 * 2 - 1


def sql_gps(seed, plan, end_time):
    """INSERT ... SELECT generate_series of GPS fixes: each vehicle drives loops around São Paulo."""
    per_vehicle = -(-plan.gps_rows // plan.vehicles)
    step = plan.window_days * 86400.0 / max(per_vehicle, 1)
    return '''SELECT setseed({s});
INSERT INTO gps_telemetry (vehicle_id, recorded_at, received_at, lat, lon, altitude_m, speed_kmh, heading_deg, hdop, satellites)
SELECT v, t, t + make_interval(secs => 0.2 + random() * 2.5),
       lat0 + radius * sin(a) + (random() - 0.5) * 0.00004,
       lon0 + radius * cos(a) / cos(radians(lat0)) + (random() - 0.5) * 0.00004,
       (760 + 35 * sin(a * 3) + random() * 4)::real,
       greatest(0, 38 + 24 * sin(k / 17.0 + v) + (random() - 0.5) * 9)::real,
       (floor(mod(mod((-degrees(a))::numeric, 360) + 360, 360) * 10) / 10)::real,
       (0.6 + random() * 1.8)::real,
       (6 + floor(random() * 9))::smallint
FROM (
    SELECT v, k, t,
           -23.55 + ((v * 7919) % 200 - 100) / 1000.0 AS lat0,
           -46.63 + ((v * 104729) % 200 - 100) / 1000.0 AS lon0,
           0.01 + ((v * 37) % 50) / 1000.0 AS radius,
           v * 2.39996 + k * 0.02 AS a
    FROM (
        SELECT g % {vehicles} + 1 AS v, g / {vehicles} AS k,
               timestamptz {end} - make_interval(secs => ({per_vehicle} - g / {vehicles}) * {step}) AS t
        FROM generate_series(0, {rows} - 1) AS g
    ) AS sample
) AS fix;
'''.format(s=_setseed(seed, 'gps'), vehicles=plan.vehicles, end=sql_literal(end_time.isoformat()), per_vehicle=per_vehicle,
           step=repr(step), rows=plan.gps_rows)


def sql_gyroscope(seed, plan, end_time):
    """INSERT ... SELECT generate_series of gyroscope samples: turn rate on z, road vibration on x and y."""
    per_vehicle = -(-plan.gyroscope_rows // plan.vehicles)
    step = plan.window_days * 86400.0 / max(per_vehicle, 1)
    return '''SELECT setseed({s});
INSERT INTO gyroscope_telemetry (vehicle_id, recorded_at, received_at, x, y, z)
SELECT v, t, t + make_interval(secs => 0.2 + random() * 2.5),
       (random() - 0.5) * 0.08 + CASE WHEN random() < 0.01 THEN (random() - 0.5) * 1.2 ELSE 0 END,
       (random() - 0.5) * 0.06,
       0.12 * sin(k / 23.0 + v) + (random() - 0.5) * 0.02
FROM (
    SELECT g % {vehicles} + 1 AS v, g / {vehicles} AS k,
           timestamptz {end} - make_interval(secs => ({per_vehicle} - g / {vehicles}) * {step}) AS t
    FROM generate_series(0, {rows} - 1) AS g
) AS sample;
'''.format(s=_setseed(seed, 'gyroscope'), vehicles=plan.vehicles, end=sql_literal(end_time.isoformat()), per_vehicle=per_vehicle,
           step=repr(step), rows=plan.gyroscope_rows)


AUDIT_USERS = ('ana.souza@fleet.example', 'bruno.lima@fleet.example', 'carla.mendes@fleet.example', 'diego.alves@fleet.example')
# (action, actor): a None actor is one of AUDIT_USERS; repeated entries make an action more frequent.
AUDIT_EVENTS = (
    ('user.login', None), ('user.login', None), ('user.logout', None), ('user.login_failed', None),
    ('photo.view', None), ('photo.view', None), ('photo.view', None), ('photo.decrypt', None),
    ('vehicle.update', None), ('settings.update', None), ('telemetry.export', None), ('telemetry.export', 'svc:reports'),
    ('photo.upload', 'svc:ingest'), ('photo.upload', 'svc:ingest'), ('face.index', 'svc:recognition'),
    ('face.search', 'svc:recognition'), ('face.search', 'svc:recognition'), ('backup.completed', 'svc:backup'),
)


def sql_audit(seed, plan, end_time):
    """INSERT ... SELECT generate_series of audit events with a JSON detail that depends on the action."""
    actions = 'ARRAY[%s]' % ', '.join(sql_literal(action) for action, dummy in AUDIT_EVENTS)
    actors = 'ARRAY[%s]' % ', '.join('NULL' if actor is None else sql_literal(actor) for dummy, actor in AUDIT_EVENTS)
    users = 'ARRAY[%s]' % ', '.join(sql_literal(user) for user in AUDIT_USERS)
    return '''SELECT setseed({s});
INSERT INTO audit_log (at, actor, action, detail)
SELECT at, coalesce(({actors})[event], ({users})[1 + g % {n_users}]), action,
       jsonb_build_object('request_id', md5({salt} || g)::uuid, 'ip', '10.20.' || (g % 7) || '.' || (g * 31 % 250 + 2))
       || CASE
            WHEN action LIKE 'photo.%' OR action LIKE 'face.%' THEN jsonb_build_object('photo_id', 1 + g::bigint * 7919 % {photos}, 'vehicle_id', vehicle)
            WHEN action IN ('vehicle.update', 'telemetry.export') THEN jsonb_build_object('vehicle_id', vehicle, 'fields', jsonb_build_array('status'))
            WHEN action = 'user.login_failed' THEN jsonb_build_object('reason', 'bad_password', 'attempt', 1 + g % 3)
            WHEN action = 'backup.completed' THEN jsonb_build_object('database', 'telemetry_db', 'bytes', 1000000 + g::bigint * 7919 % 900000000)
            ELSE jsonb_build_object('user_agent', 'FleetConsole/2.' || (g % 9) || ' (Linux; Android 14)')
          END
FROM (
    SELECT g, event, ({actions})[event] AS action, 1 + g % {vehicles} AS vehicle,
           timestamptz {end} - make_interval(secs => ({rows} - g) * {step} + random() * {step}) AS at
    FROM (SELECT g, 1 + floor(random() * {n_events})::int AS event FROM generate_series(1, {rows}) AS g) AS pick
) AS audit_event
ORDER BY at;
'''.format(s=_setseed(seed, 'audit'), salt=sql_literal(seed), photos=max(plan.photos, 1), vehicles=plan.vehicles,
           end=sql_literal(end_time.isoformat()), rows=plan.audit_rows, step=repr(plan.window_days * 86400.0 / max(plan.audit_rows, 1)),
           actors=actors, users=users, n_users=len(AUDIT_USERS), actions=actions, n_events=len(AUDIT_EVENTS))


SQL_FINISH = ''.join(
    "SELECT setval(pg_get_serial_sequence('%s', 'id'), coalesce(max(id), 0) + 1, false) FROM %s;\n" % (table, table)
    for table in APP_TABLES
) + 'ANALYZE %s;\n' % ', '.join(APP_TABLES)

SQL_RESET = 'TRUNCATE %s RESTART IDENTITY CASCADE;\n' % ', '.join(APP_TABLES)

SQL_PREAMBLE = '\\set QUIET on\n\\set ON_ERROR_STOP on\n\\pset tuples_only on\n\\pset format unaligned\n'

SQL_TABLES = 'SELECT %s;\n' % ', '.join("to_regclass('public.%s') IS NOT NULL" % table for table in APP_TABLES)

SQL_FILLED = 'SELECT %s;\n' % ', '.join('EXISTS (SELECT FROM public.%s)' % table for table in APP_TABLES)

SQL_COUNTS = 'SELECT %s, pg_database_size(current_database());\n' % ', '.join('(SELECT count(*) FROM %s)' % table for table in APP_TABLES)


# ---------------------------------------------------------------------------------------------------
# psql
# ---------------------------------------------------------------------------------------------------

class SeedError(Exception):
    """A failure the operator can act on; main() prints it and exits 1."""


class Psql:
    """One psql process fed through stdin; its errors go straight to our stderr."""

    def __init__(self, argv, env, label, capture=False):
        self.label = label
        self.argv = argv
        try:
            self.process = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE if capture else subprocess.DEVNULL, env=env)
        except OSError as exc:
            raise SeedError('cannot run %s: %s' % (argv[0], exc)) from None
        self.write(SQL_PREAMBLE)

    def write(self, data):
        try:
            self.process.stdin.write(data.encode('utf-8') if isinstance(data, str) else data)
        except BrokenPipeError:
            self.finish()

    def close_input(self):
        try:
            self.process.stdin.close()
        except BrokenPipeError:
            pass

    def check(self):
        """Raise SeedError early when psql has already failed."""
        if self.process.poll():
            self.finish()

    def finish(self):
        """Close stdin, wait, and return stdout; raise SeedError when psql failed."""
        self.close_input()
        output = self.process.stdout.read().decode() if self.process.stdout else ''
        rc = self.process.wait()
        if rc != 0:
            raise SeedError('psql failed (rc=%d) while %s; its error is above. Command: %s' % (rc, self.label, shlex.join(self.argv)))
        return output

    def kill(self):
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()


def psql_query(argv, env, sql, label):
    session = Psql(argv, env, label, capture=True)
    session.write(sql)
    return session.finish().strip()


# ---------------------------------------------------------------------------------------------------
# Settings
# ---------------------------------------------------------------------------------------------------

def read_env_file(path):
    """Parse a docker-compose style .env file: KEY=VALUE lines, optional 'export ', quotes and comments."""
    values = {}
    try:
        text = pathlib.Path(path).read_text(encoding='utf-8')
    except OSError as exc:
        raise SeedError('cannot read --env-file %s: %s' % (path, exc.strerror)) from None
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith('#') or '=' not in line:
            continue
        name, dummy, value = line.partition('=')
        name = name.strip().removeprefix('export ').strip()
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in '"\'':
            value = value[1:-1]
        elif ' #' in value:
            value = value.split(' #', 1)[0].rstrip()
        values[name] = value
    return values


def resolve_settings(args, environ):
    """Return (key bytes, cipher, settings dict, key source). --env-file beats the environment."""
    file_values = read_env_file(args.env_file) if args.env_file else {}

    def setting(name):
        if name in file_values:
            return file_values[name], '--env-file %s' % args.env_file
        if name in environ:
            return environ[name], 'environment'
        return None, None

    raw_key, key_source = setting('ENCRYPTION_KEY')
    if raw_key is None:
        raise SeedError('ENCRYPTION_KEY is not set: export it or put it in the file given with --env-file')
    try:
        key = photo_crypto.parse_key(raw_key)
    except photo_crypto.KeyFormatError as exc:
        raise SeedError('%s (from %s)' % (exc, key_source)) from None
    cipher_value = args.cipher or setting('PHOTO_CIPHER')[0]
    try:
        cipher = photo_crypto.normalize_scheme(cipher_value)
    except photo_crypto.SchemeError as exc:
        raise SeedError(str(exc)) from None
    settings = {name: setting(name)[0] for name in ('POSTGRES_USER', 'POSTGRES_DB', 'POSTGRES_PASSWORD')}
    return key, cipher, settings, key_source


def psql_command(args, settings):
    if args.psql:
        return shlex.split(args.psql)
    template = DEFAULT_PSQL.format(user=shlex.quote(settings['POSTGRES_USER'] or 'challengeuser'),
                                   db=shlex.quote(settings['POSTGRES_DB'] or 'telemetry_db'))
    return shlex.split(template)


def child_environment(environ, settings):
    """psql's environment: ours without the key, plus PGPASSWORD from --env-file when it has one."""
    env = {name: value for name, value in environ.items() if name not in ('ENCRYPTION_KEY', 'PHOTO_CIPHER')}
    if settings.get('POSTGRES_PASSWORD') and 'PGPASSWORD' not in env:
        env['PGPASSWORD'] = settings['POSTGRES_PASSWORD']
    return env


def parse_end_time(value):
    if value == 'now':
        return datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)
    try:
        parsed = datetime.datetime.fromisoformat(value)
    except ValueError:
        raise argparse.ArgumentTypeError('not an ISO 8601 time: %r' % value) from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=datetime.timezone.utc)


def positive_int(value):
    number = int(value)
    if number < 1:
        raise argparse.ArgumentTypeError('must be at least 1')
    return number


def build_parser():
    parser = argparse.ArgumentParser(
        description='Seed the example fleet-telemetry database (telemetry_db) with vehicles, GPS and gyroscope telemetry, '
                    'photos encrypted with ENCRYPTION_KEY, Rekognition recognition results and audit_log rows.',
        epilog='The key is read from the environment variable ENCRYPTION_KEY or from --env-file (which wins), never from '
               'the command line; it may be 64 hex characters, base64 of 32 bytes or 32 characters used as is. Presets: '
               + '; '.join('%s: %d vehicles, %d telemetry rows, %d photos of ~%d KB, ~%.0f MB' % (
                   name, plan.vehicles, plan.telemetry_rows, plan.photos, plan.photo_kb, estimate_mb(plan)) for name, plan in PRESETS.items())
               + '. A one-line JSON summary is printed on stdout, progress on stderr.',
    )
    parser.add_argument('--size', choices=sorted(PRESETS), default='small', help='dataset preset (default: %(default)s)')
    parser.add_argument('--target-mb', type=positive_int, help='scale the preset to about this many MB of database')
    parser.add_argument('--vehicles', type=positive_int, help='override the number of vehicles')
    parser.add_argument('--telemetry-rows', type=positive_int, help='override the GPS + gyroscope row count (1/3 GPS)')
    parser.add_argument('--photos', type=positive_int, help='override the number of photos')
    parser.add_argument('--photo-kb', type=positive_int, help='override the average photo size in KB')
    parser.add_argument('--audit-rows', type=positive_int, help='override the number of audit_log rows')
    parser.add_argument('--psql', help='psql command to stream SQL into, as one shell-quoted string (default: %s with '
                                       'POSTGRES_USER and POSTGRES_DB from --env-file, else challengeuser and telemetry_db)'
                                       % DEFAULT_PSQL.replace('%', '%%'))
    parser.add_argument('--env-file', help='.env file with ENCRYPTION_KEY, PHOTO_CIPHER, POSTGRES_USER, POSTGRES_DB, '
                                           'POSTGRES_PASSWORD (the password is given to psql as PGPASSWORD)')
    parser.add_argument('--cipher', help='photo cipher: %s (default: PHOTO_CIPHER from --env-file or the environment, '
                                         'else %s)' % (', '.join(photo_crypto.SCHEMES), photo_crypto.DEFAULT_SCHEME))
    parser.add_argument('--verify', action='store_true',
                        help='seed nothing: read every photo back, decrypt it with the key and check '
                             'its SHA-256, image type and recognition_result faces; exit 1 on any mismatch')
    parser.add_argument('--reset', action='store_true', help='TRUNCATE all application tables first (deletes their data)')
    parser.add_argument('--create-schema', action='store_true', help='load schema/01_schema.sql first when the tables do not exist')
    parser.add_argument('--random-seed', help='seed for reproducible data (default: random, printed on stderr); '
                                              'rows and images are reproducible, ciphertexts are not (fresh nonces)')
    parser.add_argument('--end-time', type=parse_end_time, default=parse_end_time(DEFAULT_END_TIME),
                        help='newest timestamp of the generated history, ISO 8601 or "now" (default: %s)' % DEFAULT_END_TIME)
    parser.add_argument('--collection-id', default=DEFAULT_COLLECTION_ID, help='Rekognition collection id of recognition_result rows '
                                                                               '(default: %(default)s)')
    parser.add_argument('--jobs', type=positive_int, default=os.cpu_count() or 1, help='image worker processes (default: %(default)s)')
    return parser


# ---------------------------------------------------------------------------------------------------
# The run
# ---------------------------------------------------------------------------------------------------

def log(message):
    print('seed: %s' % message, file=sys.stderr, flush=True)


def check_database(psql, env, args):
    """Refuse to seed over existing data unless --reset; create the schema when asked to."""
    present = dict(zip(APP_TABLES, psql_query(psql, env, SQL_TABLES, 'checking the tables').split('|')))
    missing = [table for table, value in present.items() if value != 't']
    if missing and args.create_schema and len(missing) == len(APP_TABLES):
        log('loading %s' % SCHEMA_PATH)
        psql_query(psql, env, SCHEMA_PATH.read_text(encoding='utf-8'), 'loading the schema')
        return
    if missing:
        raise SeedError('table(s) %s do not exist in the database: load %s first (the db container does it on its first start, '
                        'or pass --create-schema)' % (', '.join(missing), SCHEMA_PATH))
    state = dict(zip(APP_TABLES, psql_query(psql, env, SQL_FILLED, 'checking for existing rows').split('|')))
    filled = [table for table, value in state.items() if value == 't']
    if filled and not args.reset:
        raise SeedError('the database already has application data (%s not empty); run again with --reset to delete '
                        'all application rows first' % ', '.join(filled))
    if args.reset:
        log('--reset: truncating %s' % ', '.join(APP_TABLES))
        psql_query(psql, env, SQL_RESET, 'truncating the application tables')


def stream_photos(session, seed, plan, args, key, cipher, check=lambda: None):
    """Render photos in a worker pool and stream them with COPY; return totals. ``check()`` runs between batches."""
    totals = {'photos': 0, 'photos_with_faces': 0, 'faces_expected': 0, 'photo_plaintext_bytes': 0, 'photo_stored_bytes': 0}
    recognition = []
    started = last_report = time.monotonic()
    session.write(PHOTO_COPY)
    context = multiprocessing.get_context('fork')
    with context.Pool(args.jobs, initializer=_init_worker, initargs=(key, cipher)) as pool:
        batch = 32 * args.jobs
        for first in range(1, plan.photos + 1, batch):
            specs = {i: plan_photo(seed, i, plan, args.end_time) for i in range(first, min(first + batch, plan.photos + 1))}
            for row in pool.imap(build_photo_row, specs.values(), chunksize=2):
                session.write(row.copy_line)
                recognition.extend(recognition_lines(seed, row, specs[row.photo_id], args.collection_id))
                totals['photos'] += 1
                totals['photos_with_faces'] += bool(row.faces)
                totals['faces_expected'] += len(row.faces)
                totals['photo_plaintext_bytes'] += row.plaintext_bytes
                totals['photo_stored_bytes'] += row.stored_bytes
            check()
            now = time.monotonic()
            if now - last_report >= 5 or totals['photos'] == plan.photos:
                last_report = now
                log('photos %d/%d, %.0f MB, %.1f photos/s' % (
                    totals['photos'], plan.photos, totals['photo_stored_bytes'] / 1e6, totals['photos'] / max(now - started, 1e-6)))
    session.write('\\.\n')
    session.write(RECOGNITION_COPY)
    session.write(''.join(recognition))
    session.write('\\.\n')
    totals['recognition_rows'] = len(recognition)
    return totals


def load_data(psql, env, seed, plan, args, key, cipher):
    """Insert vehicles, then generate telemetry and audit rows in one session while photos stream in another."""
    psql_query(psql, env, sql_vehicles(seed, plan, args.end_time), 'inserting vehicles')
    rows_session = Psql(psql, env, 'generating telemetry and audit rows')
    photo_session = None
    try:
        rows_session.write(sql_gps(seed, plan, args.end_time) + sql_gyroscope(seed, plan, args.end_time) + sql_audit(seed, plan, args.end_time))
        rows_session.close_input()
        log('telemetry and audit rows: generating in the database (%d GPS, %d gyroscope, %d audit)' % (
            plan.gps_rows, plan.gyroscope_rows, plan.audit_rows))
        photo_session = Psql(psql, env, 'loading photos')
        totals = stream_photos(photo_session, seed, plan, args, key, cipher, check=rows_session.check)
        photo_session.finish()
        log('photos committed; waiting for the telemetry and audit rows')
        rows_session.finish()
    except BaseException:
        for session in (rows_session, photo_session):
            if session is not None:
                session.kill()
        raise
    return totals


SQL_VERIFY_PHOTOS = (
    'COPY (SELECT p.id, p.content_type, p.data, p.sha256, (SELECT count(*) FROM recognition_result r WHERE r.photo_id = p.id)'
    ' FROM photo p ORDER BY p.id) TO STDOUT;\n'
)


def _copy_bytea(field):
    """Decode a bytea field of COPY text output (hex format, backslash escaped); None for NULL."""
    return None if field == '\\N' else bytes.fromhex(field[3:])


def check_photo(key, cipher, fields):
    """Return the problem with one COPY row of SQL_VERIFY_PHOTOS, or None when the photo is sound."""
    photo_id, content_type, data, sha256, indexed_faces = fields
    try:
        image = photo_crypto.decrypt(key, _copy_bytea(data), cipher)
    except photo_crypto.DecryptError as exc:
        return 'photo %s: %s' % (photo_id, exc)
    expected_sha = _copy_bytea(sha256)
    if expected_sha is not None and hashlib.sha256(image).digest() != expected_sha:
        return 'photo %s: decrypts, but its SHA-256 differs from photo.sha256' % photo_id
    kind = photo_crypto.detect_image_type(image)
    if kind is None or 'image/%s' % kind != content_type:
        return 'photo %s: decrypts to %s, but content_type is %s' % (photo_id, kind or 'no JPEG or PNG image', content_type)
    if int(indexed_faces) and count_faces(image) != int(indexed_faces):
        return 'photo %s: %s recognition_result rows, but the face rule finds %d faces' % (photo_id, indexed_faces, count_faces(image))
    return None


def verify(psql, env, key, cipher):
    """Decrypt and check every stored photo, streaming them out of the database; return the summary."""
    session = Psql(psql, env, 'reading photos back', capture=True)
    session.write(SQL_VERIFY_PHOTOS)
    session.close_input()
    checked, problems = 0, []
    for line in session.process.stdout:
        problem = check_photo(key, cipher, line.decode('ascii').rstrip('\n').split('\t'))
        checked += 1
        if problem:
            problems.append(problem)
            if len(problems) <= 5:
                log(problem)
    session.finish()
    counts = [int(v) for v in psql_query(psql, env, SQL_COUNTS, 'counting rows').split('|')]
    if problems:
        raise SeedError('%d of %d photos failed verification; the first: %s' % (len(problems), checked, problems[0]))
    log('verified %d photos: all decrypt with key %s (cipher %s) and match their checksums' % (
        checked, photo_crypto.key_fingerprint(key), cipher))
    return {'rows': dict(zip(APP_TABLES, counts)), 'photos_verified': checked, 'cipher': cipher,
            'key_fingerprint': photo_crypto.key_fingerprint(key), 'database_bytes': counts[-1]}


def run(args, environ):
    started = time.monotonic()
    key, cipher, settings, key_source = resolve_settings(args, environ)
    psql = psql_command(args, settings)
    env = child_environment(environ, settings)
    if args.verify:
        return verify(psql, env, key, cipher)
    seed = args.random_seed if args.random_seed is not None else str(random.SystemRandom().getrandbits(48))
    plan = make_plan(args.size, args.target_mb, vehicles=args.vehicles, telemetry_rows=args.telemetry_rows, photos=args.photos,
                     photo_kb=args.photo_kb, audit_rows=args.audit_rows)
    log('random seed %s, cipher %s, key %s from %s, plan %s (~%d MB)' % (
        seed, cipher, photo_crypto.key_fingerprint(key), key_source, dataclasses.asdict(plan), estimate_mb(plan)))
    check_database(psql, env, args)
    try:
        totals = load_data(psql, env, seed, plan, args, key, cipher)
    except SeedError as exc:
        raise SeedError('%s; the database is partly seeded: fix the cause and run again with --reset' % exc) from None
    psql_query(psql, env, SQL_FINISH, 'resetting sequences and analyzing')
    counts = [int(v) for v in psql_query(psql, env, SQL_COUNTS, 'counting rows').split('|')]
    summary = {
        'rows': dict(zip(APP_TABLES, counts)),
        **totals,
        'database_bytes': counts[-1],
        'cipher': cipher,
        'key_fingerprint': photo_crypto.key_fingerprint(key),
        'random_seed': seed,
        'seconds': round(time.monotonic() - started, 1),
    }
    log('done in %.1f s, database %.0f MB' % (summary['seconds'], counts[-1] / 1e6))
    return summary


def main(argv=None):
    args = build_parser().parse_args(argv)
    try:
        summary = run(args, dict(os.environ))
    except SeedError as exc:
        log('error: %s' % exc)
        return 1
    except KeyboardInterrupt:
        log('interrupted; the database is partly seeded, run again with --reset')
        return 130
    print(json.dumps(summary, sort_keys=True))
    return 0


if __name__ == '__main__':
    sys.exit(main())
