"""Conformance contract bindings (generated in v1/) and, later, the conformance kit."""
