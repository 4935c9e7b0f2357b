"""HomeKit: one paired HAP bridge with an accessory per room, from the gated node directory (docs/homekit.md)."""
