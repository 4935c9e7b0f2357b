"""The "ota" extension: nodes updated, recalibrated and re-targeted over the air (docs/nodes.md)."""
