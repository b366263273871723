"""Every RPC, message and field of edgeinfer's stubs against tritonclient's own descriptors (Triton's protos).

A field here must have Triton's number, type, label and message type; a message that Triton's service uses in an
RPC must have every one of Triton's fields. Only ModelConfig's unused parts and one documented extension differ.
"""

from __future__ import annotations

from typing import Any

import pytest
from google.protobuf.descriptor import Descriptor, EnumDescriptor

from edgeinfer.protocol import open_inference_pb2 as pb

# Ours only: the function's serving properties in its metadata (open_inference.proto says why).
EXTENSIONS = {"inference.ModelMetadataResponse": {"properties"}}
# Messages of model_config.proto that declare only what edgeinfer fills.
PARTIAL = {
    "inference.ModelConfig",
    "inference.ModelInstanceGroup",
    "inference.ModelOptimizationPolicy",
}


def _triton() -> tuple[Any, Any]:
    import tritonclient.grpc.model_config_pb2 as triton_config
    import tritonclient.grpc.service_pb2 as triton_service

    return triton_service, triton_config


def _triton_message(full_name: str) -> Descriptor:
    service, config = _triton()
    for module in (service, config):
        try:
            return module.DESCRIPTOR.pool.FindMessageTypeByName(full_name)  # type: ignore[no-any-return]
        except KeyError:
            continue
    raise AssertionError(f"{full_name} is not one of Triton's messages")


def _messages(descriptor: Descriptor) -> list[Descriptor]:
    found = [descriptor]
    for nested in descriptor.nested_types:
        found.extend(_messages(nested))
    return found


def _all_messages() -> list[Descriptor]:
    # The map entry of the one extension field is ours alone.
    ours = [m for top in pb.DESCRIPTOR.message_types_by_name.values() for m in _messages(top)]
    return [m for m in ours if m.full_name != "inference.ModelMetadataResponse.PropertiesEntry"]


def test_the_service_declares_every_rpc_of_tritons() -> None:
    service, _ = _triton()
    theirs = service.DESCRIPTOR.services_by_name["GRPCInferenceService"]
    ours = pb.DESCRIPTOR.services_by_name["GRPCInferenceService"]
    assert ours.full_name == theirs.full_name
    assert sorted(m.name for m in ours.methods) == sorted(m.name for m in theirs.methods)
    for method in theirs.methods:
        mine = ours.methods_by_name[method.name]
        assert mine.input_type.full_name == method.input_type.full_name, method.name
        assert mine.output_type.full_name == method.output_type.full_name, method.name
        assert mine.client_streaming == method.client_streaming, method.name
        assert mine.server_streaming == method.server_streaming, method.name


@pytest.mark.parametrize("message", _all_messages(), ids=lambda m: m.full_name)
def test_each_field_matches_tritons(message: Descriptor) -> None:
    theirs = _triton_message(message.full_name)
    extra = EXTENSIONS.get(message.full_name, set())
    for field in message.fields:
        if field.name in extra:
            assert field.number not in theirs.fields_by_number, f"{field.name} collides with Triton's field"
            continue
        other = theirs.fields_by_name.get(field.name)
        assert other is not None, f"{message.full_name}.{field.name} is not Triton's"
        shape = (field.number, field.type, field.is_repeated)
        their_shape = (other.number, other.type, other.is_repeated)
        assert shape == their_shape, field.name
        if field.message_type is not None:
            assert other.message_type is not None, field.name
            assert field.message_type.full_name == other.message_type.full_name, field.name
        if field.enum_type is not None:
            assert other.enum_type is not None, field.name
            _same_enum(field.enum_type, other.enum_type)
        mine_oneof = field.containing_oneof.name if field.containing_oneof else None
        their_oneof = other.containing_oneof.name if other.containing_oneof else None
        assert mine_oneof == their_oneof, field.name
    if message.full_name not in PARTIAL:
        missing = {f.name for f in theirs.fields} - {f.name for f in message.fields}
        assert not missing, f"{message.full_name} lacks Triton's fields {sorted(missing)}"


def _same_enum(ours: EnumDescriptor, theirs: EnumDescriptor) -> None:
    assert ours.full_name == theirs.full_name
    assert {v.name: v.number for v in ours.values} == {v.name: v.number for v in theirs.values}


def test_every_message_of_the_service_is_declared_whole_or_listed_as_partial() -> None:
    service, _ = _triton()
    theirs = service.DESCRIPTOR.services_by_name["GRPCInferenceService"]
    declared = {m.full_name for m in _all_messages()}
    for method in theirs.methods:
        for message in (method.input_type, method.output_type):
            for nested in _messages(message):
                assert nested.full_name in declared, nested.full_name
