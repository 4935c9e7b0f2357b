"""RuView nodes: wire codecs, ingest, privacy gate, presence engine and registry."""

from bridge.nodes.codec import DecodeError, Frame, decode

__all__ = ["DecodeError", "Frame", "decode"]
