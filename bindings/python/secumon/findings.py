"""Scanner reports: SARIF 2.1.0, Trivy JSON, Nuclei JSONL and SecuMon JSON."""

from os import PathLike
from typing import List, Union

from ._secumon import Finding, parse_findings


def parse(source: Union[str, "PathLike[str]", bytes], format: str = "auto") -> List[Finding]:
    """Every finding of a report, from a path or the report's bytes.

    Raises :class:`secumon.errors.ParseError` (a ``ValueError``) with ``file``, ``line`` and
    ``column`` when the report is malformed.
    """
    return parse_findings(source, format)


__all__ = ["Finding", "parse"]
