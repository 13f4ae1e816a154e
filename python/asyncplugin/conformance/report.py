"""Reports of a conformance run: rich pass/fail tables, and JUnit XML for CI."""

from __future__ import annotations

import socket
import xml.etree.ElementTree as ET
from datetime import UTC, datetime
from pathlib import Path

from rich.console import Console
from rich.table import Table
from rich.text import Text

from .engine_rules import ENGINE_RULES, EngineVerdict
from .kit import KitReport

__all__ = [
    "engine_table",
    "junit_xml",
    "plugin_table",
    "print_engine_report",
    "print_plugin_report",
    "write_junit",
]

_PASS = Text("PASS", style="bold green")
_FAIL = Text("FAIL", style="bold red")


def plugin_table(report: KitReport) -> Table:
    """One row per case: name, requirement and citation, PASS/FAIL, detail."""
    title = f"asyncplugin conformance: plugin at {report.target}"
    table = Table(title=title, expand=False, show_lines=True)
    table.add_column("case", no_wrap=True)
    table.add_column("requirement (citation)", overflow="fold", max_width=60)
    table.add_column("result", no_wrap=True)
    table.add_column("detail", overflow="fold", max_width=70)
    for result in report.results:
        requirement = Text(result.case.requirement)
        requirement.append(f"\n({result.case.citation})", style="dim")
        table.add_row(
            result.case.name,
            requirement,
            _PASS if result.passed else _FAIL,
            Text(result.detail, style="" if result.passed else "red"),
        )
    return table


def print_plugin_report(console: Console, report: KitReport) -> None:
    """The table, each failure in full (for logs and grep), and a one-line verdict."""
    console.print(plugin_table(report))
    for result in report.failed:
        for failure in result.failures:
            console.print(f"FAIL {result.case.name}: {failure}", soft_wrap=True, highlight=False)
    failed = len(report.failed)
    implementations = ", ".join(report.implementations) or "unknown"
    verdict = Text(
        "PASSED" if report.passed else "FAILED", style="bold green" if report.passed else "bold red"
    )
    line = Text(
        f"{len(report.results)} cases, {len(report.results) - failed} passed, {failed} failed "
        f"in {report.elapsed_s:.2f} s (method {report.method}; implementation "
        f"{implementations}): "
    )
    line.append(verdict)
    console.print(line, soft_wrap=True, highlight=False)


def junit_xml(report: KitReport) -> ET.Element:
    """JUnit XML: one testsuite, one testcase per case, the failure message = the case's detail."""
    suites = ET.Element("testsuites")
    suite = ET.SubElement(
        suites,
        "testsuite",
        {
            "name": "asyncplugin.conformance.plugin",
            "tests": str(len(report.results)),
            "failures": str(len(report.failed)),
            "errors": "0",
            "skipped": "0",
            "time": f"{report.elapsed_s:.3f}",
            "timestamp": datetime.now(UTC).isoformat(timespec="seconds"),
            "hostname": socket.gethostname(),
        },
    )
    properties = ET.SubElement(suite, "properties")
    for name, value in (
        ("target", report.target),
        ("method", report.method),
        ("implementation", ", ".join(report.implementations)),
    ):
        ET.SubElement(properties, "property", {"name": name, "value": value})
    for result in report.results:
        case = ET.SubElement(
            suite,
            "testcase",
            {
                "classname": "asyncplugin.conformance.plugin",
                "name": result.case.name,
                "time": f"{result.elapsed_s:.3f}",
            },
        )
        if result.passed:
            ET.SubElement(case, "system-out").text = result.detail
            continue
        failure = ET.SubElement(
            case, "failure", {"message": result.detail, "type": result.failures[0].name}
        )
        failure.text = "\n".join(
            [str(item) for item in result.failures]
            + ["", f"requirement: {result.case.requirement} ({result.case.citation})"]
        )
    ET.indent(suites)
    return suites


def write_junit(report: KitReport, path: str | Path) -> None:
    """Writes the JUnit XML of `report` to `path` (UTF-8, with an XML declaration)."""
    ET.ElementTree(junit_xml(report)).write(path, encoding="utf-8", xml_declaration=True)


def engine_table(verdict: EngineVerdict) -> Table:
    """One row per engine rule: name, requirement and citation, PASS/FAIL, detail."""
    table = Table(title="asyncplugin conformance: engine", expand=False, show_lines=True)
    table.add_column("rule", no_wrap=True)
    table.add_column("requirement (citation)", overflow="fold", max_width=60)
    table.add_column("result", no_wrap=True)
    table.add_column("detail", overflow="fold", max_width=70)
    for rule in ENGINE_RULES:
        failures = verdict.failures_of(rule.name)
        requirement = Text(rule.requirement)
        requirement.append(f"\n({rule.citation})", style="dim")
        detail = "; ".join(failure.message for failure in failures)
        table.add_row(
            rule.name,
            requirement,
            _FAIL if failures else _PASS,
            Text(detail, style="red") if failures else "",
        )
    return table


def print_engine_report(console: Console, verdict: EngineVerdict) -> None:
    """The table, each failure in full, the notes, and a one-line verdict."""
    console.print(engine_table(verdict))
    for failure in verdict.failures:
        console.print(f"FAIL {failure}", soft_wrap=True, highlight=False)
    for note in verdict.notes:
        console.print(f"note: {note}", soft_wrap=True, highlight=False)
    line = Text(f"{verdict.tasks} tasks, {verdict.calls} calls, {len(verdict.failures)} failures: ")
    line.append(
        "PASSED" if verdict.passed else "FAILED",
        style="bold green" if verdict.passed else "bold red",
    )
    console.print(line, soft_wrap=True, highlight=False)
