"""`device doctor`'s reading of a probed device against a profile (the probe itself: tests/transport)."""
from edgeopt import doctor
from edgeopt.profiles import load_profile


def test_the_profiles_other_backends_are_noted_never_failed():
    """intel-cpu hardware runs ONNX Runtime too: doctor says whether `optimize` can try it on this device."""
    intel = load_profile("intel-cpu")
    present = doctor.other_backend_checks({"openvino": "2026.4.1", "onnxruntime": "1.32.0"}, "python3", intel)
    assert present == [{"check": "backend onnxruntime", "ok": True, "hint": "",
                        "detail": "onnxruntime 1.32.0: `optimize` also tries backend onnxruntime"}]
    absent = doctor.other_backend_checks({"openvino": "2026.4.1", "onnxruntime": None}, "python3", intel)
    assert absent[0]["ok"] and "leaves backend onnxruntime out" in absent[0]["detail"]
    assert absent[0]["hint"] == "python3 -m pip install onnxruntime (optional)"
    assert doctor.other_backend_checks({}, "python3", load_profile("generic")) == []
