"""Before any traffic moves: the model and both versions exist, the candidate takes and gives what the baseline
does, and which version the baseline is.

The versions' inputs and outputs come from ModelMetadata through the region gateway's gRPC port (the local pool
answers it from the repository's files, without waking a pool; the knative backend from the revisions).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import grpc

from edgeinfer.protocol import open_inference_pb2 as pb
from edgeinfer.rollout.errors import RolloutError

METADATA_METHOD = "/inference.GRPCInferenceService/ModelMetadata"

Tensor = tuple[str, str, tuple[int, ...]]  # name, datatype, shape


@dataclass(frozen=True)
class Signature:
    """What one version takes and gives."""

    versions: tuple[str, ...]  # every version the model has (the unversioned answer lists them)
    inputs: tuple[Tensor, ...]
    outputs: tuple[Tensor, ...]


class MetadataReader(Protocol):
    def signature(self, model: str, version: str) -> Signature:
        """RolloutError naming the model or version when it does not exist or cannot be asked."""
        ...


class GrpcMetadata:
    """ModelMetadata over a gateway's gRPC port (plain gRPC, as `edgeinfer up` serves on loopback)."""

    def __init__(self, address: str, timeout: float = 10.0) -> None:
        self.address = address
        self.timeout = timeout

    def signature(self, model: str, version: str) -> Signature:
        with grpc.insecure_channel(self.address) as channel:
            call = channel.unary_unary(
                METADATA_METHOD,
                request_serializer=pb.ModelMetadataRequest.SerializeToString,
                response_deserializer=pb.ModelMetadataResponse.FromString,
            )
            try:
                reply: pb.ModelMetadataResponse = call(
                    pb.ModelMetadataRequest(name=model, version=version), timeout=self.timeout
                )
            except grpc.RpcError as exc:
                code: grpc.StatusCode = exc.code()  # type: ignore[attr-defined]
                detail: str = exc.details() or ""  # type: ignore[attr-defined]
                what = f"model '{model}'" + (f" version {version}" if version else "")
                if code == grpc.StatusCode.NOT_FOUND:
                    raise RolloutError(f"{what} not found at the gateway {self.address}: {detail}") from None
                raise RolloutError(
                    f"ModelMetadata of {what} at the gateway {self.address} failed with {code.name}: {detail}"
                ) from None
        return Signature(
            tuple(reply.versions),
            tuple((t.name, t.datatype, tuple(t.shape)) for t in reply.inputs),
            tuple((t.name, t.datatype, tuple(t.shape)) for t in reply.outputs),
        )


def _tensor_text(tensor: Tensor) -> str:
    return f"{tensor[1]} {list(tensor[2])}"


def differences(baseline: Signature, candidate: Signature, b: str, c: str) -> list[str]:
    """Each way the candidate's inputs or outputs differ from the baseline's, as a sentence."""
    problems = []
    for kind, theirs, ours in (
        ("input", baseline.inputs, candidate.inputs),
        ("output", baseline.outputs, candidate.outputs),
    ):
        old = {t[0]: t for t in theirs}
        new = {t[0]: t for t in ours}
        for name in sorted(old.keys() - new.keys()):
            problems.append(f"{kind} '{name}' ({_tensor_text(old[name])}) of version {b} is missing in version {c}")
        for name in sorted(new.keys() - old.keys()):
            problems.append(f"{kind} '{name}' ({_tensor_text(new[name])}) of version {c} is not in version {b}")
        for name in sorted(old.keys() & new.keys()):
            if old[name] != new[name]:
                problems.append(
                    f"{kind} '{name}': version {b} has {_tensor_text(old[name])}, version {c} has "
                    f"{_tensor_text(new[name])}"
                )
    return problems


def choose_baseline(policy: dict[str, Any], versions: Sequence[str], candidate: str, explicit: str | None) -> str:
    """The version the candidate is measured against: `explicit` if given; else the version that has every
    unversioned request now (the policy's weights, when one version has 100 %); else, under the default policy
    (every request to the latest), the newest version other than the candidate."""
    if explicit is not None:
        return explicit
    weights = policy.get("weights") or {}
    serving = [v for v, w in weights.items() if isinstance(w, int) and w > 0]
    if len(serving) == 1:
        return str(serving[0])
    if len(serving) > 1:
        split = ", ".join(f"{v}: {weights[v]} %" for v in serving)
        raise RolloutError(
            f"the traffic is split ({split}) and no rollout holds it: pin one version first "
            "(`edgeinfer rollout abort` rolls back a stale split), or name the baseline"
        )
    others = sorted((v for v in versions if v and v != candidate), key=_version_key)
    if not others:
        raise RolloutError(f"the model has no version other than {candidate} to compare it with")
    return others[-1]


def _version_key(version: str) -> tuple[int, str]:
    return (int(version), version) if version.isdigit() else (-1, version)


def check(reader: MetadataReader, model: str, baseline: str | None, candidate: str, policy: dict[str, Any]) -> str:
    """The preflight of one region: returns the baseline; RolloutError for an unknown model or version, or a
    candidate whose inputs or outputs differ from the baseline's."""
    model_sig = reader.signature(model, "")
    known = [v for v in model_sig.versions if v]
    if candidate not in known:
        raise RolloutError(
            f"model '{model}' has no version {candidate} (its versions: {', '.join(known) or 'none reported'})"
        )
    if baseline is not None and baseline not in known:
        raise RolloutError(f"model '{model}' has no version {baseline} (its versions: {', '.join(known)})")
    chosen = choose_baseline(policy, known, candidate, baseline)
    if chosen == candidate:
        raise RolloutError(f"version {candidate} of '{model}' already serves every request: nothing to roll out")
    problems = differences(reader.signature(model, chosen), reader.signature(model, candidate), chosen, candidate)
    if problems:
        raise RolloutError(
            f"version {candidate} of '{model}' is not a drop-in for version {chosen}, refused before any traffic: "
            + "; ".join(problems)
        )
    return chosen
