# Copyright: fleet_telemetry.dr developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The local Rekognition endpoint, driven through a real boto3 client."""

from __future__ import annotations

import base64
import io
import json
import os
import re
import subprocess
import sys
import time
import urllib.error
import urllib.request

import boto3
import botocore.config
import botocore.exceptions
import pytest
from PIL import Image

from ansible_collections.fleet_telemetry.dr.tests.support import rekognition_endpoint as rk

UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
PHOTO = (640, 480)
SIGNED = "AWS4-HMAC-SHA256 Credential=AKID/20250101/us-east-1/rekognition/aws4_request, SignedHeaders=host, Signature=0"


@pytest.fixture(scope="module")
def endpoint():
    with rk.RekognitionEndpoint() as running:
        yield running


@pytest.fixture(autouse=True)
def clean(endpoint):
    endpoint.reset()


def make_client(endpoint, max_attempts=1, region="us-east-1", **config):
    return boto3.client(
        "rekognition",
        endpoint_url=endpoint.endpoint_url,
        region_name=region,
        aws_access_key_id="AKIDTEST",
        aws_secret_access_key="secret",
        config=botocore.config.Config(retries={"mode": "standard", "total_max_attempts": max_attempts}, **config),
    )


@pytest.fixture
def client(endpoint):
    return make_client(endpoint)


@pytest.fixture
def collection(client):
    client.create_collection(CollectionId="photos")
    return "photos"


def photo(faces=((100, 100, 120, 150),), image_format="JPEG", size=PHOTO):
    return rk.make_image(size[0], size[1], faces, image_format)


def error_code(excinfo):
    return excinfo.value.response["Error"]["Code"]


def raw_post(endpoint, body, target="RekognitionService.ListCollections", authorization=SIGNED):
    headers = {"Content-Type": rk.JSON_CONTENT_TYPE}
    if target:
        headers["X-Amz-Target"] = target
    if authorization:
        headers["Authorization"] = authorization
    request = urllib.request.Request(endpoint.endpoint_url + "/", data=body, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, dict(response.headers), json.load(response)
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), json.load(error)


# collections


def test_collection_lifecycle(client):
    created = client.create_collection(CollectionId="fleet.drivers-1", Tags={"app": "telemetry"})
    assert created["StatusCode"] == 200
    assert created["CollectionArn"] == "aws:rekognition:us-east-1:123456789012:collection/fleet.drivers-1"
    assert created["FaceModelVersion"] == "7.0"

    described = client.describe_collection(CollectionId="fleet.drivers-1")
    assert described["FaceCount"] == 0
    assert described["FaceModelVersion"] == "7.0"
    assert described["CollectionARN"] == "arn:aws:rekognition:us-east-1:123456789012:collection/fleet.drivers-1"
    assert abs(described["CreationTimestamp"].timestamp() - time.time()) < 60

    listed = client.list_collections()
    assert listed["CollectionIds"] == ["fleet.drivers-1"]
    assert listed["FaceModelVersions"] == ["7.0"]
    assert "NextToken" not in listed

    assert client.delete_collection(CollectionId="fleet.drivers-1")["StatusCode"] == 200
    assert client.list_collections()["CollectionIds"] == []


def test_create_existing_collection(client, collection):
    with pytest.raises(client.exceptions.ResourceAlreadyExistsException) as excinfo:
        client.create_collection(CollectionId=collection)
    assert collection in excinfo.value.response["Error"]["Message"]


@pytest.mark.parametrize("call", [
    lambda c: c.describe_collection(CollectionId="missing"),
    lambda c: c.delete_collection(CollectionId="missing"),
    lambda c: c.index_faces(CollectionId="missing", Image={"Bytes": photo()}),
    lambda c: c.list_faces(CollectionId="missing"),
    lambda c: c.delete_faces(CollectionId="missing", FaceIds=["00000000-0000-0000-0000-000000000000"]),
    lambda c: c.search_faces_by_image(CollectionId="missing", Image={"Bytes": photo()}),
], ids=["describe", "delete", "index", "list_faces", "delete_faces", "search"])
def test_missing_collection(client, call):
    with pytest.raises(client.exceptions.ResourceNotFoundException):
        call(client)


