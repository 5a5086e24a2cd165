-- Schema of the fleet-telemetry application protected by fleet_telemetry.dr.
--
-- The PostgreSQL entrypoint runs this once, on an empty data directory, from
-- /docker-entrypoint-initdb.d, as POSTGRES_USER (challengeuser) in POSTGRES_DB (telemetry_db).
-- examples/telemetry_app/seed.py fills it with realistic rows.

\set ON_ERROR_STOP on

BEGIN;

CREATE TABLE vehicle (
    id              bigserial PRIMARY KEY,
    plate           text        NOT NULL UNIQUE,
    vin             char(17)    NOT NULL UNIQUE,
    make            text        NOT NULL,
    model           text        NOT NULL,
    model_year      smallint    NOT NULL CHECK (model_year BETWEEN 1990 AND 2100),
    status          text        NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'maintenance', 'retired')),
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE gps_telemetry (
    id              bigserial PRIMARY KEY,
    vehicle_id      bigint      NOT NULL REFERENCES vehicle (id),
    recorded_at     timestamptz NOT NULL,
    received_at     timestamptz NOT NULL DEFAULT now(),
    lat             double precision NOT NULL CHECK (lat BETWEEN -90 AND 90),
    lon             double precision NOT NULL CHECK (lon BETWEEN -180 AND 180),
    altitude_m      real,
    speed_kmh       real        CHECK (speed_kmh >= 0),
    heading_deg     real        CHECK (heading_deg >= 0 AND heading_deg < 360),
    hdop            real        CHECK (hdop >= 0),
    satellites      smallint    CHECK (satellites >= 0)
);
CREATE INDEX gps_telemetry_vehicle_recorded_idx ON gps_telemetry (vehicle_id, recorded_at);

CREATE TABLE gyroscope_telemetry (
    id              bigserial PRIMARY KEY,
    vehicle_id      bigint      NOT NULL REFERENCES vehicle (id),
    recorded_at     timestamptz NOT NULL,
    received_at     timestamptz NOT NULL DEFAULT now(),
    -- angular velocity in rad/s around the device axes
    x               double precision NOT NULL,
    y               double precision NOT NULL,
    z               double precision NOT NULL
);
CREATE INDEX gyroscope_telemetry_vehicle_recorded_idx ON gyroscope_telemetry (vehicle_id, recorded_at);

CREATE TABLE photo (
    id                  bigserial PRIMARY KEY,
    vehicle_id          bigint      NOT NULL REFERENCES vehicle (id),
    taken_at            timestamptz NOT NULL,
    content_type        text        NOT NULL CHECK (content_type IN ('image/jpeg', 'image/png')),
    -- the image encrypted with ENCRYPTION_KEY (cipher aes-256-gcm or fernet, see PHOTO_CIPHER)
    data                bytea       NOT NULL,
    -- usable as the Rekognition ExternalImageId of the photo's faces
    external_image_id   text        NOT NULL UNIQUE
                                    CHECK (external_image_id ~ '^[a-zA-Z0-9_.\-:]+$' AND length(external_image_id) <= 255),
    size_bytes          integer     CHECK (size_bytes >= 0),
    width               integer     CHECK (width > 0),
    height              integer     CHECK (height > 0),
    -- SHA-256 of the decrypted image, when the application recorded it
    sha256              bytea       CHECK (octet_length(sha256) = 32),
    created_at          timestamptz NOT NULL DEFAULT now()
);
-- Ciphertext does not compress: store it out of line without trying.
ALTER TABLE photo ALTER COLUMN data SET STORAGE EXTERNAL;
CREATE INDEX photo_vehicle_taken_idx ON photo (vehicle_id, taken_at);

CREATE TABLE recognition_result (
    id              bigserial PRIMARY KEY,
    photo_id        bigint      NOT NULL REFERENCES photo (id) ON DELETE CASCADE,
    collection_id   text        NOT NULL,
    -- the Rekognition Face ID (a UUID) returned by IndexFaces
    face_id         text        NOT NULL,
    image_id        text,
    confidence      real        NOT NULL CHECK (confidence BETWEEN 0 AND 100),
    -- bounding box as ratios of the image size, as Rekognition reports it
    bbox_left       real        NOT NULL,
    bbox_top        real        NOT NULL,
    bbox_width      real        NOT NULL CHECK (bbox_width > 0),
    bbox_height     real        NOT NULL CHECK (bbox_height > 0),
    created_at      timestamptz NOT NULL DEFAULT now(),
    UNIQUE (collection_id, face_id)
);
CREATE INDEX recognition_result_photo_idx ON recognition_result (photo_id);

CREATE TABLE audit_log (
    id              bigserial PRIMARY KEY,
    at              timestamptz NOT NULL DEFAULT now(),
    actor           text        NOT NULL,
    action          text        NOT NULL,
    detail          jsonb       NOT NULL DEFAULT '{}'::jsonb
);
CREATE INDEX audit_log_at_idx ON audit_log (at);
CREATE INDEX audit_log_action_at_idx ON audit_log (action, at);

COMMIT;
