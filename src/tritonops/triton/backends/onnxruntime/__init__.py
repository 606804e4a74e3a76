"""The Python-based `onnxruntime` backend: `model.py` is copied to `<backend-directory>/onnxruntime/`."""