def test_list_collections_pagination(client):
    names = ["c%02d" % number for number in range(7)]
    for name in reversed(names):
        client.create_collection(CollectionId=name)
    first = client.list_collections(MaxResults=3)
    assert first["CollectionIds"] == names[:3]
    pages = client.get_paginator("list_collections").paginate(PaginationConfig={"PageSize": 3})
    assert [page["CollectionIds"] for page in pages] == [names[:3], names[3:6], names[6:]]


def test_region_from_credentials(endpoint):
    client = make_client(endpoint, region="eu-west-1")
    client.create_collection(CollectionId="eu")
    assert client.describe_collection(CollectionId="eu")["CollectionARN"].startswith("arn:aws:rekognition:eu-west-1:")


# faces


def test_index_faces_response(client, collection):
    response = client.index_faces(
        CollectionId=collection,
        Image={"Bytes": photo([(64, 64, 160, 160), (400, 100, 100, 120)])},
        ExternalImageId="photo:42",
        DetectionAttributes=["DEFAULT"],
        QualityFilter="AUTO",
    )
    assert response["FaceModelVersion"] == "7.0"
    assert response["UnindexedFaces"] == []
    records = response["FaceRecords"]
    assert len(records) == 2
    image_ids = {record["Face"]["ImageId"] for record in records}
    assert len(image_ids) == 1
    for record in records:
        face = record["Face"]
        assert UUID.fullmatch(face["FaceId"]) and UUID.fullmatch(face["ImageId"])
        assert face["ExternalImageId"] == "photo:42"
        assert face["IndexFacesModelVersion"] == "7.0"
        assert 99.0 <= face["Confidence"] <= 100.0
        assert set(face["BoundingBox"]) == {"Width", "Height", "Left", "Top"}
        assert record["FaceDetail"]["BoundingBox"] == face["BoundingBox"]
        assert record["FaceDetail"]["Confidence"] == face["Confidence"]
    largest = records[0]["Face"]["BoundingBox"]
    assert largest["Left"] == pytest.approx(0.1, abs=0.02)
    assert largest["Width"] == pytest.approx(0.25, abs=0.02)
    assert client.describe_collection(CollectionId=collection)["FaceCount"] == 2

    again = client.index_faces(CollectionId=collection, Image={"Bytes": photo([(64, 64, 160, 160), (400, 100, 100, 120)])})
    assert {record["Face"]["FaceId"] for record in again["FaceRecords"]}.isdisjoint(record["Face"]["FaceId"] for record in records)
    assert "ExternalImageId" not in again["FaceRecords"][0]["Face"]
    assert client.describe_collection(CollectionId=collection)["FaceCount"] == 4


@pytest.mark.parametrize("image_format", ["JPEG", "PNG"])
@pytest.mark.parametrize("faces", [
    [],
    [(200, 150, 120, 140)],
    [(40, 40, 150, 180), (420, 220, 140, 160)],
], ids=["no-face", "one-face", "two-faces"])
def test_face_rule_through_index_faces(client, collection, image_format, faces):
    data = photo(faces, image_format)
    assert Image.open(io.BytesIO(data)).format == image_format
    response = client.index_faces(CollectionId=collection, Image={"Bytes": data}, QualityFilter="NONE")
    assert len(response["FaceRecords"]) == len(faces)
    assert client.describe_collection(CollectionId=collection)["FaceCount"] == len(faces)


def test_max_faces_indexes_the_largest(client, collection):
    faces = [(20, 20, 100, 100), (200, 20, 200, 200), (450, 300, 120, 120)]
    response = client.index_faces(CollectionId=collection, Image={"Bytes": photo(faces)}, MaxFaces=1)
    assert len(response["FaceRecords"]) == 1
    assert response["FaceRecords"][0]["Face"]["BoundingBox"]["Left"] == pytest.approx(200 / 640, abs=0.02)
    assert [face["Reasons"] for face in response["UnindexedFaces"]] == [["EXCEEDS_MAX_FACES"]] * 2
    assert client.describe_collection(CollectionId=collection)["FaceCount"] == 1


