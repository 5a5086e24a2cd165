# Copyright: fleet_telemetry.dr developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""A local Amazon Rekognition endpoint for tests, benchmarks and the demo.

AWS is not reachable from the test machines and moto has no Rekognition collection APIs, so this
module serves the collection operations over the real wire protocol on loopback. boto3 talks to it
exactly as to AWS, through ``endpoint_url``, and raises the same ``ClientError`` codes.

Wire protocol (AWS JSON 1.1)
    ``POST /`` with ``X-Amz-Target: RekognitionService.<Operation>`` and
    ``Content-Type: application/x-amz-json-1.1``; blobs are base64 strings in the JSON body.
    Any SigV4 credentials are accepted (signatures are not verified), but an ``Authorization``
    header is required. The region in its credential scope goes into collection ARNs.
    Errors are HTTP 400 with ``{"__type": "<Code>", "message": "..."}`` and the
    ``x-amzn-ErrorType`` header.

Operations
    CreateCollection, DescribeCollection, ListCollections, DeleteCollection, IndexFaces,
    ListFaces, DeleteFaces, SearchFacesByImage. Any other target gets UnknownOperationException.
    FaceModelVersion is always "7.0". ListFaces and ListCollections are paginated with
    MaxResults (default 1000) and an opaque NextToken; faces are listed in FaceId order and
    collections in CollectionId order, so a token stays valid while faces are added or deleted.
    A token of another collection or a malformed one -> InvalidPaginationTokenException.
    ListFaces filters by FaceIds; a UserId filter matches nothing (no users here). DeleteFaces
    reports unknown Face IDs in UnsuccessfulFaceDeletions with reason FACE_NOT_FOUND.
    CreateCollection's CollectionArn lacks the "arn:" prefix, DescribeCollection's has it, as in
    AWS's examples. An unexpected failure of this endpoint is answered InternalServerError (500).

