# Copyright: contributors to the fleet_telemetry.dr collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

# This doc fragment is PRIVATE to fleet_telemetry.dr and may change at any time.

from __future__ import annotations


class ModuleDocFragment:

    DOCUMENTATION = r"""
options:
  encryption_key:
    description:
      - The application's E(ENCRYPTION_KEY) that encrypts the photos, 32 bytes given as 64 hexadecimal characters,
        base64 of 32 bytes, or 32 raw characters.
      - Never logged and never returned; only its fingerprint (HMAC-SHA256 under a fixed label, which cannot reveal the key) is.
    type: str
  cipher:
    description:
      - How the application encrypts photos with the key.
      - V(aes-256-gcm) expects a 12-byte nonce first and the 16-byte tag last.
      - V(fernet) uses the 32-byte key as a Fernet key.
    type: str
    choices: [aes-256-gcm, fernet]
    default: aes-256-gcm
requirements:
  - cryptography >= 3.0 (for O(encryption_key))
"""