def test_list_faces_pagination_and_filter(client, collection):
    face_ids = []
    for number in range(5):
        response = client.index_faces(CollectionId=collection, Image={"Bytes": photo([(50 + 100 * number, 100, 90, 90)])}, ExternalImageId="p%d" % number)
        face_ids.append(response["FaceRecords"][0]["Face"]["FaceId"])

    first = client.list_faces(CollectionId=collection, MaxResults=2)
    assert len(first["Faces"]) == 2 and first["FaceModelVersion"] == "7.0"
    second = client.list_faces(CollectionId=collection, MaxResults=2, NextToken=first["NextToken"])
    third = client.list_faces(CollectionId=collection, MaxResults=2, NextToken=second["NextToken"])
    assert "NextToken" not in third
    listed = [face["FaceId"] for page in (first, second, third) for face in page["Faces"]]
    assert listed == sorted(face_ids)

    pages = list(client.get_paginator("list_faces").paginate(CollectionId=collection, PaginationConfig={"PageSize": 3}))
    assert [len(page["Faces"]) for page in pages] == [3, 2]
    assert {face["ExternalImageId"] for page in pages for face in page["Faces"]} == {"p0", "p1", "p2", "p3", "p4"}

    filtered = client.list_faces(CollectionId=collection, FaceIds=face_ids[:2])
    assert sorted(face["FaceId"] for face in filtered["Faces"]) == sorted(face_ids[:2])


def test_list_faces_token_survives_deletion(client, collection):
    response = client.index_faces(CollectionId=collection, Image={"Bytes": photo([(20, 20, 90, 90), (200, 20, 90, 90), (400, 20, 90, 90)])})
    face_ids = sorted(record["Face"]["FaceId"] for record in response["FaceRecords"])
    first = client.list_faces(CollectionId=collection, MaxResults=1)
    client.delete_faces(CollectionId=collection, FaceIds=[face_ids[0]])
    rest = client.list_faces(CollectionId=collection, NextToken=first["NextToken"])
    assert [face["FaceId"] for face in rest["Faces"]] == face_ids[1:]


@pytest.mark.parametrize("token", ["not-a-token", rk._encode_token("other", "x")])
def test_invalid_pagination_token(client, collection, token):
    with pytest.raises(client.exceptions.InvalidPaginationTokenException):
        client.list_faces(CollectionId=collection, NextToken=token)


def test_delete_faces(client, collection):
    response = client.index_faces(CollectionId=collection, Image={"Bytes": photo([(20, 20, 90, 90), (300, 20, 90, 90)])})
    face_ids = [record["Face"]["FaceId"] for record in response["FaceRecords"]]
    unknown = "11111111-2222-3333-4444-555555555555"
    deleted = client.delete_faces(CollectionId=collection, FaceIds=[face_ids[0], unknown])
    assert deleted["DeletedFaces"] == [face_ids[0]]
    assert deleted["UnsuccessfulFaceDeletions"] == [{"FaceId": unknown, "Reasons": ["FACE_NOT_FOUND"]}]
    assert [face["FaceId"] for face in client.list_faces(CollectionId=collection)["Faces"]] == [face_ids[1]]


def test_search_faces_by_image(client, collection):
    data = photo([(300, 100, 200, 200), (40, 40, 90, 90)])
    indexed = client.index_faces(CollectionId=collection, Image={"Bytes": data}, ExternalImageId="driver-7")
    client.index_faces(CollectionId=collection, Image={"Bytes": photo([(300, 100, 190, 200)])}, ExternalImageId="driver-8")
    largest = indexed["FaceRecords"][0]["Face"]

    found = client.search_faces_by_image(CollectionId=collection, Image={"Bytes": data}, FaceMatchThreshold=95, QualityFilter="HIGH")
    assert found["FaceModelVersion"] == "7.0"
    assert found["SearchedFaceBoundingBox"] == largest["BoundingBox"]
    assert found["SearchedFaceConfidence"] == largest["Confidence"]
    assert [(match["Similarity"], match["Face"]["FaceId"]) for match in found["FaceMatches"]] == [(100.0, largest["FaceId"])]
    assert found["FaceMatches"][0]["Face"]["ExternalImageId"] == "driver-7"

    other = client.search_faces_by_image(CollectionId=collection, Image={"Bytes": photo([(10, 300, 150, 150)])})
    assert other["FaceMatches"] == []

    with pytest.raises(client.exceptions.InvalidParameterException) as excinfo:
        client.search_faces_by_image(CollectionId=collection, Image={"Bytes": photo([])})
    assert "no faces" in excinfo.value.response["Error"]["Message"]


