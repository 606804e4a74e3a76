"""Every value is documented where it is defined, and the README table is generated from it."""

from __future__ import annotations

from tritonops.chart import values_docs


def test_every_key_in_values_yaml_is_documented():
    documented, undocumented = values_docs.parse()
    assert undocumented == []
    assert len(documented) > 100


def test_readme_values_table_is_current(run_cli):
    result = run_cli("docs", "--check")
    assert result.returncode == 0, result.stderr


def test_undocumented_leaf_is_detected(tmp_path):
    values = tmp_path / "values.yaml"
    values.write_text(
        "# -- documented\na: 1\nb:\n  # -- documented child\n  c: 2\n  d: 3\n# -- a documented map covers its children\ne:\n  f: 1\n"
    )
    documented, undocumented = values_docs.parse(values)
    assert [doc.path for doc in documented] == ["a", "b.c", "e"]
    assert undocumented == ["b.d"]


def test_default_override_and_continuation_lines(tmp_path):
    values = tmp_path / "values.yaml"
    values.write_text('# -- first line\n# second line\n# @default -- computed\nkey: ""\n')
    (doc,), _ = values_docs.parse(values)
    assert doc.description == "first line second line"
    assert doc.default == "computed"
