"""What both resources share: the base model, validation rules, durations, references, conditions.

Every constraint is written once, on the pydantic model, and reaches the API server through the
generated CRD (:mod:`ajan.models.crd`): ``Field`` bounds become OpenAPI ``minimum``/``maxLength``/...,
and a :class:`Rule` is both a CEL ``x-kubernetes-validations`` entry and a Python check with the same
message. The operator therefore refuses exactly what ``kubectl apply`` is refused, in the same words.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Annotated, Any, ClassVar, Final, Literal, Self

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    GetCoreSchemaHandler,
    GetJsonSchemaHandler,
    StrictFloat,
    StrictInt,
    StrictStr,
    StringConstraints,
    ValidationError,
    model_validator,
)
from pydantic.alias_generators import to_camel
from pydantic.config import JsonDict
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import CoreSchema, core_schema

GROUP: Final = "aiops.ajan.dev"
VERSION: Final = "v1alpha1"
API_VERSION: Final = f"{GROUP}/{VERSION}"

VALIDATIONS_KEY: Final = "x-kubernetes-validations"

# --- validation rules -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Rule:
    """A rule checked twice: by the API server as CEL, and by the model in Python.

    Used as ``Annotated`` metadata on a field (``check`` gets the field's value), or listed in a
    model's ``cel_rules`` (``check`` gets the model). Both sides report ``message``; ``explain`` may
    say more in Python (which name is duplicated). The server has no such counterpart: a CEL
    ``messageExpression`` that iterates or converts is refused for its unbounded cost estimate.

    Parameters
    ----------
    cel : str
        The CEL expression, ``self`` being the value (or object) it is attached to.
    message : str
        What is wrong, for a person: the API server prints it after the field's path.
    check : callable
        The same predicate in Python; ``False`` means invalid.
    explain : callable, optional
        The value to a more specific message, in Python only.
    """

    cel: str
    message: str
    check: Callable[[Any], bool]
    explain: Callable[[Any], str] | None = None

    def manifest(self) -> dict[str, str]:
        """The ``x-kubernetes-validations`` entry of this rule."""
        return {"rule": self.cel, "message": self.message}

    def validate(self, value: Any) -> Any:
        """Return ``value`` unchanged, or raise ``ValueError`` with the rule's message."""
        if not self.check(value):
            raise ValueError(self.explain(value) if self.explain is not None else self.message)
        return value

    def __get_pydantic_core_schema__(self, source: Any, handler: GetCoreSchemaHandler) -> CoreSchema:
        # After the type's own validation (bounds, items), so ``check`` sees a well-typed value.
        return core_schema.no_info_after_validator_function(self.validate, handler(source))

    def __get_pydantic_json_schema__(
        self, schema: CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        json_schema = handler(schema)
        json_schema.setdefault(VALIDATIONS_KEY, []).append(self.manifest())
        return json_schema


class KubeModel(BaseModel):
    """Base of every spec and status model: camelCase on the wire, snake_case in Python.

    Unknown fields are refused (``extra="forbid"``), as ``kubectl``'s strict field validation
    refuses them; field docstrings become the schema's descriptions (``kubectl explain``).
    Subclasses list their cross-field rules in ``cel_rules``.
    """

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
        use_attribute_docstrings=True,
    )

    cel_rules: ClassVar[tuple[Rule, ...]] = ()

    @model_validator(mode="after")
    def _check_cel_rules(self) -> Self:
        for rule in self.cel_rules:
            rule.validate(self)
        return self

    @classmethod
    def __get_pydantic_json_schema__(
        cls, schema: CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        json_schema = super().__get_pydantic_json_schema__(schema, handler)
        if cls.cel_rules:
            # The model's schema is a $ref to its definition: the rules belong on the definition.
            target = handler.resolve_ref_schema(json_schema)
            target.setdefault(VALIDATIONS_KEY, []).extend(rule.manifest() for rule in cls.cel_rules)
        return json_schema

    def to_kube(self) -> dict[str, Any]:
        """The JSON-ready dict to send to the API server: camelCase keys, unset optionals left out."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)


def section(factory: Callable[[], BaseModel], extra: JsonDict | None = None) -> Any:
    """A nested object that may be omitted: built from its defaults when it is.

    The CRD gets ``default: {}``, so the API server fills in the nested defaults too and the stored
    object is the same one the model builds; without it, an omitted section would stay absent.
    ``extra`` adds to the field's schema (e.g. :func:`immutable`).
    """
    return Field(default_factory=factory, json_schema_extra={"default": {}, **(extra or {})})


def immutable(field: str) -> JsonDict:
    """Schema extras refusing any change to ``field`` once the object exists (a CEL transition rule).

    Transition rules compare with the stored object, which a model alone cannot see: the
    operator never rewrites these fields, so there is no Python twin.
    """
    return {VALIDATIONS_KEY: [{"rule": "self == oldSelf", "message": f"{field} is immutable"}]}


# --- durations --------------------------------------------------------------------------------------

DURATION_PATTERN: Final = r"^([0-9]+(ms|s|m|h))+$"
_DURATION_PART: Final = re.compile(r"([0-9]+)(ms|s|m|h)")
_UNIT_SECONDS: Final = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
# Go's time.Duration (and so CEL's duration()) holds at most 2^63 - 1 ns, about 292 years.
MAX_DURATION_SECONDS: Final = (2**63 - 1) / 1e9


def parse_duration(text: str) -> timedelta:
    """Parse a duration such as ``30s``, ``5m``, ``1h30m`` or ``250ms``.

    The accepted syntax is ``DURATION_PATTERN``: one or more ``<digits><unit>`` parts, units
    ``ms``, ``s``, ``m``, ``h``. It is a subset of Go's ``time.ParseDuration``, so the API
    server's CEL ``duration()`` reads the same value.

    Parameters
    ----------
    text : str
        The duration.

    Returns
    -------
    datetime.timedelta

    Raises
    ------
    ValueError
        If ``text`` is not a duration in that syntax, or is longer than Go's ``time.Duration``
        can hold (about 292 years).

    Examples
    --------
    >>> parse_duration("1h30m")
    datetime.timedelta(seconds=5400)
    >>> parse_duration("250ms").total_seconds()
    0.25
    """
    if not re.fullmatch(DURATION_PATTERN, text):
        raise ValueError(f"invalid duration {text!r}: expected e.g. 30s, 5m, 1h30m or 250ms")
    seconds = sum(int(n) * _UNIT_SECONDS[unit] for n, unit in _DURATION_PART.findall(text))
    if seconds > MAX_DURATION_SECONDS:
        raise ValueError(f"invalid duration {text!r}: longer than Go's maximum, 2562047h")
    return timedelta(seconds=seconds)


def cel_is_duration(expression: str) -> str:
    """CEL that is true when ``expression`` is a duration string in ajan's syntax.

    A rule calling CEL's ``duration()`` checks this first: the API server runs CEL rules even when
    the field's ``pattern`` failed, and a failed conversion would add a second, cryptic error
    ("type conversion error from 'string' to 'google.protobuf.Duration'") beside the readable one.
    """
    return f"{expression}.matches('{DURATION_PATTERN}')"


def _is_positive_duration(text: str) -> bool:
    return parse_duration(text) > timedelta(0)


# Bounded so the API server can estimate the cost of CEL rules that read durations.
_DurationString = Annotated[StrictStr, StringConstraints(pattern=DURATION_PATTERN, max_length=32)]

Duration = _DurationString
"""A duration string, zero allowed (``0s`` turns a cooldown off)."""

PositiveDuration = Annotated[
    _DurationString,
    Rule(
        f"!{cel_is_duration('self')} || duration(self) > duration('0s')",
        "must be longer than 0s",
        _is_positive_duration,
    ),
]
"""A duration string longer than zero (an interval, a window, a step)."""


# --- names and references ---------------------------------------------------------------------------

DNS_LABEL_PATTERN: Final = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
DNS_SUBDOMAIN_PATTERN: Final = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"

MetricName = Annotated[StrictStr, StringConstraints(pattern=DNS_LABEL_PATTERN, min_length=1, max_length=63)]
"""A metric's name: lower-case letters, digits and '-', like a DNS label (at most 63 characters)."""

ObjectName = Annotated[
    StrictStr, StringConstraints(pattern=DNS_SUBDOMAIN_PATTERN, min_length=1, max_length=253)
]
"""The name of a Kubernetes object (a DNS subdomain: at most 253 characters)."""

Fraction = Annotated[StrictFloat, Field(ge=0.0, le=1.0)]
"""A number in [0, 1]: a probability, a confidence, a share."""

Generation = Annotated[StrictInt, Field(ge=0)]
"""A ``metadata.generation``."""


class TargetRef(KubeModel):
    """The Argo Rollout a policy watches, in the policy's namespace."""

    kind: Literal["Rollout"] = "Rollout"
    """Kind of the target; only Argo Rollouts for now."""

    name: ObjectName
    """Name of the Rollout."""


class PolicyRef(KubeModel):
    """The CorrelationPolicy that proposed a plan, in the plan's namespace."""

    name: ObjectName
    """Name of the CorrelationPolicy."""


class Correlation(KubeModel):
    """A significant lagged correlation between two metrics: ``leader`` moves, ``follower`` follows."""

    leader: MetricName
    """The metric that moves first."""

    follower: MetricName
    """The metric that follows."""

    r: StrictFloat = Field(ge=-1.0, le=1.0)
    """Correlation coefficient at the best lag, in [-1, 1]."""

    lag_seconds: StrictFloat = Field(ge=0.0)
    """How long after the leader the follower moves, in seconds."""


class Severity(StrEnum):
    """How bad an incident is: the ladder maps a confidence to a severity and an action."""

    INFO = "info"
    WARNING = "warning"
    CRITICAL = "critical"


class Action(StrEnum):
    """What a plan does to the target Rollout (the Argo Rollouts kubectl plugin's verbs)."""

    NONE = "none"
    """Nothing: the plan only records evidence."""
    ANNOTATE = "annotate"
    """Annotate the Rollout with the evidence; traffic is untouched."""
    PAUSE = "pause"
    """Pause the canary at its current step."""
    ABORT = "abort"
    """Abort the canary: all traffic back to the stable ReplicaSet."""
    ROLLBACK = "rollback"
    """Roll back to the previous revision (``kubectl argo rollouts undo``)."""


# --- conditions -------------------------------------------------------------------------------------


class ConditionStatus(StrEnum):
    """Status of a condition, as in every Kubernetes condition."""

    TRUE = "True"
    FALSE = "False"
    UNKNOWN = "Unknown"


# The patterns and bounds of metav1.Condition, so ajan's conditions read like any other resource's.
CONDITION_TYPE_PATTERN: Final = (
    r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?"
    r"(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])$"
)
CONDITION_REASON_PATTERN: Final = r"^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$"


class Condition(KubeModel):
    """One aspect of a resource's state, in the shape of ``metav1.Condition``."""

    type: Annotated[StrictStr, StringConstraints(pattern=CONDITION_TYPE_PATTERN, max_length=316)]
    """Type of the condition, in CamelCase (e.g. Ready)."""

    status: ConditionStatus
    """Whether the condition holds: True, False or Unknown."""

    reason: Annotated[
        StrictStr, StringConstraints(pattern=CONDITION_REASON_PATTERN, min_length=1, max_length=1024)
    ]
    """Why, as a CamelCase word a program can match on (e.g. PrometheusUnavailable)."""

    message: Annotated[StrictStr, StringConstraints(max_length=32768)] = ""
    """Why, for a person."""

    last_transition_time: AwareDatetime
    """When status last changed."""

    observed_generation: Generation | None = None
    """The metadata.generation the condition was computed from."""


def conditions_field(description: str) -> Any:
    """A status ``conditions`` list: keyed by ``type`` so server-side apply merges per condition."""
    return Field(
        default_factory=list,
        max_length=16,
        description=description,
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["type"]},
    )


def rfc3339(at: datetime) -> str:
    """``at`` as the API server writes a timestamp: UTC, with a ``Z``."""
    return at.astimezone(UTC).isoformat().replace("+00:00", "Z")


def find_condition(conditions: Sequence[Condition], type_: str) -> Condition | None:
    """The condition of type ``type_``, or ``None``."""
    return next((c for c in conditions if c.type == type_), None)


def _location(loc: Sequence[int | str]) -> str:
    """``('spec', 'metrics', 1, 'query')`` as ``spec.metrics[1].query``."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else part
    return out


def validation_message(err: ValidationError, root: Sequence[str] = ()) -> str:
    """The first validation error as one line naming the field, and how many more there are.

    ``root`` is where the validated document sits (``("spec",)`` for a resource's spec), so that
    the field is named as a user finds it in their YAML: ``spec.metrics[1].query: ...``.
    """
    first = err.errors()[0]
    where = _location([*root, *first["loc"]])
    message = str(first["msg"]).removeprefix("Value error, ")
    more = err.error_count() - 1
    return (f"{where}: {message}" if where else message) + (f" (and {more} more)" if more else "")