# the face rule, without HTTP


def test_face_rule_bounding_box_is_relative_to_the_thumbnail():
    faces = rk.detect_faces(photo([(100, 50, 200, 100)], "PNG"))
    assert len(faces) == 1
    face = faces[0]
    assert face.thumbnail_size == (64, 48)
    assert (face.x0, face.y0, face.x1, face.y1, face.pixels) == (10, 5, 29, 14, 200)
    assert face.bounding_box == {"Width": round(20 / 64, 6), "Height": round(10 / 48, 6), "Left": round(10 / 64, 6), "Top": round(5 / 48, 6)}
    assert face.confidence == round(99.0 + 0.99 * 200 / 1024, 4)


@pytest.mark.parametrize("size, faces, expected", [
    ((640, 640), [(0, 0, 40, 60)], 1),  # 4 x 6 thumbnail pixels = 24: exactly the minimum
    ((640, 640), [(0, 0, 50, 40)], 0),  # 5 x 4 = 20
    ((640, 640), [(100, 100, 60, 60), (160, 160, 60, 60)], 2),  # touching at a corner only: not 4-connected
    ((640, 640), [(100, 100, 60, 60), (160, 100, 60, 60)], 1),  # sharing an edge: one component
])
def test_face_rule_size_and_connectivity(size, faces, expected):
    assert len(rk.detect_faces(photo(faces, "PNG", size))) == expected


@pytest.mark.parametrize("delta, expected", [(32, 1), (33, 0), (-32, 1), (-33, 0)])
def test_face_rule_tolerance_is_inclusive(delta, expected):
    image = Image.new("RGB", (160, 160), (0, 0, 0))
    image.paste((rk.SKIN_RGB[0], rk.SKIN_RGB[1] + delta, rk.SKIN_RGB[2]), (0, 0, 80, 80))
    out = io.BytesIO()
    image.save(out, format="PNG")
    assert len(rk.detect_faces(out.getvalue())) == expected


def test_face_rule_drops_alpha():
    image = Image.new("RGBA", (100, 100), rk.SKIN_RGB + (0,))
    out = io.BytesIO()
    image.save(out, format="PNG")
    assert len(rk.detect_faces(out.getvalue())) == 1


# images


def image_bytes(image_format, size=(120, 120)):
    out = io.BytesIO()
    Image.new("RGB", size, rk.SKIN_RGB).save(out, format=image_format)
    return out.getvalue()


@pytest.mark.parametrize("image, code", [
    ({"Bytes": b"\xff\xd8" + b"\0" * (5 * 1024 * 1024 - 1)}, "ImageTooLargeException"),
    ({"Bytes": image_bytes("GIF")}, "InvalidImageFormatException"),
    ({"Bytes": image_bytes("BMP")}, "InvalidImageFormatException"),
    ({"Bytes": b"definitely not an image"}, "InvalidImageFormatException"),
    ({"Bytes": image_bytes("JPEG")[:300]}, "InvalidImageFormatException"),
    ({"Bytes": image_bytes("PNG", (79, 200))}, "InvalidParameterException"),
    ({"Bytes": image_bytes("JPEG", (200, 79))}, "InvalidParameterException"),
    ({"S3Object": {"Bucket": "photos", "Name": "a.jpg"}}, "InvalidS3ObjectException"),
    ({"Bytes": image_bytes("PNG"), "S3Object": {"Bucket": "photos", "Name": "a.jpg"}}, "InvalidParameterException"),
    ({}, "InvalidParameterException"),
], ids=["over-5MB", "gif", "bmp", "garbage", "truncated", "narrow", "short", "s3", "bytes-and-s3", "empty"])
@pytest.mark.parametrize("operation", ["index_faces", "search_faces_by_image"])
def test_image_errors(client, collection, image, code, operation):
    with pytest.raises(getattr(client.exceptions, code)):
        getattr(client, operation)(CollectionId=collection, Image=image)


