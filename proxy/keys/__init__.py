"""Key material: the AES-GCM keyring for data at rest and the JWT signing keys."""
