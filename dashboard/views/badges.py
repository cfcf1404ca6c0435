"""What a status badge says and how it looks: the words a user reads for a deployment's status.

A row's stored status is the worker's vocabulary (`deleted`, `deleting`); a badge says what
happened in the user's (`undeployed`, `undeploying`) with a colour for its kind: `ok` (green)
only for what serves, `danger` for what failed, `busy` for what runs, `neutral` for nothing there.
"""

from __future__ import annotations

from dataclasses import dataclass

from dashboard.queries import NOT_DEPLOYED


@dataclass(frozen=True)
class Badge:
    """A status as shown: its label, its kind (the CSS class `badge-<kind>`) and its raw status."""

    label: str
    kind: str
    status: str


_RUNNING = {"rollback": "rolling back", "scale": "scaling", "undeploy": "undeploying"}

_BADGES = {
    "queued": ("queued", "busy"),
    "deploying": ("deploying", "busy"),
    "deleting": ("undeploying", "busy"),
    "ready": ("ready", "ok"),
    "failed": ("failed", "danger"),
    "missing": ("missing", "danger"),
    "deleted": ("undeployed", "neutral"),
    NOT_DEPLOYED: (NOT_DEPLOYED, "neutral"),
}


def status_badge(status: str, action: str = "") -> Badge:
    """The badge of a deployment row's status (`action` names what runs: "rolling back", ...)."""
    label, kind = _BADGES.get(status, (status, "neutral"))
    if status == "deploying" and action in _RUNNING:
        label = _RUNNING[action]
    if status == "failed" and action == "undeploy":
        label = "undeploy failed"
    return Badge(label, kind, status)


def status_label(status: str) -> str:
    """The words for a status in filters and lists (`deleted` reads "undeployed")."""
    return _BADGES.get(status, (status, ""))[0]
