"""The SAM template keeps every gateway-generated error inside the published contract, and
the release artifacts match the architecture that `sam deploy` will give the functions."""

import json
import re
import shlex
import tomllib
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
CONTRACT_STATUSES = {"400", "404", "429", "500"}
# Every response type API Gateway (REST) can generate itself.
ALL_TYPES = {
    "ACCESS_DENIED", "API_CONFIGURATION_ERROR", "AUTHORIZER_CONFIGURATION_ERROR", "AUTHORIZER_FAILURE",
    "BAD_REQUEST_PARAMETERS", "BAD_REQUEST_BODY", "DEFAULT_4XX", "DEFAULT_5XX", "EXPIRED_TOKEN",
    "INTEGRATION_FAILURE", "INTEGRATION_TIMEOUT", "INVALID_API_KEY", "INVALID_SIGNATURE",
    "MISSING_AUTHENTICATION_TOKEN", "QUOTA_EXCEEDED", "REQUEST_TOO_LARGE", "RESOURCE_NOT_FOUND",
    "THROTTLED", "UNAUTHORIZED", "UNSUPPORTED_MEDIA_TYPE", "WAF_FILTERED",
}


class CfnLoader(yaml.SafeLoader):
    """YAML loader that reads CloudFormation's short-form tags (!Ref, !Sub, …) as plain values."""


CfnLoader.add_multi_constructor("!", lambda loader, suffix, node: None)


class CfnTagLoader(yaml.SafeLoader):
    """YAML loader that keeps CloudFormation's short-form tags in their long form
    (`!Ref X` → `{"Ref": "X"}`, `!Sub s` → `{"Fn::Sub": s}`, `!GetAtt A.B` → `{"Fn::GetAtt": [A, B]}`)."""


def _long_form(loader, suffix, node):
    if isinstance(node, yaml.ScalarNode):
        value = loader.construct_scalar(node)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)
    if suffix == "Ref":
        return {"Ref": value}
    if suffix == "GetAtt" and isinstance(value, str):
        value = value.split(".", 1)
    return {f"Fn::{suffix}": value}


CfnTagLoader.add_multi_constructor("!", _long_form)


def load_template(path=ROOT / "template.yaml"):
    return yaml.load(path.read_text(), Loader=CfnTagLoader)


def gateway_responses():
    template = yaml.load((ROOT / "template.yaml").read_text(), Loader=CfnLoader)
    return template["Resources"]["Api"]["Properties"]["GatewayResponses"]


def test_every_gateway_response_type_is_mapped():
    assert set(gateway_responses()) == ALL_TYPES


def test_every_gateway_error_is_a_contract_status_with_a_standard_body():
    expected_texts = {
        "404": "Not found.",
        "429": "Too many requests. Retry after the time given in Retry-After.",
        "500": "An unexpected error occurred.",
    }
    for name, response in gateway_responses().items():
        status = response["StatusCode"]
        assert status in CONTRACT_STATUSES, name
        body = json.loads(response["ResponseTemplates"]["application/json"])
        assert list(body) == ["error"] and body["error"], name
        if status in expected_texts:
            assert body["error"] == expected_texts[status], name
        headers = response["ResponseParameters"]["Headers"]
        assert headers["Content-Type"] == "'application/json'", name
        assert headers["Cache-Control"] == "'no-store'", name
        assert headers["X-Content-Type-Options"] == "'nosniff'", name
        if status == "429":
            assert int(headers["Retry-After"].strip("'")) >= 1, name
    statuses = {name: r["StatusCode"] for name, r in gateway_responses().items()}
    assert statuses["DEFAULT_5XX"] == statuses["INTEGRATION_FAILURE"] == statuses["INTEGRATION_TIMEOUT"] == "500"
    assert statuses["THROTTLED"] == "429" and statuses["DEFAULT_4XX"] == "400"
    assert statuses["MISSING_AUTHENTICATION_TOKEN"] == statuses["RESOURCE_NOT_FOUND"] == "404"


# ---------------------------------------------------------------- Architecture

# ELF e_machine of each Lambda architecture.
ELF_MACHINE = {"arm64": 0xB7, "x86_64": 0x3E}
BUILD_DIR = ROOT / ".aws-sam" / "build"


def samconfig_overrides(command):
    """The parameter overrides SAM CLI gives `command` from samconfig.toml: the command's own
    section replaces the global one (samcli.lib.config.samconfig.SamConfig.get_all)."""
    config = tomllib.loads((ROOT / "samconfig.toml").read_text())["default"]
    parameters = dict(config.get("global", {}).get("parameters", {}))
    parameters.update(config.get(command, {}).get("parameters", {}))
    overrides = {}
    for item in shlex.split(parameters.get("parameter_overrides", "")):
        key, _, value = item.partition("=")
        overrides[key] = value
    return overrides


def deployed_architecture(template, function):
    """The architecture `sam deploy` gives `function`: its own or the global Architectures,
    with Ref resolved by samconfig's deploy overrides or else the parameter default."""
    properties = template["Resources"][function]["Properties"]
    architectures = properties.get("Architectures") or template["Globals"]["Function"].get("Architectures", ["x86_64"])
    (architecture,) = architectures
    if isinstance(architecture, dict):
        parameter = architecture["Ref"]
        architecture = samconfig_overrides("deploy").get(parameter, template["Parameters"][parameter]["Default"])
    return architecture


def functions(template):
    return sorted(name for name, r in template["Resources"].items() if r["Type"] == "AWS::Serverless::Function")


def test_build_deploy_and_sync_read_one_architecture():
    template = load_template()
    allowed = template["Parameters"]["Architecture"]["AllowedValues"]
    values = {command: samconfig_overrides(command).get("Architecture") for command in ("build", "deploy", "sync")}
    assert len(set(values.values())) == 1, values
    assert values["build"] in allowed, values
    assert template["Globals"]["Function"]["Architectures"] == [{"Ref": "Architecture"}]


def test_release_bootstraps_match_the_architecture_sam_deploy_gives_the_functions():
    built_template = BUILD_DIR / "template.yaml"
    if not built_template.exists():
        pytest.fail(
            "No release build in .aws-sam/build, so the bootstraps sam deploy would upload "
            "cannot be checked: run `make release` (`make test` does when none exists)."
        )
    built = load_template(built_template)
    assert functions(built) == functions(load_template()), "stale build: run `make release`"
    for function in functions(built):
        architecture = deployed_architecture(built, function)
        bootstrap = BUILD_DIR / built["Resources"][function]["Properties"]["CodeUri"] / "bootstrap"
        header = bootstrap.read_bytes()[:20]
        assert header[:4] == b"\x7fELF", f"{bootstrap} is not an ELF executable"
        assert header[5] == 1, f"{bootstrap} is not little-endian"
        machine = int.from_bytes(header[18:20], "little")
        assert machine == ELF_MACHINE[architecture], (
            f"{function}: bootstrap is {next((a for a, m in ELF_MACHINE.items() if m == machine), hex(machine))}, "
            f"sam deploy would give the function {architecture}: run `make release` "
            f"(or `make release ARCH={architecture}`)"
        )
