# Copyright: contributors to the fleet_telemetry.dr collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

"""The example seeder's images follow the face rule that the test Rekognition endpoint applies."""

from __future__ import annotations

import dataclasses
import hashlib
import datetime
import importlib.util
import io
import os
import random
import sys

import pytest

pytestmark = pytest.mark.skipif(sys.version_info < (3, 11), reason='the example seeder is a Python 3.11 script')
Image = pytest.importorskip('PIL.Image')

SEED_PATH = os.path.join(os.path.dirname(__file__), '..', '..', '..', 'examples', 'telemetry_app', 'seed.py')
END = datetime.datetime(2025, 6, 1, 12, tzinfo=datetime.timezone.utc)
KEY = bytes(range(32))


@pytest.fixture(scope='module')
def seed():
    spec = importlib.util.spec_from_file_location('fleet_telemetry_example_seed', SEED_PATH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _encode(image, image_format):
    buffer = io.BytesIO()
    image.save(buffer, format=image_format)
    return buffer.getvalue()


def _spec(seed, photo_id, photo_kb, image_format, faces):
    plan = seed.make_plan('small', photo_kb=photo_kb)
    spec = seed.plan_photo('test', photo_id, plan, END)
    rng = random.Random(photo_id)
    return dataclasses.replace(spec, image_format=image_format, faces=seed.place_faces(rng, spec.width, spec.height, faces))


@pytest.mark.parametrize('image_format', ['JPEG', 'PNG'])
@pytest.mark.parametrize('faces', [0, 1, 2])
@pytest.mark.parametrize('photo_kb', [5, 20, 100])
@pytest.mark.parametrize('photo_id', range(1, 7))
def test_generated_images_have_the_intended_face_count(seed, image_format, faces, photo_kb, photo_id):
    spec = _spec(seed, photo_id, photo_kb, image_format, faces)
    image = seed.render_photo(spec)
    assert Image.open(io.BytesIO(image)).format == image_format
    assert seed.count_faces(image) == faces


@pytest.mark.parametrize('image_format', ['JPEG', 'PNG'])
def test_face_boxes_surround_the_drawn_faces(seed, image_format):
    spec = _spec(seed, 11, 100, image_format, 2)
    boxes = seed.find_faces(seed.render_photo(spec))
    assert len(boxes) == 2
    for (cx, cy, rx, ry), (left, top, width, height, _pixels) in zip(sorted(spec.faces), sorted(boxes)):
        assert left < cx / spec.width < left + width
        assert top < cy / spec.height < top + height
        assert width == pytest.approx(2 * rx / spec.width, abs=0.05)
        assert height == pytest.approx(2 * ry / spec.height, abs=0.05)


def test_planned_photos_mix_formats_and_faces(seed):
    plan = seed.make_plan('bench')
    specs = [seed.plan_photo('mix', i, plan, END) for i in range(1, 1001)]
    with_faces = [spec for spec in specs if spec.faces]
    assert 0.55 < len(with_faces) / len(specs) < 0.65
    assert 0.15 < sum(len(spec.faces) == 2 for spec in with_faces) / len(with_faces) < 0.35
    assert 0.6 < sum(spec.image_format == 'JPEG' for spec in specs) / len(specs) < 0.8
    assert {spec.content_type for spec in specs} == {'image/jpeg', 'image/png'}


def test_photos_are_reproducible_from_the_seed(seed):
    plan = seed.make_plan('tiny')
    first, again, other = (seed.plan_photo(s, 3, plan, END) for s in ('a', 'a', 'b'))
    assert first == again != other
    assert seed.render_photo(first) == seed.render_photo(again)


@pytest.mark.parametrize('image_format', ['JPEG', 'PNG'])
def test_bench_photos_are_about_100_kb(seed, image_format):
    plan = seed.make_plan('bench')
    sizes = []
    for photo_id in range(1, 200):
        spec = seed.plan_photo('size', photo_id, plan, END)
        if spec.image_format == image_format and len(sizes) < 8:
            sizes.append(len(seed.render_photo(spec)))
    assert 60_000 < sum(sizes) / len(sizes) < 140_000


# The rule itself, on hand-made images: a 64x64 canvas is its own thumbnail, so blocks are thumbnail pixels.
def _canvas(blocks, colour=(224, 172, 105), background=(40, 90, 160), size=(64, 64)):
    image = Image.new('RGB', size, background)
    for left, top, width, height in blocks:
        image.paste(colour, (left, top, left + width, top + height))
    return image


@pytest.mark.parametrize('image_format', ['PNG'])
@pytest.mark.parametrize('blocks, expected', [
    ([], 0),
    ([(10, 10, 6, 4)], 1),
    ([(10, 10, 6, 4), (30, 30, 6, 4)], 2),
    ([(10, 10, 23, 1)], 0),
    ([(10, 10, 24, 1)], 1),
    ([(10, 10, 5, 5), (15, 15, 5, 5)], 2),
    ([(10, 10, 5, 5), (15, 10, 5, 5)], 1),
])
def test_face_rule_components(seed, image_format, blocks, expected):
    assert seed.count_faces(_encode(_canvas(blocks), image_format)) == expected


@pytest.mark.parametrize('colour, expected', [
    ((224, 172, 105), 1), ((256 - 1, 172, 105), 1), ((192, 140, 73), 1), ((191, 172, 105), 0),
    ((224, 205, 105), 0), ((224, 172, 138), 0), ((224, 172, 137), 1),
])
def test_face_rule_tolerance(seed, colour, expected):
    assert seed.count_faces(_encode(_canvas([(8, 8, 10, 10)], colour=colour), 'PNG')) == expected


def test_face_rule_downscales_with_box(seed):
    image = _canvas([(40, 40, 40, 40)], size=(256, 256))
    assert seed.find_faces(_encode(image, 'PNG')) == [(0.15625, 0.15625, 0.15625, 0.15625, 100)]


def test_faces_come_largest_first_with_the_endpoint_confidence(seed):
    faces = seed.find_faces(_encode(_canvas([(2, 2, 5, 5), (30, 30, 10, 10), (40, 2, 10, 10)]), 'PNG'))
    assert [(face.left, face.top, face.pixels) for face in faces] == [(0.625, 0.03125, 100), (0.46875, 0.46875, 100), (0.03125, 0.03125, 25)]
    assert [face.confidence for face in faces] == [99.0967, 99.0967, 99.0242]


ENDPOINT_PATH = os.path.join(os.path.dirname(__file__), '..', '..', 'support', 'rekognition_endpoint.py')


@pytest.fixture(scope='module')
def endpoint():
    if not os.path.exists(ENDPOINT_PATH):
        pytest.skip('no test Rekognition endpoint in this tree')
    pytest.importorskip('botocore')
    spec = importlib.util.spec_from_file_location('fleet_telemetry_rekognition_endpoint', ENDPOINT_PATH)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    try:
        spec.loader.exec_module(module)
    finally:
        del sys.modules[spec.name]
    return module


@pytest.mark.parametrize('photo_id', range(1, 13))
def test_the_test_rekognition_endpoint_sees_the_same_faces(seed, endpoint, photo_id):
    image = seed.render_photo(seed.plan_photo('endpoint', photo_id, seed.make_plan('bench'), END))
    detected = endpoint.detect_faces(image)
    expected = [(f.left, f.top, f.width, f.height, f.confidence) for f in seed.find_faces(image)]
    box = [face.bounding_box for face in detected]
    assert [(b['Left'], b['Top'], b['Width'], b['Height'], f.confidence) for b, f in zip(box, detected)] == expected


def test_photo_row_decrypts_to_the_rendered_image(seed):
    seed._init_worker(KEY, 'aes-256-gcm')
    spec = _spec(seed, 4, 20, 'JPEG', 1)
    row = seed.build_photo_row(spec)
    fields = row.copy_line.decode().rstrip('\n').split('\t')
    assert len(fields) == 11
    assert fields[4].startswith('\\\\x')
    image = seed.photo_crypto.decrypt(KEY, bytes.fromhex(fields[4][3:]), 'aes-256-gcm')
    assert image == seed.render_photo(spec)
    assert len(row.faces) == 1
    assert fields[5] == spec.external_image_id


@pytest.mark.parametrize('text, expected', [
    ('ENCRYPTION_KEY=abc\n', {'ENCRYPTION_KEY': 'abc'}),
    ('export ENCRYPTION_KEY="a b"\n# comment\n\nPOSTGRES_DB=telemetry_db # trailing\n', {'ENCRYPTION_KEY': 'a b', 'POSTGRES_DB': 'telemetry_db'}),
    ("POSTGRES_PASSWORD='p#ss'\n", {'POSTGRES_PASSWORD': 'p#ss'}),
])
def test_read_env_file(seed, tmp_path, text, expected):
    path = tmp_path / '.env'
    path.write_text(text)
    assert seed.read_env_file(str(path)) == expected


def test_key_from_env_file_wins_and_never_reaches_psql(seed, tmp_path):
    path = tmp_path / '.env'
    path.write_text('ENCRYPTION_KEY=%s\nPOSTGRES_PASSWORD=pw\nPOSTGRES_USER=u1\n' % KEY.hex())
    args = seed.build_parser().parse_args(['--env-file', str(path)])
    key, cipher, settings, source = seed.resolve_settings(args, {'ENCRYPTION_KEY': 'x' * 64, 'PHOTO_CIPHER': 'fernet'})
    assert (key, cipher, source) == (KEY, 'fernet', '--env-file %s' % path)
    argv = seed.psql_command(args, settings)
    env = seed.child_environment({'ENCRYPTION_KEY': KEY.hex(), 'PATH': '/bin'}, settings)
    assert argv[-4:] == ['-U', 'u1', '-d', 'telemetry_db']
    assert env == {'PATH': '/bin', 'PGPASSWORD': 'pw'}
    assert not any(KEY.hex() in part or 'pw' == part for part in argv)


@pytest.mark.parametrize('environ, fragment', [
    ({}, 'ENCRYPTION_KEY is not set'),
    ({'ENCRYPTION_KEY': 'short'}, 'ENCRYPTION_KEY is 5 characters'),
    ({'ENCRYPTION_KEY': KEY.hex(), 'PHOTO_CIPHER': 'rot13'}, "cipher 'rot13' is not supported"),
])
def test_settings_errors(seed, environ, fragment):
    args = seed.build_parser().parse_args([])
    with pytest.raises(seed.SeedError, match=fragment):
        seed.resolve_settings(args, environ)


@pytest.mark.parametrize('size', ['tiny', 'small', 'medium', 'bench'])
def test_target_mb_scales_the_plan(seed, size):
    plan = seed.make_plan(size, target_mb=200)
    assert seed.estimate_mb(plan) == pytest.approx(200, rel=0.05)
    assert plan.photo_kb == seed.PRESETS[size].photo_kb


def test_bench_preset_matches_the_measured_dataset(seed):
    plan = seed.PRESETS['bench']
    assert plan.telemetry_rows == 6_000_000 and plan.photos == 5_000 and plan.photo_kb == 100
    assert 1300 < seed.estimate_mb(plan) < 1600


def _verify_row(seed, image, sha=None, content_type='image/png', faces=0):
    stored = seed.photo_crypto.encrypt(KEY, image, 'aes-256-gcm')
    sha = hashlib.sha256(image).digest() if sha is None else sha
    return ['9', content_type, '\\\\x' + stored.hex(), '\\\\x' + sha.hex(), str(faces)]


@pytest.mark.parametrize('change, fragment', [
    ({}, None),
    ({'faces': 1}, None),
    ({'sha': b'\0' * 32}, 'SHA-256 differs'),
    ({'content_type': 'image/jpeg'}, 'decrypts to png, but content_type is image/jpeg'),
    ({'faces': 2}, '2 recognition_result rows, but the face rule finds 1 faces'),
])
def test_check_photo(seed, change, fragment):
    image = _encode(_canvas([(10, 10, 10, 10)]), 'PNG')
    problem = seed.check_photo(KEY, 'aes-256-gcm', _verify_row(seed, image, **change))
    assert problem is None if fragment is None else fragment in problem


def test_check_photo_names_the_cipher_setting(seed):
    row = _verify_row(seed, _encode(_canvas([]), 'PNG'))
    assert 'set the cipher to aes-256-gcm' in seed.check_photo(KEY, 'fernet', row)
