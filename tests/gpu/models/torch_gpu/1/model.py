"""torch on CUDA in Triton's Python backend, for `make test-gpu` (tests/gpu/test_gpu_node.py).

Tensors move with DLPack, never numpy: on the GPU image (Python 3.12, numpy 2) a Python-backend
model that read `as_numpy()` or returned `pb_utils.Tensor(name, ndarray)` got empty outputs
(RUNTIME.md, "Triton on a real GPU").
"""

from __future__ import annotations

import json

import torch
import torch.utils.dlpack
import triton_python_backend_utils as pb_utils

# OUTPUT0 = INPUT0 @ WEIGHT + BIAS; the test computes the same in plain Python.
WEIGHT = [
    [1.0, 0.0, 0.5, -1.0],
    [0.0, 2.0, 0.0, 0.25],
    [-1.0, 0.0, 3.0, 0.0],
    [0.5, 1.0, 0.0, 4.0],
]
BIAS = [1.0, -2.0, 0.5, 0.0]


class TritonPythonModel:
    def initialize(self, args: dict[str, str]) -> None:
        if args["model_instance_kind"] != "GPU":
            raise pb_utils.TritonModelException(
                f"torch_gpu: instance kind {args['model_instance_kind']}: this model runs on KIND_GPU only"
            )
        self.device = torch.device("cuda", int(args["model_instance_device_id"]))
        torch.cuda.set_device(self.device)
        self.weight = torch.tensor(WEIGHT, dtype=torch.float32, device=self.device)
        self.bias = torch.tensor(BIAS, dtype=torch.float32, device=self.device)
        parameters = json.loads(args["model_config"]).get("parameters", {})
        size = int(parameters.get("WORK_SIZE", {}).get("string_value", "4096"))
        generator = torch.Generator(device=self.device).manual_seed(0)
        self.work = torch.rand(size, size, device=self.device, generator=generator)

    def execute(self, requests: list[object]) -> list[object]:
        responses = []
        for request in requests:
            given = pb_utils.get_input_tensor_by_name(request, "INPUT0")
            x = torch.utils.dlpack.from_dlpack(given.to_dlpack()).to(self.device)
            y = x @ self.weight + self.bias
            # GPU work the metrics can see; the same stream, so y.cpu() below waits for it.
            torch.mm(self.work, self.work)
            where = f"{y.device}|{torch.cuda.get_device_name(y.device)}".encode()
            computed_on = torch.tensor(list(where), dtype=torch.uint8).repeat(x.shape[0], 1)
            outputs = [
                pb_utils.Tensor.from_dlpack("OUTPUT0", torch.utils.dlpack.to_dlpack(y.cpu().contiguous())),
                pb_utils.Tensor.from_dlpack("COMPUTED_ON", torch.utils.dlpack.to_dlpack(computed_on)),
            ]
            responses.append(pb_utils.InferenceResponse(output_tensors=outputs))
        return responses
