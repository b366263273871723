"""`edgeinfer validate FILE|DIR|-`: Knative Service manifests checked offline, as the API server and Knative's
webhook would judge them, plus edgeinfer's policies. For a user's CI before `kubectl apply`, which checks nothing
offline.

Each problem prints as `file:doc path: message; fix: ...` (doc counts the YAML documents of the file from 1).
Exit code: 0 when nothing stops the manifests (warnings only), 1 on an error or a policy not waived, 2 when the
input cannot be read.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import yaml

from edgeinfer.knative import flags
from edgeinfer.knative.validate import UnknownPolicy, add_allow_argument, check_allowed, errors, validate
from edgeinfer.knative.webhook.config import FEATURES_CONFIG_NAME, ConfigError

SUFFIXES = (".yaml", ".yml", ".json")


class Unreadable(Exception):
    pass


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "paths",
        nargs="+",
        metavar="FILE|DIR|-",
        help="manifests: files, folders (*.yaml, *.yml, *.json) or - for stdin",
    )
    parser.add_argument(
        "--features",
        metavar="FILE",
        help="a config-features ConfigMap (kubectl get cm config-features -n knative-serving -o yaml); "
        "default: Knative's default flags",
    )
    parser.add_argument(
        "--config",
        action="append",
        default=[],
        metavar="FILE",
        help="ConfigMaps config-defaults / config-features / config-autoscaler of knative-serving (repeatable)",
    )
    add_allow_argument(parser)
    parser.add_argument("-q", "--quiet", action="store_true", help="print problems only, not the summary")


@dataclass(frozen=True)
class Document:
    where: str  # file:doc
    body: Any


def _load(text: str, name: str) -> list[Any]:
    try:
        if name.endswith(".json"):
            return [json.loads(text)]
        return [d for d in yaml.safe_load_all(text) if d is not None]
    except (yaml.YAMLError, json.JSONDecodeError) as error:
        raise Unreadable(f"{name}: not YAML/JSON: {error}") from None


def _files(path: str) -> Iterator[tuple[str, str]]:
    if path == "-":
        yield "<stdin>", sys.stdin.read()
        return
    target = Path(path)
    if target.is_dir():
        found = sorted(p for p in target.rglob("*") if p.is_file() and p.suffix in SUFFIXES)
        if not found:
            raise Unreadable(f"{path}: no *.yaml, *.yml or *.json file in this folder")
        for file in found:
            yield from _files(str(file))
        return
    try:
        yield path, target.read_text()
    except (OSError, UnicodeDecodeError) as error:
        raise Unreadable(f"{path}: cannot read it: {error}") from None


def _documents(paths: list[str]) -> Iterator[Document]:
    for path in paths:
        for name, text in _files(path):
            for index, body in enumerate(_load(text, name), start=1):
                # A JSON/YAML List (kubectl get -o yaml) holds its objects in items.
                if isinstance(body, dict) and body.get("kind") == "List" and isinstance(body.get("items"), list):
                    for item in body["items"]:
                        yield Document(f"{name}:{index}", item)
                else:
                    yield Document(f"{name}:{index}", body)


def _is_service(body: Any) -> bool:
    return (
        isinstance(body, dict)
        and body.get("kind") == "Service"
        and str(body.get("apiVersion", "")).startswith("serving.knative.dev/")
    )


def _cluster(args: argparse.Namespace) -> flags.ClusterConfig:
    files = [*args.config, *([args.features] if args.features else [])]
    documents: list[Any] = []
    for file in files:
        for _, text in _files(file):
            documents.extend(_load(text, file))
    cluster = flags.ClusterConfig.from_documents(documents, "{name} from " + ", ".join(files))
    if args.features and FEATURES_CONFIG_NAME not in cluster.sources:
        raise Unreadable(f"--features {args.features}: no ConfigMap named config-features in it")
    return cluster


def run(args: argparse.Namespace, out: TextIO | None = None, err: TextIO | None = None) -> int:
    out, err = out or sys.stdout, err or sys.stderr
    try:
        check_allowed(args.allow)
        cluster = _cluster(args)
        documents = list(_documents(args.paths))
    except (Unreadable, UnknownPolicy) as error:
        print(f"edgeinfer validate: {error}", file=err)
        return 2
    except ConfigError as error:
        print(f"edgeinfer validate: Knative would refuse that ConfigMap: {error}", file=err)
        return 2
    services = [d for d in documents if _is_service(d.body)]
    for document in documents:
        if not _is_service(document.body):
            kind = document.body.get("kind", "?") if isinstance(document.body, dict) else type(document.body).__name__
            if not args.quiet:
                print(f"{document.where} skipped: a {kind}, not a Knative Service", file=err)
    if not services:
        print(
            f"edgeinfer validate: no Knative Service (serving.knative.dev Service) in {' '.join(args.paths)}", file=err
        )
        return 2
    failed = warned = 0
    for document in services:
        problems = validate(document.body, cluster, args.allow)
        for problem in problems:
            print(f"{document.where} {problem.label}: {problem}", file=out)
        failed += bool(errors(problems))
        warned += any(p.level == "warning" for p in problems)
    if not args.quiet:
        judged = "its ConfigMaps" if cluster.known else "Knative's default ConfigMaps"
        print(
            f"edgeinfer validate: {len(services)} Service(s), {failed} refused, {warned} with warnings "
            f"(judged with {judged})",
            file=err,
        )
    return 1 if failed else 0
