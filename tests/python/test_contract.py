"""The HTTP API's OpenAPI document, checked by independent tools against a running server.

- openapi-spec-validator: the served document is a valid OpenAPI 3.1 document.
- schemathesis: a bounded run per dialect, with that dialect's credentials, finds no 5xx, no
  undocumented status code, and no response whose body or headers break the document.
- openapi-python-client: a client generated from the document sends and reads back a
  TextingLine message and a Bird message, parsing them with its strict models.

Run by tests/e2e/contract.rs with the Python in TEST_PYTHON, which `cargo xtask ci`
prepares with pinned versions of these tools.
"""

import base64
import importlib
import json
import os
import pathlib
import subprocess
import sys
import tempfile
import unittest
import urllib.request

URL = os.environ["SWITCHBOARD_URL"]
ACCOUNT = os.environ["SB_ACCOUNT"]
CHANNEL = os.environ["SB_CHANNEL"]
API_KEY = os.environ["SB_API_KEY"]  # <key id>:<secret>
OPERATOR = os.environ["SB_OPERATOR_TOKEN"]
FROM = os.environ["SB_FROM"]
EXAMPLES = os.environ.get("SB_SCHEMATHESIS_EXAMPLES", "20")
TOOLS = pathlib.Path(sys.executable).parent


def document():
    with urllib.request.urlopen(URL + "/openapi.json") as response:
        return json.load(response)


class Document(unittest.TestCase):
    def test_is_valid_openapi_3_1(self):
        from openapi_spec_validator import validate

        doc = document()
        self.assertTrue(doc["openapi"].startswith("3.1"))
        validate(doc)


# The checks that compare what the server answers with what the document says; the checks
# that would hold the document to every validation rule (E.164 numbers, ranges of each field)
# are left out: it describes types and shapes, and docs/API.md the rules.
CHECKS = ",".join(
    [
        "not_a_server_error",
        "status_code_conformance",
        "content_type_conformance",
        "response_schema_conformance",
        "response_headers_conformance",
        "missing_required_header",
        "unsupported_method",
        "allow_header_conformance",
        "ignored_auth",
        "use_after_free",
        "ensure_resource_availability",
        "negative_data_rejection",
    ]
)


class Schemathesis(unittest.TestCase):
    def run_dialect(self, paths, *auth):
        with tempfile.TemporaryDirectory() as tmp:
            config = pathlib.Path(tmp) / "schemathesis.toml"
            config.write_text(
                "[parameters]\n"
                f'"path.projectId" = "{ACCOUNT}"\n'
                f'"path.workspaceId" = "{ACCOUNT}"\n'
                f'"path.channelId" = "{CHANNEL}"\n'
                f'"path.account" = "{ACCOUNT}"\n'
            )
            command = [
                str(TOOLS / "st"),
                "--config-file",
                str(config),
                "run",
                URL + "/openapi.json",
                "--include-path-regex",
                paths,
                "--checks",
                CHECKS,
                "--max-examples",
                EXAMPLES,
                "--seed",
                "20261206",
                "--suppress-health-check",
                "all",
                "--no-color",
                *auth,
            ]
            done = subprocess.run(command, capture_output=True, text=True, cwd=tmp, timeout=600)
        self.assertEqual(done.returncode, 0, done.stdout[-20000:] + done.stderr[-5000:])
        self.assertIn("passed", done.stdout)

    # Numbered, so that they run in this order: the operator's run changes accounts, channels
    # and rate limits, and goes last.
    def test_1_textingline(self):
        self.run_dialect("^/api/v1/", "--auth", API_KEY)

    def test_2_mudbase(self):
        self.run_dialect("^/api/(messaging|auth)/", "--header", f"X-API-Key: {API_KEY}")

    def test_3_bird(self):
        self.run_dialect("^/workspaces/", "--header", f"Authorization: AccessKey {API_KEY}")

    def test_5_admin(self):
        self.run_dialect("^/(admin|upstreams)/", "--header", f"Authorization: Bearer {OPERATOR}")

    def test_4_operations(self):
        self.run_dialect("^/(healthz|metrics)$")