def test_image_limits_accept_the_boundaries(client, collection):
    assert client.index_faces(CollectionId=collection, Image={"Bytes": image_bytes("PNG", (80, 80))})["FaceRecords"]
    big = rk.make_image(2000, 2000, [(500, 500, 600, 600)], "PNG") + b"\0" * 1000
    padded = big + b"\0" * (rk.MAX_IMAGE_BYTES - len(big))
    assert len(padded) == rk.MAX_IMAGE_BYTES
    assert len(client.index_faces(CollectionId=collection, Image={"Bytes": padded})["FaceRecords"]) == 1


# request validation


@pytest.mark.parametrize("kwargs, rule", [
    ({"ExternalImageId": "photo 42"}, "Value 'photo 42' at 'externalImageId' failed to satisfy constraint: Member must satisfy regular expression pattern"),
    ({"ExternalImageId": "x" * 256}, "at 'externalImageId' failed to satisfy constraint: Member must have length less than or equal to 255"),
    ({"QualityFilter": "BEST"}, "Value 'BEST' at 'qualityFilter' failed to satisfy constraint: Member must satisfy enum value set"),
    ({"DetectionAttributes": ["NOSE"]}, "at 'detectionAttributes.1.member' failed to satisfy constraint"),
])
def test_constraint_violations(client, collection, kwargs, rule):
    with pytest.raises(botocore.exceptions.ClientError) as excinfo:
        client.index_faces(CollectionId=collection, Image={"Bytes": photo()}, **kwargs)
    assert error_code(excinfo) == "ValidationException"
    assert excinfo.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    assert excinfo.value.response["Error"]["Message"].startswith("1 validation error detected: ")
    assert rule in excinfo.value.response["Error"]["Message"]


def test_external_image_id_pattern_accepts_its_alphabet(client, collection):
    external_image_id = "Photo_1.jpg:v-2" + "x" * 240
    response = client.index_faces(CollectionId=collection, Image={"Bytes": photo()}, ExternalImageId=external_image_id)
    assert response["FaceRecords"][0]["Face"]["ExternalImageId"] == external_image_id


@pytest.mark.parametrize("collection_id", ["my photos", "photos/2024", "x" * 256])
def test_collection_id_constraints(client, collection_id):
    with pytest.raises(botocore.exceptions.ClientError) as excinfo:
        client.create_collection(CollectionId=collection_id)
    assert error_code(excinfo) == "ValidationException"


@pytest.mark.parametrize("call, message", [
    (lambda c: c.create_collection(), 'Missing required parameter in input: "CollectionId"'),
    (lambda c: c.describe_collection(CollectionId=42), "Invalid type for parameter CollectionId"),
    (lambda c: c.index_faces(CollectionId="photos", Image={"Bytes": photo()}, MaxFaces="many"), "Invalid type for parameter MaxFaces"),
    (lambda c: c.index_faces(CollectionId="photos", Image={"Bytes": photo()}, MaxFaces=0), "valid min value: 1"),
    (lambda c: c.delete_faces(CollectionId="photos", FaceIds=[]), "Invalid length for parameter FaceIds"),
], ids=["missing", "string-type", "integer-type", "min-value", "min-length"])
def test_service_model_validation(endpoint, collection, call, message):
    unvalidated = make_client(endpoint, parameter_validation=False)
    with pytest.raises(unvalidated.exceptions.InvalidParameterException) as excinfo:
        call(unvalidated)
    assert message in excinfo.value.response["Error"]["Message"]


def test_unknown_member_is_invalid(endpoint):
    status, headers, body = raw_post(endpoint, json.dumps({"CollectionId": "a", "Colour": "red"}).encode(), "RekognitionService.CreateCollection")
    assert status == 400
    assert body["__type"] == "InvalidParameterException"
    assert headers["x-amzn-ErrorType"] == "InvalidParameterException"
    assert 'Unknown parameter in input: "Colour"' in body["message"]


# wire protocol