Validation, in this order, each step with the code a real client sees
    1. Body: not JSON, not an object, or a blob member that is not base64 -> SerializationException.
    2. botocore's Rekognition service model, input shape of the operation, checked with
       ``botocore.validate.ParamValidator`` (missing required member, unknown member, wrong type,
       below a minimum) -> InvalidParameterException. botocore itself checks exactly these before
       sending, so only clients with parameter validation turned off meet this.
    3. The model's constraints that only the service checks (pattern, maximum length or value,
       enum) -> ValidationException with the service's message, e.g. ``1 validation error
       detected: Value 'a b' at 'externalImageId' failed to satisfy constraint: Member must
       satisfy regular expression pattern: [a-zA-Z0-9_.\\-:]+``. This is what AWS JSON services
       return for these constraints (ValidationException is one of Rekognition's common errors,
       so botocore raises a plain ClientError: match on ``Error.Code``).
       Covers the CollectionId pattern ``[a-zA-Z0-9_.\\-]+`` (max 255) and the ExternalImageId
       pattern ``[a-zA-Z0-9_.\\-:]+`` (max 255).
    4. The collection must exist -> ResourceNotFoundException; CreateCollection of an existing
       one -> ResourceAlreadyExistsException.
    5. Images (the documented quotas of Rekognition Image):
       - ``Image.S3Object`` -> InvalidS3ObjectException: this endpoint reaches no S3, so it answers
         as AWS does for an object it cannot read. Only ``Image.Bytes`` is supported. Both or
         neither given -> InvalidParameterException.
       - more than 5 MB (5,242,880) of raw bytes -> ImageTooLargeException.
       - not a JPEG or PNG that Pillow can decode (other formats, truncated or corrupt data)
         -> InvalidImageFormatException.
       - width or height below 80 px -> InvalidParameterException ("Request has invalid
         parameters."), which is what AWS returns for such images (boto/botocore#1366).
       - SearchFacesByImage on an image without a face -> InvalidParameterException.
    MaxFaces, QualityFilter and DetectionAttributes are accepted; QualityFilter filters nothing
    because every face found by the rule below is of good quality.

Face detection rule (deterministic; the example app's seeder draws faces to this rule)
    1. Open the image bytes with Pillow and ``convert("RGB")`` (an alpha channel is dropped).
    2. Downscale in place with ``image.thumbnail((64, 64), Image.Resampling.BOX)`` (Pillow's
       defaults otherwise): the aspect ratio is kept, so a 640x480 photo becomes 64x48.
    3. A thumbnail pixel is skin when each channel is within 32 (inclusive) of
       ``(224, 172, 105)``: ``abs(r - 224) <= 32 and abs(g - 172) <= 32 and abs(b - 105) <= 32``.
    4. A face is a 4-connected component of skin pixels with at least 24 pixels.
    5. BoundingBox is the component's box relative to the thumbnail size: Left = x0 / w,
       Top = y0 / h, Width = (x1 - x0 + 1) / w, Height = (y1 - y0 + 1) / h (rounded to 6 places).
    6. Confidence = 99.0 + 0.99 * min(pixels, 1024) / 1024, rounded to 4 places.
    7. Faces are ordered largest first (pixel count), then by Top, then by Left. IndexFaces
       indexes the first MaxFaces (default 100, as AWS) and reports the rest in UnindexedFaces
       with reason EXCEEDS_MAX_FACES. Every indexed face gets a new random FaceId; all faces of
       one call share a new random ImageId.
    So a filled rectangle of that colour is found when it covers at least 24 whole thumbnail
    pixels (edge pixels blend with the background and may fall outside the tolerance): 60x60 px
    anywhere in a 640x480 photo always is. ``make_image()`` draws such images.

Face matching (SearchFacesByImage)
    Each face carries a signature: sha256 of the thumbnail's size and RGB bytes plus the face's
    box in thumbnail pixels. SearchFacesByImage detects the largest face of the query image and
    returns, with Similarity 100.0, every indexed face whose signature equals it: the same face
    of a pixel-identical image, whatever its ExternalImageId. No other face matches, and any
    FaceMatchThreshold (0-100) lets every match through.

Faults and counters for tests
    ``tps``: throttle above this many requests per second, with one token bucket per operation
    (AWS quotas are per operation) holding ``burst`` tokens (default: tps, at least 1).
    ``throttle_operations`` limits throttling to some operations (default: all). A throttled
    request gets ``throttle_error``: ProvisionedThroughputExceededException ("Provisioned Rate
    exceeded.", HTTP 400, the default) or ThrottlingException (HTTP 400); botocore retries both.
    ``latency_ms`` is added to every Rekognition request, throttled ones included.
    Counters: requests, succeeded and throttled per operation, errors per code, and per operation
    the wall-clock time (``time.time()``) of the first and of the last success (``first_success``,
    ``last_success``), from which a benchmark reads the rate the endpoint really served.

Control API (no authentication)
    ``GET /_state`` returns ``{"config": {...}, "stats": {...}, "collections": {id: {"FaceCount": n}}}``.
    ``POST /_control`` with a JSON object of settings (``tps``, ``burst``, ``latency_ms``,
    ``throttle_error``, ``throttle_operations``; ``null`` restores a setting's default) and the
    flags ``reset`` (collections, counters, buckets and settings back to their start values,
    applied before the settings in the same call) and ``reset_stats`` (counters only); it returns
    the state. In-process: ``RekognitionEndpoint.configure()``, ``.state()``, ``.reset()``;
    out-of-process: ``control()`` and ``fetch_state()`` below.

Use
    In process::

        with RekognitionEndpoint(tps=5, latency_ms=100) as endpoint:
            client = boto3.client("rekognition", endpoint_url=endpoint.endpoint_url, ...)

    As a program (prints the URL on the first line of stdout, serves until SIGTERM or SIGINT)::

        python tests/support/rekognition_endpoint.py --port 0 --tps 5 --latency-ms 100

All state is in memory, guarded by one lock; requests are served on threads.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import collections
import dataclasses
import functools
import hashlib
import io
import json
import re
import signal
import threading
import time
import traceback
import urllib.request
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

import botocore.session
from botocore.validate import ParamValidator
from PIL import Image

TARGET_PREFIX = "RekognitionService."
OPERATIONS = (
    "CreateCollection",
    "DescribeCollection",
    "ListCollections",
    "DeleteCollection",
    "IndexFaces",
    "ListFaces",
    "DeleteFaces",
    "SearchFacesByImage",
)
FACE_MODEL_VERSION = "7.0"
ACCOUNT_ID = "123456789012"
DEFAULT_REGION = "us-east-1"

MAX_IMAGE_BYTES = 5 * 1024 * 1024
MIN_IMAGE_DIMENSION = 80
IMAGE_FORMATS = ("JPEG", "PNG")
THUMBNAIL_SIZE = (64, 64)
SKIN_RGB = (224, 172, 105)
SKIN_TOLERANCE = 32
MIN_FACE_PIXELS = 24
DEFAULT_INDEX_MAX_FACES = 100
DEFAULT_PAGE_SIZE = 1000

THROTTLE_ERRORS = {
    "ProvisionedThroughputExceededException": "Provisioned Rate exceeded.",
    "ThrottlingException": "Slow down; sudden increase in rate of requests.",
}
CONTROL_PATH = "/_control"
STATE_PATH = "/_state"
JSON_CONTENT_TYPE = "application/x-amz-json-1.1"

_CREDENTIAL_REGION = re.compile(r"Credential=[^/,\s]+/\d{8}/([^/,\s]+)/")


class ServiceError(Exception):
    """An error answered in the AWS JSON 1.1 error format."""

    def __init__(self, code, message, status=400):
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = status


def _invalid_parameter(message="Request has invalid parameters."):
    return ServiceError("InvalidParameterException", message)


# Face detection -------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class DetectedFace:
    """One face found by the rule in the module docstring (thumbnail pixel coordinates)."""

    x0: int
    y0: int
    x1: int
    y1: int
    pixels: int
    thumbnail_size: tuple
    signature: str

    @property
    def bounding_box(self):
        width, height = self.thumbnail_size
        return {
            "Width": round((self.x1 - self.x0 + 1) / width, 6),
            "Height": round((self.y1 - self.y0 + 1) / height, 6),
            "Left": round(self.x0 / width, 6),
            "Top": round(self.y0 / height, 6),
        }

    @property
    def confidence(self):
        return round(99.0 + 0.99 * min(self.pixels, 1024) / 1024, 4)


def load_image(data):
    """Decode image bytes as Rekognition accepts them, or raise the ServiceError it would return."""
    if len(data) > MAX_IMAGE_BYTES:
        raise ServiceError("ImageTooLargeException", "Image size is too large.")
    try:
        image = Image.open(io.BytesIO(data))
        image_format = image.format
        if image_format in IMAGE_FORMATS:
            image.load()
    except Image.DecompressionBombError:
        raise ServiceError("ImageTooLargeException", "Image size is too large.")
    except (OSError, SyntaxError, ValueError):
        image_format = None
    if image_format not in IMAGE_FORMATS:
        raise ServiceError("InvalidImageFormatException", "Request has invalid image format.")
    if image.width < MIN_IMAGE_DIMENSION or image.height < MIN_IMAGE_DIMENSION:
        raise _invalid_parameter()
    return image


def _is_skin(red, green, blue):
    return (
        abs(red - SKIN_RGB[0]) <= SKIN_TOLERANCE
        and abs(green - SKIN_RGB[1]) <= SKIN_TOLERANCE
        and abs(blue - SKIN_RGB[2]) <= SKIN_TOLERANCE
    )


def find_faces(image):
    """Return the faces of a Pillow image, largest first, by the documented rule."""
    thumbnail = image.convert("RGB")
    thumbnail.thumbnail(THUMBNAIL_SIZE, Image.Resampling.BOX)
    width, height = thumbnail.size
    rgb = thumbnail.tobytes()
    skin = [_is_skin(rgb[i], rgb[i + 1], rgb[i + 2]) for i in range(0, len(rgb), 3)]
    image_digest = hashlib.sha256(b"%dx%d:" % (width, height) + rgb).hexdigest()

    faces = []
    seen = [False] * len(skin)
    for start, is_skin in enumerate(skin):
        if not is_skin or seen[start]:
            continue
        seen[start] = True
        stack = [start]
        pixels = 0
        x0, y0, x1, y1 = width, height, -1, -1
        while stack:
            index = stack.pop()
            y, x = divmod(index, width)
            pixels += 1
            x0, y0, x1, y1 = min(x0, x), min(y0, y), max(x1, x), max(y1, y)
            neighbours = []
            if x > 0:
                neighbours.append(index - 1)
            if x < width - 1:
                neighbours.append(index + 1)
            if y > 0:
                neighbours.append(index - width)
            if y < height - 1:
                neighbours.append(index + width)
            for neighbour in neighbours:
                if skin[neighbour] and not seen[neighbour]:
                    seen[neighbour] = True
                    stack.append(neighbour)
        if pixels >= MIN_FACE_PIXELS:
            signature = hashlib.sha256(("%s:%d,%d,%d,%d" % (image_digest, x0, y0, x1, y1)).encode()).hexdigest()
            faces.append(DetectedFace(x0, y0, x1, y1, pixels, (width, height), signature))
    faces.sort(key=lambda face: (-face.pixels, face.y0, face.x0))
    return faces


def detect_faces(data):
    """Faces in image bytes; raises ServiceError for bytes Rekognition would reject."""
    return find_faces(load_image(data))


def make_image(width, height, faces=(), image_format="JPEG", background=(40, 90, 160)):
    """Bytes of a JPEG or PNG image with a skin-coloured rectangle per face (left, top, width, height)."""
    image = Image.new("RGB", (width, height), background)
    for left, top, face_width, face_height in faces:
        image.paste(SKIN_RGB, (left, top, left + face_width, top + face_height))
    out = io.BytesIO()
    if image_format == "JPEG":
        image.save(out, format="JPEG", quality=90)
    else:
        image.save(out, format=image_format)
    return out.getvalue()


# Request validation against botocore's service model --------------------------------------------


@functools.lru_cache(maxsize=1)
def _service_model():
    return botocore.session.get_session().get_service_model("rekognition")


def _lower_camel(name):
    return name[:1].lower() + name[1:]


def _decode_blobs(shape, value):
    """Base64-decode the blob members of a parsed JSON request, in place of their strings."""
    if shape.type_name == "blob" and isinstance(value, str):
        try:
            return base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            raise ServiceError("SerializationException", "Blob value is not valid base64.")
    if shape.type_name == "structure" and isinstance(value, dict):
        return {
            key: _decode_blobs(shape.members[key], item) if key in shape.members else item
            for key, item in value.items()
        }
    if shape.type_name == "list" and isinstance(value, list):
        return [_decode_blobs(shape.member, item) for item in value]
    if shape.type_name == "map" and isinstance(value, dict):
        return {key: _decode_blobs(shape.value, item) for key, item in value.items()}
    return value


@functools.lru_cache(maxsize=None)
def _pattern(pattern):
    """The model's (Java) pattern as a Python regex; the Unicode classes of tag patterns become close equivalents."""
    return re.compile(pattern.replace(r"\p{L}", r"\w").replace(r"\p{N}", r"\w").replace(r"\p{Z}", r"\s"))


def _constraint_errors(shape, value, path):
    """Violations of the constraints botocore leaves to the service: pattern, maximum, enum."""
    errors = []
    meta = shape.metadata
    type_name = shape.type_name
    if type_name == "string" and isinstance(value, str):
        if "max" in meta and len(value) > meta["max"]:
            errors.append((path, value, "Member must have length less than or equal to %d" % meta["max"]))
        if "pattern" in meta and not _pattern(meta["pattern"]).fullmatch(value):
            errors.append((path, value, "Member must satisfy regular expression pattern: %s" % meta["pattern"]))
        if shape.enum and value not in shape.enum:
            errors.append((path, value, "Member must satisfy enum value set: [%s]" % ", ".join(shape.enum)))
    elif type_name in ("integer", "long", "float", "double") and isinstance(value, (int, float)):
        if "max" in meta and value > meta["max"]:
            errors.append((path, value, "Member must have value less than or equal to %s" % meta["max"]))
    elif type_name == "structure" and isinstance(value, dict):
        for name, member in shape.members.items():
            if name in value:
                child = "%s.%s" % (path, _lower_camel(name)) if path else _lower_camel(name)
                errors.extend(_constraint_errors(member, value[name], child))
    elif type_name == "list" and isinstance(value, list):
        if "max" in meta and len(value) > meta["max"]:
            errors.append((path, value, "Member must have length less than or equal to %d" % meta["max"]))
        for position, item in enumerate(value, start=1):
            errors.extend(_constraint_errors(shape.member, item, "%s.%d.member" % (path, position)))
    elif type_name == "map" and isinstance(value, dict):
        if "max" in meta and len(value) > meta["max"]:
            errors.append((path, value, "Member must have length less than or equal to %d" % meta["max"]))
        for key, item in value.items():
            errors.extend(_constraint_errors(shape.key, key, "%s.key" % path))
            errors.extend(_constraint_errors(shape.value, item, "%s.value" % path))
    return errors


def validate_request(operation, body):
    """Parse and validate a request body; return the parameters with blobs as bytes."""
    try:
        params = json.loads(body.decode("utf-8")) if body.strip() else {}
    except (UnicodeDecodeError, ValueError):
        raise ServiceError("SerializationException", "The request body is not valid JSON.")
    if not isinstance(params, dict):
        raise ServiceError("SerializationException", "The request body must be a JSON object.")
    input_shape = _service_model().operation_model(operation).input_shape
    params = _decode_blobs(input_shape, params)
    report = ParamValidator().validate(params, input_shape)
    if report.has_errors():
        raise _invalid_parameter(report.generate_report())
    errors = _constraint_errors(input_shape, params, "")
    if errors:
        details = "; ".join("Value %s at '%s' failed to satisfy constraint: %s" % (_quote(value), path, rule) for path, value, rule in errors)
        raise ServiceError("ValidationException", "%d validation error%s detected: %s" % (len(errors), "s" if len(errors) > 1 else "", details))
    return params


def _quote(value):
    if isinstance(value, str):
        return "'%s'" % value
    return "'%s'" % json.dumps(value)


# Throttling -----------------------------------------------------------------------------------


class TokenBucket:
    """Allows ``rate`` requests per second on average and ``burst`` at once."""

    def __init__(self, rate, burst, clock=time.monotonic):
        self.rate = float(rate)
        self.burst = float(burst)
        self._clock = clock
        self._tokens = self.burst
        self._updated = clock()

    def take(self):
        now = self._clock()
        self._tokens = min(self.burst, self._tokens + (now - self._updated) * self.rate)
        self._updated = now
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return True
        return False


@dataclasses.dataclass
class EndpointConfig:
    """Fault settings; see the module docstring."""

    tps: float | None = None
    burst: float | None = None
    latency_ms: float = 0.0
    throttle_error: str = "ProvisionedThroughputExceededException"
    throttle_operations: tuple | None = None

    def validated(self):
        if self.tps is not None and not (_is_number(self.tps) and self.tps > 0):
            raise ValueError("tps must be a positive number or null")
        if self.burst is not None and not (_is_number(self.burst) and self.burst >= 1):
            raise ValueError("burst must be a number of at least 1 or null")
        if not (_is_number(self.latency_ms) and self.latency_ms >= 0):
            raise ValueError("latency_ms must be a number of at least 0")
        if self.throttle_error not in THROTTLE_ERRORS:
            raise ValueError("throttle_error must be one of %s" % ", ".join(THROTTLE_ERRORS))
        if self.throttle_operations is not None:
            unknown = sorted(set(self.throttle_operations) - set(OPERATIONS))
            if isinstance(self.throttle_operations, str) or unknown:
                raise ValueError("throttle_operations must be a list of operations from %s" % ", ".join(OPERATIONS))
            self.throttle_operations = tuple(self.throttle_operations)
        return self

    def as_dict(self):
        settings = dataclasses.asdict(self)
        if self.throttle_operations is not None:
            settings["throttle_operations"] = list(self.throttle_operations)
        return settings


def _is_number(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool)


# Service state and operations -----------------------------------------------------------------


@dataclasses.dataclass
class _Face:
    face_id: str
    image_id: str
    external_image_id: str | None
    bounding_box: dict
    confidence: float
    signature: str

    def as_dict(self):
        face = {
            "FaceId": self.face_id,
            "BoundingBox": self.bounding_box,
            "ImageId": self.image_id,
            "Confidence": self.confidence,
            "IndexFacesModelVersion": FACE_MODEL_VERSION,
        }
        if self.external_image_id is not None:
            face["ExternalImageId"] = self.external_image_id
        return face


@dataclasses.dataclass
class _Collection:
    collection_id: str
    region: str
    created: float
    tags: dict
    faces: dict = dataclasses.field(default_factory=dict)

    def arn(self, prefix="arn:"):
        return "%saws:rekognition:%s:%s:collection/%s" % (prefix, self.region, ACCOUNT_ID, self.collection_id)


def _face_detail(face):
    box = face.bounding_box

    def landmark(kind, x, y):
        return {"Type": kind, "X": round(box["Left"] + x * box["Width"], 6), "Y": round(box["Top"] + y * box["Height"], 6)}

    return {
        "BoundingBox": box,
        "Landmarks": [
            landmark("eyeLeft", 0.3, 0.4),
            landmark("eyeRight", 0.7, 0.4),
            landmark("nose", 0.5, 0.6),
            landmark("mouthLeft", 0.35, 0.8),
            landmark("mouthRight", 0.65, 0.8),
        ],
        "Pose": {"Roll": 0.0, "Yaw": 0.0, "Pitch": 0.0},
        "Quality": {"Brightness": 80.0, "Sharpness": 90.0},
        "Confidence": face.confidence,
    }


def _encode_token(key, after):
    return base64.urlsafe_b64encode(json.dumps([key, after]).encode()).decode()


def _decode_token(token, key):
    try:
        token_key, after = json.loads(base64.urlsafe_b64decode(token.encode()))
    except (binascii.Error, ValueError, TypeError):
        token_key, after = None, None
    if token_key != key or not isinstance(after, str):
        raise ServiceError("InvalidPaginationTokenException", "Invalid Token")
    return after


def _page(items, params, key):
    """One page of sorted (id, item) pairs after the request's NextToken."""
    page_size = params.get("MaxResults") or DEFAULT_PAGE_SIZE
    if "NextToken" in params:
        after = _decode_token(params["NextToken"], key)
        items = [pair for pair in items if pair[0] > after]
    page = items[:page_size]
    token = _encode_token(key, page[-1][0]) if len(items) > page_size else None
    return [item for dummy, item in page], token


def _new_stats():
    return {
        "requests": collections.Counter(),
        "succeeded": collections.Counter(),
        "throttled": collections.Counter(),
        "errors": collections.Counter(),
        "first_success": {},
        "last_success": {},
    }


class RekognitionBackend:
    """In-memory Rekognition: dispatches validated requests; thread-safe."""

    def __init__(self, config=None, region=DEFAULT_REGION, sleep=time.sleep):
        self._initial = dataclasses.replace(config or EndpointConfig()).validated()
        self._config = dataclasses.replace(self._initial)
        self._default_region = region
        self._sleep = sleep
        self._lock = threading.Lock()
        self._collections = {}
        self._stats = _new_stats()
        self._buckets = {}

    # control

    def configure(self, **settings):
        """Change fault settings at runtime; a value of None restores the default."""
        unknown = set(settings) - {field.name for field in dataclasses.fields(EndpointConfig)}
        if unknown:
            raise ValueError("unknown setting(s): %s" % ", ".join(sorted(unknown)))
        defaults = EndpointConfig()
        changes = {name: getattr(defaults, name) if value is None else value for name, value in settings.items()}
        with self._lock:
            self._config = dataclasses.replace(self._config, **changes).validated()
            self._buckets = {}
            return self._config.as_dict()

    def reset(self, stats_only=False):
        """Forget counters; unless stats_only, also collections, buckets and runtime settings."""
        with self._lock:
            self._stats = _new_stats()
            if not stats_only:
                self._collections = {}
                self._buckets = {}
                self._config = dataclasses.replace(self._initial)

    def state(self):
        with self._lock:
            stats = {name: dict(counter) for name, counter in self._stats.items()}
            stats["requests_total"] = sum(self._stats["requests"].values())
            stats["throttled_total"] = sum(self._stats["throttled"].values())
            return {
                "config": self._config.as_dict(),
                "stats": stats,
                "collections": {cid: {"FaceCount": len(coll.faces)} for cid, coll in sorted(self._collections.items())},
            }

    def control(self, request):
        """Apply a control request (the JSON object of POST /_control); return the state."""
        if not isinstance(request, dict):
            raise ValueError("the control request must be a JSON object")
        settings = dict(request)
        reset = settings.pop("reset", False)
        reset_stats = settings.pop("reset_stats", False)
        if reset or reset_stats:
            self.reset(stats_only=not reset)
        if settings:
            self.configure(**settings)
        return self.state()

    # requests

    def handle(self, target, authorization, body):
        """Serve one API request; return (HTTP status, response object)."""
        operation = target[len(TARGET_PREFIX):] if target and target.startswith(TARGET_PREFIX) else None
        try:
            if not authorization:
                raise ServiceError("MissingAuthenticationTokenException", "Missing Authentication Token")
            if operation not in OPERATIONS:
                raise ServiceError("UnknownOperationException", "Operation %s is not supported by this endpoint." % (target or "(no X-Amz-Target)"))
            with self._lock:
                self._stats["requests"][operation] += 1
                throttled = not self._take_token(operation)
                config = self._config
            if config.latency_ms:
                self._sleep(config.latency_ms / 1000.0)
            if throttled:
                with self._lock:
                    self._stats["throttled"][operation] += 1
                raise ServiceError(config.throttle_error, THROTTLE_ERRORS[config.throttle_error])
            params = validate_request(operation, body)
            region = self._region(authorization)
            result = getattr(self, "_op_" + _snake(operation))(params, region)
        except ServiceError as error:
            return self._error(error)
        except Exception:
            # A bug here must reach the client as AWS's own 500, not as a dropped connection.
            traceback.print_exc()
            return self._error(ServiceError("InternalServerError", "Internal server error", status=500))
        now = time.time()
        with self._lock:
            self._stats["succeeded"][operation] += 1
            self._stats["first_success"].setdefault(operation, now)
            self._stats["last_success"][operation] = now
        return 200, result

    def _error(self, error):
        with self._lock:
            self._stats["errors"][error.code] += 1
        return error.status, {"__type": error.code, "message": error.message}

    def _take_token(self, operation):
        config = self._config
        if config.tps is None or (config.throttle_operations is not None and operation not in config.throttle_operations):
            return True
        bucket = self._buckets.get(operation)
        if bucket is None:
            bucket = self._buckets[operation] = TokenBucket(config.tps, config.burst or max(1.0, config.tps))
        return bucket.take()

    def _region(self, authorization):
        match = _CREDENTIAL_REGION.search(authorization)
        return match.group(1) if match else self._default_region

    def _collection(self, collection_id):
        """The collection; call with the lock held."""
        try:
            return self._collections[collection_id]
        except KeyError:
            raise ServiceError("ResourceNotFoundException", "The collection id: %s does not exist" % collection_id)

    # operations: each takes validated parameters and returns the response object

    def _op_create_collection(self, params, region):
        collection_id = params["CollectionId"]
        with self._lock:
            if collection_id in self._collections:
                raise ServiceError("ResourceAlreadyExistsException", "The collection id: %s already exists" % collection_id)
            collection = self._collections[collection_id] = _Collection(collection_id, region, time.time(), dict(params.get("Tags", {})))
        # AWS answers CreateCollection with an ARN lacking the "arn:" prefix (the API reference example, also in botocore's examples-1.json).
        return {"StatusCode": 200, "CollectionArn": collection.arn(prefix=""), "FaceModelVersion": FACE_MODEL_VERSION}

    def _op_describe_collection(self, params, region):
        with self._lock:
            collection = self._collection(params["CollectionId"])
            return {
                "FaceCount": len(collection.faces),
                "FaceModelVersion": FACE_MODEL_VERSION,
                "CollectionARN": collection.arn(),
                "CreationTimestamp": collection.created,
                "UserCount": 0,
            }

    def _op_list_collections(self, params, region):
        with self._lock:
            items = sorted((cid, cid) for cid in self._collections)
        collection_ids, token = _page(items, params, "collections")
        response = {"CollectionIds": collection_ids, "FaceModelVersions": [FACE_MODEL_VERSION] * len(collection_ids)}
        if token:
            response["NextToken"] = token
        return response

    def _op_delete_collection(self, params, region):
        with self._lock:
            self._collection(params["CollectionId"])
            del self._collections[params["CollectionId"]]
        return {"StatusCode": 200}

    def _image_bytes(self, params):
        image = params["Image"]
        if ("Bytes" in image) == ("S3Object" in image):
            raise _invalid_parameter()
        if "S3Object" in image:
            raise ServiceError("InvalidS3ObjectException", "Unable to get object metadata from S3. Check object key, region and/or access permissions.")
        return image["Bytes"]

    def _op_index_faces(self, params, region):
        with self._lock:
            self._collection(params["CollectionId"])
        faces = detect_faces(self._image_bytes(params))
        max_faces = params.get("MaxFaces", DEFAULT_INDEX_MAX_FACES)
        image_id = str(uuid.uuid4())
        external_image_id = params.get("ExternalImageId")
        records = []
        for face in faces[:max_faces]:
            stored = _Face(str(uuid.uuid4()), image_id, external_image_id, face.bounding_box, face.confidence, face.signature)
            records.append((stored, {"Face": stored.as_dict(), "FaceDetail": _face_detail(face)}))
        with self._lock:
            # The collection may have been deleted while the image was analysed.
            collection = self._collection(params["CollectionId"])
            for stored, dummy in records:
                collection.faces[stored.face_id] = stored
        return {
            "FaceRecords": [record for dummy, record in records],
            "FaceModelVersion": FACE_MODEL_VERSION,
            "UnindexedFaces": [{"Reasons": ["EXCEEDS_MAX_FACES"], "FaceDetail": _face_detail(face)} for face in faces[max_faces:]],
        }

    def _op_list_faces(self, params, region):
        collection_id = params["CollectionId"]
        wanted = set(params["FaceIds"]) if "FaceIds" in params else None
        with self._lock:
            collection = self._collection(collection_id)
            faces = [] if "UserId" in params else collection.faces.values()  # no face is ever associated with a user here
            items = sorted((face.face_id, face.as_dict()) for face in faces if wanted is None or face.face_id in wanted)
        token_key = hashlib.sha256(collection_id.encode()).hexdigest()[:12]
        faces, token = _page(items, params, token_key)
        response = {"Faces": faces, "FaceModelVersion": FACE_MODEL_VERSION}
        if token:
            response["NextToken"] = token
        return response

    def _op_delete_faces(self, params, region):
        deleted, missing = [], []
        with self._lock:
            collection = self._collection(params["CollectionId"])
            for face_id in params["FaceIds"]:
                if collection.faces.pop(face_id, None) is not None:
                    deleted.append(face_id)
                elif face_id not in deleted:
                    missing.append({"FaceId": face_id, "Reasons": ["FACE_NOT_FOUND"]})
        return {"DeletedFaces": deleted, "UnsuccessfulFaceDeletions": missing}

    def _op_search_faces_by_image(self, params, region):
        with self._lock:
            self._collection(params["CollectionId"])
        faces = detect_faces(self._image_bytes(params))
        if not faces:
            raise _invalid_parameter("There are no faces in the image. Should be at least 1.")
        searched = faces[0]
        # Every match has Similarity 100.0, which passes any FaceMatchThreshold the model allows (0-100).
        with self._lock:
            collection = self._collection(params["CollectionId"])
            matches = [{"Similarity": 100.0, "Face": face.as_dict()} for face in collection.faces.values() if face.signature == searched.signature]
        if "MaxFaces" in params:
            matches = matches[:params["MaxFaces"]]
        return {
            "SearchedFaceBoundingBox": searched.bounding_box,
            "SearchedFaceConfidence": searched.confidence,
            "FaceMatches": matches,
            "FaceModelVersion": FACE_MODEL_VERSION,
        }


def _snake(name):
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


# HTTP server ----------------------------------------------------------------------------------


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "LocalRekognition/1.0"

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        path = urlsplit(self.path).path
        backend = self.server.backend
        if path == CONTROL_PATH:
            try:
                self._send_json(200, backend.control(json.loads(body or b"{}")), "application/json")
            except ValueError as error:
                self._send_json(400, {"error": str(error)}, "application/json")
            return
        if path != "/":
            self._send_json(404, {"__type": "UnknownOperationException", "message": "Unknown path %s" % path}, JSON_CONTENT_TYPE)
            return
        status, payload = backend.handle(self.headers.get("X-Amz-Target"), self.headers.get("Authorization"), body)
        self._send_json(status, payload, JSON_CONTENT_TYPE)

    def do_GET(self):
        if urlsplit(self.path).path == STATE_PATH:
            self._send_json(200, self.server.backend.state(), "application/json")
        else:
            self._send_json(404, {"error": "unknown path"}, "application/json")

    def _send_json(self, status, payload, content_type):
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("x-amzn-RequestId", str(uuid.uuid4()))
        if status >= 400 and "__type" in payload:
            self.send_header("x-amzn-ErrorType", payload["__type"])
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format, *args):  # pylint: disable=redefined-builtin
        if self.server.log_requests:
            super().log_message(format, *args)


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address, backend, log_requests):
        self.backend = backend
        self.log_requests = log_requests
        super().__init__(address, _Handler)


class RekognitionEndpoint:
    """The local endpoint served on a background thread: ``start()``, ``endpoint_url``, ``stop()``."""

    def __init__(self, host="127.0.0.1", port=0, tps=None, burst=None, latency_ms=0.0,
                 throttle_error="ProvisionedThroughputExceededException", throttle_operations=None,
                 region=DEFAULT_REGION, log_requests=False):
        config = EndpointConfig(tps, burst, latency_ms, throttle_error, throttle_operations)
        self.backend = RekognitionBackend(config, region=region)
        self._address = (host, port)
        self._log_requests = log_requests
        self._server = None
        self._thread = None

    def start(self):
        if self._server is None:
            self._server = _Server(self._address, self.backend, self._log_requests)
            self._thread = threading.Thread(target=self._server.serve_forever, name="rekognition-endpoint", daemon=True)
            self._thread.start()
        return self

    def stop(self):
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._thread.join()
            self._server = None
            self._thread = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc_info):
        self.stop()

    @property
    def port(self):
        return self._server.server_address[1]

    @property
    def endpoint_url(self):
        host = self._server.server_address[0]
        return "http://%s:%d" % (host, self.port)

    def configure(self, **settings):
        return self.backend.configure(**settings)

    def reset(self, stats_only=False):
        self.backend.reset(stats_only=stats_only)

    def state(self):
        return self.backend.state()


def control(endpoint_url, **request):
    """POST /_control to a running endpoint (e.g. one started as a program); return its state."""
    data = json.dumps(request).encode()
    http_request = urllib.request.Request(endpoint_url.rstrip("/") + CONTROL_PATH, data=data, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(http_request, timeout=10) as response:
        return json.load(response)


def fetch_state(endpoint_url):
    """GET /_state of a running endpoint."""
    with urllib.request.urlopen(endpoint_url.rstrip("/") + STATE_PATH, timeout=10) as response:
        return json.load(response)


def _parse_args(argv):
    parser = argparse.ArgumentParser(description="Serve a local Amazon Rekognition endpoint (see the module docstring).")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default: %(default)s)")
    parser.add_argument("--port", type=int, default=0, help="port to bind, 0 for any free one (default: %(default)s)")
    parser.add_argument("--tps", type=float, default=None, help="throttle each operation above this many requests per second")
    parser.add_argument("--burst", type=float, default=None, help="requests allowed at once per operation (default: the TPS, at least 1)")
    parser.add_argument("--latency-ms", type=float, default=0.0, help="latency added to every request, in ms (default: %(default)s)")
    parser.add_argument("--throttle-error", choices=sorted(THROTTLE_ERRORS), default="ProvisionedThroughputExceededException",
                        help="error code of throttled requests (default: %(default)s)")
    parser.add_argument("--throttle-operations", default=None,
                        help="comma-separated operations to throttle (default: all)")
    parser.add_argument("--region", default=DEFAULT_REGION, help="region of ARNs when a request names none (default: %(default)s)")
    parser.add_argument("--log-requests", action="store_true", help="log each request on stderr")
    return parser.parse_args(argv)


def main(argv=None):
    args = _parse_args(argv)
    operations = [name.strip() for name in args.throttle_operations.split(",") if name.strip()] if args.throttle_operations else None
    try:
        endpoint = RekognitionEndpoint(args.host, args.port, args.tps, args.burst, args.latency_ms,
                                       args.throttle_error, operations, args.region, args.log_requests)
    except ValueError as error:
        raise SystemExit("rekognition_endpoint: %s" % error)
    stopping = threading.Event()
    signal.signal(signal.SIGTERM, lambda *dummy: stopping.set())
    signal.signal(signal.SIGINT, lambda *dummy: stopping.set())
    with endpoint:
        print(endpoint.endpoint_url, flush=True)
        stopping.wait()


if __name__ == "__main__":
    main()
