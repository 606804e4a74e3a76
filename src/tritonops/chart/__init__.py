"""The chart as data: layer the values (chart defaults <- base <- environment <- overrides), render
with Helm's engine into typed manifests, and gate the result.

    environments      the deployment environments: their values files, namespaces and release names
    render            values layering and Helm rendering; `tritonops render`
    gates             the static gates (helm lint, schemas, custom resources, policy); `tritonops lint`
    custom_resources  offline checks for custom resources no OpenAPI schema covers
    summary           what a rendering would deploy, as facts and as text; `tritonops summary`
    values_docs       the chart README's values table from values.yaml's comments; `tritonops docs`

Imports only `tritonops.errors` (tests/test_layering.py holds every layer to its table).
"""
