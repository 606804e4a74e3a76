"""`--set` reads values as Helm's strvals does (lists in braces, null removes a key), except that
`key={}` is the empty list: Helm reads it as [""] (helm/helm#5200, #31061), which no list of this
chart accepts."""

from __future__ import annotations

from typing import Any

import pytest

from tritonops import errors
from tritonops.chart import render


@pytest.mark.parametrize(
    ("assignment", "expected"),
    [
        ("server.loadModels={}", {"server": {"loadModels": []}}),
        ("server.loadModels={a}", {"server": {"loadModels": ["a"]}}),
        ("server.loadModels={a,b}", {"server": {"loadModels": ["a", "b"]}}),
        ("a={},b={x},c=1", {"a": [], "b": ["x"], "c": 1}),
        ("lists[0]={}", {"lists": [[]]}),
        # Only a `{}` value is a list: inside a value, or escaped, the braces are text, as in Helm.
        ("a=x{}y", {"a": "x{}y"}),
        ("a=\\{}", {"a": "{}"}),
        # Helm's other ways of writing [""] keep Helm's meaning.
        ("a[0]=", {"a": [""]}),
        ("a={,}", {"a": ["", ""]}),
        ("a=null", {"a": None}),
    ],
    ids=[
        "empty-list",
        "one-item",
        "two-items",
        "several-pairs",
        "empty-list-in-a-list",
        "braces-inside-a-value",
        "escaped-braces",
        "index-with-empty-value",
        "two-empty-strings",
        "null-removes",
    ],
)
def test_set_parses_like_helm_with_braces_as_the_empty_list(assignment: str, expected: dict[str, Any]):
    assert render.parse_set_values([assignment]) == expected


def test_an_unterminated_list_names_the_assignment():
    with pytest.raises(errors.ValuesError, match=r"--set 'server.loadModels=\{a': .*'\}'"):
        render.parse_set_values(["server.loadModels={a"])


@pytest.mark.parametrize("env", ["local", "dev", "prod"])
def test_empty_load_models_passes_the_schema_and_renders_no_load_model(env: str):
    item = render.render(env, set_values=["server.loadModels={}"])
    assert item.values["server"]["loadModels"] == []
    container = item.one("Deployment")["spec"]["template"]["spec"]["containers"][0]
    assert not [arg for arg in container["args"] if arg.startswith("--load-model")]
    readiness = container["readinessProbe"]["exec"]["command"]
    assert not [arg for arg in readiness if arg.startswith("--model=")]
    # The default still loads the platform's canary model: the test above can fail.
    default = render.render(env).one("Deployment")["spec"]["template"]["spec"]["containers"][0]
    assert "--load-model=linear" in default["args"]
