"""Ingest: landing files -> validated, de-duplicated, contract-shaped partitions in lake/kpi.

Pure parts (`conform`, `validate_rows`, `last_per_key`) take and return tables. `ingest_files`
is the I/O around them: it reads landing files (never modifying them), writes partitions
atomically, quarantines bad rows with a readable report, and records every file in the ledger
so that the same content is never ingested twice.

Modules: `rules` (the contract's rules as data), `validation` (rows judged by them),
`reading` (a file read and conformed), `coverage` (which KPIs a source delivers), `check`
(a sample checked through a mapping), `pipeline` (files read ahead on threads), `batches`
(accepted rows written to the lake), `quarantine` (reports and bad rows), `landing` (the
landing folder and the archive), `results` (what a run reports) and `run` (`ingest_files`).
"""

from cellpulse.ingest.batches import Accepted, accept, split_partitions
from cellpulse.ingest.check import SampleCheck, check_sample
from cellpulse.ingest.coverage import Coverage
from cellpulse.ingest.landing import list_landing_files
from cellpulse.ingest.pipeline import Reading
from cellpulse.ingest.quarantine import format_report
from cellpulse.ingest.reading import (
    SUPPORTED_SUFFIXES,
    UNASSIGNED_REGION,
    conform,
    read_landing_file,
    read_mapped,
)
from cellpulse.ingest.results import FileResult, IngestSummary, Problem
from cellpulse.ingest.rules import Rule, RuleBook, RuleLimits, Screen, rule_book
from cellpulse.ingest.run import ingest_files, ingest_landed
from cellpulse.ingest.validation import (
    RAW_TS,
    UNALIGNED_TS,
    UNPARSABLE,
    last_per_key,
    validate_rows,
)
from cellpulse.lake import file_sha256

__all__ = [
    "RAW_TS",
    "SUPPORTED_SUFFIXES",
    "UNALIGNED_TS",
    "UNASSIGNED_REGION",
    "UNPARSABLE",
    "Accepted",
    "Coverage",
    "FileResult",
    "IngestSummary",
    "Problem",
    "Reading",
    "Rule",
    "RuleBook",
    "RuleLimits",
    "SampleCheck",
    "Screen",
    "accept",
    "check_sample",
    "conform",
    "file_sha256",
    "format_report",
    "ingest_files",
    "ingest_landed",
    "last_per_key",
    "list_landing_files",
    "read_landing_file",
    "read_mapped",
    "rule_book",
    "split_partitions",
    "validate_rows",
]
