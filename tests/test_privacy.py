"""The privacy rules (bridge/privacy.py), on their own: the one gate every edge uses."""

from __future__ import annotations

import pytest

from bridge import privacy
from bridge.privacy import PrivacyClass, PrivacyError, PrivacyGate

A, R = PrivacyClass.ANONYMOUS, PrivacyClass.RESTRICTED


@pytest.mark.parametrize("value,cls", [
    ("raw", 0), ("Derived", 1), ("ANONYMOUS", 2), ("restricted", 3), (0, 0), (3, 3),
])
def test_classes_parse_from_names_and_numbers(value, cls):
    assert privacy.parse_class(value) == cls


@pytest.mark.parametrize("value", [True, False, 4, -1, "secret", None, 2.0, [2]])
def test_anything_else_is_refused_and_a_boolean_is_never_a_number(value):
    with pytest.raises(PrivacyError, match="raw, derived, anonymous, restricted or 0..3"):
        privacy.parse_class(value)


def test_only_anonymous_and_restricted_may_be_exported():
    assert privacy.export_refusal(A) is None and privacy.export_refusal(R) is None
    for cls in (PrivacyClass.RAW, PrivacyClass.DERIVED):
        reason = privacy.export_refusal(cls)
        assert reason and cls.label in reason and "privacy rule 2" in reason
    with pytest.raises(PrivacyError, match="privacy rule 2"):
        PrivacyGate(2, {5: 1})
    with pytest.raises(PrivacyError, match="privacy rule 2"):
        PrivacyGate(0, {})


def test_raw_frames_never_pass_and_are_counted_by_kind():
    gate = PrivacyGate(2, {})
    assert not gate.admit("raw_csi") and not gate.admit("compressed_csi") and not gate.admit("raw_csi")
    assert gate.admit("feature_state") and gate.admit("vitals")
    assert gate.stats()["dropped"] == {"raw_csi": 2, "compressed_csi": 1}


FIELDS = {"presence": True, "breathing_bpm": 14.0, "heart_bpm": 70.0, "anomaly": True, "anomaly_score": 0.9,
          "env_shift": False, "env_shift_score": 0.1, "coherence": 0.8, "motion": True, "persons": 1}


def test_restricted_strips_exactly_the_restricted_fields_and_counts_them():
    gate = PrivacyGate(2, {7: 3})
    assert gate.redact(1, FIELDS) == FIELDS  # anonymous: everything
    kept = gate.redact(7, FIELDS)
    assert kept == {"presence": True, "motion": True, "persons": 1}
    assert gate.stats()["fields_stripped"] == len(FIELDS) - 3
    assert FIELDS["breathing_bpm"] == 14.0, "the input is not modified"


def test_entities_follow_the_fields_they_show():
    assert privacy.allows_fields(A, ["breathing_bpm"]) and privacy.allows_fields(R, ["presence", "rssi"])
    assert not privacy.allows_fields(R, ["heart_bpm"]) and not privacy.allows_fields(R, ["presence", "coherence"])
    assert privacy.allows_fields(R, [])


def test_events_cross_at_both_exported_classes_with_ambient_names():
    assert privacy.events_for(A) == privacy.events_for(R) == privacy.NODE_EVENTS
    assert {"fall_detected", "unrecognized_activity_pattern"} <= set(privacy.NODE_EVENTS)
    assert privacy.events_for(PrivacyClass.RAW) == ()
    for name in privacy.NODE_EVENTS:  # rule 5
        assert not {"intruder", "threat", "attack"} & set(name.split("_"))


def test_a_class_only_moves_toward_more_privacy():
    gate = PrivacyGate(2, {})
    assert gate.check_demotion(4, 3) == R and gate.class_of(4) == A, "checking changes nothing"
    assert gate.demote(4, "restricted") == R and gate.class_of(4) == R
    with pytest.raises(PrivacyError, match="privacy rule 4"):
        gate.demote(4, "anonymous")
    with pytest.raises(PrivacyError, match="privacy rule 2"):
        gate.demote(5, "raw")
    with pytest.raises(PrivacyError):
        gate.demote(5, True)
    assert gate.class_of(4) == R and gate.class_of(5) == A
