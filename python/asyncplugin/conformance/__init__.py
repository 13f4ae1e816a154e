"""The conformance kit: prove that a plugin or an engine, in any language, speaks asyncplugin.

Modules (imports point down; none is imported here, so the contract bindings stay cheap):

    cases.py             the scenario catalogue: each case, its requirement and citation
    kit.py               drive every case through the reference engine (SystemClock), judge it
    probe.py             hand-made status checks: does the plugin verify the echo?
    judge.py             pure: a driven scenario (record, history, every answer) -> failures
    answers.py           pure: each answer against the protocol rules and its scenario
    requirements.py      the plugin kit's requirement names and their citations
    findings.py          Exchange and Failure: what the judges read and write
    reference_plugin.py  the Python conformance plugin; ReferenceServer records Observations
    observations.py      Observations as JSON lines
    engine_judge.py      pure: Observations of an engine's calls -> failures by rule
    engine_rules.py      the engine kit's rules and citations, and its verdict
    report.py            rich tables and JUnit XML
    interpreter.py       the reference scenario interpreter (conformance.proto), pure
    v1/                  generated bindings of proto/asyncplugin/conformance/v1

Command line: `asyncplugin conformance plugin|serve|scenarios|judge-engine`.
"""