def test_wire_format_of_a_success(endpoint):
    image = base64.b64encode(photo()).decode()
    status, headers, body = raw_post(endpoint, json.dumps({"CollectionId": "wire"}).encode(), "RekognitionService.CreateCollection")
    assert status == 200 and headers["Content-Type"] == "application/x-amz-json-1.1" and UUID.fullmatch(headers["x-amzn-RequestId"])
    status, headers, body = raw_post(endpoint, json.dumps({"CollectionId": "wire", "Image": {"Bytes": image}}).encode(), "RekognitionService.IndexFaces")
    assert status == 200 and len(body["FaceRecords"]) == 1


@pytest.mark.parametrize("body, target, authorization, code", [
    (b"{}", "RekognitionService.ListCollections", None, "MissingAuthenticationTokenException"),
    (b"{}", "RekognitionService.DetectFaces", SIGNED, "UnknownOperationException"),
    (b"{}", "Other.ListCollections", "AWS4-HMAC-SHA256 x", "UnknownOperationException"),
    (b"{}", None, "AWS4-HMAC-SHA256 x", "UnknownOperationException"),
    (b"{not json", "RekognitionService.ListCollections", "AWS4-HMAC-SHA256 x", "SerializationException"),
    (b"[]", "RekognitionService.ListCollections", "AWS4-HMAC-SHA256 x", "SerializationException"),
    (b'{"CollectionId": "a", "Image": {"Bytes": "%%%"}}', "RekognitionService.IndexFaces", "AWS4-HMAC-SHA256 x", "SerializationException"),
])
def test_wire_errors(endpoint, body, target, authorization, code):
    status, headers, payload = raw_post(endpoint, body, target, authorization)
    assert (status, payload["__type"], headers["x-amzn-ErrorType"]) == (400, code, code)
    assert payload["message"]


def test_tags_are_validated(client):
    client.create_collection(CollectionId="tagged", Tags={"team": "fleet ops"})
    with pytest.raises(botocore.exceptions.ClientError) as excinfo:
        client.create_collection(CollectionId="reserved", Tags={"aws:owner": "me"})
    assert error_code(excinfo) == "ValidationException"


def test_internal_errors_are_answered_as_aws_does(endpoint, client, monkeypatch, capsys):
    def broken(params, region):
        raise RuntimeError("bug")

    monkeypatch.setattr(endpoint.backend, "_op_list_collections", broken)
    with pytest.raises(client.exceptions.InternalServerError) as excinfo:
        client.list_collections()
    assert excinfo.value.response["ResponseMetadata"]["HTTPStatusCode"] == 500
    assert "RuntimeError: bug" in capsys.readouterr().err


# faults


@pytest.mark.parametrize("throttle_error", sorted(rk.THROTTLE_ERRORS))
def test_throttling_error_code(endpoint, client, throttle_error):
    endpoint.configure(tps=1, burst=1, throttle_error=throttle_error)
    client.list_collections()
    with pytest.raises(getattr(client.exceptions, throttle_error)) as excinfo:
        client.list_collections()
    assert excinfo.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    stats = endpoint.state()["stats"]
    assert stats["throttled"] == {"ListCollections": 1}
    assert stats["throttled_total"] == 1
    assert stats["requests"] == {"ListCollections": 2}
    assert stats["succeeded"] == {"ListCollections": 1}


def test_standard_retries_get_through_throttling(endpoint, collection):
    endpoint.configure(tps=5, burst=1, throttle_operations=["IndexFaces"])
    retrying = make_client(endpoint, max_attempts=10)
    data = photo()
    for number in range(4):
        retrying.index_faces(CollectionId=collection, Image={"Bytes": data}, ExternalImageId="p%d" % number)
    for dummy in range(3):
        retrying.describe_collection(CollectionId=collection)
    state = endpoint.state()
    assert state["collections"][collection]["FaceCount"] == 4
    assert state["stats"]["succeeded"]["IndexFaces"] == 4
    assert state["stats"]["throttled_total"] == state["stats"]["throttled"]["IndexFaces"] >= 1


def test_token_bucket_rate_and_burst():
    now = [0.0]
    bucket = rk.TokenBucket(rate=2, burst=2, clock=lambda: now[0])
    assert [bucket.take() for dummy in range(3)] == [True, True, False]
    now[0] = 0.4
    assert not bucket.take()
    now[0] = 0.5
    assert bucket.take() and not bucket.take()
    now[0] = 10.0
    assert [bucket.take() for dummy in range(3)] == [True, True, False]


