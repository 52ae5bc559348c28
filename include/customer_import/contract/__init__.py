"""What a customer file and an import are: the bottom layer, which every other part may use.

It owns the field contract (`fields`: the fields of `contract.yaml`, their types and the rules with
the messages a person fixing a file reads), the options a run is asked for (`options`), the issue a
check reports (`issues`) and the sample files built from the contract (`generate`). It uses no
other part of the package: only the standard library, PyYAML and pycountry.
"""
