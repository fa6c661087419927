"""Checks against botocore's shipped MTurk service model, for the fake and for every test client.

Two layers:

* `stubber_errors` is exactly what `botocore.stub.Stubber` runs on requests and
  responses (`botocore.validate.validate_parameters`: required members, types, `min`);
* `constraint_errors` adds the model's constraints that botocore leaves to the server
  (`pattern`, `max` lengths and values, `enum`), which real MTurk enforces: a worker id
  that does not match `^A[A-Z0-9]+$` is refused with `ParameterValidationError`.

`attach_validator` registers both on a boto3 `mturk` client (before every request,
after every response), so a test fails the moment Argus sends something MTurk would refuse or
the fake answers something MTurk never would.
"""

from __future__ import annotations

import datetime as dt
import re
from functools import lru_cache

from botocore.exceptions import ParamValidationError
from botocore.validate import validate_parameters


@lru_cache(maxsize=1)
def service_model():
    import botocore.session

    return botocore.session.get_session().get_service_model("mturk")


def operation(name: str):
    return service_model().operation_model(name)


def stubber_errors(params: dict, shape) -> list[str]:
    """botocore's own validation (what Stubber applies to expected params and responses)."""
    if shape is None:
        return []
    try:
        validate_parameters(params, shape)
    except ParamValidationError as exc:
        return [str(exc)]
    return []


def constraint_violations(value, shape, path: str = "") -> list[tuple[str, object, str]]:
    """Model constraints botocore does not check client-side (pattern, max, enum), recursively:
    a list of (path, offending value, why)."""
    out: list[tuple[str, object, str]] = []
    if shape is None or value is None:
        return out
    meta = shape.metadata
    kind = shape.type_name
    if kind == "structure":
        if not isinstance(value, dict):
            return [(path or "params", value, "expected a structure")]
        for key, sub in value.items():
            if key in shape.members:
                out += constraint_violations(sub, shape.members[key], f"{path}.{key}" if path else key)
        return out
    if kind == "list":
        if "max" in meta and len(value) > meta["max"]:
            out.append((path, value, f"{len(value)} items, the model allows at most {meta['max']}"))
        for i, item in enumerate(value):
            out += constraint_violations(item, shape.member, f"{path}[{i}]")
        return out
    if kind == "string":
        text = str(value)
        if "max" in meta and len(text) > meta["max"]:
            out.append((path, value, f"{len(text)} characters, the model allows at most {meta['max']}"))
        if "min" in meta and len(text) < meta["min"]:
            out.append((path, value, f"{len(text)} characters, the model needs at least {meta['min']}"))
        if "pattern" in meta and not re.search(meta["pattern"], text):
            out.append((path, value, f"does not match the model's pattern {meta['pattern']}"))
        if shape.enum and text not in shape.enum:
            out.append((path, value, f"is not one of {shape.enum}"))
        return out
    if kind in ("integer", "long"):
        if "max" in meta and value > meta["max"]:
            out.append((path, value, f"is above the model's maximum {meta['max']}"))
        if "min" in meta and value < meta["min"]:
            out.append((path, value, f"is below the model's minimum {meta['min']}"))
    return out


def constraint_errors(value, shape) -> list[str]:
    return [f"{path}: {v!r} {why}" for path, v, why in constraint_violations(value, shape)]


def request_errors(op_name: str, params: dict) -> list[str]:
    op = operation(op_name)
    return stubber_errors(params, op.input_shape) + constraint_errors(params, op.input_shape)


def response_errors(op_name: str, response: dict) -> list[str]:
    op = operation(op_name)
    body = {k: v for k, v in response.items() if k != "ResponseMetadata"}
    return stubber_errors(body, op.output_shape)


class ModelViolation(AssertionError):
    pass


class Validator:
    """Validates every call of one boto3 client; `calls` counts the validated requests."""

    def __init__(self):
        self.calls: list[str] = []
        self.responses = 0

    def before(self, params, model, **kwargs):
        errors = request_errors(model.name, params)
        if errors:
            raise ModelViolation(f"{model.name} request breaks the MTurk service model: " + "; ".join(errors))
        self.calls.append(model.name)

    def after(self, http_response, parsed, model, **kwargs):
        if http_response is None or http_response.status_code >= 300:
            return  # errors are parsed against the error shapes by botocore itself
        errors = response_errors(model.name, parsed)
        if errors:
            raise ModelViolation(f"{model.name} response breaks the MTurk service model: " + "; ".join(errors))
        self.responses += 1


def attach_validator(boto_client) -> Validator:
    """Validate every request and response of `boto_client` against the service model."""
    v = Validator()
    boto_client.meta.events.register("before-parameter-build.mturk.*", v.before)
    boto_client.meta.events.register("after-call.mturk.*", v.after)
    return v


def timestamp(value) -> float:
    """A request timestamp (datetime, ISO string or epoch number) as epoch seconds."""
    if isinstance(value, dt.datetime):
        return value.timestamp()
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return dt.datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    return float(value)