def test_latency(endpoint, client):
    endpoint.configure(latency_ms=150)
    started = time.monotonic()
    client.list_collections()
    assert time.monotonic() - started >= 0.15
    assert endpoint.configure(latency_ms=None)["latency_ms"] == 0.0


def test_first_and_last_success_are_timed_per_operation(endpoint, client):
    endpoint.configure(tps=1, burst=2, throttle_operations=["ListCollections"])
    before = time.time()
    client.list_collections()
    client.list_collections()
    with pytest.raises(client.exceptions.ProvisionedThroughputExceededException):
        client.list_collections()
    client.create_collection(CollectionId="timed")
    after = time.time()
    stats = endpoint.state()["stats"]
    assert before <= stats["first_success"]["ListCollections"] <= stats["last_success"]["ListCollections"]
    assert stats["last_success"]["ListCollections"] <= stats["first_success"]["CreateCollection"] <= after
    assert set(stats["first_success"]) == set(stats["last_success"]) == {"ListCollections", "CreateCollection"}
    endpoint.reset(stats_only=True)
    assert endpoint.state()["stats"]["first_success"] == {}


def test_control_api_over_http(endpoint, client, collection):
    url = endpoint.endpoint_url
    state = rk.control(url, tps=50, latency_ms=5, throttle_error="ThrottlingException", throttle_operations=["IndexFaces"])
    assert state["config"] == {"tps": 50, "burst": None, "latency_ms": 5, "throttle_error": "ThrottlingException", "throttle_operations": ["IndexFaces"]}
    client.index_faces(CollectionId=collection, Image={"Bytes": photo()})

    state = rk.fetch_state(url)
    assert state["collections"] == {collection: {"FaceCount": 1}}
    assert state["stats"]["requests"] == {"CreateCollection": 1, "IndexFaces": 1}
    assert state["stats"]["requests_total"] == 2

    state = rk.control(url, reset_stats=True)
    assert state["stats"]["requests_total"] == 0 and state["collections"] == {collection: {"FaceCount": 1}}
    assert state["config"]["tps"] == 50

    state = rk.control(url, reset=True, latency_ms=1)
    assert state["collections"] == {}
    assert state["config"] == dict(rk.EndpointConfig(latency_ms=1).as_dict())
    assert state["config"]["throttle_error"] == "ProvisionedThroughputExceededException"


@pytest.mark.parametrize("request_body", [
    {"colour": "red"},
    {"tps": -1},
    {"tps": "fast"},
    {"burst": 0.5},
    {"latency_ms": -5},
    {"throttle_error": "SlowDown"},
    {"throttle_operations": ["DetectFaces"]},
    {"throttle_operations": "IndexFaces"},
    [1],
])
def test_control_api_rejects_bad_settings(endpoint, request_body):
    request = urllib.request.Request(endpoint.endpoint_url + rk.CONTROL_PATH, data=json.dumps(request_body).encode())
    with pytest.raises(urllib.error.HTTPError) as excinfo:
        urllib.request.urlopen(request, timeout=10)
    assert excinfo.value.code == 400
    assert json.load(excinfo.value)["error"]
    assert endpoint.state()["config"]["tps"] is None


def test_command_line():
    script = os.path.join(os.path.dirname(rk.__file__), "rekognition_endpoint.py")
    process = subprocess.Popen([sys.executable, script, "--port", "0", "--tps", "5", "--latency-ms", "100"], stdout=subprocess.PIPE, text=True)
    try:
        url = process.stdout.readline().strip()
        assert re.fullmatch(r"http://127\.0\.0\.1:\d+", url)
        config = rk.fetch_state(url)["config"]
        assert (config["tps"], config["latency_ms"]) == (5, 100)
        client = boto3.client("rekognition", endpoint_url=url, region_name="us-east-1", aws_access_key_id="a", aws_secret_access_key="b")
        assert client.list_collections()["CollectionIds"] == []
    finally:
        process.terminate()
        assert process.wait(timeout=10) == 0
