"""Assist: utterances in, intents recognized and acted on, answers out (docs/assist.md)."""
