"""Schemathesis hooks for Verdict's API: test data the schema cannot describe.

Loaded by scripts/schemathesis.sh (SCHEMATHESIS_HOOKS). The data comes from the
caller in VERDICT_SCHEMATHESIS_DATA (JSON); without it the hooks change nothing.

- cursors: {"<sort>.<order>": next_cursor} -- a list cursor is a value the server
  made (a position in one sort order); a schema-valid cursor the server never
  made is rightly refused, so generated ones are swapped for real ones.
- config_project: an existing configuration project, for POST /api/v1/admin/agents
  and PATCH /api/v1/admin/agents/{agent} (a path the server must find on its disk).
- integrations: names of webhook integrations that exist; generated names (which
  match none) are swapped for them, so the routes under an integration are
  reached and not only their 404.
- admin_token_id: the id of the feed token the run authenticates with, which
  DELETE /api/v1/admin/feed-tokens/{id} must not revoke mid-run; another id is
  used in its place (the route is still exercised, with 204 and 404).
"""

import json
import os
import re

import schemathesis

DATA = json.loads(os.environ.get("VERDICT_SCHEMATHESIS_DATA") or "{}")
CURSOR = re.compile(r"^[A-Za-z0-9_-]{1,300}$")
INTEGRATION_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")


@schemathesis.hook
def before_call(context, case, kwargs):
    label = case.operation.label
    if label == "GET /api/v1/alerts" and isinstance(case.query, dict):
        cursor = case.query.get("cursor")
        key = f"{case.query.get('sort', 'last_seen')}.{case.query.get('order', 'desc')}"
        if isinstance(cursor, str) and CURSOR.match(cursor) and key in DATA.get("cursors", {}):
            case.query["cursor"] = DATA["cursors"][key]
    elif label in ("POST /api/v1/admin/agents", "PATCH /api/v1/admin/agents/{agent}") and isinstance(case.body, dict) and "config_project" in DATA:
        if isinstance(case.body.get("config_project"), str):
            case.body["config_project"] = DATA["config_project"]
    elif label.split(" ", 1)[1].startswith("/api/v1/admin/integrations/{name}") and isinstance(case.path_parameters, dict) and DATA.get("integrations"):
        name = case.path_parameters.get("name")
        if isinstance(name, str) and INTEGRATION_NAME.match(name):
            case.path_parameters["name"] = DATA["integrations"][len(name) % len(DATA["integrations"])]
    elif label == "DELETE /api/v1/admin/feed-tokens/{id}" and isinstance(case.path_parameters, dict) and "admin_token_id" in DATA:
        if str(case.path_parameters.get("id")) == str(DATA["admin_token_id"]):
            case.path_parameters["id"] = DATA["admin_token_id"] + 1_000_000
