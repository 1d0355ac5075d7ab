"""The state check: a persistent local cloud starts only on DynamoDB data and keys of the same generation."""

from __future__ import annotations

from pathlib import Path

import pytest

from localcloud.stored_state import InconsistentState, StoredState

pytestmark = pytest.mark.unit


def _data(state: StoredState) -> None:
    state.dynamodb_dir.mkdir(parents=True, exist_ok=True)
    (state.dynamodb_dir / "shared-local-instance.db").write_bytes(b"tables")


def _keys(state: StoredState) -> None:
    state.moto_dir.mkdir(parents=True, exist_ok=True)
    (state.moto_dir / "snapshot.pickle").write_bytes(b"keys")


def test_a_new_state_dir_gets_one_generation_in_both_parts(tmp_path: Path) -> None:
    state = StoredState(tmp_path)
    generation = state.check()
    assert len(generation) == 32
    assert (state.dynamodb_dir / "GENERATION").read_text() == generation
    assert (state.moto_dir / "GENERATION").read_text() == generation


def test_both_parts_of_one_generation_pass(tmp_path: Path) -> None:
    state = StoredState(tmp_path)
    generation = state.check()
    _data(state), _keys(state)
    assert state.check() == generation


def test_data_without_saved_keys_is_refused_with_the_way_to_start_over(tmp_path: Path) -> None:
    state = StoredState(tmp_path)
    state.check()
    _data(state)
    with pytest.raises(InconsistentState, match=r"holds DynamoDB data, but there is no saved KMS.*--fresh"):
        state.check()


def test_data_from_before_persistent_state_is_refused(tmp_path: Path) -> None:
    # A state dir from before this change: DynamoDB's file and nothing else
    state = StoredState(tmp_path)
    _data(state)
    with pytest.raises(InconsistentState, match="predates persistent local state"):
        state.check()


def test_keys_without_data_are_refused(tmp_path: Path) -> None:
    state = StoredState(tmp_path)
    state.check()
    _keys(state)
    with pytest.raises(InconsistentState, match="holds no DynamoDB data for them"):
        state.check()


def test_parts_of_different_generations_are_refused(tmp_path: Path) -> None:
    state = StoredState(tmp_path)
    state.check()
    _data(state), _keys(state)
    (state.moto_dir / "GENERATION").write_text("0" * 32)
    with pytest.raises(InconsistentState, match="come from different local clouds"):
        state.check()


def test_a_stack_record_round_trips_and_a_damaged_one_is_refused(tmp_path: Path) -> None:
    state = StoredState(tmp_path)
    assert state.stack_record("vaultpay-local") == {}
    state.write_stack_record("vaultpay-local", {"PiiKey": {"Type": "AWS::KMS::Key", "KeyId": "k"}})
    assert state.stack_record("vaultpay-local") == {"PiiKey": {"Type": "AWS::KMS::Key", "KeyId": "k"}}
    (state.stacks_dir / "vaultpay-local.json").write_text("{")
    with pytest.raises(InconsistentState, match="cannot be read"):
        state.stack_record("vaultpay-local")
