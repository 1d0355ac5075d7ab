"""Template reading and intrinsic resolution: the local cloud provisions what template.yaml says."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from localcloud.provision import CLOUD_ONLY, LOCAL_NOOP, PROVISIONED, is_supported
from localcloud.template import Resolver, TemplateError, load_template, samconfig_parameters, translate

pytestmark = pytest.mark.unit
ROOT = Path(__file__).resolve().parents[3]


def _resolver(template: dict[str, Any], params: dict[str, str] | None = None) -> Resolver:
    return Resolver(
        template,
        params or {},
        ref=lambda logical: f"phys-{logical}",
        get_att=lambda logical, attr: f"{logical}.{attr}",
    )


def test_every_resource_type_of_the_project_template_is_provisioned_or_listed_cloud_only() -> None:
    # Given the project's SAM template, translated as CloudFormation would
    translated = translate(load_template(ROOT / "template.yaml"), ROOT, {})
    # Then no resource type is unknown to the local cloud: adding one forces a decision here
    types = {r["Type"] for r in translated.template["Resources"].values()}
    unknown = sorted(t for t in types if not is_supported(t))
    assert not unknown, f"not handled locally: {unknown}"


def test_the_three_resource_lists_do_not_overlap() -> None:
    assert not (PROVISIONED & LOCAL_NOOP or PROVISIONED & CLOUD_ONLY or LOCAL_NOOP & CLOUD_ONLY)


def test_short_form_tags_load_as_intrinsics(tmp_path: Path) -> None:
    path = tmp_path / "t.yaml"
    path.write_text(
        "Resources:\n  A:\n    Type: X\n    Properties:\n"
        "      R: !Ref B\n      G: !GetAtt B.Arn\n      S: !Sub '${B}-x'\n      J: !Join [',', [a, b]]\n"
    )
    props = load_template(path)["Resources"]["A"]["Properties"]
    assert props == {
        "R": {"Ref": "B"},
        "G": {"Fn::GetAtt": ["B", "Arn"]},
        "S": {"Fn::Sub": "${B}-x"},
        "J": {"Fn::Join": [",", ["a", "b"]]},
    }


def test_intrinsics_resolve_parameters_resources_and_conditions() -> None:
    template = {
        "Parameters": {"Stage": {"Type": "String", "Default": "local"}},
        "Conditions": {"IsProd": {"Fn::Equals": [{"Ref": "Stage"}, "prod"]}},
        "Mappings": {"Limits": {"local": {"Rate": 50}}},
        "Resources": {},
    }
    r = _resolver(template)
    assert r.resolve({"Ref": "Stage"}) == "local"
    assert r.resolve({"Ref": "Table"}) == "phys-Table"
    assert r.resolve({"Fn::Sub": "${AWS::Region}/${Table}/${Fn.Arn}/${!Literal}"}) == (
        "us-east-1/phys-Table/Fn.Arn/${Literal}"
    )
    assert r.resolve({"Fn::Sub": ["${x}-${Stage}", {"x": {"Ref": "T"}}]}) == "phys-T-local"
    assert r.resolve({"Fn::If": ["IsProd", "big", "small"]}) == "small"
    assert r.resolve({"Fn::FindInMap": ["Limits", {"Ref": "Stage"}, "Rate"]}) == 50
    assert r.resolve({"Fn::Select": [1, {"Fn::Split": [",", "a,b,c"]}]}) == "b"
    assert r.resolve({"k": {"Ref": "AWS::NoValue"}, "j": 1}) == {"j": 1}


def test_parameter_overrides_beat_defaults() -> None:
    template = {"Parameters": {"Stage": {"Type": "String", "Default": "local"}}, "Resources": {}}
    assert _resolver(template, {"Stage": "prod"}).resolve({"Ref": "Stage"}) == "prod"


def test_an_unsupported_intrinsic_is_refused_by_name() -> None:
    with pytest.raises(TemplateError, match="Fn::ImportValue"):
        _resolver({"Resources": {}}).resolve({"Fn::ImportValue": "x"})


def test_samconfig_local_parameter_overrides_are_read(tmp_path: Path) -> None:
    path = tmp_path / "samconfig.toml"
    path.write_text(
        'version = 0.1\n[local.deploy.parameters]\nparameter_overrides = "Stage=local LogLevel=DEBUG"\n'
    )
    assert samconfig_parameters(path, "local") == {"Stage": "local", "LogLevel": "DEBUG"}


def test_local_code_paths_survive_the_sam_transform() -> None:
    fixture = ROOT / "tests" / "fixtures" / "localcloud" / "template.yaml"
    translated = translate(load_template(fixture), fixture.parent, {})
    assert translated.code_dirs["EchoFunction"] == (fixture.parent / "functions" / "echo").resolve()
    code = translated.template["Resources"]["EchoFunction"]["Properties"]["Code"]
    assert code["S3Key"] == "EchoFunction"


@pytest.mark.parametrize(
    ("given", "name"),
    [
        ("pay", "pay"),
        ("pay:live", "pay"),
        ("000000000000:function:pay", "pay"),
        ("000000000000:function:pay:3", "pay"),
        ("arn:aws:lambda:us-east-1:000000000000:function:pay", "pay"),
        ("arn:aws:lambda:us-east-1:000000000000:function:pay:$LATEST", "pay"),
    ],
)
def test_function_names_are_read_from_names_and_arns(given: str, name: str) -> None:
    from localcloud.spec import function_name_from

    assert function_name_from(given) == name
