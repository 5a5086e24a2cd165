# Copyright: contributors to the fleet_telemetry.dr collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

"""Photos made acceptable to IndexFaces: the key check, decryption, and downscaling with Pillow. Internal to
fleet_telemetry.dr; not a public API.

Pillow is optional: ``HAS_PILLOW`` is False without it, and a photo too large to send is then a ``PhotoProblem``
that says to install Pillow or set oversize=report.
"""

from __future__ import annotations

import io

try:
    from PIL import Image
except ImportError:
    HAS_PILLOW = False
else:
    HAS_PILLOW = True

from ansible_collections.fleet_telemetry.dr.plugins.module_utils._photo_crypto import (
    DecryptError,
    decrypt,
    detect_image_type,
)
from ansible_collections.fleet_telemetry.dr.plugins.module_utils._photos import (
    check_photos,
    key_verdict,
)
from ansible_collections.fleet_telemetry.dr.plugins.module_utils._rekognition.errors import PhotoProblem, ReindexError

# Rekognition Image quotas and constraints (API reference of IndexFaces and of the Image type).
MAX_IMAGE_BYTES = 5 * 1024 * 1024
MIN_IMAGE_DIMENSION = 80


def check_key(sample, key, cipher):
    """Prove the key on the first photos; raise ReindexError when none of them decrypts."""
    result = check_photos(sample, key, cipher)
    if result['checked'] and result['failed'] == result['checked']:
        raise ReindexError('%s; nothing was sent to Rekognition: check encryption_key and cipher'
                           % key_verdict(result, cipher), code='bad_key', key_check=result)
    return {'checked': result['checked'], 'failed': result['failed']}


def fit_image(data, max_bytes=MAX_IMAGE_BYTES):
    """Downscale an image to a JPEG of at most ``max_bytes``; raise PhotoProblem when it cannot be done."""
    if not HAS_PILLOW:
        raise PhotoProblem('too_large', 'the photo is %d bytes, more than the %d bytes IndexFaces accepts, and Pillow is not '
                                        'installed to downscale it: install Pillow or set oversize=report' % (len(data), max_bytes))
    try:
        with Image.open(io.BytesIO(data)) as opened:
            image = opened.convert('RGB')
    except Exception as exc:  # Pillow raises many types for undecodable data
        raise PhotoProblem('invalid_image_format', 'the photo is too large and cannot be decoded to downscale it: %s' % exc)
    size = len(data)
    for dummy in range(8):
        scale = min(0.9, (max_bytes / float(size)) ** 0.5 * 0.9)
        width, height = max(1, int(image.width * scale)), max(1, int(image.height * scale))
        if min(width, height) < MIN_IMAGE_DIMENSION:
            break
        image = image.resize((width, height), Image.Resampling.LANCZOS if hasattr(Image, 'Resampling') else Image.LANCZOS)
        out = io.BytesIO()
        image.save(out, format='JPEG', quality=90)
        size = out.tell()
        if size <= max_bytes:
            return out.getvalue()
    raise PhotoProblem('too_large', 'the photo cannot be downscaled below %d bytes and keep %d pixels on each side'
                       % (max_bytes, MIN_IMAGE_DIMENSION))


def prepare_image(key, cipher, ciphertext, oversize='downscale', max_bytes=MAX_IMAGE_BYTES):
    """Decrypt one photo and make it acceptable to IndexFaces; return ``(image_bytes, downscaled)``."""
    try:
        image = decrypt(key, ciphertext, cipher)
    except DecryptError as exc:
        raise PhotoProblem(exc.reason, str(exc))
    if detect_image_type(image) is None:
        raise PhotoProblem('not_an_image', 'the photo decrypts but is not a JPEG or PNG image, the formats IndexFaces accepts')
    if len(image) <= max_bytes:
        return image, False
    if oversize != 'downscale':
        raise PhotoProblem('too_large', 'the photo is %d bytes, more than the %d bytes IndexFaces accepts (oversize=report)'
                           % (len(image), max_bytes))
    return fit_image(image, max_bytes), True
