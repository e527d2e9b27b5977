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

from jinja2 import Environment, StrictUndefined

TEXT_TEMPLATE = """\
Your portfolio report of {{ completed_at.strftime("%Y-%m-%d %H:%M UTC") }}

Total value      {{ report.total_value }} {{ report.currency }}
Cash             {{ report.cash }} {{ report.currency }}
Positions        {{ report.positions_value }} {{ report.currency }}
Unrealised P&L   {{ report.unrealized_pnl }} {{ report.currency }}
Realised P&L     {{ report.realized_pnl }} {{ report.currency }}

Allocation
{% for name, percent in report.allocation.items() %}
  {{ "%-14s"|format(name) }} {{ percent }} %
{% endfor %}
{% if report.holdings %}

Holdings
{% for holding in report.holdings %}
  {{ holding.symbol }}: {{ holding.quantity }} at {{ holding.price }}, \
worth {{ holding.market_value }} ({{ holding.allocation_percent }} %)
{% endfor %}
{% endif %}

The figures are attached as JSON ({{ filename }}), as the API shows them.
Report {{ report_id }}
"""

HTML_TEMPLATE = """\
<!DOCTYPE html>
<html lang="en">
<body>
<h1>Your portfolio report</h1>
<p>Computed {{ completed_at.strftime("%Y-%m-%d %H:%M UTC") }}.</p>
<table>
<tr><th scope="row">Total value</th><td>{{ report.total_value }} {{ report.currency }}</td></tr>
<tr><th scope="row">Cash</th><td>{{ report.cash }} {{ report.currency }}</td></tr>
<tr><th scope="row">Positions</th><td>{{ report.positions_value }} {{ report.currency }}</td></tr>
<tr><th scope="row">Unrealised P&amp;L</th>\
<td>{{ report.unrealized_pnl }} {{ report.currency }}</td></tr>
<tr><th scope="row">Realised P&amp;L</th>\
<td>{{ report.realized_pnl }} {{ report.currency }}</td></tr>
</table>
<h2>Allocation</h2>
<table>
{% for name, percent in report.allocation.items() %}
<tr><th scope="row">{{ name }}</th><td>{{ percent }} %</td></tr>
{% endfor %}
</table>
{% if report.holdings %}
<h2>Holdings</h2>
<table>
<tr><th>Symbol</th><th>Quantity</th><th>Price</th><th>Value</th><th>Allocation</th></tr>
{% for holding in report.holdings %}
<tr><td>{{ holding.symbol }}</td><td>{{ holding.quantity }}</td><td>{{ holding.price }}</td>\
<td>{{ holding.market_value }}</td><td>{{ holding.allocation_percent }} %</td></tr>
{% endfor %}
</table>
{% endif %}
<p>The figures are attached as JSON ({{ filename }}), as the API shows them.<br>
Report {{ report_id }}</p>
</body>
</html>
"""

_TEXT = Environment(
    autoescape=False, trim_blocks=True, lstrip_blocks=True, undefined=StrictUndefined
).from_string(TEXT_TEMPLATE)
_HTML = Environment(
    autoescape=True, trim_blocks=True, lstrip_blocks=True, undefined=StrictUndefined
).from_string(HTML_TEMPLATE)


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
