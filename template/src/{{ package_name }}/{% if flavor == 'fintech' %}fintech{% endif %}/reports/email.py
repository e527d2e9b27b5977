"""The report e-mail: a plain-text and an HTML part rendered from the stored report, and the
report attached as JSON, exactly as GET /api/reports/{id} shows it.

Amounts are the stored strings ("1234.5000"), never numbers: the e-mail, the attachment and the
API show the same digits. The templates are Jinja2; the HTML one escapes every value.
"""

from __future__ import annotations

import json
from datetime import datetime
from email.message import EmailMessage
from email.utils import format_datetime
from typing import Any

from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

# The templates are files beside this module (templates/report.txt.j2, report.html.j2); the
# HTML one is escaped, the text one is not.
_TEMPLATES = Environment(
    loader=PackageLoader(__name__.rpartition(".")[0], "templates"),
    autoescape=select_autoescape(["html.j2"]),
    trim_blocks=True,
    lstrip_blocks=True,
    keep_trailing_newline=True,
    undefined=StrictUndefined,
)
_TEXT = _TEMPLATES.get_template("report.txt.j2")
_HTML = _TEMPLATES.get_template("report.html.j2")


def subject_of(report: dict[str, Any]) -> str:
    return f"Your portfolio report: {report['total_value']} {report['currency']}"


def attachment_name(report_id: str) -> str:
    return f"portfolio-report-{report_id}.json"


def message_id_header(message_id: str, sender: str) -> str:
    """The Message-ID header for the outbox row's id, in the sender's domain."""
    return f"<{message_id}@{sender.rpartition('@')[2]}>"


def report_email(
    *,
    sender: str,
    recipient: str,
    message_id: str,
    report_id: str,
    report: dict[str, Any],
    completed_at: datetime,
) -> EmailMessage:
    filename = attachment_name(report_id)
    values = {
        "report": report,
        "report_id": report_id,
        "completed_at": completed_at,
        "filename": filename,
    }
    message = EmailMessage()
    message["From"] = sender
    message["To"] = recipient
    message["Subject"] = subject_of(report)
    message["Date"] = format_datetime(completed_at)
    message["Message-ID"] = message_id_header(message_id, sender)
    message.set_content(_TEXT.render(values))
    message.add_alternative(_HTML.render(values), subtype="html")
    message.add_attachment(
        json.dumps(report, indent=2).encode(),
        maintype="application",
        subtype="json",
        filename=filename,
    )
    return message
