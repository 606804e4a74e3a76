"""The backend's load-time rules in-process, case by case, as the real ORT backend's source states them:
triton-inference-server/onnxruntime_backend src/onnxruntime.cc (`ModelInstanceState::ValidateInputs`,
`ValidateOutputs`, `AutoCompleteConfig`) and src/onnxruntime_utils.cc (`CompareDimsSupported`)."""

from __future__ import annotations

from types import ModuleType
from typing import Any

import pytest

# (graph shape, config dims, max_batch_size, exact) -> accepted; from CompareDimsSupported.
DIMS_CASES = {
    "batching_dynamic_first_dim": ((-1, 4), (4,), 8, False, True),
    "batching_fixed_first_dim": ((1, 4), (4,), 8, False, False),
    "batching_scalar_graph": ((), (1,), 8, False, False),
    "batching_batch_dim_in_dims": ((-1, 4), (1, 4), 8, False, False),
    "no_batching_full_shape": ((1, 4), (1, 4), 0, False, True),
    "no_batching_missing_batch_dim": ((1, 4), (4,), 0, False, False),
    "input_dynamic_dim_takes_fixed_config_dim": ((-1, 4), (1, 4), 0, False, True),
    "output_dynamic_dim_needs_minus_one": ((-1, 2), (1, 2), 0, True, False),
    "output_dynamic_dim_with_minus_one": ((-1, 2), (-1, 2), 0, True, True),
    "config_minus_one_on_fixed_graph_dim": ((1, 4), (1, -1), 0, False, False),
}


@pytest.mark.parametrize("case", list(DIMS_CASES), ids=list(DIMS_CASES))
def test_dims_follow_compare_dims_supported(backend_module: ModuleType, case: str) -> None:
    graph, dims, max_batch_size, exact, accepted = DIMS_CASES[case]
    if accepted:
        backend_module.compare_dims("m", "T", graph, dims, max_batch_size, exact=exact)
    else:
        with pytest.raises(ValueError, match="tensor 'T'"):
            backend_module.compare_dims("m", "T", graph, dims, max_batch_size, exact=exact)


def info(backend_module: ModuleType, name: str, dims: tuple[int, ...], data_type: str = "TYPE_FP32") -> Any:
    return backend_module.TensorInfo(name, data_type, dims)


def test_missing_graph_input_is_named(backend_module: ModuleType) -> None:
    inputs = {name: info(backend_module, name, (-1, 4)) for name in ("A", "B")}
    config = {"max_batch_size": 8, "input": [{"name": "A", "data_type": "TYPE_FP32", "dims": [4]}]}
    with pytest.raises(
        ValueError, match=r"expects 1 inputs, model provides 2 .*missing from the configuration: B"
    ):
        backend_module.validate_inputs("m", config, inputs, {})


def test_optional_input_may_be_an_overridable_initializer(backend_module: ModuleType) -> None:
    inputs = {"X": info(backend_module, "X", (1, 4))}
    initializers = {"W": info(backend_module, "W", (4, 2))}
    config = {
        "max_batch_size": 0,
        "input": [
            {"name": "X", "data_type": "TYPE_FP32", "dims": [1, 4]},
            {"name": "W", "data_type": "TYPE_FP32", "dims": [4, 2], "optional": True},
        ],
    }
    backend_module.validate_inputs("m", config, inputs, initializers)
    config["max_batch_size"] = 8
    config["input"] = config["input"][::-1]  # W first: its rule fires before X's shape is checked
    with pytest.raises(
        ValueError, match="optional input 'W' is not supported for models that support batching"
    ):
        backend_module.validate_inputs("m", config, inputs, initializers)


def test_scalar_graph_tensor_takes_only_ones(backend_module: ModuleType) -> None:
    outputs = {"S": info(backend_module, "S", ())}
    backend_module.validate_outputs(
        "m", {"output": [{"name": "S", "data_type": "TYPE_FP32", "dims": [1]}]}, outputs
    )
    with pytest.raises(ValueError, match="scalar tensor 'S'"):
        backend_module.validate_outputs(
            "m", {"output": [{"name": "S", "data_type": "TYPE_FP32", "dims": [2]}]}, outputs
        )


def test_session_options_take_the_real_backends_parameter_keys(backend_module: ModuleType) -> None:
    options = backend_module.session_options(
        {
            "parameters": {
                "intra_op_thread_count": {"string_value": "3"},
                "inter_op_thread_count": {"string_value": "2"},
                "execution_mode": {"string_value": "1"},
                "enable_mem_arena": {"string_value": "false"},
            },
            "optimization": {"graph": {"level": 2}},
        }
    )
    assert (options.intra_op_num_threads, options.inter_op_num_threads) == (3, 2)
    assert options.execution_mode.name == "ORT_PARALLEL"
    assert options.enable_cpu_mem_arena is False
    assert options.graph_optimization_level.name == "ORT_DISABLE_ALL"


@pytest.mark.parametrize(
    ("key", "value", "words"),
    [
        ("execution_mode", "2", "execution_mode are 0 or 1"),
        ("intra_op_thread_count", "many", "'intra_op_thread_count'"),
        ("enable_mem_pattern", "maybe", "'enable_mem_pattern'"),
    ],
    ids=["execution_mode_out_of_range", "thread_count_not_a_number", "bool_not_a_bool"],
)
def test_bad_parameter_values_fail_the_load(
    backend_module: ModuleType, key: str, value: str, words: str
) -> None:
    with pytest.raises(ValueError, match=words):
        backend_module.session_options({"parameters": {key: {"string_value": value}}})


def test_completion_of_a_batchable_graph(backend_module: ModuleType) -> None:
    completion = backend_module.plan_completion(
        {"name": "m", "max_batch_size": 0, "input": [], "output": []},
        {"X": info(backend_module, "X", (-1, 4))},
        {"Y": info(backend_module, "Y", (-1, 2))},
    )
    assert completion.max_batch_size == 4
    assert completion.dynamic_batching is True
    assert completion.inputs == [{"name": "X", "data_type": "TYPE_FP32", "dims": [4]}]
    assert completion.outputs == [{"name": "Y", "data_type": "TYPE_FP32", "dims": [2]}]


def test_completion_keeps_stated_max_batch_size_and_scheduler(backend_module: ModuleType) -> None:
    completion = backend_module.plan_completion(
        {"name": "m", "max_batch_size": 2, "sequence_batching": {}, "input": [], "output": []},
        {"X": info(backend_module, "X", (-1,))},
        {"Y": info(backend_module, "Y", (-1,))},
    )
    assert completion.max_batch_size is None
    assert completion.dynamic_batching is False
    assert completion.inputs == [
        {"name": "X", "data_type": "TYPE_FP32", "dims": [1], "reshape": {"shape": []}}
    ]


def test_completion_refuses_batching_a_fixed_shape_graph(backend_module: ModuleType) -> None:
    with pytest.raises(ValueError, match="model does not support batching while non-zero max_batch_size"):
        backend_module.plan_completion(
            {"name": "m", "max_batch_size": 8, "input": [], "output": []},
            {"X": info(backend_module, "X", (1, 4))},
            {"Y": info(backend_module, "Y", (1, 2))},
        )
