"""models: what a backend can use."""

from __future__ import annotations

import json
import sys

from varflow.generation.backends import BACKENDS


def add_commands(sub) -> None:
    p = sub.add_parser("models",
                       help="list the image models a backend can use (a paid one: those your API key can use)")
    p.add_argument("--backend", default=None, choices=BACKENDS, help="default: the first paid backend")
    p.add_argument("--api-key-secret", default=None, metavar="BLOCK",
                   help="Prefect Secret block holding the API key (default: GEMINI_API_KEY / GOOGLE_API_KEY)")
    p.add_argument("--timeout", type=float, default=30.0, help="request timeout in seconds (default 30)")
    p.add_argument("--json", action="store_true", help="print the models as JSON")
    p.set_defaults(func=cmd_models)


def cmd_models(args) -> int:
    """The models a backend can use (a remote one: those its key can use), or why they can't be listed."""
    from varflow.generation.backends import BACKENDS, GenerationError, backend_class, make_backend

    name = args.backend or next(b for b in BACKENDS if backend_class(b).remote)
    options = {}
    if backend_class(name).remote:
        options["timeout_s"] = args.timeout
        if args.api_key_secret:
            from varflow.flows.resources import load_secret

            try:
                options["api_key"] = load_secret(args.api_key_secret)
            except ValueError as exc:
                print(f"varflow models: {exc}", file=sys.stderr)
                return 2
    try:
        backend = make_backend(name, **options)
    except ValueError as exc:  # no key, or options the backend refuses
        print(f"varflow models: {exc}", file=sys.stderr)
        return 2
    try:
        models = backend.list_models()
    except GenerationError as exc:
        hint = {"auth": "the key was refused", "connection": "cannot reach the API",
                "timeout": "the API did not answer in time"}.get(exc.outcome, exc.outcome)
        print(f"varflow models: cannot list models ({hint}): {exc}", file=sys.stderr)
        return 1
    finally:
        backend.close()
    return _print_models(models, args.json)

def _print_models(models, as_json: bool) -> int:
    if as_json:
        print(json.dumps([{"name": m.name, "display_name": m.display_name, "description": m.description,
                           "supported_actions": list(m.supported_actions)} for m in models], indent=2))
        return 0
    if not models:
        print("no image-capable models are available to this key")
        return 1
    width = max(len(m.name) for m in models)
    for m in models:
        print(f"{m.name:<{width}}  {m.display_name}" + (f" - {m.description}" if m.description else ""))
    return 0
