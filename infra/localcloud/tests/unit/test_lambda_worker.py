"""The Lambda worker's pure pieces: frames, AWS error documents, result marshalling, sys.path, the context."""

from __future__ import annotations

import json
import time
from decimal import Decimal
from pathlib import Path

import pytest

from localcloud.lambda_worker import (
    FRAME,
    LambdaContext,
    build_sys_path,
    decode_header,
    encode_frame,
    error_log_lines,
    fault_result,
    make_error,
    marshal,
    without_package_root,
)

pytestmark = pytest.mark.unit


class PaymentDeclined(Exception):
    pass


def test_a_frame_carries_its_header_and_announces_the_raw_body_length() -> None:
    frame = encode_frame({"id": "r-1"}, b'{"amount": 5}')

    head_len, body_len = FRAME.unpack(frame[: FRAME.size])

    assert body_len == len(b'{"amount": 5}')
    assert decode_header(frame[FRAME.size : FRAME.size + head_len]) == {"id": "r-1"}


def test_an_exception_is_reported_under_its_class_name_with_its_message() -> None:
    try:
        raise PaymentDeclined("card expired")
    except PaymentDeclined as exc:
        error = fault_result(exc, "req-1")

    assert error["errorType"] == "PaymentDeclined"
    assert error["errorMessage"] == "card expired"
    assert error["requestId"] == "req-1"
    assert any("raise PaymentDeclined" in frame for frame in error["stackTrace"])


def test_an_error_document_has_the_fields_of_the_aws_runtime() -> None:
    assert make_error("m", "Runtime.MarshalError", []) == {
        "errorMessage": "m",
        "errorType": "Runtime.MarshalError",
        "requestId": "",
        "stackTrace": [],
    }


def test_an_error_is_logged_as_aws_does_type_message_then_traceback() -> None:
    error = make_error("declined", "PaymentDeclined", ['  File "app.py", line 3, in handler\n    raise X\n'])

    assert error_log_lines(error) == [
        "[ERROR] PaymentDeclined: declined",
        "Traceback (most recent call last):",
        '  File "app.py", line 3, in handler',
        "    raise X",
    ]


def test_decimals_are_written_as_exact_json_numbers() -> None:
    # Given what DynamoDB returns for money and big counters
    result = {"amount": Decimal("12.50"), "big": Decimal("12345678901234567890.123"), "n": [Decimal("3")]}

    # When
    text = marshal(result)

    # Then: no float rounding, and still JSON
    assert text == b'{"amount": 12.50, "big": 12345678901234567890.123, "n": [3]}'
    assert json.loads(text)["n"] == [3]


def test_results_keep_unicode_as_utf8_like_the_python313_runtime() -> None:
    assert marshal({"name": "Zoë"}) == '{"name": "Zoë"}'.encode()


def test_a_string_that_looks_like_a_decimal_tag_stays_a_string() -> None:
    assert json.loads(marshal({"s": "\x00decimal:12"})) == {"s": "\x00decimal:12"}


def test_unserialisable_results_raise_so_the_worker_can_answer_marshal_error() -> None:
    with pytest.raises(TypeError, match="set is not JSON serializable"):
        marshal({"tags": {"a"}})


def test_sys_path_is_code_then_later_layers_first_then_the_interpreter(tmp_path: Path) -> None:
    # Given two layers, the second with a pip-style site-packages
    first, second = tmp_path / "first", tmp_path / "second"
    site = second / "python" / "lib" / "python3.13" / "site-packages"
    site.mkdir(parents=True)

    # When
    paths = build_sys_path(
        "/code", [str(first), str(second)], "python3.13", ["", "/code", "/stdlib", "/site"]
    )

    # Then: AWS unpacks layers in order into /opt, so the later layer wins
    assert paths == [
        "/code",
        str(site),
        str(second / "python"),
        str(second),
        str(first / "python"),
        str(first),
        "/stdlib",
        "/site",
    ]


def test_the_context_reads_the_function_from_the_environment_and_counts_down(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("AWS_LAMBDA_FUNCTION_NAME", "pay")
    monkeypatch.setenv("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "256")
    deadline = int(time.time() * 1000) + 3000

    context = LambdaContext("r-1", deadline, "arn:fn", client_context={"custom": {"k": "v"}, "client": {}})

    assert context.function_name == "pay"
    assert context.memory_limit_in_mb == "256"  # a string, as the AWS runtime gives it
    assert 2000 < context.get_remaining_time_in_millis() <= 3000
    assert context.client_context is not None and context.client_context.custom == {"k": "v"}
    assert context.identity.cognito_identity_id is None


def test_remaining_time_never_goes_negative() -> None:
    assert LambdaContext("r", 0, "arn").get_remaining_time_in_millis() == 0


def test_the_local_clouds_own_directory_is_taken_off_a_functions_sys_path(tmp_path: Path) -> None:
    # Given the sys.path of a worker whose package comes from a src layout's editable install
    src = tmp_path / "localcloud" / "src"
    worker = src / "localcloud" / "lambda_worker.py"
    path = ["/code", "", str(src), "/stdlib", str(src) + "/", "/site"]

    # When the package's directory is hidden from the function
    visible = without_package_root(path, str(worker))

    # Then the function's code, the working directory and the interpreter's own entries stay, in order
    assert visible == ["/code", "", "/stdlib", "/site"]