class GeneratedClient(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.TemporaryDirectory()
        spec = pathlib.Path(cls.tmp.name) / "openapi.json"
        spec.write_text(json.dumps(document()))
        env = dict(os.environ, PATH=f"{TOOLS}{os.pathsep}{os.environ.get('PATH', '')}")
        done = subprocess.run(
            [str(TOOLS / "openapi-python-client"), "generate", "--path", str(spec), "--meta", "none",
             "--output-path", str(pathlib.Path(cls.tmp.name) / "generated")],
            capture_output=True, text=True, env=env, timeout=300,
        )
        assert done.returncode == 0, done.stdout + done.stderr
        assert "Warning" not in done.stdout, done.stdout
        sys.path.insert(0, cls.tmp.name)
        cls.client = importlib.import_module("generated")

    @classmethod
    def tearDownClass(cls):
        sys.path.remove(cls.tmp.name)
        cls.tmp.cleanup()

    def authenticated(self, prefix, token):
        return self.client.AuthenticatedClient(base_url=URL, token=token, prefix=prefix)

    def test_textingline_message_round_trip(self):
        send = importlib.import_module("generated.api.texting_line.textingline_send_message")
        read = importlib.import_module("generated.api.texting_line.textingline_get_message")
        models = importlib.import_module("generated.models")
        client = self.authenticated("Basic", base64.b64encode(API_KEY.encode()).decode())
        request = models.TlSendRequest(to="+18005551234", from_=FROM, body="Your verification code is 482910")
        sent = send.sync_detailed(client=client, body=request)
        self.assertEqual(sent.status_code, 201, sent.content)
        self.assertIsInstance(sent.parsed, models.TlMessage)
        got = read.sync_detailed(id=sent.parsed.id, client=client)
        self.assertEqual(got.status_code, 200, got.content)
        message = got.parsed
        self.assertIsInstance(message, models.TlMessage)
        self.assertEqual((message.id, message.to, message.from_), (sent.parsed.id, "+18005551234", FROM))
        self.assertEqual(message.direction, models.Direction.OUTBOUND)
        self.assertEqual(message.body, "Your verification code is 482910")
        missing = read.sync_detailed(id="msg_" + "1" * 22, client=client)
        self.assertEqual(missing.status_code, 404)
        self.assertIsInstance(missing.parsed, models.TlErrorBody)

    def test_bird_message_round_trip(self):
        send = importlib.import_module("generated.api.bird_channels.bird_send")
        read = importlib.import_module("generated.api.bird_channels.bird_read")
        models = importlib.import_module("generated.models")
        client = self.authenticated("AccessKey", API_KEY)
        request = models.BirdSendRequest.from_dict(
            {
                "receiver": {"contacts": [{"identifierKey": "phonenumber", "identifierValue": "+31612345678"}]},
                "body": {"type": "text", "text": {"text": "Single text message"}},
                "reference": "order-1234",
            }
        )
        sent = send.sync_detailed(workspace_id=ACCOUNT, channel_id=CHANNEL, client=client, body=request)
        self.assertEqual(sent.status_code, 202, sent.content)
        self.assertIsInstance(sent.parsed, models.BirdMessage)
        got = read.sync_detailed(
            workspace_id=ACCOUNT, channel_id=CHANNEL, message_id=str(sent.parsed.id), client=client
        )
        self.assertEqual(got.status_code, 200, got.content)
        message = got.parsed
        self.assertIsInstance(message, models.BirdMessage)
        self.assertEqual(message.id, sent.parsed.id)
        self.assertEqual(message.reference, "order-1234")
        self.assertEqual(message.receiver.contacts[0].identifier_value, "+31612345678")


if __name__ == "__main__":
    unittest.main(verbosity=2)
