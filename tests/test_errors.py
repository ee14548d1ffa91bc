"""The error table: one exit code per error class, every gRPC status explained."""

import grpc

from splitmesh import errors


def test_every_error_class_has_its_own_exit_code():
    table = errors.error_table()
    defined = [c for c in table.values()]
    assert len(set(table)) == len(defined)
    assert table[1] is errors.SplitmeshError
    for cls in (errors.ContractError, errors.CatalogError, errors.PolicyError):
        assert table[cls.exit_code] is cls
    # every class splitmesh defines is in errors.py, so the table is the whole tree
    todo, seen = [errors.SplitmeshError], []
    while todo:
        cls = todo.pop()
        seen.append(cls)
        todo += cls.__subclasses__()
    assert {c.__module__ for c in seen} == {"splitmesh.errors"}
    assert {c.exit_code for c in seen} == set(table)


def test_every_grpc_status_but_ok_is_mapped():
    codes = {c.name for c in grpc.StatusCode} - {"OK"}
    assert codes == set(errors.GRPC_STATUS)


def test_a_partys_own_error_exits_as_that_error_with_its_hint():
    from splitmesh.errors import ContractError, PartyError

    refused = PartyError("insurer", "Hello", "column 'x1' above its maximum", kind="ContractError")
    assert refused.exit_code == ContractError.exit_code == 11 and refused.hint
    crashed = PartyError("insurer", "Hello", "boom", kind="RuntimeError")
    assert crashed.exit_code == PartyError.exit_code and crashed.hint is None
