"""The run's options (varflow run, demo, serve), built from the parameter model, and the argument
types the commands share.

An option has one home: ``RunParameters`` (flows/parameters.py) gives each field's description
(the help), default, choices and bounds, and ``CLI_FLAGS`` beside it the flag, metavar and --help
section. Values are validated once, by ``RunParameters.model_validate`` in ``params_of``; argparse
only converts text to the field's type (and megapixels to pixels).
"""

from __future__ import annotations

import argparse
import math
import sys
import types
import typing

from pydantic.fields import FieldInfo


def add_run_options(p: argparse.ArgumentParser) -> None:
    """One option per ``RunParameters`` field named in ``CLI_FLAGS``, plus --json and --dry-run. An
    option not given is not passed (SUPPRESS), so the model's default applies."""
    from varflow.flows.parameters import CLI_FLAGS, RunParameters

    sections: dict[str, argparse._ActionsContainer] = {"": p}
    for name, field in RunParameters.model_fields.items():
        flag = CLI_FLAGS.get(name)
        if flag is None:
            continue
        if flag.section not in sections:
            sections[flag.section] = p.add_argument_group(flag.section)
        sections[flag.section].add_argument(flag.name, dest=name, default=argparse.SUPPRESS,
                                            **option_spec(field, flag))
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.add_argument("--dry-run", action="store_true",
                   help="print how many calls the run would make and their estimated cost; make none")


def option_spec(field: FieldInfo, flag) -> dict:
    """argparse's keywords for a field: its action or type, choices, metavar and help."""
    from varflow.flows.parameters import _bounds_of, with_bounds

    # a scaled option's bounds are the field's unit's: its help names its own unit instead
    help_text = with_bounds(field.description, **_bounds_of(field.metadata)) if flag.scale == 1 else \
        f"{field.description.rstrip('.')}, in {flag.unit}."
    annotation = field.annotation
    if annotation is bool:  # a switch: on when the field's default is off, and the reverse
        negated = field.default is True
        return {"action": "store_false" if negated else "store_true",
                "help": _escaped(f"turns off: {help_text[:1].lower()}{help_text[1:]}" if negated else help_text)}
    default = field.get_default(call_default_factory=True)
    kind = _value_type(annotation)
    spec: dict = {"metavar": flag.metavar}
    if typing.get_origin(annotation) is typing.Literal:
        spec["choices"] = typing.get_args(annotation)
    elif kind is list:
        spec["type"] = _comma_list
        default = ",".join(default)
    elif flag.scale != 1:
        spec["type"] = _scaled(flag, field)
        default = default / flag.scale
    elif kind in (int, float):
        spec["type"] = kind
    if default not in (None, "") and "default" not in help_text:
        help_text = f"{help_text.rstrip('.')} (default {default:g})." if isinstance(default, float) else \
            f"{help_text.rstrip('.')} (default {default})."
    spec["help"] = _escaped(help_text)
    return spec


def _value_type(annotation) -> type:
    """int, float, str or list of an annotation (``float | None`` is float)."""
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
        annotation = next(a for a in typing.get_args(annotation) if a is not type(None))
    return typing.get_origin(annotation) or annotation


def _escaped(text: str) -> str:
    return text.replace("%", "%%")  # argparse %-formats help texts


def _comma_list(value: str) -> list[str]:
    return value.split(",")


def _scaled(flag, field: FieldInfo):
    """An option given in a larger unit (megapixels for pixels): a finite number whose value in
    the field's unit keeps the field's lower bound."""
    from varflow.flows.parameters import _bounds_of

    low, scale = _bounds_of(field.metadata).get("ge", 0), flag.scale

    def convert(value: str) -> int:
        try:
            number = float(value)
        except ValueError:
            number = math.nan
        if not (math.isfinite(number) and number > 0 and number * scale >= low):
            raise argparse.ArgumentTypeError(f"{value!r} is not a positive number of {flag.unit} "
                                             f"(e.g. {field.default / scale:g})")
        return int(number * scale)

    return convert


def positive_int(value: str) -> int:
    """An argument that counts something: a whole number of at least 1."""
    try:
        n = int(value)
    except ValueError:
        n = 0
    if n < 1:
        raise argparse.ArgumentTypeError(f"{value!r} is not a whole number of at least 1")
    return n


def params_of(args, input_dir: str, output_dir: str):
    """The run's parameters from the parsed options, validated once (exit 2, like argparse, when not)."""
    from pydantic import ValidationError
    from varflow.flows.parameters import RunParameters

    given = {k: v for k, v in vars(args).items()
             if k in RunParameters.model_fields and k not in ("input_dir", "output_dir")}
    try:
        return RunParameters.model_validate({"input_dir": input_dir, "output_dir": output_dir, **given})
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        print(f"varflow: invalid arguments: {problems}", file=sys.stderr)
        raise SystemExit(2) from None  # like argparse: 2 is a usage error
