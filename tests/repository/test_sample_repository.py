"""The sample repository is built by code, deterministically, and is valid."""

from __future__ import annotations

from tritonops.repository import checksums, example_repository, validator


def test_committed_sample_matches_a_fresh_build(tmp_path):
    fresh = tmp_path / "sample"
    example_repository.build(fresh)
    assert example_repository.differences(fresh, example_repository.DEFAULT_OUTPUT) == []


def test_sample_validates_clean_and_its_manifests_verify():
    assert validator.validate(example_repository.DEFAULT_OUTPUT).findings == ()
    assert all(result.ok for result in checksums.verify_manifests(example_repository.DEFAULT_OUTPUT))


def test_committed_state_pins_what_the_config_pins():
    import json
    import runpy

    state = json.loads((example_repository.DEFAULT_OUTPUT / "current.json").read_text())
    assert state["models"]["linear"]["version"] == 1
    committed_state = runpy.run_path(
        str(example_repository.environments.CHART_DIR / "files" / "committed_state.py")
    )
    assert committed_state["read"](str(example_repository.DEFAULT_OUTPUT / "current.json")) == {"linear": 1}
    committed_state["check_repository"](str(example_repository.DEFAULT_OUTPUT), {"linear": 1})
    digest = checksums.version_digest(example_repository.DEFAULT_OUTPUT / "linear" / "1")
    assert state["models"]["linear"]["digest"] == digest


def test_writing_the_sample_never_deletes_a_file_it_did_not_make(tmp_path, capsys):
    output = tmp_path / "model-repository"
    assert example_repository.main([str(output)]) == 0
    mine = output / "resnet50" / "config.pbtxt"
    mine.parent.mkdir()
    mine.write_text('name: "resnet50"\n')
    before = {path: path.read_bytes() for path in output.rglob("*") if path.is_file()}

    assert example_repository.main([str(output)]) == 2
    assert "resnet50" in capsys.readouterr().err
    assert {path: path.read_bytes() for path in output.rglob("*") if path.is_file()} == before

    mine.unlink()
    mine.parent.rmdir()
    (output / "linear" / "config.pbtxt").write_text("edited\n")  # its own file: rewritten
    assert example_repository.main([str(output)]) == 0
    assert example_repository.differences(output, example_repository.DEFAULT_OUTPUT) == []
